"""The peaks a benchmark row is measured against.

On a CPU: the best of XLA's, numpy's and PyTorch's matmul measured in the
same process (`matmul_peaks`), and the processor's theoretical FMA peak from
/proc/cpuinfo (`theoretical_cpu_peak`). On an accelerator: its published
dense peak (`published_peak_flops`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class MatmulPeaks:
    """Measured n x n matmul throughputs, in FLOP/s, and the best of them.

    Attributes:
      dtype: the compute dtype the peak is for.
      xla: XLA's product in `dtype` on the default device.
      numpy: numpy's BLAS product (np.matmul) in `numpy_dtype`, or None (not
        measured: an accelerator's peak is not the host's).
      numpy_dtype: float32 unless `dtype` is float32 or float64: numpy has no
        BLAS for bfloat16 or float16 (ml_dtypes' bfloat16 matmul is a plain
        loop), so a bfloat16 run is compared with numpy's float32 product. On
        a CPU without bfloat16 arithmetic a bfloat16 product is widened to
        float32 and runs on the same FMA units, so the float32 BLAS rate is
        the reference it can at best reach; on one with avx512_bf16 or AMX a
        bfloat16 kernel can beat it (PyTorch's oneDNN product does, where
        installed).
      torch: PyTorch's product (torch.matmul) in `dtype`, or None.
      torch_skipped: why PyTorch's was not measured.
    """

    dtype: str
    xla: float
    numpy: float | None = None
    numpy_dtype: str | None = None
    torch: float | None = None
    torch_skipped: str | None = None

    def candidates(self) -> dict[str, float]:
        """Source name -> FLOP/s of each product measured."""
        found = {"xla_matmul": self.xla, "numpy_matmul": self.numpy, "torch_matmul": self.torch}
        return {k: v for k, v in found.items() if v is not None}

    @property
    def best(self) -> float:
        return max(self.candidates().values())

    @property
    def source(self) -> str:
        found = self.candidates()
        return max(found, key=found.get)


def matmul_peaks(
    n: int = 2048, dtype="float32", repeats: int = 20, host: bool = True
) -> MatmulPeaks:
    """Measures the matmul throughput of XLA, numpy's BLAS and PyTorch, in FLOP/s.

    Each is the best of `repeats` n x n products (2 n^3 FLOPs each), measured
    in this process. The repeats of the three alternate (XLA, numpy, PyTorch,
    XLA, ...) with an untimed 20 ms gap between them, so a slow spell of a
    shared machine hits all of them alike and a thread pool still spinning
    after one product does not slow the next. `host=False` measures XLA's
    alone (an accelerator: numpy and PyTorch would time the host).
    """
    name = jnp.dtype(dtype).name
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    x = jnp.asarray(a, name)
    xla_matmul = jax.jit(lambda v: v @ v)
    calls = {"xla": lambda: jax.block_until_ready(xla_matmul(x))}
    peaks = MatmulPeaks(name, 0.0)
    if host:
        peaks.numpy_dtype = name if name in ("float32", "float64") else "float32"
        b = a.astype(peaks.numpy_dtype)
        out = np.empty_like(b)
        calls["numpy"] = lambda: np.matmul(b, b, out=out)
        try:
            # Optional: PyTorch is a benchmark extra, not a dependency of dl.
            import torch
        except ImportError:
            peaks.torch_skipped = "PyTorch is not installed"
        else:
            t = torch.from_numpy(a).to(getattr(torch, name))
            calls["torch"] = lambda: torch.matmul(t, t)
    best = {}
    for key, call in calls.items():
        try:
            call()  # compiles (XLA) and warms up
        except Exception as e:  # noqa: BLE001 -- e.g. a dtype PyTorch's CPU matmul lacks
            if key != "torch":
                raise
            peaks.torch_skipped = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        else:
            best[key] = float("inf")
    for _ in range(repeats):
        for key in best:
            time.sleep(0.02)
            t0 = time.perf_counter()
            calls[key]()
            best[key] = min(best[key], time.perf_counter() - t0)
    for key, seconds in best.items():
        setattr(peaks, key, 2.0 * n**3 / seconds)
    return peaks


@dataclasses.dataclass
class CpuPeak:
    """A processor's theoretical float32 FMA peak and what it was computed from.

    peak_flops = cores * clock_ghz * 1e9 * fp32_flops_per_cycle, where
    fp32_flops_per_cycle = fp32_lanes * 2 (an FMA is two FLOPs) * fma_units.
    """

    model: str
    vendor: str
    cores: int
    clock_ghz: float
    clock_source: str
    fp32_lanes: int
    fma_units: int
    # Flags of arithmetic units narrower than float32 (avx512_bf16, amx_bf16,
    # avx512_fp16, amx_fp16) the processor has.
    low_precision_flags: tuple[str, ...] = ()

    @property
    def fp32_flops_per_cycle(self) -> int:
        return self.fp32_lanes * 2 * self.fma_units

    @property
    def peak_flops(self) -> float:
        return self.cores * self.clock_ghz * 1e9 * self.fp32_flops_per_cycle

    def peak_flops_for(self, dtype: str) -> float:
        """The FMA peak for a compute dtype: float64 at half the lanes, else float32's.

        bfloat16 and float16 are given float32's rate: XLA:CPU computes them
        in float32. A processor with bfloat16/float16 units (see
        `low_precision_note`) can go faster in those dtypes.
        """
        return self.peak_flops / 2 if dtype == "float64" else self.peak_flops

    def low_precision_note(self, dtype: str) -> str | None:
        """For a bfloat16/float16 dtype, a note naming the processor's units for it."""
        tag = {"bfloat16": "bf16", "float16": "fp16"}.get(dtype)
        units = [f for f in self.low_precision_flags if tag and f.endswith(tag)]
        if not units:
            return None
        return (
            f"float32 FMA rate; this CPU also has {', '.join(units)}, whose {dtype} rate is higher"
        )


