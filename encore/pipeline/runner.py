"""How components are run: which exist, output folders, reuse, tracking and the shared CLI.

The components of an experiment are ``prepare``, ``tune`` (when ``tuning.grid`` lists
instances to tune), one per generator instance (``components.<name>``, all run by
:mod:`encore.components.generator`), ``ranker`` and ``evaluate``; ``register`` and ``promote``
run only when asked for. Components after ``tune`` run with the settings it chose
(:func:`tuned`). Each gets a fingerprinted
output folder under ``outputs/<experiment>/<component>-<fingerprint>/``; work whose output is
already complete for the same fingerprint is skipped; outputs are written atomically; a
nested MLflow run is logged either way (tagged ``encore.reused`` when nothing was recomputed).

Usually called through ``scripts/pipeline/run.sh``; ``python -m encore.pipeline.runner --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import logging
import logging.config
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from encore.config.experiment import REPO_ROOT, ConfigError, EncoreConfig, load_config, with_settings
from encore.data.dataset import DataError
from encore.io import (
    atomic_dir,
    completion_problem,
    path_lock,
    read_json,
    read_marker,
    remove_debris,
    write_json,
)
from encore.outputs import TuneOutput
from encore.pipeline.component import ComponentFailed, Context, Result
from encore.pipeline.lineage import code_digest, file_digests, git_commit, package_versions
from encore.recommenders import recommender_class
from encore.resources import measure_peak
from encore.tracking.client import TrackingServerUnreachable

log = logging.getLogger("encore")

FIRST: tuple[str, ...] = ("prepare",)
TUNE = "tune"
"""Chooses generator settings on the ranker-target part; what runs after it uses its choice."""
UNTUNED: tuple[str, ...] = (*FIRST, TUNE)
"""The components that run on the config as written; every later one runs on tune's choice."""
LAST: tuple[str, ...] = ("ranker", "evaluate")
ON_DEMAND: tuple[str, ...] = ("register", "promote")
"""Run only when named: every ``register`` makes a new model version."""
GENERATOR_MODULE = "encore.components.generator"
DEFAULT_EXPERIMENT = REPO_ROOT / "experiments" / "lastfm2k.yaml"

__all__ = ["ComponentFailed", "Context", "Result"]  # re-exported for components and tests


# --------------------------------------------------------------------------- which components
def generator_names(config: EncoreConfig) -> tuple[str, ...]:
    """Every generator instance of the config, in config order (enabled or not)."""
    return tuple(config.components.generators)


def pipeline_components(config: EncoreConfig) -> tuple[str, ...]:
    """The default run: prepare, tune (with a tuning grid), every generator instance, ranker, evaluate."""
    return (*FIRST, *((TUNE,) if config.tuning.grid else ()), *generator_names(config), *LAST)


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
    own = section(config, name)
    return own is None or bool(getattr(own, "enabled", True))


def dependencies(config: EncoreConfig, name: str) -> list[str]:
    deps = component_module(config, name).DEPENDS_ON
    return [d for d in (deps(config) if callable(deps) else deps) if enabled(config, d)]


# --------------------------------------------------------------------------- reuse keys
def code_digests(config: EncoreConfig, name: str) -> dict[str, str]:
    """The code an output depends on: the component's module (and the ``scripts.*`` modules it
    imports) and, for a generator instance, the module of its recommender class — a user's class
    outside ``scripts.*`` included, by the SHA-256 of its source (:func:`code_digest`)."""
    module = component_module(config, name)
    digests = {"component": code_digest(module.__name__)}
    if name in config.components.generators:
        cls = recommender_class(config.components.generators[name].kind)
        digests["recommender"] = code_digest(cls.__module__)
    digests |= {f"plugin:{module}": code_digest(module) for module in config.plugin_modules()}
    return digests


