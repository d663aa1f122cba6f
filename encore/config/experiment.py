"""The one configuration model and how it is resolved.

Resolution order, later wins:
``config/components.yaml`` (defaults for every component) < experiment file
(``experiments/*.yaml``) < environment (``.env`` then the process environment, for the
few settings that belong to a machine: tracking URI, data and output folders) < CLI
overrides (``--set components.als.factors=128``).

Every section forbids unknown keys, so a typo fails before any work starts, with the key
path in the message.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from encore.config.component_names import RESERVED_NAMES
from encore.config.envfile import DEFAULTS_DIR, REPO_ROOT
from encore.config.machine import MachineSettings
from encore.config.types import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, Seed, Strict
from encore.config.validation import (
    IMPORTED,
    KIND_TAG,
    ConfigError,
    error_message,
    format_validation_error,
    key_path,
    kind_tag,
    read_yaml,
    rejected_settings,
)
from encore.data.dataset_config import DatasetConfig
from encore.evaluation.metrics.accuracy import RANKING_METRICS
from encore.evaluation.metrics.plugin_metrics import register_ranking_metric
from encore.evaluation.segments import PooledSegment, SegmentName
from encore.ranking.feature_groups import BUILTIN as FEATURE_GROUPS
from encore.ranking.feature_groups import check_feature_group, distinct
from encore.recommenders.generator_config import GeneratorConfig
from encore.recommenders.kinds import KINDS, KindError, recommender_class
from encore.reranking.config import RerankConfig

DEFAULTS_FILE = DEFAULTS_DIR / "components.yaml"
TIME_SPLIT_DEFAULTS_FILE = DEFAULTS_DIR / "time_split.yaml"
"""Merged over the defaults when ``split.kind`` is ``time`` (recency popularity, the fallback)."""





# --------------------------------------------------------------------------- sections
class ExperimentSection(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """The folder of the experiment's outputs (``<output_dir>/<name>``): one safe path component."""
    description: str = ""
    seed: Seed = 42

    @field_validator("name")
    @classmethod
    def _safe_folder_name(cls, name: str) -> str:
        if set(name) == {"."}:
            raise ValueError(f"'{name}' would put the outputs outside output_dir; the name is a folder: use "
                             "letters, digits, '_', '-' and '.' (not only dots)")
        return name


class PerUserSplit(Strict):
    """Per-user random holdout, for data without listening timestamps.

    Each eligible user (``min_user_items`` or more items) gives ``test_fraction`` of their
    items (at least one) to test, then ``target_fraction`` of the rest (at least one, and
    always leaving one) to the ranker target. Other users stay whole in base.
    """

    kind: Literal["per_user"] = "per_user"
    test_fraction: Fraction = 0.2
    target_fraction: Fraction = 0.2
    min_user_items: Annotated[int, Field(ge=3)] = 5


class TimeSplit(Strict):
    """Global time split: base < target_start <= target < test_start <= test < test_end.

    Cut points are dates (ISO 8601) or fractions of the data's time range; ``test_end``
    (a date, default: after the last event) drops everything from it on. ``folds: K`` is
    rolling-origin evaluation: K consecutive test windows, the last one as configured and
    each earlier fold with every cut point moved ``fold_days`` further back and its test
    window ``fold_days`` long (see :func:`encore.evaluation.splits.fold_splits`).
    """

    kind: Literal["time"] = "time"
    target_start: datetime | Fraction
    test_start: datetime | Fraction
    test_end: datetime | None = None
    folds: PositiveInt = 1
    fold_days: PositiveInt | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TimeSplit:
        dates = {key: value for key in ("target_start", "test_start", "test_end")
                 if isinstance(value := getattr(self, key), datetime)}
        if len({value.tzinfo is None for value in dates.values()}) > 1:
            shown = ", ".join(f"{key} {value.isoformat()} ({'no time zone' if value.tzinfo is None else 'with one'})"
                              for key, value in dates.items())
            raise ValueError(f"the cut points must all give a time zone or none: {shown}")
        if type(self.target_start) is not type(self.test_start):
            raise ValueError("target_start and test_start must both be dates or both be fractions")
        if self.target_start >= self.test_start:  # type: ignore[operator]
            raise ValueError("target_start must come before test_start, or the target window is empty")
        if self.test_end is not None and (not isinstance(self.test_start, datetime)
                                          or self.test_end <= self.test_start):
            raise ValueError("test_end must be a date after test_start (and test_start a date)")
        if self.folds > 1:
            if self.fold_days is None:
                raise ValueError("fold_days: rolling folds need the step between test windows, in days")
            if not isinstance(self.test_start, datetime):
                raise ValueError("folds: rolling folds move the cut points by fold_days, so target_start and "
                                 "test_start must be dates, not fractions")
        return self


