"""Modular networks: a mixture of experts with a learned soft gate.

y(x) = sum_e g_e(x) * f_e(x), where each expert f_e is an independent MLP and
the gate g(x) = softmax(gating network(x)) chooses how much each expert
contributes. Everything is trained end to end through the one loss; the gate
probabilities are sown so that which expert handles which inputs can be read
back (`gate_probabilities`, `expert_specialisation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dl.errors import ConfigError, unknown_name
from dl.models.mlp import MLP, flatten

COMBINES = ("logits", "probabilities")


class MixtureOfExperts(nn.Module):
    """Soft mixture of MLP experts.

    Submodules: `gate` (an MLP with num_experts outputs) and `expert_0` ...
    `expert_{num_experts-1}` (MLPs with num_outputs outputs), with the layer
    names of dl.models.mlp.MLP. The gate probabilities [batch, num_experts]
    are sown as ('intermediates', 'gate_probs').

    Attributes:
      num_experts: number of experts.
      expert_hidden_sizes: hidden widths of each expert.
      gate_hidden_sizes: hidden widths of the gating network; () for a linear gate.
      activation: hidden non-linearity of experts and gate.
      num_outputs: output width (the mixed logits).
      dropout_rate: dropout inside experts and gate, in training only.
      dtype: compute dtype; parameters stay float32.
      combine: "logits" mixes the experts' logits, sum_e g_e f_e(x);
        "probabilities" mixes their output distributions and returns
        log sum_e g_e softmax(f_e(x)) (Jacobs, Jordan, Nowlan & Hinton 1991),
        which makes experts compete for inputs.
      context_features: 0: gate and experts read every input feature; k > 0:
        the gate reads the first k features (a context such as a sub-problem
        id) and the experts read the others.
    """

    num_experts: int = 4
    expert_hidden_sizes: Sequence[int] = (64,)
    gate_hidden_sizes: Sequence[int] = ()
    activation: str = "relu"
    num_outputs: int = 10
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    combine: str = "logits"
    context_features: int = 0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if self.num_experts < 1:
            raise ConfigError(f"the mixture needs num_experts >= 1, got {self.num_experts}")
        if self.combine not in COMBINES:
            raise unknown_name("mixture combine", self.combine, COMBINES)
        x = flatten(x)  # [batch, features]
        k = self.context_features
        if not 0 <= k < x.shape[-1]:
            raise ConfigError(
                f"model.context_features must be in [0, {x.shape[-1] - 1}] (the input has "
                f"{x.shape[-1]} features), got {k}"
            )
        gate_input, expert_input = (x[:, :k], x[:, k:]) if k else (x, x)
        mlp = dict(activation=self.activation, dropout_rate=self.dropout_rate, dtype=self.dtype)
        gate_logits = MLP(
            hidden_sizes=tuple(self.gate_hidden_sizes),
            num_outputs=self.num_experts,
            name="gate",
            **mlp,
        )(gate_input, train=train)
        log_gate = jax.nn.log_softmax(gate_logits.astype(jnp.float32), axis=-1)  # [batch, experts]
        gate = jnp.exp(log_gate)
        self.sow("intermediates", "gate_probs", gate)
        experts = jnp.stack(
            [
                MLP(
                    hidden_sizes=tuple(self.expert_hidden_sizes),
                    num_outputs=self.num_outputs,
                    name=f"expert_{e}",
                    **mlp,
                )(expert_input, train=train)
                for e in range(self.num_experts)
            ],
            axis=1,
        )  # [batch, experts, outputs]
        if self.combine == "logits":
            return jnp.einsum("be,beo->bo", gate.astype(experts.dtype), experts)
        log_probs = jax.nn.log_softmax(experts.astype(jnp.float32), axis=-1)
        return jax.nn.logsumexp(log_gate[..., None] + log_probs, axis=1)  # [batch, outputs]


def gate_probabilities(module: MixtureOfExperts, variables, x) -> jax.Array:
    """The gate's choice for each input, in inference mode.

    Args:
      module: the MixtureOfExperts.
      variables: its variables ({'params': ...}).
      x: [batch, ...] inputs.

    Returns:
      [batch, num_experts] gate probabilities (rows sum to 1).
    """
    variables = {k: v for k, v in variables.items() if k != "intermediates"}
    _, state = module.apply(variables, x, train=False, mutable=["intermediates"])
    return state["intermediates"]["gate_probs"][0]


def load_balance_loss(gate_probs) -> jax.Array:
    """Auxiliary term that is 1 when every expert gets the same mean gate share, up to E.

    num_experts * sum_e (mean over the batch of g_e)^2. Not part of the model:
    add weight * (this - 1) to a loss to discourage the gate from collapsing
    onto few experts.

    Args:
      gate_probs: [batch, num_experts] gate probabilities.

    Returns:
      A scalar.
    """
    share = jnp.mean(gate_probs, axis=0)  # [experts]
    return gate_probs.shape[-1] * jnp.sum(jnp.square(share))


def expert_specialisation(gate_probs, problem_id, num_problems: int | None = None) -> np.ndarray:
    """Which expert handles which sub-problem.

    Args:
      gate_probs: [examples, num_experts] gate probabilities.
      problem_id: [examples] sub-problem of each example.
      num_problems: rows of the table; defaults to max(problem_id) + 1.

    Returns:
      [num_problems, num_experts] mean gate probability per sub-problem; a
      problem without examples gets a row of zeros.
    """
    gate_probs = np.asarray(gate_probs, np.float64)
    problem_id = np.asarray(problem_id).reshape(-1)
    if gate_probs.ndim != 2 or gate_probs.shape[0] != problem_id.size:
        raise ConfigError(
            f"gate_probs {gate_probs.shape} must be [examples, experts] with one "
            f"row per problem id ({problem_id.size})"
        )
    if num_problems is None:
        num_problems = int(problem_id.max()) + 1 if problem_id.size else 0
    sums = np.zeros((num_problems, gate_probs.shape[1]))
    np.add.at(sums, problem_id, gate_probs)
    counts = np.bincount(problem_id, minlength=num_problems)[:num_problems]
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


__all__ = [
    "MixtureOfExperts",
    "expert_specialisation",
    "gate_probabilities",
    "load_balance_loss",
]
