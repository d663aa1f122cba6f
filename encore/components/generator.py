"""The generator component template: one module runs every generator instance.

``python -m encore.components.generator <instance> [--experiment FILE]`` runs instance
``components.<instance>`` alone; ``run.sh --components <instance>`` runs it in a pipeline.

For each stage (``base``: fit on base, candidates for ranker-target users; ``train``: refit
on base + target, candidates for every user, scored on test) it fits the instance's model on
the stage view, writes per-user top-N candidates and saves the model; from the ``train`` fit
it also writes the similar-items table and evaluates its lists on test. A stage's model is
written only when a later component reads it (:func:`encore.pipeline.catalogue.model_stages_read`:
the ranker, rerank's embeddings, the fallback's popularity; part of the reuse key). A feature-only
instance (``propose: false``) skips what nothing reads: its base candidates (the ranker
reads only its models) and its train candidates of users without test items (evaluate reads
only test users). Candidates and similar items are computed and written batch by batch
(``batch_size`` users, ``4 * batch_size`` items), with progress on long work; per-phase
``*_seconds`` go to the metrics. The folder layout is :class:`encore.outputs.GeneratorOutput`.
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from encore.candidates import (
    build_recommender,
    candidate_users,
    fit_recommender,
    recommend_batches,
    similar_item_batches,
    target_scorer,
)
from encore.config.experiment import ConfigError, EncoreConfig
from encore.data.prepared import STAGES, PreparedData, Stage
from encore.evaluation import metrics
from encore.evaluation.evaluator import Evaluator, frame_from_lists
from encore.outputs import GeneratorOutput
from encore.pipeline.catalogue import model_stages_read
from encore.pipeline.component import Context, Result
from encore.progress import Timings
from encore.recommenders import GeneratorConfig, Recommender
from encore.recommenders.factorization import FactorRecommender

DEPENDS_ON: tuple[str, ...] = ("prepare",)
log = logging.getLogger(__name__)


def write_candidates(model: Recommender, prepared: PreparedData, stage: Stage, users: np.ndarray,
                     section: GeneratorConfig, out: GeneratorOutput, label: str, *, name: str | None = None
                     ) -> np.ndarray:
    """Top-``n_candidates`` of ``users`` (sorted ids), ``batch_size`` users at a time, each batch
    written as it is made; returns the ``(len(users), n_candidates)`` ids (int32) for evaluation."""
    lists = np.empty((len(users), section.n_candidates), dtype=np.int32)
    with out.candidates_writer(stage) as write:
        for start, stop, ids, scores in recommend_batches(model, prepared, stage, users, section.n_candidates,
                                                          section.batch_size, label, name=name):
            write(frame_from_lists(users[start:stop], ids, scores))
            lists[start:stop] = ids
    return lists


def run(config: EncoreConfig, ctx: Context) -> Result:
    name = ctx.name
    section = config.components.generator(name)
    ks = config.evaluation.ks
    if section.n_candidates < max(ks):
        raise ConfigError(
            f"components.{name}.n_candidates ({section.n_candidates}) must be at least the largest "
            f"evaluation k ({max(ks)})"
        )
    prepared = PreparedData(ctx.inputs["prepare"])
    out = GeneratorOutput(ctx.output)
    timings = Timings()
    extra: dict[str, float] = {}
    best_epoch: int | None = None
    models_read = model_stages_read(config, name)  # nothing else reads a model: none is written
    for stage in STAGES:
        model = build_recommender(config, name)
        if hasattr(model, "epoch_scorer"):
            # A neural kind stops early on the ranker-target part (base fit; never test) and the
            # base + target refit trains for the epochs that scored best there.
            if stage == "base":
                model.epoch_scorer = target_scorer(prepared, Evaluator(prepared, stage, tuple(ks)),
                                                   config.evaluation.primary_metric, "all", section.batch_size,
                                                   f"{name} target")
            elif best_epoch is not None:
                model.epochs = best_epoch
        with timings.phase(f"fit_{stage}"):
            fit_recommender(model, prepared, stage, name=name)
        if stage == "base" and hasattr(model, "best_epoch_"):
            best_epoch = extra["best_epoch"] = model.best_epoch_
        if stage == "base" and not section.propose:
            if stage in models_read:
                out.write_model(stage, model)  # the ranker's features; no base candidates to write
            continue
        users = candidate_users(prepared, stage, propose=section.propose)
        with timings.phase(f"recommend_{stage}"):
            lists = write_candidates(model, prepared, stage, users, section, out, f"{name} candidates {stage}",
                                     name=name)
        if stage in models_read:
            with timings.phase(f"save_{stage}"):
                out.write_model(stage, model)
        evaluator = Evaluator(prepared, stage, tuple(ks))
        lists = lists[np.searchsorted(users, evaluator.users)].astype(np.int64)
        if stage == "base":
            extra["target_candidate_recall"] = evaluator.candidate_recall(lists)
            continue

        if section.n_similar:
            with timings.phase("similar_items"), out.similar_items_writer() as write:
                for frame in similar_item_batches(model, prepared.n_items, section.n_similar, section.batch_size,
                                                  label=f"{name} similar items", name=name):
                    write(frame)

        if isinstance(model, FactorRecommender) and model.retrieval == "ann":
            extra |= model.retrieval_report(prepared.user_items(stage), users, section.n_candidates,
                                            seed=config.experiment.seed)
            log.info("%s: ANN (%s) recall@%d %.3f against exact on %d users, %.1fx faster", name,
                     model.ann.describe(), section.n_candidates, extra.get(f"ann_recall@{section.n_candidates}", 1.0),
                     extra.get("ann_sample_users", 0), extra.get("ann_speedup", 1.0))

        scores_at_k = evaluator.evaluate(lists[:, : max(ks)])
        extra["candidate_recall"] = evaluator.candidate_recall(lists)
        if hasattr(model, "items_without_features_"):
            extra["items_without_features"] = float(np.size(model.items_without_features_))
    results = scores_at_k | extra | dict(timings)
    out.write_metrics(results)
    metrics.plot_metric_vs_k({name: scores_at_k}, "ndcg", out.path / out.PLOT)
    log.info("%s: ndcg@10 %.4f, candidate recall@%d %.3f on test",
             name, scores_at_k.get("ndcg@10", float("nan")), section.n_candidates, extra["candidate_recall"])
    artifacts = [out.candidates_file("train"), out.METRICS, out.PLOT]
    tags = {"encore.kind": section.kind, "encore.propose": str(section.propose).lower()}
    if isinstance(model, FactorRecommender):
        tags["encore.retrieval"] = model.retrieval if model.retrieval == "exact" else model.ann.describe()
    return Result(metrics=results, artifacts=[*artifacts, out.SIMILAR] if section.n_similar else artifacts,
                  tags=tags)


def main(argv: list[str] | None = None) -> int:
    """``python -m encore.components.generator <instance>``: run one generator instance."""
    from encore.pipeline.cli import component_main  # the CLI is no part of what this component computes

    return component_main(None, argv, description=__doc__ or "")


if __name__ == "__main__":
    sys.exit(main())