SplitConfig = Annotated[PerUserSplit | TimeSplit, Field(discriminator="kind")]


# --------------------------------------------------------------------------- generator instances
INSTANCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
FEATURE_MODELS_REMOVED = (
    "components.ranker.feature_models was removed: a feature model is now an ordinary generator instance "
    "with `propose: false` (its scores are ranker features, it proposes no candidates, it is evaluated "
    "beside the others). Rewrite `ranker: {feature_models: {als128: {kind: als, params: {factors: 128}}}}` "
    "as `components: {als128: {kind: als, factors: 128, propose: false}}` (the params move up one level)"
)


def _validate_imported(value: Any) -> GeneratorConfig:
    """A user's kind (``module:Class``): import it and validate the params with its ``config_class``."""
    if isinstance(value, GeneratorConfig):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of settings, got {type(value).__name__}")
    kind = str(value.get("kind"))
    try:
        cls = recommender_class(kind)
    except KindError as exc:
        raise ValueError(str(exc)) from None
    if cls in KINDS.values():  # a built-in class named by its path: the same as its short kind
        value = {**value, "kind": cls.name}
    try:
        return cls.config_class.model_validate(value)
    except ValidationError as exc:
        raise ValueError(f"{cls.config_class.__name__} of kind '{kind}' rejects the settings: "
                         f"{rejected_settings(exc)}") from None


_BUILTIN_MEMBERS = tuple(Annotated[cls.config_class, Tag(f"{KIND_TAG}{kind}")] for kind, cls in KINDS.items())
_IMPORTED_MEMBER = Annotated[GeneratorConfig, PlainValidator(_validate_imported),
                             PlainSerializer(lambda v: v.model_dump(mode="json")), Tag(f"{KIND_TAG}{IMPORTED}")]
GeneratorInstance = Annotated[
    Union[(*_BUILTIN_MEMBERS, _IMPORTED_MEMBER)],
    Discriminator(lambda value: kind_tag(value, KINDS), custom_error_type="kind_missing",
                  custom_error_message="a generator instance is a mapping with a `kind`: a built-in kind "
                                       f"({', '.join(KINDS)}) or 'package.module:ClassName'"),
]
"""One generator instance's settings: the ``config_class`` of its kind, chosen by ``kind``."""


