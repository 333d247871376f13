r"""Two-layer GCN on Zachary's karate club: semi-supervised node classification.

    python -m experiments.train --config=experiments/configs/gcn_karate.py \
        --workdir=runs/gcn_karate

The 34 members (one-hot identity features, 78 friendships) are labelled by
the faction they joined after the split; only the two leaders (nodes 0 and
33) are labelled for training, and the other 32 members are evaluated
(validation and test are the same 32 nodes here, so no model is selected on
them: best_metric is off and the summary reports the final step). Model of
Kipf & Welling: GCN(16) -> ReLU -> dropout 0.5 -> GCN(2); Adam, learning
rate 0.01, weight decay 5e-4, 200 full-graph steps.

Measured (2 shared CPU cores, JAX 0.10.2): accuracy on the 32 unlabelled
members 0.969 (31 of 32) for seeds 0, 1 and 2; about 4 s for the command
(7 s with a cold compilation cache).
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "gcn_karate"
    c.dataset.name = "karate"
    c.dataset.standardize = "none"
    c.dataset.labelled_per_class = 1
    c.dataset.label_seed = 0
    c.dataset.validation_fraction = 0.0
    c.model = dict(name="gcn_node", hidden_sizes=(16,), dropout_rate=0.5)
    c.task.name = "node_classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 0.01
    c.optimizer.weight_decay = 5e-4
    c.batch_size = 1
    c.eval_batch_size = 1
    c.num_train_steps = 200
    c.log_every_steps = 50
    c.eval_every_steps = 50
    c.checkpoint_every_steps = 200
    c.best_metric = ""
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
