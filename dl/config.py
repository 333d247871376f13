"""The fields every experiment config shares, with their defaults.

Experiment configs (experiments/configs/NAME.py) start from `base_config()`
and set what differs. Fields are typed and the structure is locked, so a
mistyped `--config.FIELD=VALUE` override fails with the field's name.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """Defaults for the shared fields of an experiment.

    Returns:
      A ConfigDict with: name, seed, dataset, model, dtype, task, optimizer,
      schedule, grad_clip_norm, batch_size, eval_batch_size, num_train_steps,
      steps_per_call, log_every_steps, eval_every_steps,
      checkpoint_every_steps, keep_checkpoints, best_metric, target_metric,
      target_value, early_stopping, nonfinite and augment.
    """
    c = ml_collections.ConfigDict()
    c.name = ""
    c.seed = 0
    c.dataset = ml_collections.ConfigDict(
        dict(
            name="digits",
            validation_fraction=0.15,
            test_fraction=0.2,
            split_seed=0,
            standardize="feature",
        )
    )
    c.model = ml_collections.ConfigDict(dict(name="mlp"))
    # Compute dtype of the model: float32, bfloat16 or float16. Parameters and
    # optimizer state stay float32. A `dtype` in the model's own fields wins.
    c.dtype = "float32"
    c.task = "classification"
    c.optimizer = ml_collections.ConfigDict(
        dict(name="adam", learning_rate=1e-3, momentum=0.9, weight_decay=0.0)
    )
    c.schedule = ml_collections.ConfigDict(dict(name="constant"))
    c.grad_clip_norm = 0.0
    c.batch_size = 32
    c.eval_batch_size = 256
    c.num_train_steps = 1000
    c.steps_per_call = 1
    c.log_every_steps = 100
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 3
    c.best_metric = "accuracy"
    # Stop early once e.g. "train/accuracy" reaches target_value; the summary
    # says whether it converged.
    c.target_metric = ""
    c.target_value = config_dict.placeholder(float)
    c.nonfinite = ml_collections.ConfigDict(dict(policy="stop", max_consecutive_skips=10))
    # Stop when best_metric has not improved by more than min_delta for
    # `patience` evaluations (0: never); the run ends on the best state.
    c.early_stopping = ml_collections.ConfigDict(dict(patience=0, min_delta=0.0))
    # Image augmentation inside the jitted step, seeded by the step.
    c.augment = ml_collections.ConfigDict(dict(crop_padding=0, horizontal_flip=False))
    return c
