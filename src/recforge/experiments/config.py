"""The experiment file: a typed schema for the TOML, checked in full before any data is loaded.

Sections: ``[experiment]`` (name, seeds), ``[data]`` (dataset, columns, options), ``[split]``
(method, seed and the splitter's options), ``[evaluation]`` (protocols, metrics, cutoffs),
``[[models]]`` (name, label, params), ``[report]`` and the optional ``[tune]``. Every error
names the file, the key's dotted path and the problem; see `load_experiment`.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from recforge.data.datasets import ML100K_FOLDS
from recforge.data.splits import SPLITTERS, TIES
from recforge.errors import ParameterError, did_you_mean
from recforge.evaluation.metrics import METRICS, RATING_METRICS, parse_metric
from recforge.experiments.tomlw import tomllib
from recforge.params import (
    CUTOFF,
    FRACTION,
    MAX_COUNT,
    SEED,
    Anything,
    Boolean,
    Choice,
    Integer,
    Optional,
    Real,
    Rule,
)

#: value rules of the ``[split]`` options (their types are checked by the schema)
SPLIT_RULES: dict[str, Rule] = {
    "test_fraction": FRACTION, "n": Integer(1, MAX_COUNT),
    "history_fraction": Real(0, 1, high_open=True), "ties": TIES,
}

#: the order of the sections in a written experiment file
SECTION_ORDER = ("experiment", "data", "split", "evaluation", "models", "report")


class ExperimentConfigError(ValueError):
    """A malformed experiment file; the message names the file, the key and the problem."""


@dataclass
class ExperimentSection:
    """``[experiment]``: the run's name and the seeds of its models and sampled negatives."""

    name: str = "experiment"
    seeds: list[int] = field(default_factory=lambda: [0])
    description: str = ""


@dataclass
class DataSection:
    """``[data]``: a registered dataset name or a file, its columns and loader options."""

    dataset: str = "ml-100k"
    columns: dict[str, str] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SplitSection:
    """``[split]``: a method of `recforge.data.splits` or a canonical ML-100K fold, its seed
    and the splitter's options (those left unset take the splitter's defaults)."""

    method: str = "leave-last-out"
    seed: int = 0
    test_fraction: float | None = None
    per_user: bool | None = None
    cutoff: str | int | None = None
    n: int | None = None
    test_users: int | float | None = None
    history_fraction: float | None = None
    ties: str | None = None

    def options(self) -> dict[str, Any]:
        """The splitter keyword arguments that were set."""
        return {f.name: getattr(self, f.name) for f in fields(self)[2:]
                if getattr(self, f.name) is not None}


@dataclass
class EvaluationSection:
    """``[evaluation]``: protocols, metric names (``"ndcg"`` takes every cut-off, ``"ndcg@5"``
    only its own) and cut-offs."""

    protocols: list[str] = field(default_factory=lambda: ["full"])
    metrics: list[str] = field(default_factory=lambda: ["ndcg", "hr", "recall"])
    cutoffs: list[int] = field(default_factory=lambda: [10])
    ties: str = "pessimistic"

    def metric_names(self) -> list[str]:
        """Canonical metric names with the cut-offs applied, in file order."""
        names: list[str] = []
        for metric in self.metrics:
            needs_k = "@" not in metric and METRICS.get(metric.strip().lower(), ("", ""))[1] == "required"
            for spelled in ([f"{metric}@{k}" for k in self.cutoffs] if needs_k else [metric]):
                names.append(parse_metric(spelled).name)
        return list(dict.fromkeys(names))


@dataclass
class ModelSection:
    """``[[models]]``: a registered model, its label in the results and its hyperparameters."""

    name: str
    label: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportSection:
    """``[report]``: whether to write the report, and the length of the stored top-k lists."""

    enabled: bool = True
    max_k: int = 50


@dataclass
class ParamSpace:
    """One hyperparameter's search range: ``int``/``float`` (``low``, ``high``, ``log``,
    ``step``) or ``categorical`` (``choices``)."""

    type: str = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None


@dataclass
class TuneSection:
    """``[tune]``: the model to tune (label or name; default the first), the validation metric
    and protocol, trials, timeout, the validation split and the search space."""

    model: str | None = None
    metric: str = "ndcg@10"
    protocol: str = "full"
    trials: int = 30
    timeout: float | None = None
    validation: SplitSection | None = None
    space: dict[str, ParamSpace] = field(default_factory=dict)


