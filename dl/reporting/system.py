"""Figures of the process itself: its resident memory."""

from __future__ import annotations

import psutil


def host_rss_mb() -> float:
    """This process's resident set size now, in MiB.

    Unlike `resource.getrusage`'s maximum, it can fall as well as rise, so a
    series of readings shows whether host memory grows over a run.

    Example:
      >>> host_rss_mb() > 0
      True
    """
    return psutil.Process().memory_info().rss / 2**20