class RankerConfig(Strict):
    """The CatBoost ranking stage (see docs/ranker.md, "Ranker")."""

    enabled: bool = True
    generators: list[str] | None = None
    """Instances whose candidates are merged; None = every enabled instance with ``propose: true``."""
    candidates_per_generator: PositiveInt = 40
    loss: Literal["Logloss", "YetiRank"] = "Logloss"
    iterations: PositiveInt = 300
    learning_rate: PositiveFloat = 0.02
    depth: PositiveInt = 6
    l2_leaf_reg: PositiveFloat = 3.0
    early_stopping: bool = False
    early_stopping_rounds: PositiveInt = 50
    validation_fraction: Fraction = 0.2
    negatives_per_positive: PositiveInt | None = None
    train_max_rows: PositiveInt | None = 2_000_000
    """Row budget of the ranker's training set: candidate rows (counted before the generators'
    lists are merged) of a seeded random sample of ranker-target users; None = every user."""
    refit_generators: bool = True
    features: Annotated[list[Annotated[str, AfterValidator(check_feature_group)]], AfterValidator(distinct)] = Field(
        default_factory=lambda: list(FEATURE_GROUPS))
    """Feature groups: built-in names or a user's ``package.module:Class`` (encore.ranking.feature_groups)."""
    thread_count: PositiveInt = 2
    fallback: str | None = None
    """A ``popular``-kind instance whose list completes short lists, is served to unknown users,
    and replaces the ranker's in any segment (warm / cold) where it validates better on a held-out
    ``policy_fraction`` of ranker-target users; None = train popularity completes, the ranker serves all."""
    policy_fraction: Fraction = 0.2
    recent_days: PositiveFloat = 30.0
    """Window of the recency features (``item_trend``, ``user_recent_items``, ...) on timestamped data."""
    top_k: PositiveInt = 50
    similar_items_from: str = "ease"
    engine: Literal["pandas", "spark"] = Field(default="pandas", exclude_if=lambda value: value == "pandas")
    """Where the final lists are scored: ``pandas`` (this process, batch by batch) or ``spark`` (candidate
    merge, features and CatBoost scoring in ``applyInPandas`` on the executors; docs/scaling.md). Same
    lists either way; training stays a sampled single-machine fit. Left out of dumps at its default."""
    seed: Seed | None = None
    """The ranker's own seed (user sample, negatives, policy slice, CatBoost); None = ``experiment.seed``.
    Varying it alone refits only the ranker: the spread over ranker seeds (``benchmarks/sweep.py``)."""

    def random_seed(self, experiment_seed: int) -> int:
        return experiment_seed if self.seed is None else self.seed

    @field_validator("generators")
    @classmethod
    def _generators_not_empty(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and not names:
            raise ValueError("an empty list gives the ranker no candidates; leave the key out (null) to take "
                             "every enabled generator, or name the generators to use")
        return names

    @field_validator("features")
    @classmethod
    def _features_not_empty(cls, names: list[str]) -> list[str]:
        if not names:
            raise ValueError("no feature group selected: the ranker needs features; leave the key out for the "
                             f"built-in groups ({', '.join(FEATURE_GROUPS)}) or name the groups to use")
        return names

    @model_validator(mode="before")
    @classmethod
    def _no_feature_models(cls, data: Any) -> Any:
        if isinstance(data, dict) and "feature_models" in data:
            raise ValueError(FEATURE_MODELS_REMOVED)
        return data


class PromoteConfig(Strict):
    """When ``promote`` moves the ``champion`` alias (docs/mlflow-and-registry.md, "Promotion")."""

    metric: str | None = None
    margin: NonNegativeFloat = 0.0
    force: bool = False
    # Which test users the challenger and champion are compared on (evaluate's segments).
    segment: SegmentName = "all"


class ComponentsConfig(Strict):
    """``ranker``, ``promote`` and any number of named generator instances.

    Every other key is an instance: ``components.<name>: {kind: <kind>, ...settings}``, its
    settings validated by the kind's ``config_class``. ``kind`` may be left out when the name
    is a built-in kind (``components.als: {factors: 64}``). Instances keep their order (the
    defaults file's, then the experiment's additions): the ranker's feature columns follow it.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, GeneratorInstance] = Field(init=False)  # type: ignore[assignment]

    ranker: RankerConfig = RankerConfig()
    rerank: RerankConfig = RerankConfig()
    promote: PromoteConfig = PromoteConfig()

    @model_validator(mode="before")
    @classmethod
    def _instances(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, value in data.items():
            if name in cls.model_fields:
                continue
            if name in RESERVED_NAMES:
                raise ValueError(f"components.{name}: '{name}' is a pipeline component, not a generator "
                                 "instance; choose another name")
            if not INSTANCE_NAME.match(name):
                raise ValueError(f"components.{name}: instance names are letters, digits and _ "
                                 "(they become file, feature and metric names)")
            if isinstance(value, dict) and "kind" not in value and name in KINDS:
                data[name] = {"kind": name, **value}
        return data

    @model_validator(mode="after")
    def _fallback_is_a_popular_instance(self) -> ComponentsConfig:
        name = self.ranker.fallback
        if name is None:
            return self
        instances = self.generators
        if name not in instances or not instances[name].enabled:
            raise ValueError(f"ranker.fallback: '{name}' is not an enabled generator instance; known: "
                             f"{', '.join(instances)}")
        if instances[name].kind != "popular":
            raise ValueError(f"ranker.fallback: '{name}' is of kind {instances[name].kind}; the fallback is also "
                             "served to users nobody knows, so it must be a popular-kind instance")
        return self

    @model_validator(mode="after")
    def _chance_needs_probabilities(self) -> ComponentsConfig:
        if "chance" in self.rerank.coverage_costs and self.ranker.loss != "Logloss":
            raise ValueError(f"rerank.coverage_costs: 'chance' needs the ranker's hit probabilities "
                             f"(ranker.loss: Logloss), but ranker.loss is {self.ranker.loss}")
        return self

    @property
    def generators(self) -> dict[str, GeneratorConfig]:
        """Every generator instance by name, in config order (enabled or not)."""
        return dict(self.__pydantic_extra__ or {})

    def generator(self, name: str) -> GeneratorConfig:
        instances = self.generators
        if name not in instances:
            raise ConfigError(f"components.{name}: no such generator instance; known: {', '.join(instances)}")
        return instances[name]


class EvaluationConfig(Strict):
    ks: list[PositiveInt] = Field(default_factory=lambda: [5, 10, 20, 50])
    metrics: list[Annotated[str, AfterValidator(register_ranking_metric)]] = Field(
        default_factory=list, exclude_if=lambda metrics: not metrics)
    """A user's own ranking metrics (``package.module:function``), reported beside the built-in ones.
    Left out of dumps when empty, so configs without any keep their reuse keys."""
    primary_metric: str = "ndcg@10"
    engine: Literal["pandas", "spark"] = Field(default="pandas", exclude_if=lambda value: value == "pandas")
    """Where ``evaluate`` computes the per-user ranking metrics: ``pandas`` (this process) or ``spark``
    (per user bucket in ``applyInPandas``, means aggregated by Spark; docs/scaling.md). Same figures
    either way. Left out of dumps at its default."""
    n_bootstrap: PositiveInt = 2000
    confidence: Fraction = 0.95

    @field_validator("ks")
    @classmethod
    def _sorted_unique(cls, ks: list[int]) -> list[int]:
        if not ks:
            raise ValueError("at least one k is needed")
        return sorted(set(ks))

    @model_validator(mode="after")
    def _primary_k_listed(self) -> EvaluationConfig:
        try:
            check_ranking_metric(self.primary_metric, self.ks)
        except ValueError as exc:
            raise ValueError(f"primary_metric {exc}") from None
        return self


class ResourcesConfig(Strict):
    """How much of the machine a run may use. Batch sizes are derived from it; results are
    not (batching changes nothing), so it is not part of any fingerprint."""

    memory_gib: PositiveFloat = 8.0


class TrackingConfig(Strict):
    """Where runs are logged. ``tracking_uri`` None = embedded SQLite store under ``mlruns/``."""

    tracking_uri: str | None = None
    experiment_name: str | None = None
    registered_model_name: str = "encore-ranker"
    log_all_metrics: bool = Field(default=False, exclude_if=lambda value: not value)
    """Log every model x segment x metric x k on the parent and evaluate runs (~1,900 values), not
    only the headline (``encore.evaluation.headline``); the full table is an artifact either way.
    Left out of dumps when off, so resolved configs stay as they were."""


TuningSegment = PooledSegment
"""The target users a tuning choice is scored on (per-user segments: the cold-item one is per pair)."""
TuningSearch = Literal["grid", "optuna"]
"""How an instance's ``tuning.grid`` entry is searched: every combination, or an Optuna study."""


class SearchRange(Strict):
    """A range Optuna samples a setting from (``tuning.search: optuna``): integers when ``low`` and
    ``high`` are both integers, else floats; ``log: true`` samples on a log scale."""

    low: int | float
    high: int | float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {self.low})")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


