"""The neural training core: PyTorch models behind the recforge model API.

`TorchRecommender` is the base of every neural model (NCF, and later two-tower, DeepFM,
SASRec, LightGCN); `TrainingConfig` lists the training parameters they all share; `Trainer`
runs the mini-batch epochs. See `recforge.nn.trainer`.
"""

from recforge.nn.device import resolve_device, resolve_precision
from recforge.nn.schedules import lr_factor
from recforge.nn.trainer import (
    TRAINING_PARAMS,
    ScoringModule,
    TorchRecommender,
    Trainer,
    TrainingConfig,
)

__all__ = [
    "TRAINING_PARAMS", "ScoringModule", "TorchRecommender", "Trainer", "TrainingConfig",
    "lr_factor", "resolve_device", "resolve_precision",
]