_LOW_PRECISION_FLAGS = ("avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16")


def _cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in text.strip().split("\n\n"):
        fields = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if fields:
            blocks.append(fields)
    return blocks


def cpu_peak_from_cpuinfo(
    text: str,
    cpus: set[int] | None = None,
    base_khz: int | None = None,
    max_khz: int | None = None,
) -> CpuPeak | None:
    """The theoretical float32 FMA peak of an x86 processor from /proc/cpuinfo's text.

    Args:
      text: the contents of /proc/cpuinfo.
      cpus: logical processors the process may run on (os.sched_getaffinity);
        None for all in `text`. The core count is that of the distinct
        physical cores ("physical id", "core id") among them: a core's
        hyperthreads share its FMA units.
      base_khz, max_khz: cpufreq's base_frequency and cpuinfo_max_freq, if
        the kernel exposes them.

    The clock is the nominal one where it can be found: the "@ 2.80GHz" of
    the model name, else cpufreq's base_frequency, else "cpu MHz" (the
    current clock; in a VM usually the host's nominal one), else cpufreq's
    cpuinfo_max_freq (the top turbo clock: the peak is then an upper bound).
    Cores running AVX-512 or AVX2 code all at once often clock below nominal,
    so the peak is one the processor rarely reaches.

    Float32 lanes per FMA from the flags: avx512f 16, avx2 with fma 8, avx 8,
    else (SSE) 4. FMA units per core: 2 with avx2/avx512f (Intel Haswell and
    later; Xeon Gold/Platinum Skylake-SP and later have two AVX-512 FMA
    units), but 1 on Skylake-SP/Cascade Lake Xeon Bronze and Silver (family
    6, model 85); without FMA (AVX or SSE alone) one add and one multiply
    unit, counted as 1. AMD (AuthenticAMD) datapaths: Zen and Zen+ (family
    23, models below 0x30) split 256-bit work over two 128-bit pipes, so 4
    lanes; Zen 2, 3 and 4 have two 256-bit FMA pipes, and Zen 4 runs
    AVX-512 as two 256-bit halves, so 8 lanes even with avx512f; Zen 5
    (family 26) has 512-bit datapaths, 16 lanes (its mobile parts run
    AVX-512 on 256-bit ones: twice their peak there).

    Returns:
      The peak and its inputs, or None where `text` does not describe x86
      processors (no "flags").
    """
    blocks = [b for b in _cpuinfo_blocks(text) if "processor" in b]
    if cpus is not None:
        blocks = [b for b in blocks if int(b["processor"]) in cpus] or blocks
    if not blocks or "flags" not in blocks[0]:
        return None
    first = blocks[0]
    flags = set(first["flags"].split())
    model = first.get("model name", "unknown")
    vendor = first.get("vendor_id", "unknown")
    if all("core id" in b for b in blocks):
        cores = len({(b.get("physical id", "0"), b["core id"]) for b in blocks})
    else:
        cores = len(blocks)

    clock = _nominal_clock(first, base_khz, max_khz)
    if clock is None:
        return None
    clock, clock_source = clock
    lanes, units = _fma_width(first, flags)
    return CpuPeak(
        model=model,
        vendor=vendor,
        cores=cores,
        clock_ghz=clock,
        clock_source=clock_source,
        fp32_lanes=lanes,
        fma_units=units,
        low_precision_flags=tuple(f for f in _LOW_PRECISION_FLAGS if f in flags),
    )


