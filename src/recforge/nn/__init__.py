"""The neural training engine (model-free): `TrainingConfig` lists the training parameters
every neural model shares; `Trainer` runs the mini-batch epochs of a module. The models
(`TorchRecommender` and its subclasses) are in `recforge.models.neural`; this package imports
nothing from `recforge.models`. See `recforge.nn.trainer`.
"""

from recforge.nn.device import resolve_device, resolve_precision
from recforge.nn.schedules import lr_factor
from recforge.nn.trainer import (
    TRAINING_PARAMS,
    ScoringModule,
    Trainer,
    TrainingConfig,
)

__all__ = [
    "TRAINING_PARAMS", "ScoringModule", "Trainer", "TrainingConfig",
    "lr_factor", "resolve_device", "resolve_precision",
]
