"""Data layer: interactions, events, side tables and their feature codec, datasets, synthetic
data, splits, sampling, sequences (`recforge.data.sequences`) and streaming
(`recforge.data.streaming`)."""

from recforge.data.codec import FeatureCodec, Field
from recforge.data.events import Events
from recforge.data.features import SideTable
from recforge.data.interactions import IdMap, Interactions

__all__ = ["Events", "FeatureCodec", "Field", "IdMap", "Interactions", "SideTable"]
