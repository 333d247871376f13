"""Sequences of real values: noisy sine mixtures to forecast, and digits read row by row."""

from __future__ import annotations

import numpy as np

from dl.config import option
from dl.data.bundled import load as load_bundled
from dl.data.source import Source, num_samples
from dl.errors import ConfigError


def sine(cfg) -> Source:
    """Noisy mixtures of sines: forecast the next `horizon` values from a window.

    Each example is its own series: the sum of num_components sines with periods drawn
    from [min_period, max_period] steps, amplitudes from [0.2, 1] and random phases, plus
    Gaussian noise of std `noise` on every value (inputs and targets).

    Fields: num_samples, input_length, horizon, num_components, min_period, max_period,
    noise, seed.

    Returns:
      A regression Source: x [N, input_length, 1], y [N, horizon] and extra["last"] [N],
      the last input value (unstandardized), from which the naive forecast "repeat the
      last value" is scored. info["naive_mse"] is its MSE over all examples and
      info["noise_floor_mse"] the MSE of a forecast that knew the noise-free series.
    """
    n = num_samples(cfg, 4000, "sine")
    length = int(option(cfg, "input_length", 32))
    horizon = int(option(cfg, "horizon", 1))
    k = int(option(cfg, "num_components", 3))
    p_lo, p_hi = float(option(cfg, "min_period", 6.0)), float(option(cfg, "max_period", 40.0))
    noise = float(option(cfg, "noise", 0.1))
    if length < 1 or horizon < 1 or k < 1:
        raise ConfigError(
            f"dataset sine needs input_length, horizon and num_components >= 1, got "
            f"{length}, {horizon}, {k}"
        )
    if not 0 < p_lo <= p_hi:
        raise ConfigError(f"dataset sine needs 0 < min_period <= max_period, got {p_lo}, {p_hi}")
    if noise < 0:
        raise ConfigError(f"dataset.noise must be >= 0, got {noise}")
    rng = np.random.default_rng(int(option(cfg, "seed", 0)))
    period = rng.uniform(p_lo, p_hi, (n, k, 1))
    amplitude = rng.uniform(0.2, 1.0, (n, k, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (n, k, 1))
    t = np.arange(length + horizon)[None, None, :]
    clean = np.sum(amplitude * np.sin(2 * np.pi * t / period + phase), axis=1)  # [n, L + H]
    series = clean + noise * rng.standard_normal(clean.shape)
    x = series[:, :length, None].astype(np.float32)  # [n, L, 1]
    y = series[:, length:].astype(np.float32)  # [n, H]
    last = series[:, length - 1].astype(np.float32)  # [n]
    info = {
        "source": "sine",
        "naive_mse": float(np.mean((y - last[:, None]) ** 2)),
        "noise_floor_mse": float(np.mean((y - clean[:, length:]) ** 2)),
    }
    return Source(x, y, "regression", info=info, extra={"last": last})


def sequential_digits(cfg) -> Source:
    """scikit-learn's 8x8 digits as sequences: `features_per_step` pixels per step.

    8 gives the rows (8 steps of 8 features), 1 reads pixel by pixel (64 steps).

    Returns:
      A classification Source, x [1797, 64 / features_per_step, features_per_step].
    """
    f = int(option(cfg, "features_per_step", 8))
    if f < 1 or 64 % f:
        raise ConfigError(f"dataset.features_per_step must divide 64 (1, 2, 4, 8, ...), got {f}")
    data, target = load_bundled("load_digits")
    x = data.astype(np.float32).reshape(len(data), 64 // f, f)
    y = target.astype(np.int32)
    return Source(x, y, "classification", 10, info={"source": "sklearn.load_digits"})