class TuningConfig(Strict):
    """Generator settings chosen on the ranker-target part, never on test (docs/evaluation.md, "Tuning").

    ``grid`` maps instance names to ``{setting: [values]}``; the ``tune`` component fits every
    combination of an instance's values on the base part, scores its lists on the target part's
    users of ``segment`` (``segments`` per instance) by ``metric``, and the rest of the pipeline
    runs with each instance's best combination (the first of equals, in grid order).

    With ``search: optuna`` the same ``grid`` is a search space: a list is a set of choices, a
    ``{low, high, log}`` mapping a range; an Optuna study (seeded with ``experiment.seed``) runs up
    to ``trials`` trials per instance within ``timeout_seconds`` (proposed as ``sampler`` says),
    pruning hopeless trials on their per-epoch target scores (``pruning``).
    """

    search: TuningSearch = "grid"
    searches: dict[str, TuningSearch] = Field(default_factory=dict)
    """Per instance, a search other than ``search`` (e.g. ``{sasrec: optuna}``: the classical kinds by
    grid, a neural kind's larger space by Optuna)."""
    grid: dict[str, dict[str, list[Any] | SearchRange]] = Field(default_factory=dict)
    metric: str | None = None
    """METRIC@K with K in ``evaluation.ks``; None = ``evaluation.primary_metric``."""
    segment: TuningSegment = "all"
    segments: dict[str, TuningSegment] = Field(default_factory=dict)
    max_trials: PositiveInt = 64
    """Most combinations one instance's grid may have (a guard against a mistyped grid)."""
    trials: PositiveInt = 20
    """``search: optuna``: trials (fits) per instance; a combination proposed again is answered from
    its scored trial and not counted."""
    timeout_seconds: PositiveFloat | None = None
    """``search: optuna``: no new trial of an instance starts after this many seconds (None: no limit)."""
    pruning: bool = True
    """``search: optuna``: stop a trial whose per-epoch target score is below the median of earlier trials."""
    sampler: Literal["auto", "tpe"] = "auto"
    """``search: optuna``: what proposes the trials after the space-filling start-up on a space of lists
    (at most 10,000 points: ``tune.LISTED_POINTS``): ``auto``, a Gaussian process's expected improvement over the
    points not yet tried; ``tpe``, Optuna's TPE (a proposal already tried moves to the nearest untried
    point). A space with a range is always searched by TPE."""

    @model_serializer(mode="wrap")
    def _without_unused_search_keys(self, handler: Any) -> dict[str, Any]:
        """The Optuna keys at their defaults are left out of the dump: an experiment that does not use
        them resolves, and so fingerprints, exactly as before they existed (its outputs stay reusable)."""
        dumped = handler(self)
        for key in _OPTUNA_KEYS:
            if getattr(self, key) == TuningConfig.model_fields[key].default:
                dumped.pop(key, None)
        if not self.searches:
            dumped.pop("searches", None)
        return dumped

    def segment_of(self, name: str) -> TuningSegment:
        return self.segments.get(name, self.segment)

    def search_of(self, name: str) -> TuningSearch:
        return self.searches.get(name, self.search)


