"""Data layer: interactions, side tables, datasets, synthetic data, splits and sampling."""

from recforge.data.features import SideTable
from recforge.data.interactions import IdMap, Interactions

__all__ = ["IdMap", "Interactions", "SideTable"]
