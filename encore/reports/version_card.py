"""What a registered model version says about itself: a description (experiment, data digest,
headline metrics with their confidence intervals) and its metrics as version tags.

Built from the evaluate component's result files (``comparison.csv``, ``significance.json``)
and the prepare summary, never from run metric keys, so it reads the same whatever a run logs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from encore.evaluation.metric_names import metric_key
from encore.evaluation.segments import USER_SEGMENTS
from encore.reports.numbers import format_p, format_pct, format_uplift

METRIC_TAG = "encore.metric."
UPLIFT_TAG = "encore.uplift_vs_best_generator"
DATA_DIGEST_TAG = "encore.data_digest"
PARENT_RUN_TAG = "encore.parent_run_id"
HEADLINE_MODEL = "ranker"


def data_digest(data_sha256: dict[str, str], dataset_hash: str) -> str:
    """One digest of the data files read (SHA-256 over ``role:sha256`` lines), or for
    generated data the hash of its dataset settings (``config:<hash>``)."""
    if not data_sha256:
        return f"config:{dataset_hash}"
    lines = "\n".join(f"{role}:{digest}" for role, digest in sorted(data_sha256.items()))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VersionCard:
    """``description`` (Markdown, shown on the version page) and ``tags``."""

    description: str
    tags: dict[str, str]


def _number(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.6g}"


def _short(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.4f}"


def version_card(*, experiment: str, run_tags: Mapping[str, str], summary: dict[str, Any],
                 comparison: pd.DataFrame, significance: dict[str, Any],
                 parent_run: tuple[str, str] | None = None) -> VersionCard:
    """The card of a version registered from a pipeline run.

    ``run_tags``: the registering run's reproducibility tags (``encore.dataset``,
    ``encore.dataset_hash``, ``encore.split_hash``, ``encore.config_hash``); ``comparison``:
    evaluate's ``comparison.csv`` (models × ``metric@k``); ``significance``: its
    ``significance.json``; ``summary``: prepare's ``summary.json``; ``parent_run``: (name, UI
    link) of the pipeline's parent run.
    """
    primary = significance.get("primary_metric", "ndcg@10")
    model = significance.get("headline_model", HEADLINE_MODEL)
    k = primary.rsplit("@", 1)[-1]
    dataset, split_hash, config_hash = (run_tags.get(f"encore.{t}", "") for t in ("dataset", "split_hash",
                                                                                  "config_hash"))
    digest = data_digest(summary.get("data_sha256") or {}, run_tags.get("encore.dataset_hash", ""))
    tags = {"encore.experiment": experiment, DATA_DIGEST_TAG: digest, "encore.dataset": dataset,
            "encore.split_hash": split_hash, "encore.config_hash": config_hash}
    if model in comparison.index:
        at_k = [c for c in comparison.columns if c.endswith(f"@{k}")]
        tags |= {METRIC_TAG + metric_key(c): _number(comparison.loc[model, c]) for c in at_k}
    rows = []
    for segment, entry in (significance.get("segments") or {"all": significance}).items():
        if segment not in USER_SEGMENTS and segment != "all":
            continue
        value = (entry.get(primary) or {}).get(model)
        vs = entry.get("vs_best_generator") or {}
        if value is None:
            continue
        prefix = "" if segment == "all" else f"{segment}."
        tags[f"{METRIC_TAG}{prefix}{metric_key(primary)}"] = _number(value)
        if vs:
            tags[UPLIFT_TAG + ("" if segment == "all" else f".{segment}")] = (
                f"{format_uplift(vs)} vs {entry.get('best_generator')}")
        best = entry.get("best_generator")
        rows.append(f"| {segment} | {entry.get('n_users', '')} | {_short(value)} | "
                    f"{best or ''} {_short((entry.get(primary) or {}).get(best))} | "
                    f"{format_pct(vs.get('rel_uplift'))} | {format_pct(vs.get('rel_ci_low'))} .. "
                    f"{format_pct(vs.get('rel_ci_high'))} | {format_p(vs.get('p_value')) if vs else ''} |")
    if parent_run is not None:
        tags[PARENT_RUN_TAG] = parent_run[1].rsplit("/", 1)[-1]
    confidence = (significance.get("vs_best_generator") or {}).get("confidence", 0.95)
    source = f" · pipeline run [{parent_run[0]}]({parent_run[1]})" if parent_run else ""
    lines = [
        f"**{experiment}** (config `{config_hash}`){source}",
        "",
        f"Data: {dataset}, {summary.get('n_users', '?')} users × {summary.get('n_items', '?')} items, "
        f"{summary.get('n_interactions', '?')} interactions; digest `{digest}`; split `{split_hash}`, "
        f"{significance.get('n_test_users', summary.get('test_users', '?'))} test users.",
        "",
        f"| users | n | {model} {primary} | best generator | uplift | {100 * confidence:.0f}% CI | paired t-test |",
        "| --- | ---: | ---: | --- | ---: | --- | --- |",
        *rows,
    ]
    return VersionCard(description="\n".join(lines), tags=tags)
