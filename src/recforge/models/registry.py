"""Name -> model class registry used by the CLI and experiment files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from recforge.errors import UnknownNameError, did_you_mean

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: register a model under a kebab-case ``name``."""

    def wrap(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_builtin() -> None:
    import recforge.models  # noqa: F401  (imports register every built-in model)


def get_model_class(name: str) -> type:
    """The class registered as ``name``; unknown names raise with the list of known ones."""
    _load_builtin()
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}{did_you_mean(key, _REGISTRY)}; available: {', '.join(model_names())}")
    return _REGISTRY[key]


def create_model(name: str, **params: Any) -> Any:
    """Instantiate the model registered as ``name`` with ``params`` (an unknown name or a bad
    value raises `recforge.errors.ParameterError` naming the parameter)."""
    cls = get_model_class(name)
    return cls(**cls.validate_params(params))


def model_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)
