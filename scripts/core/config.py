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
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scripts.core.data.config import DatasetConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULTS_FILE = REPO_ROOT / "config" / "components.yaml"

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sections
class ExperimentSection(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = 42


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
    """Global time split: base < target_start <= target < test_start <= test.

    Cut points are dates (ISO 8601) or fractions of the data's time range.
    """

    kind: Literal["time"] = "time"
    target_start: datetime | Fraction
    test_start: datetime | Fraction

    @model_validator(mode="after")
    def _ordered(self) -> TimeSplit:
        if type(self.target_start) is not type(self.test_start):
            raise ValueError("target_start and test_start must both be dates or both be fractions")
        if self.target_start >= self.test_start:  # type: ignore[operator]
            raise ValueError("target_start must come before test_start, or the target window is empty")
        return self


SplitConfig = Annotated[PerUserSplit | TimeSplit, Field(discriminator="kind")]


class GeneratorConfig(Strict):
    """Settings every candidate generator shares."""

    enabled: bool = True
    n_candidates: PositiveInt = 100
    n_similar: Annotated[int, Field(ge=0)] = 20
    batch_size: PositiveInt = 1024


class PopularConfig(GeneratorConfig):
    measure: Literal["users", "plays"] = "users"
    recency_half_life_days: PositiveFloat | None = None


class ALSConfig(GeneratorConfig):
    factors: PositiveInt = 64
    regularization: NonNegativeFloat = 20.0
    alpha: PositiveFloat = 1.0
    iterations: PositiveInt = 15
    weighting: Literal["bm25", "log1p", "none"] = "log1p"
    num_threads: PositiveInt = 1


class BPRConfig(GeneratorConfig):
    factors: PositiveInt = 64
    learning_rate: PositiveFloat = 0.01
    regularization: NonNegativeFloat = 0.01
    iterations: PositiveInt = 100
    num_threads: PositiveInt = 1


class Item2ItemConfig(GeneratorConfig):
    n_components: PositiveInt = 256
    n_neighbors: PositiveInt = 50
    weighting: Literal["tfidf", "bm25", "none"] = "bm25"


class ItemKNNConfig(GeneratorConfig):
    similarity: Literal["cosine", "bm25", "tfidf"] = "bm25"
    K: PositiveInt = 200
    K1: PositiveFloat = 10.0
    B: Annotated[float, Field(ge=0, le=1)] = 0.75
    weighting: Literal["bm25", "log1p", "none"] = "bm25"
    num_threads: PositiveInt = 1


class EASEConfig(GeneratorConfig):
    l2: PositiveFloat = 3000.0
    weighting: Literal["log1p", "none"] = "log1p"
    min_item_users: PositiveInt = 2
    max_items: PositiveInt | None = 8000


class FriendsConfig(GeneratorConfig):
    n_similar: Annotated[int, Field(ge=0)] = 0  # friends say nothing about item similarity
    weighting: Literal["log1p", "none"] = "log1p"


GENERATOR_CONFIGS: dict[str, type[GeneratorConfig]] = {
    "popular": PopularConfig, "als": ALSConfig, "bpr": BPRConfig, "item2item": Item2ItemConfig,
    "itemknn": ItemKNNConfig, "ease": EASEConfig, "friends": FriendsConfig,
}


class FeatureModelConfig(Strict):
    """An extra scorer fit inside the ranker stage: its scores become ranker features, it
    proposes no candidates, and it is evaluated beside the generators as a baseline."""

    kind: Literal["popular", "als", "bpr", "item2item", "itemknn", "ease", "friends"]
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _params_are_valid(self) -> FeatureModelConfig:
        try:
            GENERATOR_CONFIGS[self.kind].model_validate(self.params)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"params for kind '{self.kind}': {problems}") from None
        return self

    def generator_config(self) -> GeneratorConfig:
        return GENERATOR_CONFIGS[self.kind].model_validate(self.params)


def _default_feature_models() -> dict[str, FeatureModelConfig]:
    # Variants of the strongest generators: measured +0.003 NDCG@10 on Last.fm 2K (README).
    return {
        "als128": FeatureModelConfig(kind="als", params={"factors": 128}),
        "als32": FeatureModelConfig(kind="als", params={"factors": 32}),
        "bpr128": FeatureModelConfig(kind="bpr", params={"factors": 128}),
        "ease500": FeatureModelConfig(kind="ease", params={"l2": 500.0}),
        "knncos": FeatureModelConfig(kind="itemknn", params={"similarity": "cosine"}),
    }


