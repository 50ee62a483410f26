"""Experiments: a TOML file in, a run folder with metrics, configuration and report out."""

from recforge.experiments.record import ExperimentRecord, ModelRecord

__all__ = ["ExperimentRecord", "ModelRecord"]