def _nominal_clock(first: dict, base_khz, max_khz) -> tuple[float, str] | None:
    """(GHz, where it was read) in the order of `cpu_peak_from_cpuinfo`'s docstring."""
    found = re.search(r"@\s*([\d.]+)\s*GHz", first.get("model name", ""))
    if found:
        return float(found.group(1)), "model name"
    if base_khz:
        return base_khz / 1e6, "cpufreq base_frequency"
    if first.get("cpu MHz"):
        return float(first["cpu MHz"]) / 1e3, "cpu MHz"
    if max_khz:
        return max_khz / 1e6, "cpufreq cpuinfo_max_freq"
    return None


def _fma_width(first: dict, flags: set[str]) -> tuple[int, int]:
    """(float32 lanes per FMA, FMA units per core), as `cpu_peak_from_cpuinfo` says."""
    has_fma = "fma" in flags
    if "avx512f" in flags:
        lanes, units = 16, 2
    elif "avx2" in flags and has_fma:
        lanes, units = 8, 2
    elif "avx" in flags:
        lanes, units = 8, 2 if has_fma else 1
    else:
        lanes, units = 4, 2 if has_fma else 1
    vendor, model = first.get("vendor_id", ""), first.get("model name", "")
    family, number = int(first.get("cpu family", 0)), int(first.get("model", 0))
    if vendor == "AuthenticAMD" and lanes > 4:
        if family == 23 and number < 0x30:
            lanes = 4  # Zen, Zen+: 128-bit pipes
        elif family < 26:
            lanes = 8  # Zen 2-4: 256-bit pipes, AVX-512 in two halves
    if vendor == "GenuineIntel" and lanes == 16 and family == 6 and number == 85:
        if re.search(r"\b(Bronze|Silver)\b", model):
            units = 1
    return lanes, units


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def theoretical_cpu_peak() -> CpuPeak | None:
    """This machine's `cpu_peak_from_cpuinfo`, over the processors this process may use."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        cpus = None
    first = min(cpus) if cpus else 0
    freq = f"/sys/devices/system/cpu/cpu{first}/cpufreq"
    return cpu_peak_from_cpuinfo(
        text,
        cpus,
        base_khz=_read_int(f"{freq}/base_frequency"),
        max_khz=_read_int(f"{freq}/cpuinfo_max_freq"),
    )


# Published dense peaks in FLOP/s by device kind (as jax reports it) and
# compute dtype, from the vendors' data sheets. float32 matmuls on these GPUs
# run on the tensor cores as TF32 under JAX's default precision, so their
# float32 figure is the TF32 peak; float16 runs at the bfloat16 rate on the
# tensor cores of Ampere, Ada and Hopper. The V100 has no bfloat16 tensor
# cores.
PUBLISHED_PEAKS = {
    "NVIDIA H100 80GB HBM3": {"float32": 494.7e12, "bfloat16": 989.4e12, "float16": 989.4e12},
    "NVIDIA H100 PCIe": {"float32": 378.0e12, "bfloat16": 756.0e12, "float16": 756.0e12},
    "NVIDIA H200": {"float32": 494.7e12, "bfloat16": 989.4e12, "float16": 989.4e12},
    "NVIDIA A100-SXM4-80GB": {"float32": 156.0e12, "bfloat16": 312.0e12, "float16": 312.0e12},
    "NVIDIA A100-SXM4-40GB": {"float32": 156.0e12, "bfloat16": 312.0e12, "float16": 312.0e12},
    "NVIDIA A100-PCIE-40GB": {"float32": 156.0e12, "bfloat16": 312.0e12, "float16": 312.0e12},
    "NVIDIA L4": {"float32": 60.0e12, "bfloat16": 121.0e12, "float16": 121.0e12},
    "Tesla V100-SXM2-16GB": {"float32": 15.7e12, "bfloat16": 15.7e12, "float16": 125.0e12},
}


def published_peak_flops(device_kind: str, dtype: str = "float32") -> float | None:
    """The published peak of a device for a compute dtype, or None if not listed."""
    return PUBLISHED_PEAKS.get(device_kind, {}).get(dtype)
