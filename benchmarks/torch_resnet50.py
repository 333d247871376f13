"""PyTorch's ResNet-50 training step, the reference for dl's ResNet-50 row on a GPU.

    python -m benchmarks.torch_resnet50 --batch=256 --steps=30 --output=rows.jsonl

torchvision's resnet50 (25,557,032 parameters, 1000 classes) in channels-last
memory format, bfloat16 autocast (AMP), the model under torch.compile, SGD
with momentum, one synthetic batch kept on the device: the tuned setting of
NVIDIA's published PyTorch figures. Prints one JSON row: median step time,
images per second, and the model FLOPs per image (3 x 2 x 4.09 GMAC, forward
and backward) from which the row's MFU is taken against the device's
published peak. PyTorch and torchvision are imported here only: neither is
a dependency of dl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

# Forward 4.09 GMAC per 224x224 image (torchvision's figure); a training step
# costs about three forward passes; 2 FLOPs per multiply-add.
FLOPS_PER_IMAGE = 3 * 2 * 4.09e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation)")
    p.add_argument("--eager", action="store_true", help="without torch.compile")
    p.add_argument("--output", default="", help="append the row to this JSONL file")
    a = p.parse_args()

    import torch  # the reference's own dependencies, absent from dl's
    import torchvision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torchvision.models.resnet50(num_classes=1000).to(device)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    net = model if a.eager else torch.compile(model)
    x = torch.randn(a.batch, 3, 224, 224, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (a.batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    sync()
    warmup_seconds = time.perf_counter() - t0
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    row = {
        "row": "torch_resnet50_224_bf16",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "compiled": not a.eager,
        "channels_last": True,
        "batch": a.batch,
        "step_ms": round(median * 1e3, 3),
        "images_per_second": round(a.batch / median, 1),
        "model_flops_per_image": FLOPS_PER_IMAGE,
        "model_flops_per_second": round(a.batch * FLOPS_PER_IMAGE / median),
        "warmup_seconds": round(warmup_seconds, 2),
    }
    print(json.dumps(row), flush=True)
    if a.output:
        with open(a.output, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
