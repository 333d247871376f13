r"""Under-, good and overfitting: MLPs of growing capacity on a few noisy points.

    python -m experiments.sweep --config=experiments/configs/capacity_moons.py \
        --workdir=runs/capacity '--sweep=model.hidden_sizes=(1,),(8,),(512,512)'

80 training examples of two noisy half-moons (validation and test 60 each),
1000 steps. One hidden unit cannot bend its boundary (underfitting: training
loss stays high, about 0.34, with a small gap to validation); 8 units fit the
moons (the lowest validation loss, about 92% validation accuracy); two layers
of 512 units learn the noise of the training points (training loss near zero,
validation loss rising to about 2.8: overfitting). sweep.md lists the
validation-minus-training loss gap of each; sweep_validation.png and each
run's learning curves show it over the steps.
"""

from dl.config import base_config


def get_config():
    c = base_config()
    c.name = "capacity_moons"
    c.dataset.name = "moons"
    c.dataset.num_samples = 200
    c.dataset.noise = 0.3
    c.dataset.seed = 0
    c.dataset.validation_fraction = 0.3
    c.dataset.test_fraction = 0.3
    c.model = dict(name="mlp", hidden_sizes=(8,), activation="relu")
    c.task.name = "classification"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 0.01
    c.batch_size = 16
    c.num_train_steps = 1000
    c.log_every_steps = 50
    c.eval_every_steps = 50
    c.checkpoint_every_steps = 500
    c.best_metric = "loss"
    return c
