"""Numeric command-line options checked by the same rules as hyperparameters (`recforge.params`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from recforge.errors import ParameterError
from recforge.params import CUTOFF, MAX_COUNT, SEED, Integer, Real, Rule


def option_type(rule: Rule, parse: Callable[[str], Any] = int) -> Callable[[str], Any]:
    """An argparse ``type``: the text read by ``parse`` (int by default), then checked by
    ``rule``; argparse reports a failure as ``argument --name: must be ..., got ...``."""

    def convert(text: str) -> Any:
        try:
            value = parse(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {rule.describe()}, got {text!r}") from None
        try:
            return rule.check("value", value)
        except ParameterError as exc:
            raise argparse.ArgumentTypeError(getattr(exc, "problem", str(exc))) from None

    convert.__name__ = parse.__name__
    return convert


#: ``--seed``: an integer in [0, 2^32 - 1] (numpy and PyTorch refuse negative seeds)
seed_option = option_type(SEED)
#: a count of at least 1 (e.g. ``--trials``)
positive_int = option_type(Integer(1, MAX_COUNT))
#: ``-k``: a top-k cut-off
cutoff_option = option_type(CUTOFF)
#: a positive finite number of seconds (e.g. ``--timeout``)
positive_seconds = option_type(Real(0, low_open=True), float)
