"""ANN against exact retrieval, per generator whose scores are inner products, on the 10M catalogue.

    python -m benchmarks.ann [--sample 20000] [--table-queries 2000] [--bpr-iterations 20]

The world of ``experiments/synthetic_10m.yaml`` (200,000 users, 100,000 items, 10M interactions,
1,000 tags, seed 13) is generated with :func:`encore.data.synthetic.generate_synthetic`; ALS,
BPR and item2item (its SVD space of the item tags) are fitted on all of it (a retrieval
benchmark: nothing is evaluated, so nothing is held out). For each generator, a seeded sample
of ``--sample`` users asks for its top-100, heard items filtered: the generator's exact lists
(``exact_recommend``: implicit's for ALS/BPR, scored blocks for item2item) and its
``retrieval: ann`` lists at the default :class:`~encore.retrieval.AnnConfig` (index build timed
apart), recall@10/@100 of ANN against exact (by item id, and counting items tied at the
cut as hits: item2item's items with the same tags have equal vectors), the speed-up, heard items returned, and a second
build's lists compared with the first (reproducibility). The sample's seconds are also scaled
linearly to all users (labelled as such in the table: measured on the sample only).

Then the index table: every index kind on the ALS factors for ``--table-queries`` users of
the sample (PQ variants, HNSW on the inner product at several ``ef_search``, HNSW and IVF on
the norm-augmented vectors, IVF on the inner product), to show why the default is what it is.
Results go to ``benchmarks/results/ann.json`` and ``.md``; the docs block is rendered from the
JSON by ``python -m benchmarks.docs_figures``.
"""

from __future__ import annotations

import argparse
import json
import os
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
from encore.recommenders.bpr import BPRRecommender
from encore.recommenders.factorization import FactorRecommender
from encore.recommenders.item2item import Item2ItemRecommender
from encore.retrieval import AnnConfig, InnerProductIndex, recall_at, score_recall_at

RESULTS = REPO_ROOT / "benchmarks" / "results"
N = 100

SETTINGS: list[dict[str, Any]] = [
    {"index": "pq"},
    {"index": "pq", "refine_factor": 2},
    {"index": "pq", "pq_dims": 2, "refine_factor": 4},
    {"index": "pq", "pq_dims": 2, "refine_factor": 8},
    {"index": "hnsw", "hnsw_m": 32, "ef_construction": 128, "ef_search": 128},
    {"index": "hnsw", "hnsw_m": 32, "ef_construction": 128, "ef_search": 256},
    {"index": "hnsw", "hnsw_m": 32, "ef_construction": 128, "ef_search": 512},
    {"index": "hnsw", "hnsw_m": 32, "ef_construction": 128, "ef_search": 256, "norm_augmentation": True},
    {"index": "ivf", "nprobe": 32},
    {"index": "ivf", "nprobe": 32, "norm_augmentation": True},
]
"""Indexes of the index table; settings that differ only in search parameters share one build."""
SEARCH_ONLY = ("ef_search", "nprobe", "refine_factor")


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def _seen_returned(ids: np.ndarray, heard: sp.csr_matrix) -> int:
    """Returned ids that the user heard (must be 0: heard items are filtered exactly)."""
    dense_rows, dense_cols = heard.nonzero()
    n_items = heard.shape[1]
    keys = ids + np.arange(len(ids))[:, None] * n_items
    return int((np.isin(keys, dense_rows.astype(np.int64) * n_items + dense_cols) & (ids >= 0)).sum())


def measure_generator(name: str, model: FactorRecommender, user_items: sp.csr_matrix, users: np.ndarray,
                      fit_seconds: float) -> dict[str, Any]:
    """Exact and default-ANN top-N lists of one fitted generator on the sample ``users``."""
    heard = user_items[users]
    (exact, exact_scores), exact_seconds = _timed(lambda: model.exact_recommend(users, user_items, N))
    model.set_retrieval("ann", AnnConfig())
    _, build_seconds = _timed(lambda: model._index("items"))
    (ids, scores), ann_seconds = _timed(lambda: model.recommend(users, user_items, N))
    model.set_retrieval("ann", AnnConfig())  # a fresh build: the same lists?
    again, _ = model.recommend(users, user_items, N)
    scale = user_items.shape[0] / len(users)
    row = {"generator": name, "dimensions": int(model.item_vectors().shape[1]), "fit_seconds": fit_seconds,
           "exact_seconds": exact_seconds, "ann_build_seconds": build_seconds, "ann_seconds": ann_seconds,
           "recall@10": recall_at(ids, exact, 10), "recall@100": recall_at(ids, exact, N),
           "score_recall@10": score_recall_at(scores, exact_scores, 10),
           "score_recall@100": score_recall_at(scores, exact_scores, N), "speedup": exact_seconds / ann_seconds,
           "exact_seconds_all_users_extrapolated": exact_seconds * scale,
           "ann_seconds_all_users_extrapolated": build_seconds + ann_seconds * scale,
           "seen_returned": _seen_returned(ids, heard), "reproducible": bool(np.array_equal(ids, again)),
           "load_average": list(os.getloadavg())}
    model.set_retrieval("exact")
    print(row, flush=True)
    return row


