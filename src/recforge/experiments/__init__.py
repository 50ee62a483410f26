"""Experiments: a TOML file in, a run folder with metrics, configuration and report out.

`config` holds the file's typed schema and validation, `runner` runs it into an
`ExperimentRecord`, `rundir` writes the run folder, `tune` searches hyperparameters and
`steps` holds the single-evaluation steps shared with ``recforge evaluate``.
"""

from recforge.experiments.config import Experiment, ExperimentConfigError, load_experiment
from recforge.experiments.record import ExperimentRecord, ModelRecord

__all__ = ["Experiment", "ExperimentConfigError", "ExperimentRecord", "ModelRecord",
           "load_experiment"]
