"""promote: move alias ``champion`` to the registered version if it beats the current champion.

In the pipeline (``run.sh --components ...,register,promote``) this promotes the version
the register step just created, with ``components.promote`` settings (metric, margin,
force); before deciding it pairs the candidate's per-user test values with the
champion's (same dataset and split, so the same users) and records the paired t-test and
bootstrap interval of the difference as the version's significance.

Alone, it promotes any version::

    python -m encore.components.promote --model-name encore-ranker            # the challenger
    python -m encore.components.promote --model-name encore-ranker --version 3 \\
        --metric ndcg_at_10 --margin 0.002
    python -m encore.components.promote --model-name encore-ranker --version 2 --force
    python -m encore.components.promote --model-name encore-ranker --dry-run   # compare, change nothing

Exit status: 0 promoted (or already champion: a no-op), 3 not promoted (rejected or
refused), 1 error; a dry run exits as the real call would. The decision is printed and
recorded as ``encore.promotion.*`` tags on the version (a later decision on the same version
is added as ``encore.promotion.<n>.*``, never written over the first). A version whose
registering run was killed (tag ``encore.run_killed``) is refused.

On a server with authentication only the release user may move ``champion``: the registry
calls run as ``ENCORE_RELEASE_USERNAME`` / ``ENCORE_RELEASE_PASSWORD`` when they are set
(environment or .env); otherwise a client that authenticates as someone else stops with one
line saying who may promote.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from encore.config.experiment import ConfigError, EncoreConfig, EvaluationConfig
from encore.evaluation import metrics
from encore.evaluation.segments import USER_SEGMENTS
from encore.io import write_json
from encore.outputs import RegisterOutput
from encore.pipeline.component import Context, Result
from encore.reports.numbers import format_p
from encore.tracking.credentials import readable_auth_errors, release_credentials, release_user
from encore.tracking.model_registry import (
    CHALLENGER,
    CHAMPION,
    SIGNIFICANCE_TAG,
    PromotionDecision,
    current_alias_version,
    promote,
)
from encore.tracking.runs import KILLED_RUN_TAG, cli_client, metric_key

EXIT_NOT_PROMOTED = 3
NAME = "promote"
DEPENDS_ON = ("register",)
REUSABLE = False  # the registry changes between calls


def per_user_values(client: MlflowClient, run_id: str, segment: str = "all") -> pd.Series:
    """A register run's per-user test values of the primary metric, by raw user id, for the
    users of ``segment`` (``warm``/``cold``: the file's ``segment`` column, from evaluate)."""
    with tempfile.TemporaryDirectory() as tmp:
        frame = pd.read_parquet(Path(client.download_artifacts(run_id, RegisterOutput.PER_USER, tmp)))
    if segment != "all":
        if segment not in USER_SEGMENTS:
            raise ValueError(f"components.promote.segment: per-user values exist for all/warm/cold, not {segment!r}")
        if "segment" not in frame.columns:
            raise KeyError(f"{RegisterOutput.PER_USER} of run {run_id} has no 'segment' column "
                           f"(components.promote.segment={segment!r} needs it)")
        frame = frame[frame["segment"] == segment]
    return frame.set_index("user_id")["value"]


def segment_metric(metric: str, segment: str) -> str:
    """The run metric promotion compares: ``ndcg_at_10`` for all users, ``warm.ndcg_at_10`` …"""
    return metric if segment == "all" else f"{segment}.{metric}"


def paired_significance(client: MlflowClient, candidate_run: str, champion_run: str, metric: str,
                        config: EncoreConfig) -> str:
    """Paired t-test + bootstrap CI of candidate minus champion over their common test users
    (of ``components.promote.segment``)."""
    return paired_text(client, candidate_run, champion_run, metric, segment=config.components.promote.segment,
                       n_bootstrap=config.evaluation.n_bootstrap, confidence=config.evaluation.confidence,
                       seed=config.experiment.seed)


def paired_text(client: MlflowClient, candidate_run: str, champion_run: str, metric: str, *, segment: str = "all",
                n_bootstrap: int = EvaluationConfig().n_bootstrap, confidence: float = EvaluationConfig().confidence,
                seed: int = 0) -> str:
    """:func:`paired_significance` with explicit settings (the CLI has no experiment config)."""
    candidate = per_user_values(client, candidate_run, segment)
    champion = per_user_values(client, champion_run, segment)
    common = candidate.index.intersection(champion.index)
    result = metrics.paired_comparison(champion[common].to_numpy(), candidate[common].to_numpy(), metric=metric,
                                       n_resamples=n_bootstrap, confidence=confidence, random_state=seed)
    return (f"paired over {result.n_users} users: diff {result.diff:+.4f} "
            f"({100 * result.confidence:.0f}% CI {result.ci_low:+.4f} .. {result.ci_high:+.4f}), "
            f"t-test {format_p(result.p_value)}")


def cli_significance(client: MlflowClient, model_name: str, version: str, metric: str) -> str | None:
    """The paired comparison of ``version`` with the current champion on ``metric`` when both were
    registered by the pipeline (their runs hold per-user values of it, their primary metric),
    else None (then promotion shows what the candidate's run recorded)."""
    candidate = client.get_model_version(model_name, version)
    champion = current_alias_version(client, model_name, CHAMPION)
    if champion is None or str(champion.version) == str(version) or not candidate.run_id or not champion.run_id:
        return None
    try:
        tags = client.get_run(candidate.run_id).data.tags
        if tags.get("encore.primary_metric") != metric:
            return None
        return paired_text(client, candidate.run_id, champion.run_id, metric.replace("_at_", "@"),
                           seed=int(tags.get("encore.seed", 0)))
    except (OSError, KeyError, ValueError, MlflowException):  # a version registered outside the pipeline
        return None


def killed_refusal(client: MlflowClient, model_name: str, version: str) -> str | None:
    """Why ``version`` must not be promoted because its registering run never finished
    (tagged ``encore.run_killed`` when a later pipeline found the run dead, or the run
    itself ended KILLED), or None."""
    found = client.get_model_version(model_name, version)
    killed_run = (found.tags or {}).get(KILLED_RUN_TAG)
    if killed_run is None and found.run_id and client.get_run(found.run_id).info.status == "KILLED":
        killed_run = found.run_id
    if killed_run is None:
        return None
    return (f"{model_name} version {version} was registered by run {killed_run}, which was killed before it "
            f"finished (tag {KILLED_RUN_TAG}); it cannot be promoted, register a finished run")


def print_decision(decision: PromotionDecision, *, details: bool) -> None:
    """The decision line, then (``details``) the figures it rests on."""
    print(decision.summary())
    for line in decision.comparison_lines() if details else []:
        print(f"  {line}")


def run(config: EncoreConfig, ctx: Context) -> Result:
    registered = RegisterOutput(ctx.inputs["register"]).registered()
    settings = config.components.promote
    metric = segment_metric(metric_key(settings.metric or config.evaluation.primary_metric), settings.segment)
    client = MlflowClient()
    name, version = registered["model_name"], registered["version"]
    release_user(name)  # refuses, saying who may promote, before anything is written
    champion = current_alias_version(client, name, CHAMPION)
    if champion is not None and champion.run_id and champion.run_id != registered["run_id"]:
        try:
            text = paired_significance(client, registered["run_id"], champion.run_id,
                                       settings.metric or config.evaluation.primary_metric, config)
            client.set_tag(registered["run_id"], f"{SIGNIFICANCE_TAG}.{metric}", text)
        except (OSError, KeyError, ValueError) as exc:  # e.g. a champion registered outside the pipeline
            client.set_tag(registered["run_id"], f"{SIGNIFICANCE_TAG}.{metric}", f"not computed: {exc}")
    with release_credentials(name):
        decision = promote(name, version, metric=metric, margin=settings.margin, force=settings.force, client=client)
    write_json(ctx.output / "decision.json", decision.as_dict())
    print_decision(decision, details=False)
    return Result(metrics={"promoted": float(decision.promoted)}, artifacts=["decision.json"],
                  tags={"encore.promotion.decision": decision.decision})


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: decide, print the decision, exit 0 / 3."""
    parser = argparse.ArgumentParser(prog="python -m encore.components.promote", description=__doc__.split("\n")[0])
    parser.add_argument("--model-name", required=True, help="registered model name")
    parser.add_argument("--version", help=f"version to promote (default: the '{CHALLENGER}' alias)")
    parser.add_argument("--metric", default="ndcg_at_10", help="run metric to compare (default ndcg_at_10)")
    parser.add_argument("--margin", type=float, default=0.0, help="required improvement (default 0)")
    parser.add_argument("--lower-is-better", action="store_true", help="the metric is a loss")
    parser.add_argument("--force", action="store_true", help="promote regardless of metric and split")
    parser.add_argument("--dry-run", action="store_true",
                        help="show the comparison and the decision; move no alias, write no tag")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else the local store mlruns/mlflow.db")
    args = parser.parse_args(argv)

    client = cli_client(args.tracking_uri)
    version = args.version
    try:
        with readable_auth_errors():
            if version is None:
                challenger = current_alias_version(client, args.model_name, CHALLENGER)
                if challenger is None:
                    print(f"error: {args.model_name} has no '{CHALLENGER}' alias; pass --version", file=sys.stderr)
                    return 1
                version = challenger.version
            if refusal := killed_refusal(client, args.model_name, str(version)):
                print(f"refused: {refusal}", file=sys.stderr)
                return EXIT_NOT_PROMOTED
            significance = cli_significance(client, args.model_name, str(version), args.metric)
        with release_credentials(args.model_name, required=False):
            decision = promote(
                args.model_name,
                version,
                metric=args.metric,
                margin=args.margin,
                force=args.force,
                greater_is_better=not args.lower_is_better,
                dry_run=args.dry_run,
                significance=significance,
                client=client,
            )
    except ConfigError as exc:  # wrong password, refused permission, no release user
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(decision.as_dict(), indent=2))
    else:
        print_decision(decision, details=True)
    return 0 if decision.promoted else EXIT_NOT_PROMOTED


if __name__ == "__main__":
    sys.exit(main())
