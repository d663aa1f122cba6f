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
never read: the choice cannot depend on them (``tests/components/test_tune.py`` changes them and checks).

With ``split.folds`` the component runs in every fold on that fold's own target part, so each
fold's settings are chosen on data before its test window.

With ``tuning.search: optuna`` the ``grid`` is a search space instead (a list: choices; ``{low,
high, log}``: a range) and an Optuna study, seeded with ``experiment.seed``, runs up to
``tuning.trials`` trials per instance within ``tuning.timeout_seconds``. A neural kind reports its
target score after every epoch (it stops early on it, keeping its best epoch): a trial below the
median of earlier trials at the same epoch is pruned (``tuning.pruning``). Pruned trials are in
``trials.csv`` (``state``) without scores and are never chosen. ``tuning.searches`` sets the search
per instance (``{sasrec: optuna}``: the other instances by grid).

The search is set for small budgets. Its start-up trials are ``max(2, trials // 5)`` (TPE's
default 10 would spend a 15-point grid's half budget before modelling) and space-filling, not
random: the first points of a scrambled Sobol sequence seeded with ``experiment.seed``, so each
setting's axis is covered in equal strata (random draws often fall together). A space of lists
(at most ``LISTED_POINTS`` points) is then searched without replacement over its points: with
``tuning.sampler: auto`` (the default) the next trial is the untried point of highest expected
improvement under a Gaussian process fitted to the scores (:func:`expected_improvement`: TPE's
density ratio, on a few points, favours the ends of an axis over the best point's neighbours);
with ``tpe``, TPE proposes, and a proposal already tried is not scored again (a duplicate score
would weigh twice in TPE's model) but moved to the nearest untried point. The search ends once
every point is tried. A space with a range is searched by TPE (``multivariate``; a list of numbers
in increasing or decreasing order by its position, an integer, so TPE sees that neighbouring
values score alike); an integer value it proposes again is answered from its scored trial without
refitting, logged (a nested run, state ``repeat``) and not counted in ``tuning.trials``, which
counts fits (and the search ends after ``10 × trials`` proposals at most).

Each trial is a nested MLflow run under the tune run (its settings as params, its target scores,
per-epoch scores as steps). The choice is also written as an experiment-file fragment
(``chosen.yaml``) to paste into an experiment and skip the search next time.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import yaml

from encore.candidates import fit_recommender, make_recommender, target_lists, target_scorer
from encore.config.experiment import ConfigError, EncoreConfig, SearchRange, grid_combinations
from encore.data.prepared import PreparedData
from encore.evaluation.evaluator import Evaluator
from encore.evaluation.metric_names import metric_key
from encore.io import write_json
from encore.outputs import TuneOutput
from encore.pipeline.component import Context, Result

NAME = "tune"
DEPENDS_ON: tuple[str, ...] = ("prepare",)
OPTUNA_PIN = "optuna==5.0.0"
log = logging.getLogger(__name__)

EpochReport = Callable[[int, float], None]


def CONFIG_SECTIONS(config: EncoreConfig) -> tuple[str, ...]:
    """What the choice depends on: the grid and the settings of the instances it tunes."""
    return ("tuning", *(f"components.{name}" for name in config.tuning.grid))


def score_trial(config: EncoreConfig, prepared: PreparedData, evaluator: Evaluator, name: str,
                settings: dict[str, Any], on_epoch: EpochReport | None = None) -> tuple[dict[str, float], list[float]]:
    """Every metric at every k of instance ``name`` with ``settings``, fit on base and scored on
    the target users of its tuning segment; and, for a kind trained in epochs, each epoch's target
    score (it stops early on them and keeps its best epoch; ``on_epoch`` sees each as it comes)."""
    section = config.components.generator(name)
    section = type(section).model_validate(section.model_dump() | settings)
    model = make_recommender(section, config.experiment.seed)
    segment = config.tuning.segment_of(name)
    label = f"tune {name} {settings}"
    if hasattr(model, "epoch_scorer"):
        model.epoch_scorer = target_scorer(prepared, evaluator, config.tuning.metric or
                                           config.evaluation.primary_metric, segment, section.batch_size, label,
                                           on_epoch)
    fit_recommender(model, prepared, "base", name=name)
    lists = target_lists(model, prepared, evaluator.users, max(evaluator.ks), section.batch_size, label)
    return evaluator.evaluate(lists, segment), list(getattr(model, "epoch_scores_", []))


@contextmanager
def trial_run(name: str, number: int, settings: dict[str, Any]) -> Iterator[Callable[[dict[str, float]], None]]:
    """A nested MLflow run under the tune run for one trial (its settings as params); yields a
    function logging metrics to it. Outside a tracked run (``run`` called directly) nothing is logged."""
    import mlflow

    if mlflow.active_run() is None:
        yield lambda metrics: None
        return
    tags = {"encore.tune.instance": name, "encore.tune.trial": str(number)}  # not a component run
    with mlflow.start_run(run_name=f"{name} trial {number}", nested=True, tags=tags):
        mlflow.log_params({key: json.dumps(value) if isinstance(value, list | dict) else value
                           for key, value in settings.items()})
        yield lambda metrics: mlflow.log_metrics({metric_key(key): value for key, value in metrics.items()})


_ROW_KEYS = frozenset({"instance", "trial", "settings", "segment", "n_users", "best_epoch", "state", "seconds",
                       "chosen"})
"""The columns of a ``trials.csv`` row that are not target scores."""


class TrialBook:
    """What a search reads of its trials: the rows so far and the score of each completed setting.
    :class:`Trials` fits a model per trial; :class:`ScoredTrials` looks the score up."""

    name: str

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.scored: dict[str, float] = {}
        """Target score of each completed setting (``json.dumps(settings, sort_keys=True)``)."""

    @property
    def tried(self) -> set[str]:
        """Settings (``json.dumps(settings, sort_keys=True)``) of every trial, scored or pruned."""
        return {row["settings"] for row in self.rows}

    @property
    def fits(self) -> int:
        """Trials that fitted a model (complete or pruned; not repeats)."""
        return sum(row["state"] != "repeat" for row in self.rows)


class ScoredTrials(TrialBook):
    """Trials whose score is a function of the settings: the same search without fits, to
    simulate it on known score surfaces (``benchmarks/optuna_vs_grid.py --synthetic``, the tests)."""

    def __init__(self, score: Callable[[dict[str, Any]], float], name: str = "scored"):
        super().__init__()
        self.name, self.score = name, score

    def repeat(self, settings: dict[str, Any]) -> float | None:
        key = json.dumps(settings, sort_keys=True)
        if key not in self.scored:
            return None
        self.rows.append({"settings": key, "state": "repeat", "score": self.scored[key]})
        return self.scored[key]

    def run(self, settings: dict[str, Any], on_epoch: EpochReport | None = None) -> float:
        key = json.dumps(settings, sort_keys=True)
        self.scored[key] = self.score(settings)
        self.rows.append({"settings": key, "state": "complete", "score": self.scored[key]})
        return self.scored[key]

    def fitted(self) -> list[dict[str, Any]]:
        """The settings scored, in order."""
        return [json.loads(row["settings"]) for row in self.rows if row["state"] == "complete"]


class Trials(TrialBook):
    """The trials of one instance as rows of ``trials.csv``, each logged as a nested MLflow run."""

    def __init__(self, config: EncoreConfig, prepared: PreparedData, evaluator: Evaluator, name: str,
                 metric: str):
        super().__init__()
        self.config, self.prepared, self.evaluator, self.name, self.metric = config, prepared, evaluator, name, metric
        self.segment = config.tuning.segment_of(name)
        self.n_users = evaluator.segments[self.segment].n_users

    def repeat(self, settings: dict[str, Any]) -> float | None:
        """The score of ``settings`` when a trial already completed with them, recorded as a
        ``repeat`` row and nested run (no refit); None when they were not scored yet."""
        import mlflow

        key = json.dumps(settings, sort_keys=True)
        if key not in self.scored:
            return None
        number = len(self.rows) + 1
        first = next(row for row in self.rows if row["settings"] == key and row["state"] == "complete")
        with trial_run(self.name, number, settings) as log_metrics:
            if mlflow.active_run() is not None:
                mlflow.set_tag("encore.tune.state", "repeat")
                mlflow.set_tag("encore.tune.repeat_of", str(first["trial"]))
            scores = {key_: value for key_, value in first.items() if key_ not in _ROW_KEYS}
            log_metrics({f"target_{key_}": value for key_, value in scores.items() if value is not None})
        self.rows.append(first | {"trial": number, "state": "repeat", "seconds": 0.0, "chosen": False})
        log.info("tune %s %s: a repeat of trial %d, not refitted", self.name, settings, first["trial"])
        return self.scored[key]

    def run(self, settings: dict[str, Any], on_epoch: EpochReport | None = None) -> float:
        """Score ``settings``; a pruned trial (``on_epoch`` raised) is recorded and re-raised."""
        import mlflow

        number = len(self.rows) + 1
        started = time.perf_counter()
        row: dict[str, Any] = {"instance": self.name, "trial": number, "settings": json.dumps(settings, sort_keys=True),
                               "segment": self.segment, "n_users": self.n_users}
        epochs: list[float] = []

        def report(epoch: int, value: float) -> None:
            epochs.append(value)
            if mlflow.active_run() is not None:
                mlflow.log_metric(f"target_{metric_key(self.metric)}_by_epoch", value, step=epoch)
            if on_epoch is not None:
                on_epoch(epoch, value)

        pruned: BaseException | None = None
        with trial_run(self.name, number, settings) as log_metrics:
            try:
                scores, _ = score_trial(self.config, self.prepared, self.evaluator, self.name, settings, report)
            except Exception as exc:
                if type(exc).__name__ != "TrialPruned":  # by name: a grid search never imports optuna
                    raise
                pruned, scores = exc, {}
                if mlflow.active_run() is not None:
                    mlflow.set_tag("encore.tune.state", "pruned")
            log_metrics({f"target_{key}": value for key, value in scores.items()})
        row |= {metric_key(key): value for key, value in scores.items()}
        row |= {"best_epoch": (int(np.argmax(epochs)) + 1) if epochs else None, "state": "pruned" if pruned else
                "complete", "seconds": time.perf_counter() - started, "chosen": False}
        self.rows.append(row)
        if pruned is not None:
            log.info("tune %s %s: pruned after %d epochs", self.name, settings, len(epochs))
            raise pruned
        log.info("tune %s %s: %s %.4f on %d %s target users", self.name, settings, self.metric, scores[self.metric],
                 self.n_users, self.segment)
        self.scored[row["settings"]] = scores[self.metric]
        return scores[self.metric]

    def choose(self) -> dict[str, Any]:
        """Mark and return the best complete trial's settings (the first of equals)."""
        column = metric_key(self.metric)
        values = [row[column] if row["state"] == "complete" else -np.inf for row in self.rows]
        best = int(np.argmax(values))
        self.rows[best]["chosen"] = True
        log.info("tune %s: chose %s (%s %.4f, best of %d trials)", self.name, self.rows[best]["settings"],
                 self.metric, values[best], len(values))
        return json.loads(self.rows[best]["settings"])


def grid_search(trials: Trials, space: dict[str, Any]) -> None:
    for settings in grid_combinations(space):
        trials.run(settings)


LISTED_POINTS = 10_000
"""Most points a space of lists may have to be searched over its points (without replacement, and
by expected improvement with ``tuning.sampler: auto``); a larger one is searched as TPE proposes."""


def optuna_search(trials: Trials | ScoredTrials, space: dict[str, Any], config: EncoreConfig) -> None:
    """Up to ``tuning.trials`` fits over ``space`` within ``tuning.timeout_seconds``, seeded,
    started from space-filling points. A space of lists (at most ``LISTED_POINTS`` points) is
    searched without replacement, and with ``tuning.sampler: auto`` by a Gaussian process's expected
    improvement over its untried points; otherwise by TPE. With ``tuning.pruning``, a median pruner
    on the per-epoch target scores."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(f"tuning.search: optuna needs Optuna, which is not installed: pip install {OPTUNA_PIN}"
                          ) from None
    from optuna.trial import TrialState

    tuning, seed = config.tuning, config.experiment.seed
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if tuning.pruning
              else optuna.pruners.NopPruner())
    startup = max(2, tuning.trials // 5)
    # The start-up trials are enqueued space-filling points, so TPE's own random start-up never runs.
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=sampler)
    for params in space_filling(space, startup, seed):
        study.enqueue_trial(params)
    points = (int(np.prod([len(values) for values in space.values()]))
              if all(isinstance(values, list) for values in space.values()) else None)
    listed = points is not None and points <= LISTED_POINTS
    ties = np.random.default_rng(seed)

    def suggest(trial: Any, setting: str, values: list[Any] | SearchRange) -> Any:
        if isinstance(values, list):
            if ordered_numbers(values):
                return values[trial.suggest_int(f"{setting}#position", 0, len(values) - 1)]
            return trial.suggest_categorical(setting, values)
        if values.integer:
            return trial.suggest_int(setting, int(values.low), int(values.high), log=values.log)
        return trial.suggest_float(setting, float(values.low), float(values.high), log=values.log)

    def on_epoch(trial: Any) -> EpochReport:
        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return report

    started = time.monotonic()
    proposals = 0
    # At most 10 × trials proposals (repeats included); no trial starts after the time budget.
    while (trials.fits < tuning.trials and (points is None or len(trials.tried) < points)
           and proposals < 10 * tuning.trials
           and (tuning.timeout_seconds is None or time.monotonic() - started < tuning.timeout_seconds)):
        proposals += 1
        if (listed and tuning.sampler == "auto" and len(trials.scored) >= 2
                and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))):
            study.enqueue_trial(optuna_params(space, expected_improvement(space, trials.scored, trials.tried, ties)))
        trial = study.ask()
        settings = {setting: suggest(trial, setting, values) for setting, values in space.items()}
        if listed and json.dumps(settings, sort_keys=True) in trials.tried:
            # Not an observation: TPE would count a duplicate score twice and keep proposing the point.
            study.tell(trial, state=TrialState.FAIL)
            nearest = nearest_untried(space, settings, trials.tried, ties)
            log.info("tune %s %s: tried already, trying the nearest untried point %s", trials.name, settings,
                     nearest)
            study.enqueue_trial(optuna_params(space, nearest))
            continue
        repeated = trials.repeat(settings)
        if repeated is not None:
            study.tell(trial, repeated)
            continue
        try:
            value = trials.run(settings, on_epoch(trial))
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            continue
        study.tell(trial, value)


def space_filling(space: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` start-up points spread over ``space`` (Optuna params): the first ``n`` points of a
    scrambled Sobol sequence (seeded) mapped to each setting's positions or range. Random start-up
    draws can fall together (two of a 1-D grid's 8 points in the same half half the time); Sobol's
    first ``2^m`` points cover each setting's axis in ``2^m`` equal strata, so the model starts from
    the whole space."""
    from scipy.stats import qmc

    units = qmc.Sobol(len(space), scramble=True, rng=seed).random_base2(int(np.ceil(np.log2(max(n, 1)))))[:n]
    starts = []
    for row in units:
        settings = {}
        for u, (setting, values) in zip(row, space.items(), strict=True):
            if isinstance(values, list):
                settings[setting] = values[min(int(u * len(values)), len(values) - 1)]
            elif values.integer:
                low, high = (np.log(values.low - 0.5), np.log(values.high + 0.5)) if values.log else \
                    (values.low - 0.5, values.high + 0.5)
                value = low + u * (high - low)
                settings[setting] = int(np.clip(round(np.exp(value) if values.log else value), values.low,
                                                values.high))
            elif values.log:
                settings[setting] = float(np.exp(np.log(values.low) + u * (np.log(values.high) - np.log(values.low))))
            else:
                settings[setting] = float(values.low + u * (values.high - values.low))
        starts.append(optuna_params(space, settings))
    return starts


def optuna_params(space: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as the Optuna parameters ``optuna_search`` suggests (an ordered list by position)."""
    return {f"{setting}#position" if isinstance(values, list) and ordered_numbers(values) else setting:
            values.index(settings[setting]) if isinstance(values, list) and ordered_numbers(values)
            else settings[setting] for setting, values in space.items()}


def nearest_untried(space: dict[str, list[Any]], settings: dict[str, Any], tried: set[str],
                    rng: np.random.Generator) -> dict[str, Any]:
    """The untried point of a space of lists nearest to ``settings``: an ordered list's positions
    scaled to [0, 1], another list's choices 0 apart when equal and 1 when not; equals drawn by ``rng``.
    TPE's proposal is where its model expects the best score; the nearest point not yet tried is
    the closest new information to it (searching without replacement)."""
    def distance(point: dict[str, Any]) -> float:
        return float(sum(((values.index(point[s]) - values.index(settings[s])) / (len(values) - 1)) ** 2
                         if ordered_numbers(values) else float(point[s] != settings[s])
                         for s, values in space.items()))

    untried = [point for point in grid_combinations(space) if json.dumps(point, sort_keys=True) not in tried]
    distances = np.array([distance(point) for point in untried])
    nearest = np.flatnonzero(distances == distances.min())
    return untried[int(rng.choice(nearest))]


LENGTH_SCALE_BOUNDS = (0.1, 20.0)
"""Bounds of the Gaussian process's length scales on axes scaled to [0, 1]: from one step of a
10-value list to flat across the whole axis (shorter, and a few scores fit as unrelated bumps)."""
NOISE_BOUNDS = (1e-6, 1e-1)
"""Bounds of the noise variance, in units of the normalised scores' variance: the fits are seeded,
so a score is nearly noise-free, and a noise fitted above a tenth would flatten the expected
improvement into draws."""
GP_RESTARTS = 1
"""Marginal-likelihood restarts from a random start (seeded), besides the one from the initial
hyperparameters: with a handful of scores the likelihood can have more than one optimum."""


def coordinates(space: dict[str, list[Any]], point: dict[str, Any]) -> list[np.ndarray]:
    """``point`` as one block of coordinates per setting with two or more values: an ordered list's
    position scaled to [0, 1]; another list's choices one-hot over √2, so two choices are 1 apart."""
    blocks = []
    for setting, values in space.items():
        if len(values) < 2:
            continue
        if ordered_numbers(values):
            blocks.append(np.array([values.index(point[setting]) / (len(values) - 1)]))
        else:
            blocks.append(np.array([float(point[setting] == value) for value in values]) / np.sqrt(2))
    return blocks


def expected_improvement(space: dict[str, list[Any]], scored: dict[str, float], tried: set[str],
                         rng: np.random.Generator) -> dict[str, Any]:
    """The untried point of a space of lists with the highest expected improvement over the best
    score, under a Gaussian process fitted to the scored points (equals drawn by ``rng``).

    Why not TPE here: on a few points of a small grid TPE's density ratio favours points far from
    the bad ones (the ends of an axis) over the neighbours of the good one, and it proposes scored
    points again; a Gaussian process models the score itself, and its expected improvement can be
    computed exactly for every untried point, so nothing is sampled or repeated. The process is
    scikit-learn's (a core dependency; Optuna's GPSampler needs torch, an optional extra): scores
    normalised, a constant × Matérn 5/2 kernel with a length scale per coordinate (an ordered
    setting's scaled position, a categorical setting's one-hot columns) plus white noise, its
    hyperparameters by marginal likelihood within ``LENGTH_SCALE_BOUNDS`` and ``NOISE_BOUNDS``
    (``GP_RESTARTS`` restarts, seeded from ``rng``, so a seed gives the same proposals)."""
    import warnings

    from scipy.stats import norm
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    grid = grid_combinations(space)
    keys = [json.dumps(point, sort_keys=True) for point in grid]
    x = np.array([np.concatenate(coordinates(space, point)) for point in grid])
    seen = [i for i, key in enumerate(keys) if key in scored]
    untried = [i for i, key in enumerate(keys) if key not in tried]
    y = np.array([scored[keys[i]] for i in seen])
    kernel = (ConstantKernel(1.0, (1e-2, 1e2))
              * Matern(length_scale=np.full(x.shape[1], 0.4), length_scale_bounds=LENGTH_SCALE_BOUNDS, nu=2.5)
              + WhiteKernel(1e-3, NOISE_BOUNDS))
    process = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=GP_RESTARTS,
                                       random_state=int(rng.integers(2**31)))
    with warnings.catch_warnings():  # a hyperparameter at its bound (flat or noise-free) is a fit, not a fault
        warnings.simplefilter("ignore", ConvergenceWarning)
        process.fit(x[seen], y)
    mean, sd = process.predict(x[untried], return_std=True)
    sd = np.maximum(sd, 1e-12 * max(float(y.std()), 1e-12))
    z = (mean - y.max()) / sd
    improvement = (mean - y.max()) * norm.cdf(z) + sd * norm.pdf(z)
    top = np.flatnonzero(np.isclose(improvement, improvement.max(), rtol=1e-9, atol=0.0))
    return grid[untried[int(rng.choice(top))]]


def ordered_numbers(values: list[Any]) -> bool:
    """Whether a list of choices is numbers in strictly increasing or decreasing order (searched by position)."""
    if len(values) < 3 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return False
    steps = np.diff(np.asarray(values, dtype=float))
    return bool((steps > 0).all() or (steps < 0).all())


def markdown(trials: pd.DataFrame, metric: str) -> str:
    lines = [f"| instance | settings | segment | users | {metric} | chosen |", "|---|---|---|---|---|---|"]
    for row in trials.itertuples(index=False):
        score = getattr(row, metric.replace("@", "_at_"))
        lines.append(f"| {row.instance} | `{row.settings}` | {row.segment} | {row.n_users} | "
                     f"{'pruned' if row.state == 'pruned' else f'{score:.4f}'}"
                     f"{' (repeat)' if row.state == 'repeat' else ''} | {'**yes**' if row.chosen else ''} |")
    return "\n".join(lines) + "\n"


def fragment(chosen: dict[str, dict[str, Any]], config: EncoreConfig, metric: str) -> str:
    """The choice as an experiment-file fragment: paste it into an experiment (and drop ``tuning``)
    to run with these settings without searching again."""
    searches = ", ".join(dict.fromkeys(config.tuning.search_of(name) for name in chosen)) or config.tuning.search
    header = (f"# Chosen by tune ({searches}) on the ranker-target part by {metric}, "
              f"experiment '{config.experiment.name}'\n")
    return header + yaml.safe_dump({"components": chosen}, sort_keys=False, default_flow_style=False)


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
    for name, space in tuning.grid.items():
        if not config.components.generator(name).enabled:
            log.info("tune %s: disabled, not tuned", name)
            continue
        trials = Trials(config, prepared, evaluator, name, metric)
        if trials.n_users == 0:
            raise ConfigError(f"tuning.segments.{name}: the ranker-target part has no {trials.segment} users to "
                              "tune on")
        if tuning.search_of(name) == "optuna":
            optuna_search(trials, space, config)
        else:
            grid_search(trials, space)
        chosen[name] = trials.choose()
        rows += trials.rows
    table = pd.DataFrame(rows)
    out = TuneOutput(ctx.output)
    table.to_csv(out.path / out.TRIALS, index=False)
    write_json(out.path / out.CHOSEN, chosen)
    (out.path / out.FRAGMENT).write_text(fragment(chosen, config, metric))
    (out.path / out.TABLE_MD).write_text(markdown(table, metric))
    column = metric_key(metric)
    best_rows = table[table["chosen"]]
    return Result(
        metrics={f"{row.instance}.target_{column}": float(getattr(row, column)) for row in best_rows.itertuples()}
        | {"trials": float(len(table)), "pruned": float((table["state"] == "pruned").sum()),
           "repeats": float((table["state"] == "repeat").sum()),
           "seconds": float(table["seconds"].sum())},
        params={f"{name}.{setting}": value for name, settings in chosen.items() for setting, value in settings.items()}
        | {"metric": metric, "search": tuning.search}
        | {f"{name}.search": search for name, search in tuning.searches.items()},
        artifacts=[out.TRIALS, out.CHOSEN, out.FRAGMENT, out.TABLE_MD],
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m encore.components.tune``: run the tuning component."""
    from encore.pipeline.cli import component_main  # the CLI is no part of what this component computes

    return component_main(NAME, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
