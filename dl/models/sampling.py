"""Autoregressive sampling from a ``CharLM``, carrying the recurrent state."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from dl.models.recurrent import CharLM

Array = jax.Array


def sample(
    module: CharLM,
    variables: Any,
    rng: Array,
    prompt_tokens: Array,
    length: int,
    temperature: float = 1.0,
) -> Array:
    """Samples a continuation of a prompt autoregressively from a ``CharLM``.

    The prompt is run once through the model; then ``length`` tokens are drawn with a
    ``lax.scan`` that carries the recurrent state (one cell step per token, the prefix is never
    re-run). ``length`` and ``temperature`` must be static under ``jax.jit``.

    Args:
        module: The ``CharLM``.
        variables: Its variables (``{"params": ...}``).
        rng: PRNG key.
        prompt_tokens: Int ids ``[batch, prompt_len]`` or ``[prompt_len]`` (``prompt_len >= 1``).
        length: Number of tokens to generate.
        temperature: Softmax temperature; ``0`` means greedy (argmax).

    Returns:
        The generated tokens ``[batch, length]`` (``[length]`` for a 1-D prompt), excluding the
        prompt.
    """
    prompt = jnp.asarray(prompt_tokens)
    squeeze = prompt.ndim == 1
    if squeeze:
        prompt = prompt[None]
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be [batch, prompt_len >= 1], got shape {prompt.shape}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    carry, logits = module.apply(variables, prompt, return_carry=True)
    last_logits = logits[:, -1]  # [batch, vocab]

    def draw(key: Array, logits_t: Array) -> Array:
        if temperature == 0:
            return jnp.argmax(logits_t, axis=-1)
        return jax.random.categorical(key, logits_t.astype(jnp.float32) / temperature, axis=-1)

    def body(state, key):
        carry, logits_t = state
        token = draw(key, logits_t)  # [batch]
        carry, logits_t = module.apply(variables, carry, token, method=CharLM.step)
        return (carry, logits_t), token

    keys = jax.random.split(rng, length)
    _, tokens = jax.lax.scan(body, (carry, last_logits), keys)  # [length, batch]
    tokens = tokens.T  # [batch, length]
    return tokens[0] if squeeze else tokens


__all__ = ["sample"]
