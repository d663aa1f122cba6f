"""How components are run: output folders, reuse, tracking and the shared CLI.

A component is a module in ``scripts/components/`` exposing ``NAME``, ``DEPENDS_ON`` and a
pure function ``run(config, ctx) -> Result``. This module gives each one a fingerprinted
output folder under ``outputs/<experiment>/<component>-<fingerprint>/``, skips work whose
output is already complete for the same fingerprint, writes atomically, and logs a nested
MLflow run either way (tagged ``encore.reused`` when nothing was recomputed).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scripts.core.config import REPO_ROOT, ConfigError, EncoreConfig, load_config
from scripts.core.data.types import DataError
from scripts.core.io import (
    atomic_dir,
    completion_problem,
    path_lock,
    read_json,
    read_marker,
    remove_debris,
    write_json,
)
from scripts.core.lineage import code_digest, file_digests, git_commit, package_versions
from scripts.core.server import TrackingServerUnreachable

log = logging.getLogger("encore")

PIPELINE: tuple[str, ...] = (
    "prepare", "popular", "als", "bpr", "item2item", "itemknn", "ease", "friends", "ranker", "evaluate",
)
"""Default order; ``register`` and ``promote`` run only when asked for."""
GENERATORS: tuple[str, ...] = ("popular", "als", "bpr", "item2item", "itemknn", "ease", "friends")
ALL_COMPONENTS: tuple[str, ...] = (*PIPELINE, "register", "promote")
DEFAULT_EXPERIMENT = REPO_ROOT / "experiments" / "lastfm2k.yaml"


@dataclass
class Result:
    """What a component reports: metrics to log and files (in its output folder) to attach."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    parent_metrics: dict[str, float] = field(default_factory=dict)
    """Logged on the pipeline's parent run too (the headline numbers compared in the UI)."""


@dataclass
class Context:
    """Where a component writes, and where its upstream components wrote."""

    config: EncoreConfig
    output: Path
    inputs: dict[str, Path]


def component_module(name: str) -> Any:
    if name not in ALL_COMPONENTS:
        raise ConfigError(f"unknown component '{name}'; known: {', '.join(ALL_COMPONENTS)}")
    return importlib.import_module(f"scripts.components.{name}")


def enabled(config: EncoreConfig, name: str) -> bool:
    section = getattr(config.components, name, None)
    return section is None or bool(getattr(section, "enabled", True))


def dependencies(config: EncoreConfig, name: str) -> list[str]:
    deps = component_module(name).DEPENDS_ON
    return [d for d in (deps(config) if callable(deps) else deps) if enabled(config, d)]