@dataclass
class Experiment:
    """A whole experiment file, typed; `load_experiment` builds and validates it."""

    models: list[ModelSection]
    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    data: DataSection = field(default_factory=DataSection)
    split: SplitSection = field(default_factory=SplitSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    report: ReportSection = field(default_factory=ReportSection)
    tune: TuneSection | None = None

    def labels(self) -> list[str]:
        """Each model's label (its name when none is given)."""
        return [m.label or m.name for m in self.models]

    def tuned_model(self) -> ModelSection:
        """The ``[[models]]`` entry that ``[tune] model`` names (the first by default)."""
        wanted = self.tune.model if self.tune else None
        for model, label in zip(self.models, self.labels()):
            if wanted in (None, label, model.name):
                return model
        raise KeyError(wanted)


# ---------------------------------------------------------------------- loading
def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; `ExperimentConfigError` names what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ExperimentConfigError(f"{path}: cannot read the experiment file ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ExperimentConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}: "
                                    f"{exc.reason})") from None
    return parse_experiment(text, source=str(path), base_dir=path.parent)


def parse_experiment(text: str, source: str = "<experiment>",
                     base_dir: Path | None = None) -> Experiment:
    """Parse and validate experiment TOML ``text`` (``source`` names it in errors)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentConfigError(f"{source}: invalid TOML: {exc}") from exc
    return experiment_from_dict(document, source, base_dir)


def experiment_from_dict(document: dict[str, Any], source: str = "<experiment>",
                         base_dir: Path | None = None) -> Experiment:
    """Build and validate an experiment from parsed TOML (``source`` names it in errors)."""
    try:
        experiment = _build(Experiment, document, "")
        _resolve_dataset_path(experiment, base_dir)
        validate(experiment)
    except KeyProblem as exc:
        where = f"{exc.path}: " if exc.path else ""
        raise ExperimentConfigError(f"{source}: {where}{exc.problem}") from None
    return experiment


class KeyProblem(Exception):
    """A problem at a dotted key path (turned into `ExperimentConfigError` with the file)."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def unknown_key(path: str, key: str, valid: list[str], what: str = "key") -> KeyProblem:
    """'unknown key' with a did-you-mean and the valid names."""
    return KeyProblem(path, f"unknown {what} {key!r}{did_you_mean(key, valid)} "
                            f"(valid: {', '.join(valid)})")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _build(cls: type, table: Any, path: str) -> Any:
    """A dataclass instance from a TOML table, checking keys and value types."""
    if not isinstance(table, dict):
        raise KeyProblem(path, f"expected a table, got {_type_name(table)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key in table:
        if key not in names:
            raise unknown_key(_join(path, key), key, names)
    for f in fields(cls):
        if f.default is MISSING and f.default_factory is MISSING and f.name not in table:
            raise KeyProblem(_join(path, f.name), "missing (required)")
    return cls(**{k: _check(hints[k], v, _join(path, k)) for k, v in table.items()})


def _check(hint: Any, value: Any, path: str) -> Any:
    """``value`` checked against the type ``hint`` (ints are accepted as floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _check_union([a for a in args if a is not type(None)], value, path)
    if is_dataclass(hint):
        return _build(hint, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise KeyProblem(path, f"expected a list, got {_type_name(value)}")
        return [_check(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise KeyProblem(path, f"expected a table, got {_type_name(value)}")
        return {k: _check(args[1], v, _join(path, k)) for k, v in value.items()}
    return _check_union([hint], value, path)


def _check_union(options: list[Any], value: Any, path: str) -> Any:
    for option in options:
        if option in (int, float, str, bool) and _scalar_ok(option, value):
            return float(value) if option is float else value
    for option in options:
        if option not in (int, float, str, bool):
            return _check(option, value, path)
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise KeyProblem(path, f"expected {expected}, got {_type_name(value)} {value!r}")


def _scalar_ok(kind: type, value: Any) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _type_name(value: Any) -> str:
    names = {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an int",
             float: "a float"}
    return names.get(type(value), type(value).__name__)


def _resolve_dataset_path(experiment: Experiment, base_dir: Path | None) -> None:
    """A dataset given as a relative file path is read relative to the experiment file."""
    from recforge.data.datasets import dataset_names

    dataset = experiment.data.dataset
    if dataset.lower() in dataset_names() or base_dir is None or Path(dataset).is_absolute():
        return
    candidate = base_dir / dataset
    if candidate.is_file() and not Path(dataset).is_file():
        experiment.data.dataset = str(candidate)


# ---------------------------------------------------------------------- validation
def validate(experiment: Experiment) -> None:
    """Check names and values that the types alone do not (raises `KeyProblem`)."""
    _validate_experiment(experiment.experiment)
    _validate_data(experiment.data)
    validate_split(experiment.split, experiment.data.dataset, "split")
    _validate_evaluation(experiment.evaluation)
    _validate_models(experiment)
    check_rule("report.max_k", CUTOFF, experiment.report.max_k)
    if experiment.tune is not None:
        validate_tune(experiment)


# ---------------------------------------------------------------------- [tune]
def _int(low: int, high: int, log: bool = True) -> ParamSpace:
    return ParamSpace("int", low, high, log)


def _float(low: float, high: float, log: bool = True) -> ParamSpace:
    return ParamSpace("float", low, high, log)


_FACTORS = _int(8, 256)
_SGD_MF = {"factors": _FACTORS, "learning_rate": _float(1e-3, 0.05), "reg": _float(1e-3, 0.3)}
_NEURAL = {"learning_rate": _float(1e-4, 1e-2), "weight_decay": _float(1e-7, 1e-3)}
_EXPLICIT_KNN = {"k": _int(5, 200), "shrinkage": _float(0.0, 300.0, log=False)}

#: search spaces used when ``[tune.space]`` is not given, by model name
BUILTIN_SPACES: dict[str, dict[str, ParamSpace]] = {
    "ials": {"factors": _FACTORS, "reg": _float(0.1, 100.0),
             "alpha": _float(0.1, 30.0)},
    "bpr": {"factors": _FACTORS, "learning_rate": _float(5e-3, 0.2),
            "reg": _float(1e-4, 0.1)},
    "ease": {"reg": _float(1.0, 10_000.0)},
    "item-knn-implicit": {"k": _int(10, 1000), "shrinkage": _float(0.0, 100.0, log=False)},
    "user-knn-implicit": {"k": _int(5, 500), "shrinkage": _float(0.0, 100.0, log=False)},
    "item-knn": _EXPLICIT_KNN,
    "user-knn": _EXPLICIT_KNN,
    "biased-mf": _SGD_MF,
    "svdpp": _SGD_MF,
    "truncated-svd": {"factors": _int(2, 100)},
    "als-wr": {"factors": _int(2, 64), "reg": _float(0.01, 1.0)},
    "biased-mf-als": {"factors": _int(2, 64), "reg": _float(0.5, 30.0)},
    "autorec": {"hidden": _int(50, 1000), "reg": _float(1.0, 1000.0)},
    "gmf": {"factors": _FACTORS, **_NEURAL},
    "dot-mf": {"factors": _FACTORS, **_NEURAL},
    "mlp": _NEURAL,
    "neumf": {"factors": _int(8, 128), "learning_rate": _float(1e-4, 1e-2)},
}


def validate_tune(experiment: Experiment) -> None:
    """Check the ``[tune]`` section (raises the config module's key problems)."""
    tune = experiment.tune or TuneSection()
    try:
        target = experiment.tuned_model()
    except KeyError:
        raise unknown_key("tune.model", str(tune.model), experiment.labels(),
                          "model label") from None
    checked("tune.metric", parse_metric, tune.metric)
    from recforge.evaluation.protocols import make_protocol

    checked("tune.protocol", make_protocol, tune.protocol)
    check_rule("tune.trials", Integer(1, MAX_COUNT), tune.trials)
    check_rule("tune.timeout", Optional(Real(0, low_open=True)), tune.timeout)
    if tune.validation is not None:
        if tune.validation.method not in SPLITTERS:
            raise unknown_key("tune.validation.method", tune.validation.method,
                              list(SPLITTERS), "validation split method")
        validate_split(tune.validation, experiment.data.dataset, "tune.validation")
    if not tune.space and target.name not in BUILTIN_SPACES:
        raise KeyProblem("tune.space", f"model {target.name!r} has no built-in search space; "
                                        "give one in [tune.space]")
    from recforge.models.registry import get_model_class

    cls = get_model_class(target.name)
    valid = cls.param_names()
    for name, space in tune.space.items():
        if name not in valid:
            raise unknown_key(f"tune.space.{name}", name, valid, f"parameter of {target.name}")
        check_space(space, f"tune.space.{name}", cls.rules()[name])


def check_space(space: ParamSpace, path: str, rule: Rule) -> None:
    """A search range that can only propose values the parameter's ``rule`` accepts: its
    bounds (or choices) pass the rule, and an integer parameter has an ``int`` space."""
    if space.type == "categorical":
        if not space.choices:
            raise KeyProblem(f"{path}.choices", "a categorical space needs choices")
        for i, choice in enumerate(space.choices):
            check_rule(f"{path}.choices[{i}]", rule, choice)
        return
    if space.type not in ("int", "float"):
        raise KeyProblem(f"{path}.type", f"must be 'int', 'float' or 'categorical', "
                                          f"got {space.type!r}")
    integer = _takes_integers(rule)
    if integer and space.type != "int":
        raise KeyProblem(f"{path}.type", f"the parameter takes integers; use type = 'int', "
                                          f"got {space.type!r}")
    for end in ("low", "high", "step"):
        value = getattr(space, end)
        if value is None:
            continue
        check_rule(f"{path}.{end}", Real(0, low_open=True) if end == "step" else Real(), value)
        if space.type == "int" and not float(value).is_integer():
            raise KeyProblem(f"{path}.{end}", f"an int space needs whole numbers, got {value}")
        if end != "step":
            check_rule(f"{path}.{end}", rule, int(value) if integer else value)
    if space.low is None or space.high is None or space.low >= space.high:
        raise KeyProblem(path, f"needs low < high, got low={space.low}, high={space.high}")
    if space.log and (space.low <= 0 or space.step is not None):
        raise KeyProblem(f"{path}.log", "a log scale needs low > 0 and no step")


def _takes_integers(rule: Rule) -> bool:
    inner = rule.inner if isinstance(rule, Optional) else rule
    return isinstance(inner, Integer)


def _validate_experiment(section: ExperimentSection) -> None:
    if not section.seeds:
        raise KeyProblem("experiment.seeds", "needs at least one seed")
    for i, seed in enumerate(section.seeds):
        check_rule(f"experiment.seeds[{i}]", SEED, seed)
    if len(set(section.seeds)) != len(section.seeds):
        raise KeyProblem("experiment.seeds", f"repeats a seed: {section.seeds}")
    if not section.name.strip() or "/" in section.name:
        raise KeyProblem("experiment.name", f"must be a non-empty name without '/', "
                                             f"got {section.name!r}")


def _validate_data(section: DataSection) -> None:
    from recforge.data.datasets import dataset_names

    key = section.dataset.lower()
    if key not in dataset_names():
        if not Path(section.dataset).is_file():
            raise KeyProblem("data.dataset", f"{section.dataset!r} is neither a registered "
                                              f"dataset ({', '.join(dataset_names())}) nor a file")
        return
    if section.columns is not None:
        raise KeyProblem("data.columns", "applies to interaction files, not registered datasets")
    if key == "synthetic":
        from recforge.data.synthetic import SyntheticConfig

        valid = [f.name for f in fields(SyntheticConfig)]
    else:
        from recforge.data.movielens import load_movielens

        valid = [p for p in inspect.signature(load_movielens).parameters
                 if p not in ("name", "data_dir", "download")]
    for option in section.options:
        if option not in valid:
            raise unknown_key(f"data.options.{option}", option, valid, "option")
    if key == "synthetic":
        hints = typing.get_type_hints(SyntheticConfig)
        for option, value in section.options.items():
            check_rule(f"data.options.{option}", _option_rule(option, hints[option]), value)
        checked("data.options", SyntheticConfig, **section.options)


def _option_rule(name: str, hint: Any) -> Rule:
    """The type rule of a dataclass option from its annotation (the dataclass checks ranges)."""
    if name == "seed":
        return SEED
    simple: dict[Any, Rule] = {int: Integer(), float: Real(), bool: Boolean()}
    if hint in simple:
        return simple[hint]
    if typing.get_origin(hint) is typing.Literal:
        return Choice(*typing.get_args(hint))
    return Anything()


def validate_split(section: SplitSection, dataset: str, path: str) -> None:
    if section.method in ML100K_FOLDS:
        if dataset.lower() != "ml-100k":
            raise KeyProblem(f"{path}.method", f"{section.method!r} is a canonical ML-100K "
                                                f"fold; the dataset is {dataset!r}")
        accepted: list[str] = []
    elif section.method in SPLITTERS:
        accepted = [p for p in inspect.signature(SPLITTERS[section.method]).parameters
                    if p not in ("data", "seed")]
    else:
        raise unknown_key(f"{path}.method", section.method, [*ML100K_FOLDS, *SPLITTERS],
                          "split method")
    check_rule(f"{path}.seed", SEED, section.seed)
    for option, value in section.options().items():
        if option not in accepted:
            raise KeyProblem(f"{path}.{option}", f"does not apply to split method "
                                                  f"{section.method!r} (it takes: "
                                                  f"{', '.join(accepted) or 'no options'})")
        check_rule(f"{path}.{option}", _split_rule(option, value), value)


def _split_rule(option: str, value: Any) -> Rule:
    """The value rule of a split option; ``test_users`` is a count (int) or a share (float)."""
    if option == "test_users":
        return Integer(1, MAX_COUNT) if isinstance(value, int) else FRACTION
    return SPLIT_RULES.get(option, Anything())


def _validate_evaluation(section: EvaluationSection) -> None:
    from recforge.evaluation.protocols import make_protocol

    for i, protocol in enumerate(section.protocols):
        checked(f"evaluation.protocols[{i}]", make_protocol, protocol)
    if not section.protocols:
        raise KeyProblem("evaluation.protocols", "needs at least one protocol")
    if section.ties not in ("pessimistic", "optimistic"):
        raise KeyProblem("evaluation.ties", f"must be 'pessimistic' or 'optimistic', "
                                             f"got {section.ties!r}")
    for i, k in enumerate(section.cutoffs):
        check_rule(f"evaluation.cutoffs[{i}]", CUTOFF, k)
    if not section.metrics:
        raise KeyProblem("evaluation.metrics", "needs at least one metric")
    if not section.cutoffs and any("@" not in m for m in section.metrics):
        raise KeyProblem("evaluation.cutoffs", "needs at least one cut-off")
    checked("evaluation.metrics", section.metric_names)
    beyond = [n for n in section.metric_names() if _family(n) == "beyond"]
    if beyond and "full" not in [p.strip().lower() for p in section.protocols]:
        raise KeyProblem("evaluation.metrics", f"{', '.join(beyond)} need the 'full' protocol")


def _family(name: str) -> str:
    return parse_metric(name).family


def _is_rating_metric(name: str) -> bool:
    """True for RMSE and MAE (names of other families may need a cutoff to parse)."""
    return name.split("@")[0].strip().lower() in RATING_METRICS


def _validate_models(experiment: Experiment) -> None:
    from recforge.evaluation.evaluator import check_rating_metrics
    from recforge.experiments.steps import build_model
    from recforge.models.registry import get_model_class, model_names

    if not experiment.models:
        raise KeyProblem("models", "needs at least one [[models]] entry")
    for i, model in enumerate(experiment.models):
        path = f"models[{i}]"
        try:
            cls = get_model_class(model.name)
        except KeyError:
            raise unknown_key(f"{path}.name", model.name, model_names(), "model") from None
        model.name = cls.name
        for param in model.params:
            if param not in cls.param_names():
                raise unknown_key(f"{path}.params.{param}", param, cls.param_names(),
                                  f"parameter of {cls.name}")
        try:
            cls.validate_params(model.params, where=f"{path}.params.")
        except ParameterError as exc:
            raise _key_problem(exc, f"{path}.params") from None
        checked(f"{path}.params", build_model, model.name, model.params)
        checked(f"{path}.name", check_rating_metrics, cls,
                [m for m in experiment.evaluation.metrics if _is_rating_metric(m)])
    labels = experiment.labels()
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise KeyProblem("models", f"labels must be unique; repeated: {', '.join(repeated)} "
                                    "(give each entry a label)")


def check_rule(path: str, rule: Rule, value: Any) -> Any:
    """``rule.check`` of the value at the dotted ``path`` (a `KeyProblem` there otherwise)."""
    try:
        return rule.check(path, value)
    except ParameterError as exc:
        raise _key_problem(exc, path) from None


def _key_problem(exc: ParameterError, path: str) -> KeyProblem:
    return KeyProblem(getattr(exc, "param", path), getattr(exc, "problem", str(exc)))


def checked(path: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)``; a ValueError or TypeError becomes a problem at ``path``."""
    try:
        return func(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        raise KeyProblem(path, str(exc)) from None


# ---------------------------------------------------------------------- resolved form
def resolved_config(experiment: Experiment) -> dict[str, Any]:
    """The experiment as plain values with every default filled in (models' hyperparameters
    included; ``seed`` only where the file set it, since each run seed sets it otherwise)."""
    from dataclasses import asdict

    from recforge.experiments.steps import build_model

    config = asdict(experiment)
    config = {key: config.pop(key) for key in SECTION_ORDER} | config
    config["split"] = {"method": experiment.split.method, "seed": experiment.split.seed,
                       **experiment.split.options()}
    config["models"] = []
    for model, label in zip(experiment.models, experiment.labels()):
        params = build_model(model.name, model.params).get_params()
        if "seed" not in model.params:
            params.pop("seed", None)
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()
                  if v is not None}
        config["models"].append({"name": model.name, "label": label, "params": params})
    return _drop_none(config)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
