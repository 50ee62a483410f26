"""The service's configuration: a TOML file checked in full before anything is loaded.

Sections (every key optional; the defaults serve a registry with the embedded SQLite store):

```toml
[serve]
state_dir = "serve-state"      # feature store, event log and exposure log (default: see below)
store = "sqlite:///features.db"   # or "redis://127.0.0.1:6379/0?prefix=rf"
event_log = "events.db"        # relative paths are under state_dir
exposure_log = "exposures.db"
dataset = "ml-100k"            # item genres and release years (filters, re-ranking, quality)
index = "ivf-flat"             # recforge.retrieval index kind of the item embeddings
index_settings = { nlist = 32, nprobe = 8 }
candidates = 200               # retrieved per request before ranking and re-ranking
max_k = 100                    # largest k a request may ask for
ranker = "runs/deepfm"         # optional: a saved model that re-scores the candidates
quality_window = 1000          # served lists in the quality gauges' sliding window

[auth]
token_file = "token.txt"       # else RECFORGE_API_TOKEN; no token: writes are refused (401)
protect_reads = false          # true: read routes need the token too

[rerank]
method = "mmr"                 # "mmr", "dpp" or "none"
lambda_ = 0.7                  # MMR trade-off; theta for DPP
theta = 0.7
depth = 50                     # candidates re-ranked
similarity = "genres"          # "genres" or "vectors"

[filters]
exclude_seen = true            # training history and fresh events from the store
exclude_items = ["1"]          # never served
exclude_genres = ["Horror"]

[ab]                           # recforge.abtest.Assigner.from_config's table
holdout = 0.0
[[ab.experiments]]
name = "model-ab"
arms = { control = 0.5, treatment = 0.5 }
versions = { control = "tt-v1", treatment = "tt-v2" }   # the model version of each arm
```

Without ``state_dir`` the state lives in the registry folder itself, or, when ``--model``
names one model folder, in a sibling ``<folder>.serve``. Every error is one line naming the
file and the key's dotted path (`ServeConfigError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recforge.abtest.assignment import Assigner
from recforge.errors import InputError, ParameterError, did_you_mean
from recforge.experiments.tomlw import tomllib
from recforge.params import (
    BOOLEAN,
    CUTOFF,
    DROPOUT,
    UNIT,
    Anything,
    Choice,
    Integer,
    Mapping,
    Optional,
    Rule,
    Sequence,
    Text,
)
from recforge.retrieval import INDEX_KINDS

VERSION = Text(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", "a model version (folder) name")
ID = Text(r"[^\x00-\x1f]{1,200}", "an id of 1 to 200 printable characters")

#: section -> key -> rule (the checked schema of the file)
SCHEMA: dict[str, dict[str, Rule]] = {
    "serve": {
        "state_dir": Optional(Text()), "store": Optional(Text()),
        "event_log": Text(), "exposure_log": Text(), "dataset": Optional(Text()),
        "index": Choice("auto", *INDEX_KINDS), "index_settings": Mapping(Anything()),
        "candidates": CUTOFF, "max_k": Integer(1, 1000), "ranker": Optional(Text()),
        "quality_window": Integer(1, 1_000_000),
    },
    "auth": {"token_file": Optional(Text()), "protect_reads": BOOLEAN},
    "rerank": {"method": Choice("mmr", "dpp", "none"), "lambda_": UNIT, "theta": DROPOUT,
               "depth": Integer(2, 1000), "similarity": Choice("genres", "vectors")},
    "filters": {"exclude_seen": BOOLEAN, "exclude_items": Sequence(ID),
                "exclude_genres": Sequence(Text())},
}


class ServeConfigError(InputError):
    """A malformed service configuration; the message names the file, the key and the
    problem."""


@dataclass(frozen=True)
class ServeConfig:
    """The checked configuration (module docstring); ``model_dir`` comes from ``--model``."""

    model_dir: Path
    serve: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] = field(default_factory=dict)
    rerank: dict[str, Any] = field(default_factory=dict)
    filters: dict[str, Any] = field(default_factory=dict)
    ab: dict[str, Any] = field(default_factory=dict)
    #: experiment name -> arm -> model version (the experiments with ``versions``)
    routes: dict[str, dict[str, str]] = field(default_factory=dict)

    def assigner(self) -> Assigner:
        """The A/B assigner of the ``[ab]`` table (no experiments without one)."""
        return Assigner.from_config(self.ab or {}, ignore=("versions",))

    @property
    def state_dir(self) -> Path:
        """Where the store, the event log and the exposure log live."""
        if self.serve["state_dir"] is not None:
            return Path(self.serve["state_dir"])
        if (self.model_dir / "model.json").is_file():
            return self.model_dir.with_name(self.model_dir.name + ".serve")
        return self.model_dir

    def state_path(self, key: str) -> Path:
        """``[serve] key`` (a file) resolved against `state_dir` when relative."""
        return self.state_dir / self.serve[key]

    @property
    def store_url(self) -> str:
        """The feature store's URL (the embedded SQLite file under `state_dir` by default)."""
        return self.serve["store"] or f"sqlite:///{self.state_dir / 'features.db'}"