def index_table(vectors: np.ndarray, queries: np.ndarray, heard: sp.csr_matrix, exact: tuple[np.ndarray, np.ndarray],
                exact_seconds: float, seed: int, kinds: set[str]) -> list[dict[str, Any]]:
    """The indexes of :data:`SETTINGS` of the ``kinds`` asked for on the same vectors and queries
    (``exact``: the lists, scores)."""
    rows = []
    built: dict[str, tuple[InnerProductIndex, float]] = {}
    for params in (p for p in SETTINGS if p["index"] in kinds):
        settings = AnnConfig(**params)
        key = json.dumps({k: v for k, v in settings.model_dump().items() if k not in SEARCH_ONLY}, sort_keys=True)
        if key not in built:
            built[key] = _timed(lambda settings=settings: InnerProductIndex(vectors, settings, seed=seed))
        index, build = built[key]
        index.settings = settings  # the search parameters are read at each search
        (ids, scores), seconds = _timed(lambda index=index: index.top_n(queries, N, heard))
        rows.append({"index": settings.index, "settings": settings.describe(), "build_seconds": build,
                     "query_seconds": seconds, "recall@10": recall_at(ids, exact[0], 10),
                     "recall@100": recall_at(ids, exact[0], N),
                     "score_recall@100": score_recall_at(scores, exact[1], N),
                     "speedup_vs_exact": exact_seconds / seconds,
                     "seen_returned": _seen_returned(ids, heard)})
        print(rows[-1], flush=True)
    return rows


def als_index_table(model: ALSRecommender, user_items: sp.csr_matrix, users: np.ndarray, n_queries: int,
                    seed: int, kinds: set[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`index_table` on the ALS factors for ``n_queries`` evenly spaced users of the sample."""
    queries = users[:: max(1, len(users) // n_queries)][:n_queries]
    exact, exact_seconds = _timed(lambda: model.exact_recommend(queries, user_items, N))
    table = {"generator": "als", "queries": len(queries), "exact_seconds": exact_seconds}
    return table, index_table(model.item_factors, model.user_factors[queries], user_items[queries], exact,
                              exact_seconds, seed, kinds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ann", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--sample", type=int, default=20_000, help="seeded users per generator")
    parser.add_argument("--table-queries", type=int, default=2000, help="users of the sample in the index table")
    parser.add_argument("--bpr-iterations", type=int, default=20,
                        help="BPR epochs (its default 100 takes ~9 min at 10M: the factors' shape is what matters)")
    parser.add_argument("--generators", default="als,bpr,item2item")
    parser.add_argument("--table-indexes", default="pq,hnsw,ivf",
                        help="index kinds of the index table (hnsw builds single-threaded: minutes at 100k items)")
    parser.add_argument("--out", default=str(RESULTS / "ann"))
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"commit": git_commit(), "machine": machine(), "n": N, "seed": args.seed,
                              "default": AnnConfig().describe(), "bpr_iterations": args.bpr_iterations,
                              "nice": os.nice(0)}  # a run beside another benchmark is niced: say so

    (ds, generate_seconds) = _timed(lambda: generate_synthetic(SyntheticConfig(
        n_users=args.users, n_items=args.items, n_interactions=args.interactions, n_tags=args.tags,
        random_state=args.seed)))
    inter = ds.interactions
    shape = (len(ds.user_ids), len(ds.item_ids))
    user_items = sp.csr_matrix((inter["weight"].to_numpy(np.float32), (inter["user"], inter["item"])), shape=shape)
    tags = ds.item_tags
    item_features = sp.csr_matrix((tags["weight"].to_numpy(np.float32), (tags["item"], tags["tag"])),
                                  shape=(shape[1], max(args.tags, int(tags["tag"].max()) + 1)))
    rng = np.random.default_rng(args.seed)
    users = np.sort(rng.choice(shape[0], size=min(args.sample, shape[0]), replace=False))
    report["catalogue"] = {"users": shape[0], "items": shape[1], "interactions": user_items.nnz,
                           "sample_users": len(users), "generate_seconds": generate_seconds}

    fitters = {
        "als": lambda: ALSRecommender(random_state=args.seed).fit(user_items),
        "bpr": lambda: BPRRecommender(iterations=args.bpr_iterations, num_threads=2,
                                      random_state=args.seed).fit(user_items),
        "item2item": lambda: Item2ItemRecommender(random_state=args.seed).fit(user_items, item_features),
    }
    report["generators"] = []
    for name in args.generators.split(","):
        model, fit_seconds = _timed(fitters[name])
        report["generators"].append(measure_generator(name, model, user_items, users, fit_seconds))
        if name == "als":
            report["table"], report["rows"] = als_index_table(model, user_items, users, args.table_queries, args.seed,
                                                              set(args.table_indexes.split(",")))
        del model  # one fitted generator in memory at a time
    report["load_average_at_end"] = list(os.getloadavg())
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
