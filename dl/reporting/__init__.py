"""What a run reports: metric files, TensorBoard events, progress, figures.

The bottom layer beside dl.models and dl.data: nothing here imports the
rest of dl (only `dl.errors`). The figures (`dl.reporting.curves`,
`dl.reporting.figures`) draw with matplotlib's object API, which needs no
backend and leaves the caller's alone; they are imported from their modules,
so that importing this package does not import matplotlib.
"""

from dl.reporting.metrics_file import (
    RUN_FIELDS,
    MetricWriter,
    NullWriter,
    as_number,
    export_metrics,
    read_events,
    series,
)
from dl.reporting.progress import Progress, RunCounter, RunStream, format_metrics
from dl.reporting.system import host_rss_mb
from dl.reporting.tensorboard import TensorBoardWriter

__all__ = [
    "RUN_FIELDS",
    "MetricWriter",
    "NullWriter",
    "Progress",
    "RunCounter",
    "RunStream",
    "TensorBoardWriter",
    "as_number",
    "export_metrics",
    "format_metrics",
    "host_rss_mb",
    "read_events",
    "series",
]
