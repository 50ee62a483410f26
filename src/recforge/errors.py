"""The errors recforge raises for bad input, shared by every layer.

The command line turns an `InputError` (and any ``ValueError`` or ``OSError``, the standard
library's words for a bad value or an unusable path) into one line and exit status 2. Any
other exception is a bug in recforge: exit 1 with a line saying so, and the traceback under
``RECFORGE_DEBUG=1``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """Bad input from the user: a file, an argument, a parameter, a saved folder. The message
    is one line naming what is wrong and where."""


class ParameterError(InputError, TypeError):
    """A hyperparameter (or option) has the wrong type or a value outside its declared range.

    Also a ``TypeError`` so that code catching the standard type error still sees it."""


class CorruptFileError(InputError):
    """A saved recforge file or folder (a model, an index, a catalogue) is damaged, tampered
    with or incomplete."""


class OutputExistsError(InputError, FileExistsError):
    """An output path holds something recforge did not write; it is never replaced."""


class ConcurrentWriteError(InputError):
    """Another process is writing the same output (its advisory lock is held)."""


class TrainingDivergedError(InputError, FloatingPointError):
    """Training produced NaN or infinite values (a degenerate fit: usually too large a
    learning rate or too little regularisation for the data)."""


class UnknownNameError(InputError, KeyError):
    """A name or id that is not there: a model, a column, a user, an item. Also a ``KeyError``
    for code that looks things up."""

    __str__ = BaseException.__str__  # the message itself, not KeyError's quoted repr


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``valid`` to ``name``, or ``""``."""
    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
