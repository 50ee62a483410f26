"""Deterministic assignment of users to experiment arms by salted hashing.

Every random draw is a hash: ``unit_hash(salt, user)`` maps the SHA-256 of the salt and the
user id to a number uniform in ``[0, 1)`` (53 bits, exact as a float), so a user gets the same
arm in every process, on every machine, with no state to store (Kohavi, Tang & Xu, *Trustworthy
Online Controlled Experiments*, 2020, ch. 4; Tang et al., "Overlapping experiment
infrastructure", KDD 2010, for layers).

How a user is placed, in order:

1. **Global holdout** (`Assigner` ``holdout``): a user whose ``unit_hash(holdout_salt, user)``
   is below ``holdout`` is held out of every experiment: `Assigner.assign` maps every
   experiment to ``"holdout"``.
2. **Layer**: each layer has its own hash ``unit_hash("layer:" + layer, user)``; the
   experiments of a layer take consecutive slices of ``[0, 1)`` in configuration order, each as
   wide as its traffic (the sum of its arm shares plus its own holdout), so a user is in at most
   one experiment per layer. Different layers hash with different salts, so they are
   independent: an experiment in one layer is balanced over the arms of another.
3. **Arm**: within its slice, a user's arm comes from the experiment's own salt,
   ``unit_hash(salt, user)``, cut in proportion to the arm shares (then the experiment's
   holdout, arm ``"holdout"``). Changing the salt re-shuffles the arms without changing who is
   in the experiment.

Arm shares are fractions of all traffic: ``{"control": 0.1, "treatment": 0.1}`` puts 10% of
users in each arm (of those outside the global holdout). Append new experiments to the end of
a layer: inserting one before another moves the later experiment's slice.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recforge.errors import InputError, UnknownNameError, did_you_mean
from recforge.params import Mapping as MappingRule
from recforge.params import Real, Text, check_all, parameter_error

#: the arm name of a held-out user (reserved: no experiment may name an arm so)
HOLDOUT = "holdout"
#: the default salt of the global holdout's hash
HOLDOUT_SALT = "recforge:holdout"
_NAME = Text(r"[A-Za-z0-9_.:-]{1,100}", "a name of 1 to 100 letters, digits or _.:-")
_SHARE = Real(0.0, 1.0)
_TOLERANCE = 1e-9  # shares that sum to 1 up to rounding are accepted
_SCALE = 2.0 ** -53


def unit_hash(salt: str, user_id: str) -> float:
    """A number uniform in ``[0, 1)`` determined by ``(salt, user_id)``: the first 53 bits of
    SHA-256 over the length-prefixed salt and the user id (so no two pairs share an input)."""
    digest = hashlib.sha256(f"{len(salt)}:{salt}:{user_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) * _SCALE


def _user_key(user_id: Any) -> str:
    """The text hashed for a user: a string id as is, an integer id as its decimal text."""
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
        raise InputError(f"user_id must be a string or an integer, got {user_id!r}")
    return str(user_id)


@dataclass(frozen=True)
class Experiment:
    """One experiment: its arms' traffic shares (fractions of all users), the salt of its arm
    hash, its layer and the share of traffic it holds out (arm ``"holdout"``).

    Validated on construction: names are short tokens, every share is in ``(0, 1]`` (the
    holdout in ``[0, 1)``), arm shares plus the holdout sum to at most 1, and no arm is named
    ``"holdout"``."""

    name: str
    salt: str
    arms: dict[str, float]
    layer: str = "default"
    holdout: float = 0.0
    traffic: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"experiment {self.name!r}" if isinstance(self.name, str) else "experiment"
        name = _NAME.check(f"{where}: name", self.name)
        salt = Text(r".{1,200}", "a non-empty string of at most 200 characters").check(
            f"{where}: salt", self.salt)
        layer = _NAME.check(f"{where}: layer", self.layer)
        holdout = Real(0.0, 1.0, high_open=True).check(f"{where}: holdout", self.holdout)
        arms = MappingRule(Real(0.0, 1.0, low_open=True), _NAME).check(f"{where}: arms",
                                                                       self.arms)
        if not arms:
            raise parameter_error(f"{where}: arms", "must name at least one arm")
        if HOLDOUT in arms:
            raise parameter_error(f"{where}: arms", f"{HOLDOUT!r} is reserved for held-out "
                                  "users (set 'holdout' instead)")
        traffic = math.fsum(arms.values()) + holdout
        if traffic > 1.0 + _TOLERANCE:
            raise parameter_error(f"{where}: arms", f"shares plus holdout sum to {traffic:g}, "
                                  "more than 1")
        for attr, value in (("name", name), ("salt", salt), ("layer", layer),
                            ("holdout", holdout), ("arms", arms),
                            ("traffic", min(traffic, 1.0))):
            object.__setattr__(self, attr, value)

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], where: str = "experiment",
                  ignore: Collection[str] = ()) -> Experiment:
        """An experiment from a config table with keys ``name``, ``arms`` and optionally
        ``salt`` (default: the name), ``layer``, ``holdout``; keys in ``ignore`` (another
        component's settings) are skipped, any other key is refused."""
        if not isinstance(table, Mapping):
            raise InputError(f"{where}: must be a table, got {table!r}")
        values = {k: v for k, v in table.items() if k not in ignore}
        for key in ("name", "arms"):
            if key not in values:
                raise InputError(f"{where}: missing key {key!r}")
        values.setdefault("salt", values["name"])
        rules = {"name": _NAME, "salt": Text(), "arms": MappingRule(Real()), "layer": _NAME,
                 "holdout": Real()}
        return cls(**check_all(rules, values, where=f"{where}."))


class Assigner:
    """Assigns users to the arms of a set of experiments (see the module docstring).

    ``holdout`` is the share of users held out of every experiment, hashed with
    ``holdout_salt``. `InputError` when two experiments share a name or a layer's experiments
    need more than all traffic."""

    def __init__(self, experiments: Sequence[Experiment], *, holdout: float = 0.0,
                 holdout_salt: str = HOLDOUT_SALT) -> None:
        self.holdout = Real(0.0, 1.0, high_open=True).check("holdout", holdout)
        self.holdout_salt = Text(r".{1,200}", "a non-empty string").check("holdout_salt",
                                                                           holdout_salt)
        self.experiments = tuple(experiments)
        self._layers: dict[str, list[tuple[float, Experiment, list[tuple[float, str]]]]] = {}
        names: set[str] = set()
        for exp in self.experiments:
            if not isinstance(exp, Experiment):
                raise InputError(f"experiments must be Experiment objects, got {exp!r}")
            if exp.name in names:
                raise InputError(f"experiment {exp.name!r} is defined twice")
            names.add(exp.name)
            self._add(exp)

    def _add(self, exp: Experiment) -> None:
        """Give ``exp`` the next slice of its layer, with its arms' cut points."""
        slices = self._layers.setdefault(exp.layer, [])
        start = slices[-1][0] if slices else 0.0
        end = start + exp.traffic
        if end > 1.0 + _TOLERANCE:
            raise InputError(f"layer {exp.layer!r}: its experiments take {end:g} of the "
                             f"traffic, more than 1 (at experiment {exp.name!r})")
        cuts, total = [], 0.0
        held = [(HOLDOUT, exp.holdout)] if exp.holdout else []
        for arm, share in [*exp.arms.items(), *held]:
            total += share
            cuts.append((total / exp.traffic, arm))
        cuts[-1] = (1.0, cuts[-1][1])  # rounding never leaves a gap at the top
        slices.append((min(end, 1.0), exp, cuts))

    @classmethod
    def from_config(cls, table: Mapping[str, Any], *, ignore: Collection[str] = ()) -> Assigner:
        """An assigner from a config table (e.g. parsed TOML)::

            holdout = 0.05                     # optional global holdout
            holdout_salt = "..."               # optional
            [[experiments]]                    # a list of tables, or a table of tables
            name = "ranker"                    # (keyed by name)
            arms = {control = 0.5, treatment = 0.5}
            layer = "ranking"                  # optional, default "default"
            holdout = 0.0                      # optional
            salt = "ranker-2026-12"            # optional, default the name

        Keys named in ``ignore`` inside an experiment's table are skipped (settings of other
        components, such as the model of each arm)."""
        if not isinstance(table, Mapping):
            raise InputError(f"the experiments config must be a table, got {table!r}")
        unknown = set(table) - {"experiments", "holdout", "holdout_salt"}
        if unknown:
            raise InputError(f"experiments config: unknown key {min(unknown)!r}; valid: "
                             "experiments, holdout, holdout_salt")
        entries = table.get("experiments", [])
        if isinstance(entries, Mapping):
            entries = [{"name": key, **value} if isinstance(value, Mapping) else value
                       for key, value in entries.items()]
        if not isinstance(entries, (list, tuple)):
            raise InputError(f"experiments: must be a list of tables, got {entries!r}")
        experiments = [Experiment.from_dict(entry, f"experiments[{i}]", ignore)
                       for i, entry in enumerate(entries)]
        return cls(experiments, holdout=table.get("holdout", 0.0),
                   holdout_salt=table.get("holdout_salt", HOLDOUT_SALT))

    def assign(self, user_id: str) -> dict[str, str]:
        """Experiment name -> arm for every experiment ``user_id`` is in (``"holdout"`` for a
        held-out user); experiments whose layer slice the user falls outside are absent."""
        user = _user_key(user_id)
        if self.holdout and unit_hash(self.holdout_salt, user) < self.holdout:
            return {exp.name: HOLDOUT for exp in self.experiments}
        out: dict[str, str] = {}
        for layer, slices in self._layers.items():
            position = unit_hash(f"layer:{layer}", user)
            for end, exp, cuts in slices:
                if position < end:
                    out[exp.name] = _arm(unit_hash(exp.salt, user), cuts)
                    break
        return out

    def arm(self, experiment: str, user_id: str) -> str | None:
        """The arm of ``user_id`` in ``experiment`` (None when outside it)."""
        names = [exp.name for exp in self.experiments]
        if experiment not in names:
            raise UnknownNameError(f"unknown experiment {experiment!r}"
                                   f"{did_you_mean(experiment, names)}")
        return self.assign(user_id).get(experiment)


def _arm(position: float, cuts: list[tuple[float, str]]) -> str:
    """The arm whose cut interval holds ``position`` (cuts are increasing upper ends)."""
    for upper, arm in cuts:
        if position < upper:
            return arm
    return cuts[-1][1]
