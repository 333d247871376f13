"""Radial basis function networks.

Hidden unit j is a Gaussian bump around its centre c_j,
phi_j(x) = exp(-||x - c_j||^2 / (2 sigma_j^2)), and the output is linear in
the phi: y = W phi(x) + b (raw outputs; the task applies any output
non-linearity).

The classic two-stage training puts the centres where the data is (k-means,
`kmeans_centers`), sets the widths by a heuristic (`width_heuristic`), then
fits only the output layer: build RBFNetwork(learn_centers=False,
learn_widths=False), call `model.init`, and load both with
`init_rbf_params`. With the defaults everything is trained end to end by
gradient descent, from a k-means start or from the random one.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dl.errors import ConfigError, unknown_name
from dl.models.dense import Dense
from dl.models.mlp import flatten

CONSTANTS = "constants"  # variable collection of the centres / widths that are not trained
WIDTH_RULES = ("mean", "max", "nearest")


def gaussian_rbf(x, centers, widths):
    """phi_j(x) = exp(-||x - c_j||^2 / (2 sigma_j^2)).

    Args:
      x: [batch, features] inputs.
      centers: [centers, features] the c_j.
      widths: [centers] the sigma_j.

    Returns:
      [batch, centers] activations.
    """
    sq_dist = jnp.sum(jnp.square(x[:, None, :] - centers[None, :, :]), axis=-1)  # [batch, centers]
    return jnp.exp(-sq_dist / (2.0 * jnp.square(widths)))


class RBFNetwork(nn.Module):
    """Gaussian RBF hidden layer, then Dense(num_outputs).

    Variables: `centers` [num_centers, features] and `log_widths`
    [num_centers] (sigma_j = exp(log_widths[j])) live in 'params' when
    learned, else in the 'constants' collection, which gradient descent and
    weight decay never touch; the output layer is `output` (kernel
    [num_centers, num_outputs], bias). The activations phi are sown as
    ('intermediates', 'phi').

    Attributes:
      num_centers: hidden RBF units.
      num_outputs: width of the output layer.
      learn_widths: train the widths; False keeps them at their initial or loaded value.
      learn_centers: train the centres; False keeps them at their initial or loaded value.
      init_width: initial sigma of every unit.
      dtype: compute dtype; variables stay float32.
    """

    num_centers: int = 10
    num_outputs: int = 1
    learn_widths: bool = True
    learn_centers: bool = True
    init_width: float = 1.0
    dtype: Any = jnp.float32

    def _variable(self, name: str, learned: bool, init, shape):
        if learned:
            return self.param(name, init, shape)
        return self.variable(CONSTANTS, name, lambda: init(self.make_rng("params"), shape)).value

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if self.num_centers < 1:
            raise ConfigError(f"RBFNetwork needs num_centers >= 1, got {self.num_centers}")
        if not self.init_width > 0:
            raise ConfigError(f"RBFNetwork needs init_width > 0, got {self.init_width}")
        x = flatten(x).astype(self.dtype)  # [batch, features]
        centers = self._variable(
            "centers",
            self.learn_centers,
            nn.initializers.normal(1.0),
            (self.num_centers, x.shape[-1]),
        )  # [centers, features]
        log_widths = self._variable(
            "log_widths",
            self.learn_widths,
            nn.initializers.constant(np.log(self.init_width)),
            (self.num_centers,),
        )  # [centers]
        phi = gaussian_rbf(
            x, centers.astype(self.dtype), jnp.exp(log_widths).astype(self.dtype)
        )  # [batch, centers]
        self.sow("intermediates", "phi", phi)
        return Dense(self.num_outputs, dtype=self.dtype, name="output")(phi)


def kmeans_centers(x, k: int, seed: int, iters: int = 100, tol: float = 1e-7) -> np.ndarray:
    """k-means (Lloyd's algorithm from a k-means++ start) in numpy.

    An emptied cluster is restarted at the point farthest from its centre.

    Args:
      x: [examples, ...features] data; trailing axes are flattened.
      k: number of centres.
      seed: seed of the k-means++ draws.
      iters: most Lloyd iterations.
      tol: stop when no centre moves by more than this.

    Returns:
      [k, features] float32 centres.
    """
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ConfigError(f"k-means needs 1 <= k <= examples, got k={k} for {n} examples")
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(n)]]
    closest = np.sum((x - centers[0]) ** 2, axis=1)  # [examples]
    for _ in range(1, k):
        total = closest.sum()
        i = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centers.append(x[i])
        closest = np.minimum(closest, np.sum((x - x[i]) ** 2, axis=1))
    centers = np.stack(centers)  # [k, features]
    for _ in range(iters):
        sq = np.sum((x[:, None, :] - centers[None]) ** 2, axis=-1)  # [examples, k]
        assign = np.argmin(sq, axis=1)
        new = centers.copy()
        for j in range(k):
            members = assign == j
            if members.any():
                new[j] = x[members].mean(axis=0)
            else:
                new[j] = x[np.argmax(sq[np.arange(n), assign])]
        shift = np.max(np.abs(new - centers))
        centers = new
        if shift <= tol:
            break
    return centers.astype(np.float32)


def width_heuristic(centers, rule: str = "mean") -> np.ndarray:
    """Widths sigma_j for given centres.

    Rules: "mean": the mean distance between distinct centres, for every unit;
    "max": d_max / sqrt(2k) for every unit (Haykin), d_max the largest
    distance between centres; "nearest": each centre's distance to its
    nearest other centre. A single centre gets width 1.

    Args:
      centers: [k, features] centres.
      rule: "mean", "max" or "nearest".

    Returns:
      [k] float32 widths.
    """
    if rule not in WIDTH_RULES:
        raise unknown_name("width rule", rule, WIDTH_RULES)
    centers = np.asarray(centers, np.float64)
    k = centers.shape[0]
    if k < 2:
        return np.ones(k, np.float32)
    dist = np.sqrt(np.sum((centers[:, None] - centers[None]) ** 2, axis=-1))  # [k, k]
    off_diagonal = dist[~np.eye(k, dtype=bool)]
    if rule == "mean":
        widths = np.full(k, off_diagonal.mean())
    elif rule == "max":
        widths = np.full(k, off_diagonal.max() / np.sqrt(2.0 * k))
    else:
        widths = np.min(np.where(np.eye(k, dtype=bool), np.inf, dist), axis=1)
    return np.maximum(widths, 1e-6).astype(np.float32)


def _replace(tree, name: str, value: np.ndarray) -> tuple[Any, int]:
    """Copy of a nested dict with every leaf called `name` set to value; and how many."""
    if not hasattr(tree, "items"):
        return tree, 0
    out, found = {}, 0
    for key, sub in tree.items():
        if key == name and not hasattr(sub, "items"):
            if tuple(sub.shape) != value.shape:
                raise ConfigError(
                    f"{name} has shape {tuple(sub.shape)} in the model but {value.shape} were given"
                )
            out[key] = jnp.asarray(value, sub.dtype)
            found += 1
        else:
            out[key], n = _replace(sub, name, value)
            found += n
    return out, found


def init_rbf_params(variables, centers=None, widths=None):
    """Loads centres and widths into an initialised RBFNetwork's variables.

    Call after `model.init`, with the full variables ({'params': ...,
    'constants': ...}), so that fixed and learned ones are both found.

    Args:
      variables: the variables tree (nested dicts).
      centers: [num_centers, features] centres, e.g. from `kmeans_centers`; None keeps them.
      widths: a scalar or [num_centers] sigma, e.g. from `width_heuristic`; None keeps them.

    Returns:
      A new variables tree (plain dicts) with `centers` and `log_widths` replaced.
    """
    if centers is not None:
        variables, found = _replace(variables, "centers", np.asarray(centers, np.float32))
        if not found:
            raise ConfigError(
                "no RBF 'centers' in the given variables; pass the full variables "
                "of model.init, with 'params' and 'constants'"
            )
    if widths is not None:
        widths = np.asarray(widths, np.float64)
        if np.any(widths <= 0):
            raise ConfigError("RBF widths must be positive")
        shape = _find_shape(variables, "log_widths")
        if shape is None:
            raise ConfigError(
                "no RBF 'log_widths' in the given variables; pass the full "
                "variables of model.init, with 'params' and 'constants'"
            )
        if widths.ndim and widths.shape != shape:
            raise ConfigError(
                f"log_widths has shape {shape} in the model but widths of shape "
                f"{widths.shape} were given"
            )
        log_widths = np.broadcast_to(np.log(widths), shape).astype(np.float32)
        variables, _ = _replace(variables, "log_widths", log_widths)
    return variables


def _find_shape(tree, name: str):
    if not hasattr(tree, "items"):
        return None
    for key, sub in tree.items():
        if key == name and not hasattr(sub, "items"):
            return tuple(sub.shape)
        found = _find_shape(sub, name)
        if found is not None:
            return found
    return None


__all__ = [
    "CONSTANTS",
    "WIDTH_RULES",
    "RBFNetwork",
    "gaussian_rbf",
    "init_rbf_params",
    "kmeans_centers",
    "width_heuristic",
]
