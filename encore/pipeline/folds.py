"""Rolling-origin evaluation: the pipeline once per fold of ``split.folds``, then pooled.

Each fold is an ordinary one-split config (:func:`encore.evaluation.splits.fold_splits`): its own
cut points enter every fingerprint, so each fold has its own outputs, and the last fold's are
those of a one-fold run with the same cut points (shared, not recomputed). In MLflow the
pipeline's parent run holds one nested run per fold (``fold<k>``, tagged with its dates),
which holds that fold's component runs. When ``evaluate`` ran, the folds' per-user values are
pooled into ``outputs/<experiment>/folds-<fingerprint>/`` (:class:`FoldsOutput`) and the
parent run gets the ``pooled.*`` metrics and the headline keys. ``register`` and ``promote``
run in the last fold only: the most recent model is the one to serve.

This module says what the folds are and pools their outputs; running them inside MLflow runs
is :func:`encore.pipeline.execution.run_folds`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from pathlib import Path

from encore.config.experiment import EncoreConfig, TimeSplit
from encore.evaluation import fold_pooling as pooling
from encore.evaluation.splits import fold_splits
from encore.io import atomic_dir, write_json, write_parquet
from encore.outputs import EvaluateOutput, FoldsOutput
from encore.pipeline.reuse_keys import fingerprint, output_dir, tuned

log = logging.getLogger("encore")


def n_folds(config: EncoreConfig) -> int:
    """How many folds ``config`` evaluates on (1 without ``split.folds``)."""
    return config.split.folds if isinstance(config.split, TimeSplit) else 1


def fold_configs(config: EncoreConfig) -> list[EncoreConfig]:
    """One config per fold, oldest first (``[config]`` itself without folds)."""
    if n_folds(config) == 1:
        return [config]
    return [config.model_copy(update={"split": split}) for split in fold_splits(config.split)]


def tuned_fold_configs(config: EncoreConfig) -> list[EncoreConfig]:
    """:func:`fold_configs` with each fold's tuned settings (once ``tune`` ran in every fold)."""
    return [tuned(c) for c in fold_configs(config)]


def fold_tags(split: TimeSplit, fold: int, folds: int) -> dict[str, str]:
    """The MLflow tags of fold run ``fold`` of ``folds``: its position and its cut dates."""
    def day(value: datetime | float | None) -> str:
        return f"{value:%Y-%m-%d}" if isinstance(value, datetime) else "end of data"

    return {"encore.fold": f"{fold}/{folds}", "encore.fold.target_start": day(split.target_start),
            "encore.fold.test_start": day(split.test_start), "encore.fold.test_end": day(split.test_end)}


def folds_dir(config: EncoreConfig) -> tuple[str, Path]:
    """Fingerprint and folder of the pooled output: the folds' evaluate outputs and the
    bootstrap settings determine it."""
    parts = {"evaluate": [fingerprint(c, "evaluate") for c in tuned_fold_configs(config)],
             "evaluation": config.evaluation.model_dump(mode="json"), "seed": config.experiment.seed}
    fp = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    return fp, config.run_dir / f"folds-{fp}"


def pool_folds(config: EncoreConfig) -> tuple[pooling.PooledSummary, FoldsOutput]:
    """Pool the folds' evaluate outputs into the folds folder (atomically); what it found, and the folder."""
    per_fold = {fold: EvaluateOutput(output_dir(c, "evaluate")).per_user()
                for fold, c in enumerate(tuned_fold_configs(config), start=1)}
    pool = pooling.pool_per_user(per_fold)
    primary = config.evaluation.primary_metric
    summary = pooling.pooled_summary(pool, primary, n_resamples=config.evaluation.n_bootstrap,
                                     confidence=config.evaluation.confidence, seed=config.experiment.seed)
    table = pooling.fold_means(pool)
    fp, path = folds_dir(config)
    with atomic_dir(path, fp, component="folds") as tmp:
        out = FoldsOutput(tmp)
        write_parquet(pool, tmp / out.PER_USER)
        table.to_csv(tmp / out.TABLE, index=False)
        (tmp / out.TABLE_MD).write_text(pooling.markdown(table, summary))
        write_json(tmp / out.SUMMARY, summary.to_dict())
    log.info("pooled over %d folds:\n%s", len(per_fold), pooling.markdown(table, summary))
    return summary, FoldsOutput(path)
