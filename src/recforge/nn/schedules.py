"""Learning-rate schedules as pure functions of training progress (in epochs).

The trainer sets every parameter group's rate to ``base_lr * lr_factor(...)`` before each
step, with ``progress = epoch + batch / batches_per_epoch``; nothing but the epoch and batch
counters is needed to resume a schedule from a checkpoint.

* ``constant``: 1.
* ``step``: ``gamma ** floor(progress / step_epochs)``.
* ``cosine``: ``(1 + cos(pi * progress / epochs)) / 2`` (Loshchilov & Hutter, "SGDR",
  ICLR 2017, without restarts), from 1 down to 0 at the last epoch.

Any schedule can start with a linear warm-up over ``warmup_epochs`` (Goyal et al.,
"Accurate, Large Minibatch SGD", 2017): the factor is scaled by ``progress / warmup_epochs``
until the warm-up ends (the first step uses a small positive rate, never 0).
"""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["constant", "step", "cosine"]
SCHEDULES = ("constant", "step", "cosine")


def lr_factor(schedule: str, progress: float, epochs: int, warmup_epochs: float = 0.0,
              step_epochs: int = 10, gamma: float = 0.1) -> float:
    """The learning-rate multiplier at ``progress`` epochs into a run of ``epochs``."""
    if schedule == "constant":
        factor = 1.0
    elif schedule == "step":
        factor = gamma ** math.floor(progress / step_epochs)
    elif schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(progress / max(epochs, 1), 1.0)))
    else:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if warmup_epochs > 0 and progress < warmup_epochs:
        factor *= max(progress, 1e-3 * warmup_epochs) / warmup_epochs
    return factor

