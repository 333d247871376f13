"""Mixture of experts with a choice of what the gate reads and what it mixes.

`GatedMixture` is dl.models.modular.MixtureOfExperts, whose two options are:

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

With the defaults (combine="logits", context_features=0) it is the plain
soft mixture of logits.
"""

from dl.models.modular import COMBINES, MixtureOfExperts

# The options above live on MixtureOfExperts itself; this name is kept for
# configs and code that use it.
GatedMixture = MixtureOfExperts

__all__ = ["COMBINES", "GatedMixture"]
