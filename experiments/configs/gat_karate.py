r"""Two-layer graph attention network on Zachary's karate club (semi-supervised).

    python -m experiments.train --config=experiments/configs/gat_karate.py \
        --workdir=runs/gat_karate

The 34 members (one-hot identity features, 78 friendships) are labelled by
the faction they joined after the split; only the two leaders (nodes 0 and
33) are labelled for training, and the other 32 members are evaluated
(validation and test are the same 32 nodes here, so no model is selected on
them: best_metric is off and the summary reports the final step). Model of
Velickovic et al.: GAT with 8 heads of 8 features (concatenated) -> ReLU ->
dropout 0.5 -> GAT(2) averaging 8 heads; Adam, learning rate 0.01, weight
decay 5e-4, 200 full-graph steps.

Measured (2 shared CPU cores, JAX 0.10.2): accuracy on the 32 unlabelled
members 0.938, 0.969, 0.969 for seeds 0, 1, 2; about 5 s for the command
(10 s with a cold compilation cache).
"""

from experiments.configs import gcn_karate


def get_config():
    c = gcn_karate.get_config()
    c.name = "gat_karate"
    c.model = dict(name="gat_node", hidden_sizes=(8,), num_heads=8, dropout_rate=0.5)
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
