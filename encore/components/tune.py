"""tune: choose each listed generator instance's settings on the ranker-target part, never on test.

For every instance in ``tuning.grid`` and every combination of its values (settings not in
the grid keep their configured values), the instance's model is fit on the base part — exactly what the
generator's own ``base`` stage sees — and its top-K lists of the ranker-target users are scored
against their target items: ``tuning.metric`` (default ``evaluation.primary_metric``) over the
users of ``tuning.segment`` (per instance: ``tuning.segments``); disabled instances are
skipped. The best combination of each instance (the first of equals, in grid order) is written
to ``chosen.json``; the runner then runs every later component with those settings
(:func:`encore.pipeline.reuse_keys.tuned`), so their fingerprints, MLflow params and outputs are
those of the chosen settings. Test items are
never read: the choice cannot depend on them (``tests/test_tuning.py`` changes them and checks).

With ``split.folds`` the component runs in every fold on that fold's own target part, so each
fold's settings are chosen on data before its test window.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from encore.candidates import fit_recommender, make_recommender, recommend_batches
from encore.config.experiment import ConfigError, EncoreConfig, grid_combinations
from encore.data.prepared import PreparedData
from encore.evaluation.evaluator import Evaluator
from encore.evaluation.metric_names import metric_key
from encore.io import write_json
from encore.outputs import TuneOutput
from encore.pipeline.component import Context, Result

NAME = "tune"
DEPENDS_ON: tuple[str, ...] = ("prepare",)
log = logging.getLogger(__name__)


def CONFIG_SECTIONS(config: EncoreConfig) -> tuple[str, ...]:
    """What the choice depends on: the grid and the settings of the instances it tunes."""
    return ("tuning", *(f"components.{name}" for name in config.tuning.grid))


def score_trial(config: EncoreConfig, prepared: PreparedData, evaluator: Evaluator, name: str,
                settings: dict[str, Any]) -> dict[str, float]:
    """Every metric at every k of instance ``name`` with ``settings``, fit on base and scored on
    the target users of its tuning segment."""
    section = config.components.generator(name)
    section = type(section).model_validate(section.model_dump() | settings)
    model = make_recommender(section, config.experiment.seed)
    fit_recommender(model, prepared, "base", name=name)
    users = evaluator.users
    k = max(evaluator.ks)
    lists = np.full((len(users), k), -1, dtype=np.int64)
    for start, stop, ids, _ in recommend_batches(model, prepared, "base", users, k, section.batch_size,
                                                 f"tune {name} {settings}"):
        lists[start:stop] = ids
    return evaluator.evaluate(lists, config.tuning.segment_of(name))


def markdown(trials: pd.DataFrame, metric: str) -> str:
    lines = [f"| instance | settings | segment | users | {metric} | chosen |", "|---|---|---|---|---|---|"]
    for row in trials.itertuples(index=False):
        lines.append(f"| {row.instance} | `{row.settings}` | {row.segment} | {row.n_users} | "
                     f"{getattr(row, metric.replace('@', '_at_')):.4f} | {'**yes**' if row.chosen else ''} |")
    return "\n".join(lines) + "\n"


def run(config: EncoreConfig, ctx: Context) -> Result:
    tuning = config.tuning
    if not tuning.grid:
        raise ConfigError("tune: tuning.grid is empty; list {instance: {setting: [values]}} to tune, or leave "
                          "tune out of --components")
    metric = tuning.metric or config.evaluation.primary_metric
    prepared = PreparedData(ctx.inputs["prepare"])
    evaluator = Evaluator(prepared, "base", tuple(config.evaluation.ks))
    rows: list[dict[str, Any]] = []
    chosen: dict[str, dict[str, Any]] = {}
    for name, grid in tuning.grid.items():
        if not config.components.generator(name).enabled:
            log.info("tune %s: disabled, not tuned", name)
            continue
        segment = tuning.segment_of(name)
        n_users = evaluator.segments[segment].n_users
        if n_users == 0:
            raise ConfigError(f"tuning.segments.{name}: the ranker-target part has no {segment} users to tune on")
        first = len(rows)
        for trial, settings in enumerate(grid_combinations(grid), start=1):
            started = time.perf_counter()
            scores = score_trial(config, prepared, evaluator, name, settings)
            rows.append({"instance": name, "trial": trial, "settings": json.dumps(settings, sort_keys=True),
                         "segment": segment, "n_users": n_users,
                         **{metric_key(key): value for key, value in scores.items()},
                         "seconds": time.perf_counter() - started, "chosen": False})
            log.info("tune %s %s: %s %.4f on %d %s target users", name, settings, metric, scores[metric],
                     n_users, segment)
        values = [row[metric_key(metric)] for row in rows[first:]]
        best = first + int(np.argmax(values))  # the first of equals
        rows[best]["chosen"] = True
        chosen[name] = json.loads(rows[best]["settings"])
        log.info("tune %s: chose %s (%s %.4f, best of %d trials)", name, chosen[name], metric,
                 values[best - first], len(values))
    trials = pd.DataFrame(rows)
    out = TuneOutput(ctx.output)
    trials.to_csv(out.path / out.TRIALS, index=False)
    write_json(out.path / out.CHOSEN, chosen)
    (out.path / out.TABLE_MD).write_text(markdown(trials, metric))
    column = metric_key(metric)
    best_rows = trials[trials["chosen"]]
    return Result(
        metrics={f"{row.instance}.target_{column}": float(getattr(row, column)) for row in best_rows.itertuples()}
        | {"trials": float(len(trials)), "seconds": float(trials["seconds"].sum())},
        params={f"{name}.{setting}": value for name, settings in chosen.items() for setting, value in settings.items()}
        | {"metric": metric},
        artifacts=[out.TRIALS, out.CHOSEN, out.TABLE_MD],
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m encore.components.tune``: run the tuning component."""
    from encore.pipeline.cli import component_main  # the CLI is no part of what this component computes

    return component_main(NAME, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