def fingerprint(config: EncoreConfig, name: str) -> str:
    """Hash of everything a component's output depends on: its settings, the code that computes it
    (its module and the ``scripts.*`` modules it imports, the key packages' versions), the content
    of the files it reads, and the fingerprints of its upstream outputs."""
    module = component_module(name)
    own = getattr(config.components, name, None)
    sections = getattr(module, "CONFIG_SECTIONS", ())
    parts = {
        "component": name,
        "own": own.model_dump(mode="json") if own is not None else None,
        "config": config.fingerprint(*sections) if sections else None,
        "seed": config.experiment.seed,
        "evaluation": config.evaluation.model_dump(mode="json"),
        "code": code_digest(module.__name__),
        "packages": package_versions(),
        "data": input_digests(config, name),
        "upstream": {dep: fingerprint(config, dep) for dep in dependencies(config, name)},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def input_files(config: EncoreConfig, name: str) -> dict[str, Path]:
    """The files a component declares it reads (its module's ``input_files(config)``), by role."""
    declared = getattr(component_module(name), "input_files", None)
    return dict(declared(config)) if declared is not None else {}


def input_digests(config: EncoreConfig, name: str) -> dict[str, str]:
    """``{role: sha256}`` of :func:`input_files` (cached by size and modification time)."""
    files = input_files(config, name)
    return file_digests(files, config.output_dir / ".file-digests.json") if files else {}


def output_dir(config: EncoreConfig, name: str) -> Path:
    return config.run_dir / f"{name}-{fingerprint(config, name)}"


def run_component(config: EncoreConfig, name: str, *, force: bool = False) -> Result:
    """Run (or reuse) one component inside its own nested MLflow run.

    The output folder is locked while it is checked and computed, so a second run of the same
    experiment waits for the first and then reuses its output instead of computing it again.
    """
    import mlflow

    from scripts.core import tracking

    module = component_module(name)
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
    with tracking.component_run(config, name) as run, path_lock(out, waiting=waiting):
        started = time.perf_counter()
        reused = not force and getattr(module, "REUSABLE", True) and _reusable(out, fp, name)
        if reused:
            log.info("%s: reusing %s", name, out)
            result = Result(**read_json(out / "result.json"))
        else:
            log.info("%s: running, output %s", name, out)
            with atomic_dir(out, fp, component=name, git_commit=git_commit()) as tmp:
                result = module.run(config, Context(config=config, output=tmp, inputs=inputs))
                write_json(tmp / "result.json", result.__dict__)
        seconds = time.perf_counter() - started
        mlflow.set_tags({"encore.reused": str(reused).lower(), "encore.output_dir": str(out),
                         "encore.output_commit": str(read_marker(out).get("git_commit", "unknown"))}
                        | result.tags | data_hash_tags(config, [name]))
        own = getattr(config.components, name, None)
        tracking.log_params((own.model_dump(mode="json") if own is not None else {}) | result.params)
        tracking.log_metrics(result.metrics | {f"time_{'reuse' if reused else 'run'}_seconds": seconds})
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


def run_pipeline(config: EncoreConfig, components: Sequence[str], *, force: Sequence[str] = (),
                 note: str | None = None) -> dict[str, Result]:
    """Run components in pipeline order under one parent MLflow run (named with ``note``)."""
    from scripts.core import tracking

    wanted = [c for c in ALL_COMPONENTS if c in components]
    for name in components:
        component_module(name)  # unknown names fail before any work
    skipped = [c for c in wanted if not enabled(config, c)]
    if skipped:
        log.info("disabled in the config, not run: %s", ", ".join(skipped))
    to_run = [c for c in wanted if enabled(config, c)]
    for name in to_run:
        dependencies(config, name)  # a component that cannot run with this config fails before any work
    remove_debris(config.run_dir)
    results: dict[str, Result] = {}
    import mlflow

    with tracking.pipeline_run(config, note=note) as parent:
        for name in to_run:
            try:
                results[name] = run_component(config, name, force=name in force)
            except Exception as exc:
                with contextlib.suppress(Exception):  # the store may be what failed; keep the real error
                    tracking.log_batch(mlflow.MlflowClient(), parent.info.run_id,
                                       tags=data_hash_tags(config, list(results)))
                raise ComponentFailed(name, exc) from exc
        tracking.log_batch(mlflow.MlflowClient(), parent.info.run_id, tags=data_hash_tags(config, wanted))
    return results


class ComponentFailed(RuntimeError):
    def __init__(self, component: str, cause: BaseException):
        super().__init__(f"component '{component}' failed: {cause}")
        self.component = component


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
        from scripts.core.tracking import service_failure, tracking_uri

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


def component_main(name: str, argv: Sequence[str] | None = None) -> int:
    """CLI of one component: ``python -m scripts.components.<name>``."""
    module = component_module(name)
    parser = base_parser((module.__doc__ or name).strip().splitlines()[0])
    parser.add_argument("--force", action="store_true", help="recompute even if a complete output exists")

    def body(args: argparse.Namespace, config: EncoreConfig) -> None:
        try:
            run_component(config, name, force=args.force)
        except Exception as exc:
            raise ComponentFailed(name, exc) from exc

    return cli_main(body, parser, argv)
