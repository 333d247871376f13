"""dl's ResNet-50 rows beside PyTorch's, from the JSONL file the device check writes.

    python -m benchmarks.compare_resnet50 resnet50.jsonl

Each row's images per second, and its MFU taken from one count of the model's
FLOPs for both frameworks (torchvision's 4.09 GMAC forward per 224x224 image,
three passes for a training step, 2 FLOPs a multiply-add) against the device's
published dense peak for bfloat16 (`dl.tools.peaks.PUBLISHED_PEAKS`); dl's row
also carries XLA's own count (`fraction_of_peak`). Appends one "comparison"
row to the file and prints a markdown table. References: NVIDIA's tuned
PyTorch, about 2,470 images/s on one A100-80GB with AMP; MLPerf Training v3.0,
about 7,000 images/s per H100.
"""

from __future__ import annotations

import json
import sys

from benchmarks.torch_resnet50 import FLOPS_PER_IMAGE
from dl.tools.peaks import published_peak_flops

REFERENCES = {"NVIDIA A100-SXM4-80GB": 2470.0, "NVIDIA H100 80GB HBM3": 7000.0}


def rows_of(path: str) -> tuple[list[dict], list[dict]]:
    """dl's ResNet-50 rows and PyTorch's rows in a JSONL file (other lines skipped)."""
    ours, theirs = [], []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            row = json.loads(line)
            if row.get("model") == "resnet50":
                ours.append(row)
            elif row.get("row") == "torch_resnet50_224_bf16":
                theirs.append(row)
    return ours, theirs


def mfu(images_per_second: float, device: str) -> float | None:
    """Model FLOPs utilisation of a ResNet-50 training step against the bfloat16 peak."""
    peak = published_peak_flops(device, "bfloat16")
    return None if peak is None else images_per_second * FLOPS_PER_IMAGE / peak


def compare(path: str) -> dict:
    ours, theirs = rows_of(path)
    lines = [
        "| run | device | batch | step ms | images/s | MFU (model FLOPs) | temp MB |",
        "|---|---|---|---|---|---|---|",
    ]

    def entry(run, device, batch, step_ms, images_per_second, temp_mb=None):
        ips = float(images_per_second)
        return {
            "run": run,
            "device": device,
            "batch": batch,
            "step_ms": step_ms,
            "images_per_second": ips,
            "mfu": mfu(ips, device),
            "temp_mb": temp_mb,
        }

    table = [
        entry(
            f"dl, remat={r.get('remat', 'off')}",
            r["device_kind"],
            r["batch_size"],
            r["step_ms_median"],
            r["examples_per_second"],
            r.get("temp_memory_mb"),
        )
        for r in ours
    ]
    table += [
        entry(
            f"PyTorch {r['torch']}, compiled={r['compiled']}",
            r["device"],
            r["batch"],
            r["step_ms"],
            r["images_per_second"],
        )
        for r in theirs
    ]
    for t in table:
        m = "-" if t["mfu"] is None else f"{100 * t['mfu']:.1f}%"
        temp = "-" if t["temp_mb"] is None else f"{t['temp_mb']:,.0f}"
        lines.append(
            f"| {t['run']} | {t['device']} | {t['batch']} | {t['step_ms']} "
            f"| {t['images_per_second']:,.1f} | {m} | {temp} |"
        )
    result = {"comparison": "resnet50_224_bf16", "rows": table}
    # dl without remat against PyTorch on the same device (the last row of each).
    plain = {t["device"]: t for t in table if t["run"] == "dl, remat=off"}
    torch_rows = {t["device"]: t for t in table if t["run"].startswith("PyTorch")}
    ratios = {
        d: round(plain[d]["images_per_second"] / torch_rows[d]["images_per_second"], 3)
        for d in plain
        if d in torch_rows
    }
    if ratios:
        result["dl_images_per_second_over_torch"] = ratios
        lines.append("")
        lines += [f"dl / PyTorch, images per second, {d}: {r:.3f}" for d, r in ratios.items()]
    for device, reference in REFERENCES.items():
        lines.append(f"reference: {reference:,.0f} images/s on one {device}")
    print("\n".join(lines))
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    result = compare(argv[1])
    with open(argv[1], "a") as f:
        f.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
