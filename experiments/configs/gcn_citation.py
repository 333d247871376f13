r"""Two-layer GCN on a Cora-sized synthetic citation network (Kipf & Welling's set-up).

    python -m experiments.train --config=experiments/configs/gcn_citation.py \
        --workdir=runs/gcn_citation

Dataset "citation_synthetic": 2708 papers, 10556 directed citation edges,
1433 bag-of-words features, 7 topics, 20 labelled papers per topic, 500
validation and 1000 test papers. Model and training as in the GCN paper:
GCN(16) -> ReLU -> dropout 0.5 -> GCN(7), Adam 0.01, weight decay 5e-4, 200
full-graph steps. This graph's sizes are also the benchmark's GCN row.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "gcn_citation"
    c.dataset.name = "citation_synthetic"
    c.dataset.standardize = "none"
    c.dataset.validation_fraction = 1 / 3
    c.model = dict(name="gcn_node", hidden_sizes=(16,), dropout_rate=0.5)
    c.task = "node_classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 0.01
    c.optimizer.weight_decay = 5e-4
    c.batch_size = 1
    c.eval_batch_size = 1
    c.num_train_steps = 200
    c.log_every_steps = 50
    c.eval_every_steps = 50
    c.checkpoint_every_steps = 200
    return c
