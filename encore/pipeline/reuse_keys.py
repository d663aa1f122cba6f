"""Reuse keys: the fingerprint of a component's output and the folder it names.

A component's output lives in ``outputs/<experiment>/<component>-<fingerprint>/``; the
fingerprint hashes everything the output depends on: its settings, the code that computes it
(:mod:`encore.lineage`: the component's module and what it imports that computes, and
for a generator instance its kind's module, a user's plug-in included), the key packages'
versions, the content of the files it reads and its upstream outputs' fingerprints.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from encore.config.experiment import ConfigError, EncoreConfig, with_settings
from encore.io import completion_problem
from encore.lineage import code_digest, file_digests, package_versions
from encore.outputs import TuneOutput
from encore.pipeline.catalogue import TUNE, component_module, dependencies, model_stages_read, section
from encore.recommenders import recommender_class


def code_digests(config: EncoreConfig, name: str) -> dict[str, str]:
    """The code an output depends on: the component's module (and the modules it imports that
    compute) and, for a generator instance, the module of its recommender class — a user's class
    outside ``encore`` included (:func:`encore.lineage.code_digest`). ``tune`` fits the
    instances of its grid, so their classes' modules are in its key too (kinds are imported by
    name, which no import walk can see)."""
    module = component_module(config, name)
    digests = {"component": code_digest(module.__name__)}
    generators = config.components.generators
    if name in generators:
        digests["recommender"] = code_digest(recommender_class(generators[name].kind).__module__)
    if name == TUNE:
        digests |= {f"recommender.{instance}": code_digest(recommender_class(generators[instance].kind).__module__)
                    for instance in config.tuning.grid if instance in generators}
    # A user's data source, feature groups and metrics: named by config, found by no import walk.
    digests |= {f"plugin:{module}": code_digest(module) for module in config.plugin_modules()}
    return digests


def fingerprint(config: EncoreConfig, name: str) -> str:
    """Hash of everything a component's output depends on: its settings, the code that computes it
    (:func:`code_digests`, the key packages' versions), the content of the files it reads, the
    fingerprints of its upstream outputs and, for a generator instance, the stages whose models
    it writes (:func:`encore.pipeline.catalogue.model_stages_read`)."""
    module = component_module(config, name)
    own = section(config, name)
    sections = getattr(module, "CONFIG_SECTIONS", ())
    sections = sections(config) if callable(sections) else sections
    parts = {
        "component": name,
        "own": own_settings(own),
        "config": config.fingerprint(*sections) if sections else None,
        "seed": config.experiment.seed,
        # Every component's metrics follow the evaluation settings; where evaluate runs (its engine)
        # is evaluate's alone, so switching it recomputes evaluate and nothing upstream.
        "evaluation": config.evaluation.model_dump(mode="json", exclude=None if name == "evaluate" else {"engine"}),
        "code": code_digests(config, name),
        "packages": package_versions(),
        "data": input_digests(config, name),
        "upstream": {dep: fingerprint(config, dep) for dep in dependencies(config, name)},
    }
    if name in config.components.generators:
        # Which fitted models the instance writes (what downstream reads): a folder without
        # them is never reused for a config whose ranker or rerank reads them.
        parts["models"] = list(model_stages_read(config, name))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def own_settings(own: Any) -> dict | None:
    """A component's own section as its reuse key holds it: a generator instance's computing
    settings (:meth:`~encore.recommenders.generator_config.GeneratorConfig.computing_settings`),
    any other section whole."""
    if own is None:
        return None
    computing = getattr(own, "computing_settings", None)
    return computing() if computing is not None else own.model_dump(mode="json")


def input_files(config: EncoreConfig, name: str) -> dict[str, Path]:
    """The files a component declares it reads (its module's ``input_files(config)``), by role."""
    declared = getattr(component_module(config, name), "input_files", None)
    return dict(declared(config)) if declared is not None else {}


def input_digests(config: EncoreConfig, name: str) -> dict[str, str]:
    """``{role: sha256}`` of :func:`input_files` (cached by size and modification time)."""
    files = input_files(config, name)
    return file_digests(files, config.output_dir / ".file-digests.json") if files else {}


def output_dir(config: EncoreConfig, name: str) -> Path:
    """The folder of component ``name``'s output for this config: ``<run_dir>/<name>-<fingerprint>``."""
    return config.run_dir / f"{name}-{fingerprint(config, name)}"


def tuned(config: EncoreConfig) -> EncoreConfig:
    """``config`` with the generator settings ``tune`` chose (and no grid left), which every
    component after ``tune`` runs with; ``config`` itself when it has no tuning grid."""
    if not config.tuning.grid:
        return config
    out = output_dir(config, TUNE)
    problem = completion_problem(out, fingerprint(config, TUNE))
    if problem is not None:
        raise ConfigError(f"tuning.grid is set, but '{TUNE}' has no output for this configuration ({out}: "
                          f"{problem}); run it first, e.g. scripts/pipeline/run.sh --components prepare,{TUNE}")
    return with_settings(config, TuneOutput(out).chosen())
