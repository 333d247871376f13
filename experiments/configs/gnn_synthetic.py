r"""Graph classification on synthetic graphs generated from a seed.

    python -m experiments.train --config=experiments/configs/gnn_synthetic.py \
        --workdir=runs/gnn_synthetic

1000 stochastic block models of 8 to 16 nodes (class 0: two communities,
class 1: four; edge probability 0.7 inside a community, 0.05 across; node ids
shuffled; node features the one-hot degree), padded to 16 node slots per
graph. Two GCN layers of 32, sum readout, a linear head; Adam, batch 32.
`--config.dataset.kind=cycles_vs_trees` tells single cycles from random trees.

Measured (2 shared CPU cores, JAX 0.10.2): test accuracy 0.960, 0.915, 0.955
for seeds 0, 1, 2 (200 test graphs); about 5 s for the command. With
cycles_vs_trees: 1.0.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "gnn_synthetic"
    c.dataset.name = "graphs_synthetic"
    c.dataset.standardize = "none"
    c.dataset.kind = "sbm"
    c.dataset.num_graphs = 1000
    c.dataset.seed = 0
    c.dataset.min_nodes = 8
    c.dataset.max_nodes = 16
    c.dataset.p_in = 0.7
    c.dataset.p_out = 0.05
    c.model = dict(
        name="graph_classifier",
        layer="gcn",
        hidden_sizes=(32, 32),
        readout="sum",
        activation="relu",
    )
    c.task.name = "graph_classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-3
    c.batch_size = 32
    c.num_train_steps = 1000
    c.log_every_steps = 100
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 500
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