DEFAULTS: dict[str, dict[str, Any]] = {
    "serve": {"state_dir": None, "store": None, "event_log": "events.db",
              "exposure_log": "exposures.db", "dataset": None, "index": "auto",
              "index_settings": {}, "candidates": 200, "max_k": 100, "ranker": None,
              "quality_window": 1000},
    "auth": {"token_file": None, "protect_reads": False},
    "rerank": {"method": "none", "lambda_": 0.7, "theta": 0.7, "depth": 50,
               "similarity": "genres"},
    "filters": {"exclude_seen": True, "exclude_items": (), "exclude_genres": ()},
}


def load_config(model_dir: str | Path, path: str | Path | None = None,
                **overrides: dict[str, Any]) -> ServeConfig:
    """The configuration of a service over the registry (or model folder) ``model_dir``:
    the TOML file ``path`` (None: the defaults), then ``overrides`` (section -> key ->
    value), all checked."""
    document: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ServeConfigError(f"{source}: not valid TOML ({exc})") from None
    for section, values in overrides.items():
        document.setdefault(section, {}).update(values)
    return config_from_dict(model_dir, document, source)


def config_from_dict(model_dir: str | Path, document: dict[str, Any],
                     source: str = "<config>") -> ServeConfig:
    """A `ServeConfig` from a parsed document; `ServeConfigError` names the first problem."""
    valid = [*SCHEMA, "ab"]
    for section in document:
        if section not in valid:
            raise ServeConfigError(f"{source}: unknown section [{section}]"
                                   f"{did_you_mean(section, valid)}; valid: {', '.join(valid)}")
    sections: dict[str, Any] = {}
    for section, rules in SCHEMA.items():
        table = document.get(section, {})
        if not isinstance(table, dict):
            raise ServeConfigError(f"{source}: [{section}] must be a table")
        sections[section] = DEFAULTS[section] | _checked(table, rules, section, source)
    ab = document.get("ab", {})
    config = ServeConfig(Path(model_dir), ab=ab, routes=_routes(ab, source), **sections)
    try:
        config.assigner()
    except InputError as exc:
        raise ServeConfigError(f"{source}: ab.{exc}") from None
    return config


def _checked(table: dict[str, Any], rules: dict[str, Rule], section: str,
             source: str) -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        if key not in rules:
            raise ServeConfigError(f"{source}: {section}.{key}: unknown key"
                                   f"{did_you_mean(key, rules)}; valid: {', '.join(rules)}")
        try:
            out[key] = rules[key].check(f"{section}.{key}", value)
        except ParameterError as exc:
            raise ServeConfigError(f"{source}: {exc}") from None
    return out


def _routes(ab: Any, source: str) -> dict[str, dict[str, str]]:
    """Experiment name -> arm -> version from the ``versions`` tables of ``[ab]``'s
    experiments (each arm named must be one of the experiment's arms)."""
    entries = ab.get("experiments", []) if isinstance(ab, dict) else []
    if isinstance(entries, dict):
        entries = [{"name": key, **value} for key, value in entries.items()
                   if isinstance(value, dict)]
    routes = {}
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict) or "versions" not in entry:
            continue
        where = f"{source}: ab.experiments[{i}].versions"
        try:
            versions = Mapping(VERSION).check(where, entry["versions"])
        except ParameterError as exc:
            raise ServeConfigError(str(exc)) from None
        arms = entry.get("arms") if isinstance(entry.get("arms"), dict) else {}
        unknown = sorted(set(versions) - set(arms))
        if unknown:
            raise ServeConfigError(f"{where}: {unknown[0]!r} is not an arm of the experiment"
                                   f"{did_you_mean(unknown[0], arms)}")
        routes[str(entry.get("name"))] = versions
    return routes