class RankerConfig(Strict):
    """The CatBoost ranking stage (see README, "Ranker")."""

    enabled: bool = True
    generators: list[str] | None = None
    candidates_per_generator: PositiveInt = 40
    feature_models: dict[str, FeatureModelConfig] = Field(default_factory=_default_feature_models)
    loss: Literal["Logloss", "YetiRank"] = "Logloss"
    iterations: PositiveInt = 300
    learning_rate: PositiveFloat = 0.02
    depth: PositiveInt = 6
    l2_leaf_reg: PositiveFloat = 3.0
    early_stopping: bool = False
    early_stopping_rounds: PositiveInt = 50
    validation_fraction: Fraction = 0.2
    negatives_per_positive: PositiveInt | None = None
    refit_generators: bool = True
    features: list[Literal["generator", "user", "item", "user_item", "social"]] = Field(
        default_factory=lambda: ["generator", "user", "item", "user_item", "social"]
    )
    thread_count: PositiveInt = 2
    top_k: PositiveInt = 50
    similar_items_from: str = "ease"

    @field_validator("generators")
    @classmethod
    def _generators_not_empty(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and not names:
            raise ValueError("an empty list gives the ranker no candidates; leave the key out (null) to take "
                             "every enabled generator, or name the generators to use")
        return names

    @field_validator("feature_models")
    @classmethod
    def _feature_model_names(cls, models: dict[str, FeatureModelConfig]) -> dict[str, FeatureModelConfig]:
        clash = sorted(set(models) & set(GENERATOR_CONFIGS))
        if clash:
            raise ValueError(f"feature model names {clash} clash with generator names; choose others")
        return models


class PromoteConfig(Strict):
    """When ``promote`` moves the ``champion`` alias (README, "Promotion")."""

    metric: str | None = None
    margin: NonNegativeFloat = 0.0
    force: bool = False


class ComponentsConfig(Strict):
    popular: PopularConfig = PopularConfig()
    als: ALSConfig = ALSConfig()
    bpr: BPRConfig = BPRConfig()
    item2item: Item2ItemConfig = Item2ItemConfig()
    itemknn: ItemKNNConfig = ItemKNNConfig()
    ease: EASEConfig = EASEConfig()
    friends: FriendsConfig = FriendsConfig()
    ranker: RankerConfig = RankerConfig()
    promote: PromoteConfig = PromoteConfig()


class EvaluationConfig(Strict):
    ks: list[PositiveInt] = Field(default_factory=lambda: [5, 10, 20, 50])
    primary_metric: str = "ndcg@10"
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
        name, _, k = self.primary_metric.partition("@")
        if not k.isdigit() or int(k) not in self.ks:
            raise ValueError(f"primary_metric '{self.primary_metric}' must be METRIC@K with K in ks {self.ks}")
        if name not in {"ndcg", "recall", "precision", "map", "hit_rate", "mrr"}:
            raise ValueError(f"primary_metric '{name}' is not a ranking metric")
        return self


class TrackingConfig(Strict):
    """Where runs are logged. ``tracking_uri`` None = embedded SQLite store under ``mlruns/``."""

    tracking_uri: str | None = None
    experiment_name: str | None = None
    registered_model_name: str = "encore-ranker"


class EncoreConfig(Strict):
    experiment: ExperimentSection
    dataset: DatasetConfig
    split: SplitConfig = PerUserSplit()
    components: ComponentsConfig = ComponentsConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    tracking: TrackingConfig = TrackingConfig()
    output_dir: Path = Path("outputs")
    data_dir: Path = Path("data")

    def fingerprint(self, *sections: str) -> str:
        """Stable hash of the named sections; by default of everything that shapes results.

        Where runs are logged and which local folders hold data are left out, so the same
        experiment hashes the same on every machine.
        """
        dumped = self.model_dump(mode="json")
        keys = sections or tuple(k for k in dumped if k not in {"tracking", "output_dir", "data_dir"})
        return _hash({k: _dig(dumped, k) for k in keys})

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.experiment.name


class MachineSettings(BaseSettings):
    """Settings that belong to a machine rather than to an experiment (read from ``.env``)."""

    model_config = SettingsConfigDict(env_file=REPO_ROOT / ".env", extra="ignore", env_ignore_empty=True)

    mlflow_tracking_uri: str | None = None
    encore_data_dir: Path | None = None
    encore_output_dir: Path | None = None
    encore_spark_config: Path | None = None  # Spark session settings (default config/spark_config.yaml)


# --------------------------------------------------------------------------- resolution
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


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; ConfigError names the file otherwise."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at byte offset "
                          f"{exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def format_validation_error(exc: ValidationError, source: str, what: str = "configuration") -> str:
    """One line per problem, each with its key path: ``invalid <what> (<source>):``."""
    lines = [f"invalid {what} ({source}):"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        lines.append(f"  {path}: {err['msg']}" + (f" (got {err['input']!r})" if "input" in err else ""))
    return "\n".join(lines)


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
    if experiment_file is not None:
        raw = deep_merge(raw, read_yaml(Path(experiment_file)))
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
                locs = [".".join(str(p) for p in err["loc"]) for err in exc.errors()]
                named = [text for text in overrides
                         if any(loc.startswith(key) or key.startswith(loc) for loc in locs
                                for key in [text.partition("=")[0]])]
                source = " ".join(f"--set {text}" for text in named or overrides)
            except ValidationError:
                pass
        raise ConfigError(format_validation_error(exc, source)) from exc
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
