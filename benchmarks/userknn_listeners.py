"""User-kNN's bounded neighbour index: fit time and NDCG@10 against ``max_item_listeners``.

    python -m benchmarks.userknn_listeners --prepared DIR [DIR ...] [--caps 1000,500,300,none]
                                           [--name userknn_listeners]

Each DIR is a ``prepare`` output folder (e.g. ``<workdir>/<size>/outputs/<experiment>/prepare-*``
of a ``benchmarks.scale`` run). For each cap, a ``userknn`` with the default settings otherwise
is fit on the base stage (which includes the neighbour search for every user: the time users
wait for) and recommends 10 items to every target user, scored with NDCG@10 on target: the
stage the ranker learns from, so the test part is never read. Results go to
``benchmarks/results/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks.scale import machine
from encore.config.experiment import REPO_ROOT
from encore.data.prepared import PreparedData
from encore.evaluation import metrics
from encore.lineage import git_commit
from encore.recommenders import UserKNNRecommender

RESULTS = REPO_ROOT / "benchmarks" / "results"
K = 10


def measure(prepared: PreparedData, cap: int | None) -> dict[str, Any]:
    """Fit seconds, the index's longest posting list and NDCG@10 on target of one cap."""
    user_items = prepared.user_items("base")
    started = time.perf_counter()
    model = UserKNNRecommender(max_item_listeners=cap).fit(user_items)
    fit_seconds = time.perf_counter() - started
    users = prepared.eval_users("base")
    ids, _ = model.recommend(users, user_items, K)
    ndcg = metrics.evaluate(ids, prepared.relevant("base")[users], ks=(K,))[f"ndcg@{K}"]
    return {"max_item_listeners": cap, "fit_seconds": fit_seconds, "ndcg@10": ndcg,
            "items_cut": int((user_items.getnnz(axis=0) > cap).sum()) if cap else 0}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"Commit {report['commit'][:7]}. Machine: {m['cpus']} cores, {m['memory_gib']} GiB, Python {m['python']}.",
             "", "| data | users × items (base interactions) | max_item_listeners | items cut | fit (s) "
             "| NDCG@10 on target |",
             "|---|---|---|---|---|---|"]
    for data in report["data"]:
        for row in data["caps"]:
            cap = "null (exact)" if row["max_item_listeners"] is None else f"{row['max_item_listeners']:,}"
            lines.append(f"| {data['name']} | {data['n_users']:,} × {data['n_items']:,} ({data['nnz']:,}) | {cap} | "
                         f"{row['items_cut']:,} | {row['fit_seconds']:.1f} | {row['ndcg@10']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.userknn_listeners", description=__doc__.split("\n")[0])
    parser.add_argument("--prepared", type=Path, nargs="+", required=True, help="prepare output folders")
    parser.add_argument("--caps", default="1000,500,300,none", help="comma-separated max_item_listeners (none = exact)")
    parser.add_argument("--name", default="userknn_listeners", help="results file name")
    args = parser.parse_args(argv)
    caps = [None if c.strip().lower() in ("none", "null") else int(c) for c in args.caps.split(",")]
    report: dict[str, Any] = {"commit": git_commit(), "machine": machine(), "data": []}
    for folder in args.prepared:
        if not (folder / "summary.json").is_file():
            parser.error(f"--prepared {folder}: not a prepare output folder (no summary.json)")
        prepared = PreparedData(folder)
        base = prepared.user_items("base")
        rows = []
        for cap in caps:
            rows.append(measure(prepared, cap))
            print(f"{folder.parent.name}: max_item_listeners={cap}: {rows[-1]}", flush=True)
        report["data"].append({"name": folder.parent.name, "n_users": base.shape[0], "n_items": base.shape[1],
                               "nnz": int(base.nnz), "caps": rows})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
