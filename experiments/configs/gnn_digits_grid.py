r"""Graph attention network on the 8x8 digits as pixel-grid graphs.

    python -m experiments.train --config=experiments/configs/gnn_digits_grid.py \
        --workdir=runs/gnn_digits_grid

Each image is a 64-node graph (one node per pixel, edges to its 8
neighbours; node features: intensity in [0, 1], row and column in [0, 1]).
Three GAT layers (4 heads of 16 features each, ReLU), max readout over the
nodes, a linear head; Adam with cosine decay, batch 32, 2000 steps.

Measured (2 shared CPU cores, JAX 0.10.2): test accuracy 0.930, 0.947, 0.928
for seeds 0, 1, 2 (validation 0.944, 0.955, 0.955); 37-54 s for the
command, about 26 ms per training step.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "gnn_digits_grid"
    c.dataset.name = "digits_grid"
    c.dataset.standardize = "none"
    c.dataset.connectivity = 8
    c.dataset.positions = True
    c.model = dict(
        name="graph_classifier",
        layer="gat",
        hidden_sizes=(16, 16, 16),
        num_heads=4,
        readout="max",
        activation="relu",
        dropout_rate=0.0,
    )
    c.task.name = "graph_classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-3
    c.schedule.name = "cosine"
    c.batch_size = 32
    c.num_train_steps = 2000
    c.log_every_steps = 250
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 1000
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
