r"""The streaming pipeline's figures: memory on a dataset bigger than it, input wait, overhead.

    python -m benchmarks.stream --root=/tmp/dl-stream [--gigabytes=4] [--out=stream.json]

1. Writes a dataset of at least --gigabytes on disk with the converter: the
   digits at 64x64, the training split written many times over (--repeat).
2. Memory: trains resnet20 on it, streamed with two workers, sampling every
   0.2 s the resident memory of the training process and its workers
   together (the sum of their RSS, and of their PSS, which counts a page
   shared by several processes once); reports the peak of each.
3. Input wait: resnet20 on 32x32 digits, two workers: the input_wait_fraction
   metrics.jsonl records (the share of wall time the loop waited for input).
4. Overhead: examples per second of dl's training iterator alone against a
   plain Grain loop written by hand with the same steps (source, shuffle,
   repeat, decode, batch, two workers), the median of --repeats each.

Prints one JSON object (and writes it to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "resnet20_digits.py")
RECORD_BYTES_64 = 64 * 64 * 4 + 4  # one 64x64x1 float32 image and its label


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, **kw
    )
    if proc.returncode:
        raise SystemExit(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def make(out: str, gigabytes: float, size: int) -> dict:
    if os.path.isfile(os.path.join(out, "metadata.json")):
        with open(os.path.join(out, "metadata.json")) as f:
            meta = json.load(f)
        return {"output": out, "reused": True, "repeat": meta["repeat"]}
    repeat = max(1, int(np.ceil(gigabytes * 1e9 / (1169 * (size * size * 4 + 4)))))
    t0 = time.perf_counter()
    proc = _run(
        [
            "experiments.convert",
            "--input=digits",
            f"--image_size={size}",
            f"--repeat={repeat}",
            "--shards=16",
            "--compression=uncompressed",  # the bytes on disk are the examples' bytes
            f"--output={out}",
        ]
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(repeat=repeat, seconds=round(time.perf_counter() - t0, 1))
    return result


class TreeMemory:
    """Samples the memory of a process and its children until stopped; keeps the peaks."""

    def __init__(self, pid: int, every: float = 0.2):
        self.root, self.every = psutil.Process(pid), every
        self.peak_rss = self.peak_pss = 0
        self.most_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                rss = pss = 0
                for p in procs:
                    try:
                        info = p.memory_full_info()
                        rss += info.rss
                        pss += getattr(info, "pss", info.rss)
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
                self.most_processes = max(self.most_processes, len(procs))
            except psutil.NoSuchProcess:
                return
            time.sleep(self.every)

    def stop(self):
        self._stop.set()
        self._thread.join()


def train_measured(records: str, workdir: str, steps: int, extra=()) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, not a resumed one
    args = [
        "experiments.train",
        f"--config={CONFIG}",
        f"--config.dataset.name=array_record:{records}",
        "--config.dataset.pipeline=stream",
        "--config.dataset.workers=2",
        f"--config.num_train_steps={steps}",
        f"--config.log_every_steps={max(1, steps // 5)}",
        f"--config.eval_every_steps={steps}",
        f"--config.checkpoint_every_steps={steps}",
        f"--workdir={workdir}",
        *extra,
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    child = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    memory = TreeMemory(child.pid)
    out, err = child.communicate()
    memory.stop()
    if child.returncode:
        raise SystemExit(f"training failed ({child.returncode}): {err[-2000:]}")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        events = [e for e in map(json.loads, f) if e["split"] == "train"]
    waits = [e["input_wait_fraction"] for e in events[1:]] or [events[0]["input_wait_fraction"]]
    return {
        "steps": steps,
        "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
        "peak_pss_mb": round(memory.peak_pss / 2**20, 1),
        "processes": memory.most_processes,
        "input_wait_fraction_median": statistics.median(waits),
        "input_wait_fraction_windows": waits,
        "steps_per_second_median": statistics.median(
            e["steps_per_second"] for e in events[1:] or events
        ),
    }


def _examples_per_second(iterator, batches: int, batch_size: int) -> float:
    next(iterator)  # the workers started, the first batch read
    t0 = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - t0)


def overhead(records: str, batches: int, batch_size: int, repeats: int) -> dict:
    """dl's training iterator against a hand-written Grain loop over the same shards."""
    sys.path.insert(0, ROOT)
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    import grain

    from dl.config import base_config
    from dl.data.records import read_metadata
    from dl.data.stream import load_stream_dataset, train_stream

    cfg = base_config().dataset
    cfg.name, cfg.pipeline, cfg.workers = f"array_record:{records}", "stream", 2
    data = load_stream_dataset(cfg)
    meta = read_metadata(records)
    files = [os.path.join(records, s["file"]) for s in meta["splits"]["train"]["shards"]]
    mean, std = data.preprocessing.x_mean, data.preprocessing.x_std
    spec = meta["fields"]

    (x_field, y_field), n_x = spec, int(np.prod(spec[0]["shape"]))
    x_dtype, y_dtype = np.dtype(x_field["dtype"]), np.dtype(y_field["dtype"])

    def by_hand(record):  # what one writes by hand: the two fields' bytes, standardized
        x = np.frombuffer(record, x_dtype, count=n_x).reshape(x_field["shape"])
        y = np.frombuffer(record, y_dtype, count=1, offset=n_x * x_dtype.itemsize)[0]
        return {"x": (x - mean) / std, "y": y}

    def plain():
        ds = grain.MapDataset.source(grain.sources.ArrayRecordDataSource(files))
        ds = ds.shuffle(seed=0).repeat(None).map(by_hand).batch(batch_size, drop_remainder=True)
        ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
        return iter(ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=2)))

    def dls():
        return iter(train_stream(data, cfg, batch_size=batch_size, seed=0, process=0, processes=1))

    rates = {"dl": [], "plain_grain": []}
    pairs = [("dl", dls), ("plain_grain", plain)]
    for repeat in range(repeats):
        for name, make_it in (
            pairs if repeat % 2 == 0 else pairs[::-1]
        ):  # alternating who goes first
            it = make_it()
            try:
                rates[name].append(_examples_per_second(it, batches, batch_size))
            finally:
                it.close()
    dl_rate, plain_rate = (statistics.median(rates[k]) for k in ("dl", "plain_grain"))
    return {
        "batches": batches,
        "batch_size": batch_size,
        "examples_per_second": {"dl": round(dl_rate, 1), "plain_grain": round(plain_rate, 1)},
        "all": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "dl_over_plain": round(dl_rate / plain_rate, 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--gigabytes", type=float, default=4.0)
    p.add_argument("--memory_steps", type=int, default=30)
    p.add_argument("--wait_steps", type=int, default=100)
    p.add_argument("--batches", type=int, default=600)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip", default="", help="comma-separated parts to skip: memory,wait,overhead")
    p.add_argument("--out", default="")
    a = p.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    os.makedirs(a.root, exist_ok=True)
    report = {"cpu": _cpu(), "cores": os.cpu_count()}
    if "memory" not in skip:
        big = os.path.join(a.root, f"digits64-{a.gigabytes:g}gb")
        report["dataset"] = make(big, a.gigabytes, 64)
        report["dataset"]["bytes_on_disk"] = sum(
            os.path.getsize(os.path.join(big, f)) for f in os.listdir(big)
        )
        report["memory"] = train_measured(big, os.path.join(a.root, "run-memory"), a.memory_steps)
    small = os.path.join(a.root, "digits32")
    if "wait" not in skip or "overhead" not in skip:
        report["dataset32"] = make(small, 0, 32)
    if "wait" not in skip:
        report["input_wait"] = train_measured(small, os.path.join(a.root, "run-wait"), a.wait_steps)
    if "overhead" not in skip:
        report["overhead"] = overhead(small, a.batches, 64, a.repeats)
    text = json.dumps(report, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
