"""An RBF network whose centres and widths start from the training data.

`DataRBFNetwork` is dl.models.rbf.RBFNetwork plus `init_from_data`, the hook
the training loop calls once, on a fresh run, after `model.init` and before
the optimizer state is built (dl.train.step.Steps.init_state): centres by
k-means on the training inputs, widths by a heuristic on those centres. A
resumed run restores them from the checkpoint instead. Whether centres and
widths are then adapted by gradient descent is `learn_centers` /
`learn_widths`.
"""

from __future__ import annotations

import numpy as np

from dl.errors import ConfigError, unknown_name
from dl.models.rbf import WIDTH_RULES, RBFNetwork, init_rbf_params, kmeans_centers, width_heuristic

CENTER_INITS = ("kmeans", "random")
WIDTH_INITS = ("fixed",) + WIDTH_RULES


class DataRBFNetwork(RBFNetwork):
    """Gaussian RBF layer and a linear output, initialised from the training data.

    Attributes (besides RBFNetwork's num_centers, num_outputs, learn_widths,
    learn_centers, init_width, dtype):
      center_init: "kmeans" (k-means on the training inputs) or "random"
        (the module's N(0, 1) draw).
      width_init: "fixed" (every sigma = init_width) or a rule of
        dl.models.rbf.width_heuristic: "mean", "max", "nearest".
      width_scale: factor on the heuristic widths.
      kmeans_iters: most Lloyd iterations of the k-means.
    """

    center_init: str = "kmeans"
    width_init: str = "mean"
    width_scale: float = 1.0
    kmeans_iters: int = 100

    def __call__(self, x, *, train: bool = False):
        if self.center_init not in CENTER_INITS:
            raise unknown_name("RBF center_init", self.center_init, CENTER_INITS)
        if self.width_init not in WIDTH_INITS:
            raise unknown_name("RBF width_init", self.width_init, WIDTH_INITS)
        if not self.width_scale > 0:
            raise ConfigError(f"RBF width_scale must be > 0, got {self.width_scale}")
        return super().__call__(x, train=train)

    def init_from_data(self, variables, x, *_, seed: int):
        """Sets centres and widths from the training inputs.

        Args:
          variables: the full variables of `model.init` ('params' and 'constants').
          x: [examples, ...features] the training split's inputs.
          seed: seed of the k-means++ start.

        Returns:
          The variables with `centers` and `log_widths` replaced as configured.
        """
        x = np.asarray(x, np.float32).reshape(len(x), -1)  # [examples, features]
        centers = None
        if self.center_init == "kmeans":
            centers = kmeans_centers(x, self.num_centers, seed, self.kmeans_iters)
        widths = None
        if self.width_init != "fixed":
            if centers is None:
                centers_now = _find(variables, "centers")
            else:
                centers_now = centers
            widths = self.width_scale * width_heuristic(centers_now, self.width_init)
        return init_rbf_params(variables, centers, widths)


def _find(tree, name: str):
    for key, sub in tree.items():
        if key == name and not hasattr(sub, "items"):
            return np.asarray(sub)
        if hasattr(sub, "items"):
            found = _find(sub, name)
            if found is not None:
                return found
    return None


__all__ = ["CENTER_INITS", "WIDTH_INITS", "DataRBFNetwork"]
