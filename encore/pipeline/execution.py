"""Running components: each in its own nested MLflow run, reusing complete outputs.

Each component gets a fingerprinted output folder (:mod:`encore.pipeline.reuse_keys`); work
whose output is already complete for the same fingerprint is skipped; outputs are written
atomically; a nested MLflow run is logged either way (tagged ``encore.reused`` when nothing
was recomputed). With ``split.folds`` > 1 the components run once per fold
(:mod:`encore.pipeline.folds`) under a nested fold run each, and the folds are pooled.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from collections.abc import Sequence
from pathlib import Path

from encore.config.experiment import ConfigError, EncoreConfig, TimeSplit
from encore.io import atomic_dir, completion_problem, path_lock, read_json, read_marker, remove_debris, write_json
from encore.lineage import git_commit
from encore.pipeline.catalogue import (
    ON_DEMAND,
    UNTUNED,
    component_module,
    dependencies,
    enabled,
    generator_names,
    pipeline_components,
    run_order,
    section,
)
from encore.pipeline.clean import one_run, record_use
from encore.pipeline.component import ComponentFailed, Context, Result
from encore.pipeline.folds import fold_configs, fold_tags, folds_dir, n_folds, pool_folds
from encore.pipeline.reuse_keys import fingerprint, input_digests, input_files, output_dir, tuned
from encore.resources import measure_peak
from encore.tracking import runs as tracking

log = logging.getLogger("encore")


def run_component(config: EncoreConfig, name: str, *, force: bool = False) -> Result:
    """Run (or reuse) one component inside its own nested MLflow run.

    The output folder is locked while it is checked and computed, so a second run of the same
    experiment waits for the first and then reuses its output instead of computing it again.
    """
    import mlflow

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
    record_use([*inputs.values(), out])  # before the lock: `clean` never takes what a run is about to use
    waiting = f"{name}: waiting for another run that is computing {out}"
    own = section(config, name)
    color = tracking.run_color(run_order(config).index(name))
    with tracking.component_run(config, name, color=color) as run, path_lock(out, waiting=waiting):
        started, cpu_started = time.perf_counter(), cpu_seconds()
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
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
        mlflow.set_tags({"encore.reused": str(reused).lower(), "encore.output_dir": str(out),
                         "encore.output_commit": str(read_marker(out).get("git_commit", "unknown"))}
                        | result.tags | data_hash_tags(config, [name]))
        tracking.log_params((own.model_dump(mode="json") if own is not None else {}) | result.params)
        # CPU seconds (user + sys, every thread) beside the wall time: on a shared machine the
        # wall time grows with the load, the CPU time much less.
        tracking.log_metrics(result.metrics | {f"time_{'reuse' if reused else 'run'}_seconds": seconds,
                                               f"cpu_{'reuse' if reused else 'run'}_seconds": cpu}
                             | ({"peak_rss_mib": peak["bytes"] / 2**20} if "bytes" in peak else {}))
        for artifact in result.artifacts:
            mlflow.log_artifact(str(out / artifact))
        parent_id = run.data.tags.get("mlflow.parentRunId")
        files = input_files(config, name)
        if files:
            tracking.log_data_inputs([run.info.run_id, parent_id], files, input_digests(config, name))
        if parent_id and result.parent_metrics:
            client = mlflow.MlflowClient()
            tracking.log_batch(client, parent_id, metrics=result.parent_metrics, tags=result.parent_tags)
            for artifact in result.artifacts:
                client.log_artifact(parent_id, str(out / artifact), artifact_path="evaluation")
        result.tags["encore.run_id"] = run.info.run_id
        result.tags["encore.reused"] = str(reused).lower()
    log.info("%s: done in %.1f s%s", name, seconds, " (reused)" if reused else "")
    return result


def cpu_seconds() -> float:
    """User + system CPU seconds this process has used so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    returned are the last fold's. A run that recomputed nothing is named so (``(all reused)``)."""
    import mlflow

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
    with one_run(), tracking.pipeline_run(config, note=note) as parent:
        reused: list[bool] = []
        if n_folds(config) > 1:
            results = run_folds(config, to_run, force=force, parent_id=parent.info.run_id, reused=reused)
        else:
            results = run_components(config, to_run, force=force, parent_id=parent.info.run_id, reused=reused)
        if reused and all(reused):  # a re-run that recomputed nothing says so in the runs table
            tracking.mark_all_reused(mlflow.MlflowClient(), parent.info.run_id)
        return results