def fingerprint(config: EncoreConfig, name: str) -> str:
    """Hash of everything a component's output depends on: its settings, the code that computes it
    (:func:`code_digests`, the key packages' versions), the content of the files it reads, and the
    fingerprints of its upstream outputs."""
    module = component_module(config, name)
    own = section(config, name)
    sections = getattr(module, "CONFIG_SECTIONS", ())
    sections = sections(config) if callable(sections) else sections
    parts = {
        "component": name,
        "own": own.model_dump(mode="json") if own is not None else None,
        "config": config.fingerprint(*sections) if sections else None,
        "seed": config.experiment.seed,
        "evaluation": config.evaluation.model_dump(mode="json"),
        "code": code_digests(config, name),
        "packages": package_versions(),
        "data": input_digests(config, name),
        "upstream": {dep: fingerprint(config, dep) for dep in dependencies(config, name)},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def input_files(config: EncoreConfig, name: str) -> dict[str, Path]:
    """The files a component declares it reads (its module's ``input_files(config)``), by role."""
    declared = getattr(component_module(config, name), "input_files", None)
    return dict(declared(config)) if declared is not None else {}


def input_digests(config: EncoreConfig, name: str) -> dict[str, str]:
    """``{role: sha256}`` of :func:`input_files` (cached by size and modification time)."""
    files = input_files(config, name)
    return file_digests(files, config.output_dir / ".file-digests.json") if files else {}


def output_dir(config: EncoreConfig, name: str) -> Path:
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


# --------------------------------------------------------------------------- running
def run_component(config: EncoreConfig, name: str, *, force: bool = False) -> Result:
    """Run (or reuse) one component inside its own nested MLflow run.

    The output folder is locked while it is checked and computed, so a second run of the same
    experiment waits for the first and then reuses its output instead of computing it again.
    """
    import mlflow

    from encore.tracking import runs as tracking

    module = component_module(config, name)
    inputs = {dep: output_dir(config, dep) for dep in dependencies(config, name)}
    for dep, path in inputs.items():
        problem = completion_problem(path, fingerprint(config, dep))
        if problem is not None:
            raise ConfigError(
                f"component '{name}' needs the output of '{dep}' for this configuration ({path}: {problem}); "
                f"run it first, e.g. scripts/pipeline/run.sh --components {dep},{name}"
            )
    out = output_dir(config, name)
    fp = fingerprint(config, name)
    remove_debris(out.parent)
    waiting = f"{name}: waiting for another run that is computing {out}"
    own = section(config, name)
    with tracking.component_run(config, name) as run, path_lock(out, waiting=waiting):
        started = time.perf_counter()
        reused = not force and getattr(module, "REUSABLE", True) and _reusable(out, fp, name)
        peak: dict[str, int] = {}
        if reused:
            log.info("%s: reusing %s", name, out)
            result = Result(**read_json(out / "result.json"))
        else:
            log.info("%s: running, output %s", name, out)
            with atomic_dir(out, fp, component=name, git_commit=git_commit()) as tmp, measure_peak() as peak:
                result = module.run(config, Context(config=config, output=tmp, inputs=inputs, name=name))
                write_json(tmp / "result.json", result.__dict__)
        seconds = time.perf_counter() - started
        mlflow.set_tags({"encore.reused": str(reused).lower(), "encore.output_dir": str(out),
                         "encore.output_commit": str(read_marker(out).get("git_commit", "unknown"))}
                        | result.tags | data_hash_tags(config, [name]))
        tracking.log_params((own.model_dump(mode="json") if own is not None else {}) | result.params)
        tracking.log_metrics(result.metrics | {f"time_{'reuse' if reused else 'run'}_seconds": seconds}
                             | ({"peak_rss_mib": peak["bytes"] / 2**20} if "bytes" in peak else {}))
        for artifact in result.artifacts:
            mlflow.log_artifact(str(out / artifact))
        parent_id = run.data.tags.get("mlflow.parentRunId")
        files = input_files(config, name)
        if files:
            tracking.log_data_inputs([run.info.run_id, parent_id], files, input_digests(config, name))
        if parent_id and result.parent_metrics:
            client = mlflow.MlflowClient()
            tracking.log_batch(client, parent_id, metrics=result.parent_metrics)
            for artifact in result.artifacts:
                client.log_artifact(parent_id, str(out / artifact), artifact_path="evaluation")
        result.tags["encore.run_id"] = run.info.run_id
    log.info("%s: done in %.1f s%s", name, seconds, " (reused)" if reused else "")
    return result


def _reusable(out: Path, fp: str, name: str) -> bool:
    """A complete, intact output whose result can be read; anything else is recomputed (and said)."""
    problem = completion_problem(out, fp)
    if problem is None:
        try:
            Result(**read_json(out / "result.json"))
            return True
        except (OSError, ValueError, TypeError) as exc:
            problem = f"result.json is unreadable ({exc})"
    if out.exists():
        log.warning("%s: not reusing %s: %s; recomputing", name, out, problem)
    return False


def data_hash_tags(config: EncoreConfig, names: Sequence[str]) -> dict[str, str]:
    """``encore.data_sha256.<role>`` tags: the content of the files these components read."""
    tags: dict[str, str] = {}
    for name in names:
        tags |= {f"encore.data_sha256.{role}": digest for role, digest in input_digests(config, name).items()}
    return tags


def run_pipeline(config: EncoreConfig, components: Sequence[str] | None = None, *, force: Sequence[str] = (),
                 note: str | None = None) -> dict[str, Result]:
    """Run components in pipeline order (default: :func:`pipeline_components`) under one parent
    MLflow run (named with ``note``). With ``split.folds`` > 1 every fold runs them under a
    nested fold run and the folds are pooled (:mod:`encore.pipeline.folds`); the results
    returned are the last fold's."""
    from encore.pipeline import folds
    from encore.tracking import runs as tracking

    components = pipeline_components(config) if components is None else components
    for name in components:
        component_module(config, name)  # unknown names fail before any work
    wanted = [c for c in run_order(config) if c in components]
    skipped = [c for c in wanted if not enabled(config, c)]
    if skipped:
        log.info("disabled in the config, not run: %s", ", ".join(skipped))
    to_run = [c for c in wanted if enabled(config, c)]
    for name in to_run:
        dependencies(config, name)  # a component that cannot run with this config fails before any work
    remove_debris(config.run_dir)
    with tracking.pipeline_run(config, note=note) as parent:
        if folds.n_folds(config) > 1:
            return folds.run_folds(config, to_run, force=force, parent_id=parent.info.run_id)
        return run_components(config, to_run, force=force, parent_id=parent.info.run_id)


def run_components(config: EncoreConfig, to_run: Sequence[str], *, force: Sequence[str] = (),
                   parent_id: str) -> dict[str, Result]:
    """Run ``to_run`` in order inside the active MLflow run; the data hashes of what ran (or
    failed) are tagged on run ``parent_id``."""
    import mlflow

    from encore.tracking import runs as tracking

    results: dict[str, Result] = {}
    for name in to_run:
        try:
            if name not in UNTUNED:
                config = tuned(config)
            results[name] = run_component(config, name, force=name in force)
        except Exception as exc:
            with contextlib.suppress(Exception):  # the store may be what failed; keep the real error
                tracking.log_batch(mlflow.MlflowClient(), parent_id, tags=data_hash_tags(config, list(results)))
            raise ComponentFailed(name, exc) from exc
    tracking.log_batch(mlflow.MlflowClient(), parent_id, tags=data_hash_tags(config, to_run))
    return results


# --------------------------------------------------------------------------- CLI
def setup_logging() -> None:
    path = REPO_ROOT / "config" / "logger_config.yaml"
    logging.config.dictConfig(yaml.safe_load(path.read_text()))


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--experiment", "-e", type=Path, default=DEFAULT_EXPERIMENT,
                        help="experiment file overriding config/components.yaml (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set components.als.factors=128 (repeatable)")
    return parser


