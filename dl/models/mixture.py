"""Mixture of experts with a choice of what the gate reads and what it mixes.

`GatedMixture` extends dl.models.modular.MixtureOfExperts (same submodules
`gate`, `expert_0` ..., same sown ('intermediates', 'gate_probs'), so
dl.models.modular.gate_probabilities reads it) with two options:

- `combine="probabilities"`: mix the experts' output distributions,
  p(y | x) = sum_e g_e(x) p_e(y | x), as in Jacobs, Jordan, Nowlan & Hinton
  (1991, "Adaptive mixtures of local experts"). Its negative log-likelihood
  makes experts compete for inputs rather than cooperate on each (which
  mixing logits does). The output is log p(y | x) [batch, classes]; the
  classification task's softmax cross-entropy takes it as logits unchanged,
  since it is already normalised.
- `context_features=k`: the first k input features are a context (e.g. the
  one-hot sub-problem id of the `subproblems` dataset) that only the gate
  reads, and the experts read only the other features. The gate then routes
  by the context alone, and an expert given two sub-problems would get
  conflicting targets for the same input, so each sub-problem goes to an
  expert of its own.

With the defaults (combine="logits", context_features=0) it computes exactly
what MixtureOfExperts computes.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.errors import ConfigError, unknown_name
from dl.models.mlp import MLP, flatten
from dl.models.modular import MixtureOfExperts

COMBINES = ("logits", "probabilities")


class GatedMixture(MixtureOfExperts):
    """Mixture of MLP experts; see the module docstring.

    Attributes (besides MixtureOfExperts' num_experts, expert_hidden_sizes,
    gate_hidden_sizes, activation, num_outputs, dropout_rate, dtype):
      combine: "logits" (sum_e g_e f_e(x)) or "probabilities"
        (log sum_e g_e softmax(f_e(x))).
      context_features: 0: gate and experts read every input feature; k > 0:
        the gate reads the first k features and the experts the others.
    """

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


__all__ = ["COMBINES", "GatedMixture"]