def run_components(config: EncoreConfig, to_run: Sequence[str], *, force: Sequence[str] = (),
                   parent_id: str, reused: list[bool] | None = None) -> dict[str, Result]:
    """Run ``to_run`` in order inside the active MLflow run; the data hashes of what ran (or
    failed) are tagged on run ``parent_id``; whether each component reused its output is
    appended to ``reused``."""
    import mlflow

    results: dict[str, Result] = {}
    side_data_checked = False
    for name in to_run:
        if name != "prepare" and not side_data_checked:
            _check_side_data(config, to_run)
            side_data_checked = True
        try:
            if name not in UNTUNED:
                config = tuned(config)
            results[name] = run_component(config, name, force=name in force)
            if reused is not None:
                reused.append(results[name].tags.get("encore.reused") == "true")
        except Exception as exc:
            with contextlib.suppress(Exception):  # the store may be what failed; keep the real error
                tracking.log_batch(mlflow.MlflowClient(), parent_id, tags=data_hash_tags(config, list(results)))
            raise ComponentFailed(name, exc) from exc
    tracking.log_batch(mlflow.MlflowClient(), parent_id, tags=data_hash_tags(config, to_run))
    return results


def _check_side_data(config: EncoreConfig, to_run: Sequence[str]) -> None:
    """Before the first component after ``prepare``: every generator (and tuned instance) about to
    fit has the side data its kind needs (:func:`encore.candidates.side_data_error`); the first
    that has not fails as that instance's component would."""
    from encore.candidates import side_data_error
    from encore.data.prepared import PreparedData

    generators = set(generator_names(config))
    tuned_names = list(config.tuning.grid) if "tune" in to_run else []
    names = [n for n in dict.fromkeys([*to_run, *tuned_names]) if n in generators and enabled(config, n)]
    prepared = output_dir(config, "prepare")
    if names and completion_problem(prepared, fingerprint(config, "prepare")) is None:
        failed = side_data_error(config, PreparedData(prepared), names)
        if failed is not None:
            raise ComponentFailed(*failed)


def run_folds(config: EncoreConfig, to_run: Sequence[str], *, force: Sequence[str] = (),
              parent_id: str, reused: list[bool] | None = None) -> dict[str, Result]:
    """Every fold's components in a nested fold run; then the pooled evaluation."""
    import mlflow

    configs = fold_configs(config)
    folds = len(configs)
    results: dict[str, Result] = {}
    for fold, fold_config in enumerate(configs, start=1):
        names = [n for n in to_run if fold == folds or n not in ON_DEMAND]
        split = fold_config.split
        assert isinstance(split, TimeSplit)
        log.info("fold %d of %d: target from %s, test from %s", fold, folds, f"{split.target_start:%Y-%m-%d}",
                 f"{split.test_start:%Y-%m-%d}")
        # Process tags as on the parent and component runs: a fold run whose process was killed is
        # marked KILLED by the next run (tracking.mark_stale_runs), not left RUNNING forever.
        tags = (tracking.run_tags(fold_config) | tracking.process_tags() | fold_tags(split, fold, folds)
                | {"mlflow.parentRunId": parent_id, tracking.RUN_COLOR_TAG: tracking.run_color(fold - 1)})
        with tracking.active_run(mlflow.start_run(run_name=f"fold{fold}", nested=True, tags=tags)) as run:
            try:
                results = run_components(fold_config, names, force=force, parent_id=run.info.run_id,
                                         reused=reused)
            except ComponentFailed as exc:
                cause = exc.__cause__ or exc
                raise ComponentFailed(exc.component, cause, where=f"split.folds, fold {fold} of {folds}: ") from cause
    # Every fold reads the same files: the parent carries their hashes as a one-fold run's does.
    tracking.log_batch(mlflow.MlflowClient(), parent_id, tags=data_hash_tags(configs[-1], to_run))
    if "evaluate" in to_run:
        record_use([folds_dir(config)[1]])
        summary, out = pool_folds(config)
        tracking.log_batch(mlflow.MlflowClient(), parent_id, metrics=summary.parent_metrics(),
                           tags=summary.parent_tags())
        for artifact in (out.TABLE, out.TABLE_MD, out.SUMMARY):
            mlflow.MlflowClient().log_artifact(parent_id, str(out.path / artifact), artifact_path="folds")
    return results
