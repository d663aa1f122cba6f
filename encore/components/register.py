"""register: log the ranker's serving model and register it with alias ``challenger``.

In the pipeline (``run.sh --components ...,register``) this assembles the serving bundle
(the ranker's lists, popularity fallback, similar items; :mod:`encore.serving.pyfunc`)
and logs it as a models-from-code pyfunc in the register run, with the test metric, its per-user values
(for paired comparisons at promotion) and the dataset/split tags, then registers it as a
new version of ``tracking.registered_model_name`` and points ``challenger`` at it. The version
carries a description (experiment, data digest, headline metrics with their CI), its metrics as
tags (:mod:`encore.reports.version_card`) and a "Source Run" link to the pipeline's parent run.

Alone, it registers the model of any run::

    python -m encore.components.register --run-id RUN_ID --model-name encore-ranker

The tracking URI comes from ``--tracking-uri`` or ``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from encore.config.experiment import ConfigError, EncoreConfig
from encore.data.prepared import PreparedData
from encore.evaluation.segments import USER_SEGMENTS
from encore.io import write_json
from encore.outputs import EvaluateOutput, GeneratorOutput, RankerOutput, RegisterOutput, RerankOutput
from encore.pipeline.catalogue import enabled, generator_names
from encore.pipeline.component import Context, Result
from encore.ranking.stage import feature_instances, ranker_generators
from encore.recommenders import recommender_class
from encore.reports.version_card import version_card
from encore.serving.pyfunc import log_serving_model, write_bundle, write_foldin
from encore.serving.rerank import write_rerank_bundle
from encore.tracking.credentials import readable_auth_errors
from encore.tracking.model_registry import CHALLENGER, SIGNIFICANCE_TAG, register_run_model
from encore.tracking.runs import cli_client, metric_key

NAME = "register"
REUSABLE = False  # every call registers a new version
log = logging.getLogger(__name__)


def similar_items_instances(config: EncoreConfig) -> list[str]:
    """Enabled generator instances that write a similar-items table (``n_similar`` > 0)."""
    return [name for name in generator_names(config)
            if enabled(config, name) and config.components.generator(name).n_similar]


def foldin_instance(config: EncoreConfig) -> str | None:
    """The first ``twotower`` instance the ranker uses (candidates or features): the service folds
    new listeners in with it (:mod:`encore.serving.foldin`); None without one."""
    used = [*ranker_generators(config), *feature_instances(config)]
    return next((name for name in used if config.components.generator(name).kind == "twotower"), None)


def DEPENDS_ON(config: EncoreConfig) -> list[str]:
    fallback = config.components.ranker.fallback
    foldin = foldin_instance(config)
    names = ["prepare", "ranker", "evaluate", *similar_items_instances(config), *([fallback] if fallback else []),
             *([foldin] if foldin else []), "rerank"]  # rerank: dropped when components.rerank is off
    return list(dict.fromkeys(names))


def build_bundle(config: EncoreConfig, ctx: Context, prepared: PreparedData, out: RegisterOutput) -> str:
    """The serving bundle: the ranker's lists, the train popularity fallback and the
    similar-items table of ``components.ranker.similar_items_from``, all in raw ids.
    Returns the instance whose similar items are served."""
    tables = [name for name in similar_items_instances(config) if GeneratorOutput(ctx.inputs[name]).has_similar_items]
    if not tables:
        raise ConfigError("components.*.n_similar: no generator wrote a similar-items table to serve")
    source = config.components.ranker.similar_items_from
    if source not in tables:
        log.warning("components.ranker.similar_items_from: no table from %s; serving %s's", source, tables[0])
        source = tables[0]
    item_raw = prepared.items["raw_id"].to_numpy()
    # Unknown users get the ranker's fallback (e.g. recency popularity), else train listeners.
    fallback = config.components.ranker.fallback
    listeners = (GeneratorOutput(ctx.inputs[fallback]).model("train", recommender_class("popular")).popularity_
                 if fallback else prepared.item_listeners("train"))
    order = np.argsort(-listeners, kind="stable")[: max(config.components.ranker.top_k * 4, 200)]
    recs = RankerOutput(ctx.inputs["ranker"]).recommendations()
    similar = GeneratorOutput(ctx.inputs[source]).similar_items()
    heard = prepared.user_items("train").tocoo()  # what the served lists must not repeat
    write_bundle(
        out.bundle,
        # A completion's score stays nan (unscored): the served re-ranking keeps it in place, as rerank did.
        recommendations=pd.DataFrame({"user_id": prepared.users["raw_id"].to_numpy()[recs["user"]],
                                      "item_id": item_raw[recs["item"]], "rank": recs["rank"],
                                      "score": recs["score"].astype(np.float64)}),
        popular=pd.DataFrame({"item_id": item_raw[order], "score": listeners[order].astype(np.float64)}),
        similar_items=pd.DataFrame({"item_id": item_raw[similar["item"]],
                                    "similar_item_id": item_raw[similar["similar_item"]],
                                    "score": similar["score"].astype(np.float64), "rank": similar["rank"]}),
        items=pd.DataFrame({"item_id": item_raw, "name": prepared.items["name"].to_numpy()}),
        heard=pd.DataFrame({"user_id": prepared.users["raw_id"].to_numpy()[heard.row], "item_id": item_raw[heard.col]}),
    )
    if "rerank" in ctx.inputs:
        _bundle_rerank(RerankOutput(ctx.inputs["rerank"]), prepared, out)
    foldin = foldin_instance(config)
    if foldin is not None:  # the model the ranker's candidates came from, as refitted on train
        model = GeneratorOutput(ctx.inputs[foldin]).model("train", recommender_class("twotower"))
        write_foldin(out.bundle, item_ids=item_raw, state=model.fold_in_state(), source=foldin)
    write_json(out.bundle / "info.json", {"similar_items_from": source, "foldin_from": foldin})
    return source


def parent_run(client: MlflowClient, run: mlflow.entities.Run) -> tuple[str, str] | None:
    """(name, UI link) of the pipeline's parent run of ``run``, or None for a run on its own.
    The link is relative to the UI (``#/experiments/<id>/runs/<id>``), so it works behind any
    host or path prefix the server is reached by."""
    parent_id = run.data.tags.get("mlflow.parentRunId")
    if not parent_id:
        return None
    parent = client.get_run(parent_id)
    return parent.info.run_name or parent_id, f"#/experiments/{parent.info.experiment_id}/runs/{parent_id}"


def _bundle_rerank(rerank: RerankOutput, prepared: PreparedData, out: RegisterOutput) -> None:
    """The rerank component's setting and side data in raw ids: the service re-ranks with them."""
    item_raw, user_raw = prepared.items["raw_id"].to_numpy(), prepared.users["raw_id"].to_numpy()
    serving = rerank.serving()
    keys = np.asarray(serving["rejected"], dtype=np.int64)
    content = rerank.content_candidates()

    def pairs(name: str) -> dict[str, list]:
        found = np.asarray(serving.get(name, []), dtype=np.int64)
        return {"user_id": user_raw[found // prepared.n_items].tolist(),
                "item_id": item_raw[found % prepared.n_items].tolist()}

    write_rerank_bundle(
        out.bundle, config={"settings": serving["settings"], "blocked": item_raw[serving["blocked"]].tolist(),
                            # per user, the exposure cap's refusals and the coverage fill's promotions
                            # (applied where the steps across users ran)
                            "capped": pairs("capped"), "promoted": pairs("promoted")},
        items={"item_id": item_raw, **rerank.item_side()},
        content=pd.DataFrame({"user_id": user_raw[content["user"]], "item_id": item_raw[content["item"]],
                              "score": content["score"].to_numpy(), "rank": content["rank"].to_numpy()}),
        rejections=pd.DataFrame({"user_id": user_raw[keys // prepared.n_items],
                                 "item_id": item_raw[keys % prepared.n_items]}))


def run(config: EncoreConfig, ctx: Context) -> Result:
    primary = config.evaluation.primary_metric
    evaluated = EvaluateOutput(ctx.inputs["evaluate"])
    out = RegisterOutput(ctx.output)
    source = build_bundle(config, ctx, PreparedData(ctx.inputs["prepare"]), out)
    # The served lists' per-user values (from evaluate: the re-ranked lists when rerank ran, else
    # the ranker's) travel with the model, so promotion can pair this run with the champion's.
    served = "rerank" if "rerank" in ctx.inputs else "ranker"
    per_user = evaluated.per_user(columns=["user_id", "segment", served])
    out.write_per_user(per_user.rename(columns={served: "value"}))
    significance = evaluated.significance()
    # Their test metric overall and per segment (``warm.ndcg@10`` ...), which
    # ``components.promote.segment`` compares.
    scores = {primary: float(evaluated.comparison().loc[served, primary])}
    for segment, entry in significance.get("segments", {}).items():
        if segment in USER_SEGMENTS and served in entry.get(primary, {}):
            scores[f"{segment}.{primary}"] = float(entry[primary][served])

    info = log_serving_model(out.bundle, k=min(10, config.components.ranker.top_k))
    client = MlflowClient()
    run = client.get_run(mlflow.active_run().info.run_id)
    run_id = run.info.run_id
    parent = parent_run(client, run)
    card = version_card(experiment=config.experiment.name, run_tags=run.data.tags,
                        summary=PreparedData(ctx.inputs["prepare"]).summary, comparison=evaluated.comparison(),
                        significance=significance, parent_run=parent)
    version = register_run_model(run_id, config.tracking.registered_model_name, client=client,
                                 description=card.description, tags=card.tags,
                                 run_link=parent[1] if parent else None)
    vs_best = significance.get("vs_best_generator", {})
    tags = {f"{SIGNIFICANCE_TAG}.vs_best_generator": json.dumps(vs_best)} if vs_best else {}
    out.write_registered({"model_name": config.tracking.registered_model_name, "version": version.version,
                          "run_id": run_id, "model_uri": info.model_uri})
    return Result(metrics=scores,
                  artifacts=[out.PER_USER, out.REGISTERED],
                  tags=tags | {"encore.registered_version": str(version.version),
                               "encore.primary_metric": metric_key(primary),
                               "encore.similar_items_from": source})


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: register and print the new version."""
    parser = argparse.ArgumentParser(prog="python -m encore.components.register", description=__doc__.split("\n")[0])
    parser.add_argument("--run-id", required=True, help="run that logged the model")
    parser.add_argument("--model-name", required=True, help="registered model name")
    parser.add_argument("--artifact-path", default="model", help="name the model was logged under (default model)")
    parser.add_argument("--alias", default=CHALLENGER, help=f"alias to set (default {CHALLENGER}; '' for none)")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else the local store mlruns/mlflow.db")
    args = parser.parse_args(argv)

    try:
        client = cli_client(args.tracking_uri)
        with readable_auth_errors():
            version = register_run_model(
                args.run_id, args.model_name, client=client, artifact_path=args.artifact_path, alias=args.alias
            )
    except ConfigError as exc:  # wrong password, refused permission: one line, as run.sh and promote give
        print(f"error: {exc}", file=sys.stderr)
        return 1
    alias_note = f", alias '{args.alias}'" if args.alias else ""
    print(f"registered {args.model_name} version {version.version} from run {args.run_id}{alias_note}")
    print(f"load it with: mlflow.pyfunc.load_model('models:/{args.model_name}/{version.version}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
