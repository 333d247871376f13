"""Training: the state, the generic steps, the loop and its actions, optimizers, checkpoints."""

from dl.errors import NonFiniteError, Preempted, WorkdirBusy, WriteError
from dl.train.actions import Action
from dl.train.checkpoint import CheckpointError, Checkpoints
from dl.train.evaluator import Evaluator, device_arrays
from dl.train.experiment import Experiment, build, check_shapes
from dl.train.feeder import Feeder
from dl.train.loop import Loop, train
from dl.train.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from dl.train.state import TrainState
from dl.train.step import StepConfig, Steps, eval_step, train_step

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Action",
    "CheckpointError",
    "WriteError",
    "Checkpoints",
    "Evaluator",
    "Experiment",
    "Feeder",
    "Loop",
    "NonFiniteError",
    "Preempted",
    "StepConfig",
    "Steps",
    "TrainState",
    "WorkdirBusy",
    "build",
    "check_shapes",
    "device_arrays",
    "eval_step",
    "make_optimizer",
    "make_schedule",
    "train",
    "train_step",
]
