"""State, the generic steps, the loop, optimizers and checkpoints."""

from dl.train.checkpoint import CheckpointError, Checkpoints
from dl.train.loop import Experiment, NonFiniteError, Preempted, build, check_shapes, train
from dl.train.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from dl.train.step import StepConfig, Steps, TrainState, eval_step, train_step

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "CheckpointError",
    "Checkpoints",
    "Experiment",
    "NonFiniteError",
    "Preempted",
    "StepConfig",
    "Steps",
    "TrainState",
    "build",
    "check_shapes",
    "eval_step",
    "make_optimizer",
    "make_schedule",
    "train",
    "train_step",
]