_OPTUNA_KEYS = ("search", "trials", "timeout_seconds", "pruning", "sampler")


def check_ranking_metric(metric: str, ks: list[int]) -> None:
    """``metric`` is METRIC@K with a ranking metric and K among ``ks`` (ValueError otherwise)."""
    name, _, k = metric.partition("@")
    if not k.isdigit() or int(k) not in ks:
        raise ValueError(f"'{metric}' must be METRIC@K with K in ks {ks}")
    if name not in RANKING_METRICS:
        raise ValueError(f"'{name}' is not a ranking metric")


class EncoreConfig(Strict):
    experiment: ExperimentSection
    dataset: DatasetConfig
    split: SplitConfig = PerUserSplit()
    components: ComponentsConfig = ComponentsConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tracking: TrackingConfig = TrackingConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tuning: TuningConfig = TuningConfig()
    output_dir: Path = Path("outputs")
    data_dir: Path = Path("data")

    @model_validator(mode="after")
    def _lists_cover_largest_k(self) -> EncoreConfig:
        """Every list evaluated at the largest k is at least k long (else the check comes after ``prepare``)."""
        largest = max(self.evaluation.ks)
        for name, section in self.components.generators.items():
            if section.enabled and section.n_candidates < largest:
                raise ValueError(f"components.{name}.n_candidates ({section.n_candidates}) must be at least the "
                                 f"largest evaluation k ({largest}, evaluation.ks)")
        ranker = self.components.ranker
        if ranker.enabled and ranker.top_k < largest:
            raise ValueError(f"components.ranker.top_k ({ranker.top_k}) must be at least the largest evaluation k "
                             f"({largest}, evaluation.ks)")
        return self

    @model_validator(mode="after")
    def _tuning_grid_valid(self) -> EncoreConfig:
        tuning = self.tuning
        if tuning.metric is not None:
            try:
                check_ranking_metric(tuning.metric, self.evaluation.ks)
            except ValueError as exc:
                raise ValueError(f"tuning.metric: {exc}") from None
        instances = self.components.generators
        for key, names in (("segments", tuning.segments), ("searches", tuning.searches)):
            for name in names:
                if name not in tuning.grid:
                    raise ValueError(f"tuning.{key}.{name}: '{name}' is not in tuning.grid")
        for name, grid in tuning.grid.items():
            where = f"tuning.grid.{name}"
            if name not in instances:
                raise ValueError(f"{where}: no such generator instance; known: {', '.join(instances)}")
            section = instances[name]
            if not grid:
                raise ValueError(f"{where}: no settings to tune; give {{setting: [values]}} or leave it out")
            params = section.params()
            for setting, values in grid.items():
                if setting not in params:
                    raise ValueError(f"{where}.{setting}: not a hyper-parameter of kind '{section.kind}'; "
                                     f"tunable: {', '.join(params) or 'none'}")
                if isinstance(values, SearchRange):
                    if tuning.search_of(name) != "optuna":
                        raise ValueError(f"{where}.{setting}: a range {{low, high}} needs tuning.search: optuna "
                                         f"(or tuning.searches.{name}: optuna); a grid lists values")
                    values = [values.low, values.high]
                if not isinstance(values, list) or not values:
                    raise ValueError(f"{where}.{setting}: give a non-empty list of values")
                for value in values:
                    try:
                        type(section).model_validate(section.model_dump() | {setting: value})
                    except ValidationError as exc:
                        raise ValueError(f"{where}.{setting}: {value!r} is rejected: "
                                         f"{error_message(exc.errors()[0])}") from None
            trials = len(grid_combinations(grid)) if tuning.search_of(name) == "grid" else 0
            if trials > tuning.max_trials:
                raise ValueError(f"{where}: {trials} combinations exceed tuning.max_trials ({tuning.max_trials})")
        if tuning.grid and not any(instances[name].enabled for name in tuning.grid):
            raise ValueError(f"tuning.grid: every instance it names is disabled ({', '.join(tuning.grid)}: "
                             "enabled: false), so there is nothing to tune; enable one or leave tuning.grid out")
        return self

    def fingerprint(self, *sections: str) -> str:
        """Stable hash of the named sections; by default of everything that shapes results.

        Where runs are logged and which local folders hold data are left out, so the same
        experiment hashes the same on every machine.
        """
        dumped = self.model_dump(mode="json")
        keys = sections or tuple(k for k in dumped if k not in {"tracking", "resources", "output_dir", "data_dir"})
        return _hash({k: _dig(dumped, k) for k in keys})

    def plugin_modules(self) -> list[str]:
        """The modules of a user's data source, feature groups and metrics (``module:Name`` entries):
        their code is part of every output's reuse key (a generator kind's, of its instance's)."""
        named = [str(self.dataset.kind), *self.components.ranker.features, *self.evaluation.metrics]
        return sorted({entry.partition(":")[0] for entry in named if ":" in entry})

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.experiment.name


