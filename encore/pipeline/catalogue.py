"""Which components an experiment has, in which order, and what each needs.

The components of an experiment are ``prepare``, ``tune`` (when ``tuning.grid`` lists
instances to tune), one per generator instance (``components.<name>``, all run by
:mod:`encore.components.generator`), ``ranker``, ``rerank`` (when enabled) and ``evaluate``;
``register`` and ``promote`` run only when asked for. Components after ``tune`` run with the settings it chose
(:func:`encore.pipeline.reuse_keys.tuned`).

Pure functions of the config (no tracking, no I/O): components import them (``enabled``,
``generator_names``) without taking the pipeline's execution code into their reuse key.
"""

from __future__ import annotations

import importlib
from typing import Any

from encore.config.component_names import FIRST, LAST, ON_DEMAND, TUNE, UNTUNED
from encore.config.experiment import ConfigError, EncoreConfig

__all__ = ["FIRST", "GENERATOR_MODULE", "LAST", "ON_DEMAND", "TUNE", "UNTUNED", "all_components", "component_module",
           "dependencies", "enabled", "generator_names", "model_stages_read", "parse_components", "pipeline_components",
           "run_order", "section"]

GENERATOR_MODULE = "encore.components.generator"


def generator_names(config: EncoreConfig) -> tuple[str, ...]:
    """Every generator instance of the config, in config order (enabled or not)."""
    return tuple(config.components.generators)


def pipeline_components(config: EncoreConfig) -> tuple[str, ...]:
    """The default run: prepare, tune (with a tuning grid), every generator instance, ranker, rerank
    (when enabled: it is off by default), evaluate."""
    last = tuple(name for name in LAST if name != "rerank" or enabled(config, name))
    return (*FIRST, *((TUNE,) if config.tuning.grid else ()), *generator_names(config), *last)


def all_components(config: EncoreConfig) -> tuple[str, ...]:
    """Everything this config can run: the default run, then the on-demand components."""
    return (*pipeline_components(config), *ON_DEMAND)


def run_order(config: EncoreConfig) -> tuple[str, ...]:
    """The order any chosen components run in; ``tune`` is known even without a grid (asked
    for, its run says what to set)."""
    return (*FIRST, TUNE, *generator_names(config), *LAST, *ON_DEMAND)


def component_module(config: EncoreConfig, name: str) -> Any:
    """The module that runs component ``name`` (the generator template for an instance)."""
    if name in config.components.generators:
        return importlib.import_module(GENERATOR_MODULE)
    if name in (*FIRST, TUNE, *LAST, *ON_DEMAND):
        return importlib.import_module(f"encore.components.{name}")
    raise ConfigError(f"unknown component '{name}'; known: {', '.join(all_components(config))}")


def section(config: EncoreConfig, name: str) -> Any:
    """The config section of component ``name`` (an instance's settings), or None."""
    if name in config.components.generators:
        return config.components.generators[name]
    return getattr(config.components, name, None)


def enabled(config: EncoreConfig, name: str) -> bool:
    """Whether component ``name`` runs: a section without ``enabled: false`` (or no section)."""
    own = section(config, name)
    return own is None or bool(getattr(own, "enabled", True))


def dependencies(config: EncoreConfig, name: str) -> list[str]:
    """The enabled components whose outputs ``name`` reads (its module's ``DEPENDS_ON``)."""
    deps = component_module(config, name).DEPENDS_ON
    return [d for d in (deps(config) if callable(deps) else deps) if enabled(config, d)]


def model_stages_read(config: EncoreConfig, name: str) -> tuple[str, ...]:
    """The stages (``base``, ``train``) whose fitted model of generator instance ``name`` some
    component reads, in stage order; the generator writes ``model_<stage>.npz`` for these only.

    Readers: the ranker (every instance it depends on: the proposing and feature-only instances
    score its candidate pairs; the base fit always, the train fit when ``refit_generators``), the
    ``rerank`` component (``embeddings_from``'s item vectors, both stages) and ``register``
    (``ranker.fallback``'s train popularity; register runs on demand, so the fallback always
    keeps its models: a popularity vector, a few kB). Part of the instance's reuse key
    (:func:`encore.pipeline.reuse_keys.fingerprint`): adding an instance to a reader later
    names a new output folder, which is computed with its models, never one without them.
    """
    stages: set[str] = set()
    components = config.components
    if enabled(config, "ranker") and name in dependencies(config, "ranker"):
        stages |= {"base", "train"} if components.ranker.refit_generators else {"base"}
    if enabled(config, "rerank") and name == components.rerank.embeddings_from:
        stages |= {"base", "train"}
    if name == components.ranker.fallback:
        stages |= {"base", "train"}
    return tuple(stage for stage in ("base", "train") if stage in stages)


def parse_components(config: EncoreConfig, text: str) -> list[str]:
    """``"prepare,als"`` -> the names, each checked against :func:`run_order`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = run_order(config)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(all_components(config))}")
    return names
