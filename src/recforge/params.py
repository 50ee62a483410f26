"""Declared value rules for hyperparameters and options, checked before any data is loaded.

A rule checks one value: ``rule.check(name, value)`` returns the value in its canonical form
(a Python ``int``/``float``/``str``/``tuple``; numpy scalars accepted) or raises
`recforge.errors.ParameterError` with a one-line message that starts with ``name``::

    >>> Real(0, low_open=True).check("reg", float("nan"))
    Traceback (most recent call last):
    ...
    recforge.errors.ParameterError: reg: must be a finite number > 0, got nan

Types are strict: a bool is not a number, a float is not an int (``2.0`` is refused for an
integer, like ``2.5``), a string is not a list; ints pass for floats and become floats.
Numbers are finite unless a rule says otherwise. Every model declares one rule per
hyperparameter (`recforge.models.base.Recommender.param_rules`), so the constructor,
``set_params``, the experiment file and the command line use the same check.

The module also holds the rules that many models share (`SEED`, `EPOCHS`, `WIDTH`, ...)
and the upper bounds that keep a value from asking for absurd amounts of memory.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping as AbcMapping
from typing import Any, NoReturn

import numpy as np

from recforge.errors import ParameterError

#: largest embedding, factor or layer width: ``n x width`` tables beyond it would not fit in
#: memory on any data worth modelling
MAX_WIDTH = 100_000
#: largest width of a model that solves dense ``width x width`` systems (one per thread): at
#: 100,000 each would take 40 GB
MAX_SOLVE_WIDTH = 10_000
#: largest number of epochs (the per-epoch history alone grows without bound)
MAX_EPOCHS = 1_000_000
#: largest seed: seeds are unsigned 32-bit integers (a range every random generator takes)
MAX_SEED = 2**32 - 1
#: largest thread count
MAX_THREADS = 4096
#: largest list length or count where the value sizes an allocation
MAX_COUNT = 2**31 - 1
#: longest top-k list (cut-offs, ``-k``, stored lists): every user's list is held in memory
MAX_CUTOFF = 100_000


def parameter_error(name: str, problem: str) -> ParameterError:
    """``ParameterError("name: problem")`` carrying ``param`` and ``problem`` attributes (the
    experiment file re-attaches the problem to the key's dotted path)."""
    error = ParameterError(f"{name}: {problem}")
    error.param, error.problem = name, problem  # type: ignore[attr-defined]
    return error


def _fail(name: str, problem: str, value: Any) -> NoReturn:
    raise parameter_error(name, f"{problem}, got {_show(value)}")


def _show(value: Any) -> str:
    """A short one-line rendering of a bad value."""
    text = repr(value) if not isinstance(value, float) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return (isinstance(value, (numbers.Real, np.floating)) or _is_int(value)
            ) and not isinstance(value, (bool, np.bool_))


class Rule:
    """One parameter's rule: `check` returns the canonical value or raises."""

    def check(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        """What the rule accepts, as the tail of "must be ..."."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _bounds_text(low: float | None, high: float | None, low_open: bool,
                 high_open: bool) -> str:
    if low is not None and high is not None:
        return (f"in {'(' if low_open else '['}{_number(low)}, {_number(high)}"
                f"{')' if high_open else ']'}")
    if low is not None:
        return f"{'>' if low_open else '>='} {_number(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_number(high)}"
    return ""


class Integer(Rule):
    """An int (not a bool, not a float) in ``[low, high]`` (None: unbounded)."""

    def __init__(self, low: int | None = None, high: int | None = None):
        self.low, self.high = low, high

    def describe(self) -> str:
        bounds = _bounds_text(self.low, self.high, False, False)
        return f"an integer {bounds}".rstrip()

    def check(self, name: str, value: Any) -> int:
        if not _is_int(value):
            _fail(name, f"must be {self.describe()}", value)
        value = int(value)
        if (self.low is not None and value < self.low) or (
                self.high is not None and value > self.high):
            _fail(name, f"must be {self.describe()}", value)
        return value


class Real(Rule):
    """A real number (an int passes and becomes a float), finite unless ``allow_inf``, within
    the bounds (open at ``low``/``high`` when ``low_open``/``high_open``). NaN never passes."""

    def __init__(self, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, allow_inf: bool = False):
        self.low, self.high = low, high
        self.low_open, self.high_open, self.allow_inf = low_open, high_open, allow_inf

    def describe(self) -> str:
        kind = "a number" if self.allow_inf else "a finite number"
        return f"{kind} {_bounds_text(self.low, self.high, self.low_open, self.high_open)}".rstrip()

    def check(self, name: str, value: Any) -> float:
        if not _is_real(value):
            _fail(name, f"must be {self.describe()}", value)
        try:
            value = float(value)
        except (OverflowError, ValueError):  # an int too large for a float
            _fail(name, f"must be {self.describe()}", value)
        if math.isnan(value) or (math.isinf(value) and not self.allow_inf) or not self._inside(
                value):
            _fail(name, f"must be {self.describe()}", value)
        return value

    def _inside(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (
            value > self.high or (self.high_open and value == self.high))


class Boolean(Rule):
    """``True`` or ``False`` (numpy bools accepted; not 0/1, not strings)."""

    def describe(self) -> str:
        return "true or false"

    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            _fail(name, f"must be {self.describe()}", value)
        return bool(value)


class Choice(Rule):
    """One of the given strings."""

    def __init__(self, *values: str):
        self.values = values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.values:
            _fail(name, f"must be {self.describe()}", value)
        return str(value)


class Text(Rule):
    """A string (a path is accepted and becomes a string), matching ``pattern`` if given."""

    def __init__(self, pattern: str | None = None, description: str = "a string"):
        self.pattern = None if pattern is None else re.compile(pattern)
        self.description = description

    def describe(self) -> str:
        return self.description

    def check(self, name: str, value: Any) -> str:
        if hasattr(value, "__fspath__"):
            value = str(value.__fspath__())
        if not isinstance(value, str) or (self.pattern is not None
                                          and not self.pattern.fullmatch(value)):
            _fail(name, f"must be {self.describe()}", value)
        return value


class Optional(Rule):
    """None, or a value that ``inner`` accepts."""

    def __init__(self, inner: Rule):
        self.inner = inner

    def describe(self) -> str:
        return f"{self.inner.describe()} or null"

    def check(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            return self.inner.check(name, value)
        except ParameterError as exc:
            if getattr(exc, "param", name) != name:
                raise  # an element of a list or table: the inner message is more precise
            _fail(name, f"must be {self.describe()}", value)


class Sequence(Rule):
    """A list or tuple (not a string) of ``min_len`` to ``max_len`` items that ``inner``
    accepts; returned as a tuple. Items are named ``name[i]`` in errors."""

    def __init__(self, inner: Rule, min_len: int = 0, max_len: int = MAX_COUNT):
        self.inner, self.min_len, self.max_len = inner, min_len, max_len

    def describe(self) -> str:
        size = f"at least {self.min_len} " if self.min_len else ""
        return f"a list of {size}items, each {self.inner.describe()}"

    def check(self, name: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (list, tuple)):
            _fail(name, f"must be {self.describe()}", value)
        if not self.min_len <= len(value) <= self.max_len:
            _fail(name, f"must have {self.min_len} to {self.max_len} items", value)
        return tuple(self.inner.check(f"{name}[{i}]", item) for i, item in enumerate(value))


class Mapping(Rule):
    """A table (dict) with string keys accepted by ``keys`` and values by ``values``; items are
    named ``name.key`` in errors."""

    def __init__(self, values: Rule, keys: Rule | None = None):
        self.values, self.keys = values, keys or Text()

    def describe(self) -> str:
        return f"a table of {self.values.describe()}"

    def check(self, name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, AbcMapping):
            _fail(name, f"must be {self.describe()}", value)
        out = {}
        for key, item in value.items():
            key = self.keys.check(f"{name} key", key)
            out[key] = self.values.check(f"{name}.{key}", item)
        return out


class Anything(Rule):
    """Any value (checked elsewhere, e.g. the keyword arguments of a nested model)."""

    def describe(self) -> str:
        return "any value"

    def check(self, name: str, value: Any) -> Any:
        return value


class NestedParams(Rule):
    """A table of another model's hyperparameters, checked by that model's rules (``owner``
    is a `recforge.models.base.Recommender` subclass); items are named ``name.key``."""

    def __init__(self, owner: Any):
        self.owner = owner

    def describe(self) -> str:
        return f"a table of {self.owner.__name__} hyperparameters"

    def check(self, name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, AbcMapping):
            _fail(name, f"must be {self.describe()}", value)
        return self.owner.validate_params(value, where=f"{name}.")


def check_all(rules: AbcMapping[str, Rule], values: AbcMapping[str, Any],
              where: str = "") -> dict[str, Any]:
    """Each of ``values`` checked by its rule (an unknown name raises), named ``where + name``
    in errors; returns the canonical values."""
    out = {}
    for name, value in values.items():
        if name not in rules:
            raise parameter_error(f"{where}{name}", f"unknown parameter; valid: "
                                                    f"{', '.join(sorted(rules))}")
        out[name] = rules[name].check(f"{where}{name}", value)
    return out


# ---------------------------------------------------------------------- shared rules
#: random seeds: 0 to 2^32 - 1
SEED = Integer(0, MAX_SEED)
#: passes over the training data
EPOCHS = Integer(1, MAX_EPOCHS)
#: epochs without validation improvement before early stopping (0 would stop before training)
PATIENCE = Integer(1, MAX_EPOCHS)
#: latent dimensions, embedding and hidden-layer widths
WIDTH = Integer(1, MAX_WIDTH)
#: the latent dimension of an alternating-least-squares model (dense ``k x k`` solves)
SOLVE_WIDTH = Integer(1, MAX_SOLVE_WIDTH)
#: a step size
LEARNING_RATE = Real(0, low_open=True)
#: an L2 penalty or other shrinkage weight that may be zero
PENALTY = Real(0)
#: a penalty that must be positive (e.g. so that a linear system stays non-singular)
POSITIVE_PENALTY = Real(0, low_open=True)
#: the spread of random initial weights (zero would start every factor model at a saddle)
INIT_STD = Real(0, low_open=True)
#: CPU threads, 0 meaning the library's default
THREADS = Integer(0, MAX_THREADS)
#: an exponential learning-rate decay factor per epoch
DECAY = Real(0, 1)
#: a dropout probability
DROPOUT = Real(0, 1, high_open=True)
#: a weight or share in [0, 1]
UNIT = Real(0, 1)
#: a share strictly between 0 and 1 (e.g. a test fraction)
FRACTION = Real(0, 1, low_open=True, high_open=True)
#: a top-k cut-off
CUTOFF = Integer(1, MAX_CUTOFF)
BOOLEAN = Boolean()