# --------------------------------------------------------------------------- resolution
def grid_combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a ``{setting: [values]}`` grid, the first setting varying slowest."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def with_settings(config: EncoreConfig, settings: dict[str, dict[str, Any]]) -> EncoreConfig:
    """``config`` with instances' settings replaced (``{instance: {setting: value}}``) and no
    tuning grid left: what the pipeline runs once ``tune`` has chosen."""
    dumped = config.model_dump()
    dumped["components"] = deep_merge(dumped["components"], settings)
    dumped["tuning"] = TuningConfig().model_dump()
    return EncoreConfig.model_validate(dumped)


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; a section whose ``kind`` changes is replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and old.get("kind", value.get("kind")) == value.get(
            "kind", old.get("kind")
        ):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``, the value parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    try:
        value: Any = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        raise ConfigError(f"override '{text}': the value is not valid YAML") from None
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def load_config(
    experiment_file: Path | None = None,
    overrides: list[str] | None = None,
    *,
    defaults_file: Path = DEFAULTS_FILE,
    settings: MachineSettings | None = None,
) -> EncoreConfig:
    """Resolve defaults + experiment + environment + overrides into a validated config.

    Relative paths in the experiment (dataset files, output/data folders) are resolved
    against the repository root, so components work from any working directory.
    """
    raw = read_yaml(defaults_file)
    source = str(defaults_file)
    experiment = read_yaml(Path(experiment_file)) if experiment_file is not None else {}
    split = deep_merge(raw, experiment).get("split") or {}
    for text in overrides or []:
        split = deep_merge({"split": split}, parse_override(text)).get("split") or {}
    if isinstance(split, dict) and split.get("kind") == "time" and defaults_file == DEFAULTS_FILE:
        raw = deep_merge(raw, read_yaml(TIME_SPLIT_DEFAULTS_FILE))
    if experiment_file is not None:
        raw = deep_merge(raw, experiment)
        source = str(experiment_file)
    settings = settings if settings is not None else MachineSettings()
    machine: dict[str, Any] = {}
    if settings.mlflow_tracking_uri:
        machine["tracking"] = {"tracking_uri": settings.mlflow_tracking_uri}
    if settings.encore_output_dir:
        machine["output_dir"] = str(settings.encore_output_dir)
    if settings.encore_data_dir:
        machine["data_dir"] = str(settings.encore_data_dir)
    raw = deep_merge(raw, machine)
    overridden = raw
    for text in overrides or []:
        overridden = deep_merge(overridden, parse_override(text))
    try:
        config = EncoreConfig.model_validate(overridden)
    except ValidationError as exc:
        # Name the source of the problem: the files alone, or the --set overrides on top of them.
        if overrides:
            try:
                EncoreConfig.model_validate(raw)
                locs = [key_path(err["loc"], overridden) for err in exc.errors()]
                named = [text for text in overrides
                         if any(loc.startswith(key) or key.startswith(loc) for loc in locs
                                for key in [text.partition("=")[0]])]
                source = " ".join(f"--set {text}" for text in named or overrides)
            except ValidationError:
                pass
        raise ConfigError(format_validation_error(exc, source, data=overridden)) from exc
    return _resolve_paths(config)


def _resolve_paths(config: EncoreConfig) -> EncoreConfig:
    def absolute(value: Any) -> Any:
        if isinstance(value, Path) and not value.is_absolute():
            return REPO_ROOT / value
        if isinstance(value, BaseModel):
            updates = {name: absolute(getattr(value, name)) for name in type(value).model_fields}
            return value.model_copy(update=updates)
        return value

    return absolute(config)
