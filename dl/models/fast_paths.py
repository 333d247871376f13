"""Where dl's layers leave the standard JAX/flax computation, and the one switch for all of it.

dl computes four things its own way, each equal to the standard computation
(bit for bit, or up to float rounding where noted):

  dropout masks  `dl.models.dropout`: the Threefry hash of `jax.random.bits`
                 written out, on CPUs; the same masks as flax.
  convolutions   `dl.models.conv`: one banded matmul ('banded') instead of
                 XLA's convolution, on CPUs, for stride-1 layers with few
                 input channels; equal up to float rounding.
  max pooling    `dl.models.pool`: block reshapes for windows that tile the
                 input, on every backend; flax's values and derivatives.
  dense layers   `dl.models.dense`: the product against `kernel.T`
                 ('transposed'), on CPUs, for narrow layers; equal up to
                 float rounding.

The layers ask the functions below whether to take their path; each answer
is given when the layer is traced. Setting the environment variable
``DL_CPU_FAST_PATHS=0`` (also "false", "no" or "off"), or running inside
`disabled()`, turns all four off: every layer then computes what flax and
JAX compute (flax.linen.Dense's product, `lax.conv_general_dilated`,
flax.linen.max_pool, jax.random.bernoulli), for instance to bypass a path
that a JAX upgrade broke. An implementation given to a layer explicitly
(`Conv(implementation="banded")`, `Dense(implementation="transposed")`) is
used either way. A function jitted before the switch changed keeps the
paths it was traced with.

>>> with disabled():
...     enabled()
False
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import jax

ENV_VAR = "DL_CPU_FAST_PATHS"
_OFF = ("0", "false", "no", "off")

# Convolutions: 'banded' for stride-1 layers with at most BANDED_MAX_IN_FEATURES
# input channels, and above BANDED_ANY_SIZE_MAX_IN_FEATURES only while the
# output map has at most BANDED_WIDE_MAX_POSITIONS positions.
BANDED_MAX_IN_FEATURES = 8
BANDED_ANY_SIZE_MAX_IN_FEATURES = 4
BANDED_WIDE_MAX_POSITIONS = 16 * 16
# Dense layers: 'transposed' for at most NARROW_MAX_FEATURES outputs, fewer than the inputs.
NARROW_MAX_FEATURES = 32

_disabled = contextvars.ContextVar("dl_fast_paths_disabled", default=False)


def enabled() -> bool:
    """Whether the fast paths may be taken: not inside `disabled()`, and `DL_CPU_FAST_PATHS` unset
    or not one of "0", "false", "no", "off" (read at every call)."""
    if _disabled.get():
        return False
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Turns every fast path off for what is traced inside the block.

    Example::

        with fast_paths.disabled():
            logits = model.apply(variables, x)  # plain flax/JAX layers
    """
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


def _on_cpu() -> bool:
    return enabled() and jax.default_backend() == "cpu"


def unrolled_dropout() -> bool:
    """Whether dropout draws its mask with the unrolled Threefry hash (on CPUs)."""
    return _on_cpu()


def block_pooling() -> bool:
    """Whether max pooling over tiling windows goes through block reshapes (any backend)."""
    return enabled()


def conv_implementation(
    in_features: int, strides: tuple[int, int], out_size: tuple[int, int] | None
) -> str:
    """The implementation `Conv(implementation='auto')` uses: 'banded' or 'xla'.

    Args:
      in_features: input channels.
      strides: (sh, sw).
      out_size: output (height, width), or None when unknown.

    Returns:
      'banded' on a CPU for a stride-1 layer with few input channels (the
      limits above), else 'xla'.
    """
    if not _on_cpu() or tuple(strides) != (1, 1):
        return "xla"
    if in_features <= BANDED_ANY_SIZE_MAX_IN_FEATURES:
        return "banded"
    if in_features <= BANDED_MAX_IN_FEATURES and (
        out_size is None or out_size[0] * out_size[1] <= BANDED_WIDE_MAX_POSITIONS
    ):
        return "banded"
    return "xla"


def dense_implementation(in_features: int, features: int) -> str:
    """The implementation `Dense(implementation='auto')` uses: 'transposed' or 'xla'.

    Args:
      in_features: input width.
      features: output width.

    Returns:
      'transposed' on a CPU for a narrow layer (at most NARROW_MAX_FEATURES
      outputs, fewer outputs than inputs), else 'xla'.
    """
    if _on_cpu() and features <= NARROW_MAX_FEATURES and features < in_features:
        return "transposed"
    return "xla"


def decisions() -> dict[str, object]:
    """What the layers would choose now, for logs and tests.

    Returns:
      {"enabled", "backend", "dropout" ('unrolled' or 'jax.random'),
      "max_pool" ('blocks' or 'flax'), "conv" (for a 1-channel stride-1
      layer), "dense" (for a 1024 -> 10 layer)}.
    """
    return {
        "enabled": enabled(),
        "backend": jax.default_backend(),
        "dropout": "unrolled" if unrolled_dropout() else "jax.random",
        "max_pool": "blocks" if block_pooling() else "flax",
        "conv": conv_implementation(1, (1, 1), None),
        "dense": dense_implementation(1024, 10),
    }


__all__ = [
    "ENV_VAR",
    "block_pooling",
    "conv_implementation",
    "decisions",
    "dense_implementation",
    "disabled",
    "enabled",
    "unrolled_dropout",
]
