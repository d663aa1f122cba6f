"""ANN against exact retrieval on Encore's own factors: which index, which settings.

    python -m benchmarks.ann [--items 100000] [--users 50000] [--interactions 2000000] [--queries 2000]

A seeded synthetic catalogue (:func:`encore.data.synthetic.generate_synthetic`) is fitted with
ALS at its defaults (64 factors); its item factors are indexed and ``--queries`` seeded users
are asked for their top-100 by inner product, heard items filtered (over-fetch, then mask,
as the generators do). Ground truth: faiss ``IndexFlatIP`` through the same code path, checked
against implicit's own exact ``recommend``. Each index: build seconds, query seconds, recall@10
and recall@100 against exact, the speed-up over exact; plus HNSW straight on inner product
(without the norm augmentation) to show why the augmentation is applied, and the same build
repeated to show it is reproducible. Results go to ``benchmarks/results/ann.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmarks.docs_figures import ann_lines
from benchmarks.scale import machine
from encore.config.experiment import REPO_ROOT
from encore.data.dataset_config import SyntheticConfig
from encore.data.synthetic import generate_synthetic
from encore.lineage import git_commit
from encore.recommenders.als import ALSRecommender
from encore.retrieval import AnnConfig, InnerProductIndex, recall_at

RESULTS = REPO_ROOT / "benchmarks" / "results"
N = 100

SETTINGS: list[dict[str, Any]] = [
    {"index": "hnsw", "hnsw_m": 32, "ef_construction": 128, "ef_search": 256},
    {"index": "hnsw", "hnsw_m": 32, "ef_construction": 128, "ef_search": 512},
    {"index": "hnsw", "hnsw_m": 32, "ef_construction": 256, "ef_search": 256},
    {"index": "hnsw", "hnsw_m": 32, "ef_construction": 256, "ef_search": 512},
    {"index": "hnsw", "hnsw_m": 32, "ef_construction": 128, "ef_search": 256, "norm_augmentation": True},
    {"index": "ivf", "nprobe": 32},
    {"index": "ivf", "nprobe": 64},
    {"index": "ivf", "nprobe": 32, "norm_augmentation": True},
]
"""Indexes measured; settings that differ only in search parameters share one build."""
SEARCH_ONLY = ("ef_search", "nprobe")


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ann", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(RESULTS / "ann"))
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"commit": git_commit(), "machine": machine(), "n": N, "seed": args.seed}

    ds = generate_synthetic(SyntheticConfig(n_users=args.users, n_items=args.items, n_interactions=args.interactions,
                                            random_state=args.seed))
    inter = ds.interactions
    user_items = sp.csr_matrix((inter["weight"].to_numpy(np.float32), (inter["user"], inter["item"])),
                               shape=(len(ds.user_ids), len(ds.item_ids)))
    model, fit_seconds = _timed(lambda: ALSRecommender(random_state=args.seed).fit(user_items))
    rng = np.random.default_rng(args.seed)
    users = np.sort(rng.choice(user_items.shape[0], size=min(args.queries, user_items.shape[0]), replace=False))
    queries, heard = model.user_factors[users], user_items[users]
    report["catalogue"] = {"users": user_items.shape[0], "items": user_items.shape[1], "interactions": user_items.nnz,
                           "factors": int(model.item_factors.shape[1]), "queries": len(users),
                           "als_fit_seconds": fit_seconds}

    flat = InnerProductIndex(model.item_factors, AnnConfig(index="flat"))
    (exact, _), exact_seconds = _timed(lambda: flat.top_n(queries, N, heard))
    (implicit_ids, _), implicit_seconds = _timed(lambda: model.exact_recommend(users, user_items, N))
    report["exact"] = {"flat_seconds": exact_seconds, "implicit_seconds": implicit_seconds,
                       "flat_equals_implicit_recall@100": recall_at(exact, implicit_ids, N)}
    rows = []
    built: dict[str, tuple[InnerProductIndex, float]] = {}
    for params in SETTINGS:
        settings = AnnConfig(**params)
        key = json.dumps({k: v for k, v in settings.model_dump().items() if k not in SEARCH_ONLY}, sort_keys=True)
        if key not in built:
            built[key] = _timed(lambda settings=settings: InnerProductIndex(model.item_factors, settings,
                                                                            seed=args.seed))
        index, build = built[key]
        index.settings = settings  # the search parameters are read at each search
        (ids, _), seconds = _timed(lambda index=index: index.top_n(queries, N, heard))
        rows.append({"index": settings.index, "settings": settings.describe(), "build_seconds": build,
                     "query_seconds": seconds,
                     "recall@10": recall_at(ids, exact, 10), "recall@100": recall_at(ids, exact, N),
                     "speedup_vs_exact": implicit_seconds / seconds, "seen_returned": int(
                         np.isin(ids + users[:, None] * user_items.shape[1],
                                 heard.nonzero()[1] + users[heard.nonzero()[0]] * user_items.shape[1]).sum())})
        print(rows[-1], flush=True)
    # Reproducibility of the build procedure, on a small graph (the default's build takes minutes).
    small = AnnConfig(hnsw_m=16, ef_construction=64, ef_search=128)
    first, again = (InnerProductIndex(model.item_factors, small, seed=args.seed).top_n(queries, N, heard)[0]
                    for _ in range(2))
    report["reproducible"] = bool(np.array_equal(first, again))
    report["reproducible_settings"] = small.describe()
    report["default"] = AnnConfig().describe()
    report["rows"] = rows
    report["load_average_at_end"] = list(__import__("os").getloadavg())
    out = args.out
    with open(f"{out}.json", "w") as f:
        json.dump(report, f, indent=2)
    with open(f"{out}.md", "w") as f:
        f.write(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    return "\n".join(ann_lines(report)) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