def cli_main(body: Callable[[argparse.Namespace, EncoreConfig], None], parser: argparse.ArgumentParser,
             argv: Sequence[str] | None = None) -> int:
    """Parse, load the config, run ``body``; known failures become one clear line and exit 2."""
    args = parser.parse_args(argv)
    setup_logging()
    config: EncoreConfig | None = None
    try:
        config = load_config(args.experiment, args.overrides)
        body(args, config)
    except (ConfigError, DataError, TrackingServerUnreachable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from encore.tracking.runs import service_failure, tracking_uri

        component = exc.component if isinstance(exc, ComponentFailed) else None
        cause = exc.__cause__ if component and exc.__cause__ is not None else exc
        if isinstance(cause, ConfigError | DataError | TrackingServerUnreachable):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        failure = service_failure(cause, tracking_uri(config)) if config is not None else None
        if failure is not None:
            where = f"component '{component}' stopped: " if component else ""
            print(f"error: {where}{failure}", file=sys.stderr)
            return 2
        if component is None:
            raise
        log.exception("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def component_main(name: str | None, argv: Sequence[str] | None = None, *, description: str = "") -> int:
    """CLI of one component: ``python -m encore.components.<name>``, or, with ``name`` None, of
    a generator instance named on the command line (``python -m encore.components.generator als``)."""
    parser = base_parser(description.strip().splitlines()[0] if description.strip() else f"run {name}")
    if name is None:
        parser.add_argument("instance", help="generator instance: a key of `components` in the config")
    parser.add_argument("--force", action="store_true", help="recompute even if a complete output exists")

    def body(args: argparse.Namespace, config: EncoreConfig) -> None:
        target = name or args.instance
        if name is None and target not in config.components.generators:
            raise ConfigError(f"components.{target}: no such generator instance; known: "
                              f"{', '.join(generator_names(config))}")
        from encore.pipeline.folds import fold_configs

        for fold_config in fold_configs(config):  # one config unless split.folds > 1
            try:
                run_component(fold_config if target in UNTUNED else tuned(fold_config), target,
                              force=args.force)
            except Exception as exc:
                raise ComponentFailed(target, exc) from exc

    return cli_main(body, parser, argv)


def parse_components(config: EncoreConfig, text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = run_order(config)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(all_components(config))}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser("Run a chosen subset of Encore's components in order under one MLflow parent run.")
    parser.add_argument("--components", "-c", default="",
                        help="comma-separated components to run, in pipeline order (default: prepare, every "
                             "generator instance of the config, ranker, evaluate)")
    parser.add_argument("--force", default="",
                        help="comma-separated components to recompute even when a complete output exists")
    parser.add_argument("--note", default=None,
                        help="a few words naming this run in the MLflow UI (appended to the run name)")

    def body(args: argparse.Namespace, config: EncoreConfig) -> None:
        chosen = parse_components(config, args.components) if args.components else None
        results = run_pipeline(config, chosen, force=parse_components(config, args.force) if args.force else (),
                               note=args.note)
        for name, result in results.items():
            headline = {k: round(v, 4) for k, v in result.metrics.items() if k in {"ndcg@10", "recall@10"}}
            log.info("%-10s %s", name, headline or "")

    return cli_main(body, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
