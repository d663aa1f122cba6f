"""Offline check of fold-in for new listeners: does it beat the popular list?

    python -m benchmarks.foldin [--lastfm2k DIR] [--listens 1,3,5,10] [--holdout 0.2]

Protocol (Last.fm 2K has play counts, no listening order): a seeded 20% of the users with at
least ``max(listens) + 5`` artists are held out and never seen by the model; EASE (the
pipeline's default ``similar_items_from``, default hyper-parameters, 20 similar items per
item) and the popular list are fit on the other users, written as a serving bundle and
indexed by the service's own :class:`~encore.serving.blended_model.ServedModel`. Each held-out
user "posts" N of their artists (a seeded random N, standing in for the first N listens);
the service's answer for this unknown user (fold-in, ``foldin_min_listens`` = 1) and the
popular list (also without the posted artists) are scored with NDCG@10 on the user's other
artists. The paired bootstrap CI is the project's (:func:`encore.evaluation.metrics.paired_comparison`).
Results go to ``benchmarks/results/foldin.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from encore.candidates import make_recommender, similar_items
from encore.config.experiment import REPO_ROOT
from encore.data.lastfm2k import load_lastfm2k
from encore.evaluation import metrics
from encore.recommenders.ease import EASEConfig
from encore.serving.blended_model import ServedModel
from encore.serving.pyfunc import EncoreServingModel, write_bundle

RESULTS = REPO_ROOT / "benchmarks" / "results"
K = 10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.foldin", description=__doc__.split("\n")[0])
    default_dir = os.environ.get("ENCORE_LASTFM2K_DIR", str(REPO_ROOT.parent / "shared/datasets/hetrec2011-lastfm-2k"))
    parser.add_argument("--lastfm2k", default=default_dir, help="the hetrec2011-lastfm-2k folder")
    parser.add_argument("--listens", default="1,3,5,10", help="N values: listens each new user posts")
    parser.add_argument("--holdout", type=float, default=0.2, help="share of eligible users held out")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    listens = [int(n) for n in args.listens.split(",")]
    started = time.perf_counter()

    ds = load_lastfm2k(Path(args.lastfm2k))
    inter = ds.interactions
    rng = np.random.default_rng(args.seed)
    counts = np.bincount(inter["user"], minlength=ds.n_users)
    eligible = np.flatnonzero(counts >= max(listens) + 5)
    held = np.sort(rng.choice(eligible, size=int(len(eligible) * args.holdout), replace=False))
    train = inter[~inter["user"].isin(held)]
    n_items = len(ds.item_ids)
    user_items = sp.csr_matrix((train["weight"].to_numpy(np.float32), (train["user"], train["item"])),
                               shape=(ds.n_users, n_items))
    section = EASEConfig(kind="ease")
    model = make_recommender(section, args.seed).fit(user_items)
    sim = similar_items(model, n_items, section.n_similar, section.batch_size)
    listeners = np.bincount(train["item"], minlength=n_items)
    order = np.argsort(-listeners, kind="stable")[:200]  # as the ranker's bundle
    item_raw = ds.item_ids.astype(str)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = write_bundle(
            Path(tmp), recommendations=pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str),
                                                     "rank": pd.Series(dtype="int64"),
                                                     "score": pd.Series(dtype="float64")}),
            popular=pd.DataFrame({"item_id": item_raw[order], "score": listeners[order].astype(np.float64)}),
            similar_items=pd.DataFrame({"item_id": item_raw[sim["item"]],
                                        "similar_item_id": item_raw[sim["similar_item"]],
                                        "score": sim["score"].astype(np.float64), "rank": sim["rank"]}),
            items=pd.DataFrame({"item_id": item_raw, "name": item_raw}))
        served = ServedModel.from_tables(EncoreServingModel().load_bundle(bundle), name="foldin-benchmark",
                                         version="0", run_id=None)
    to_served = np.asarray([served.item_index[i] for i in item_raw])  # dataset index -> served index

    held_rows = inter[inter["user"].isin(held)].sort_values(["user", "item"])
    rows: list[dict[str, float]] = []
    for n in listens:
        user_rng = np.random.default_rng(args.seed + n)
        fold, pop, relevant_rows, relevant_cols = [], [], [], []
        for row, (user, group) in enumerate(held_rows.groupby("user", sort=True)):  # offline loop, not serving
            items = to_served[user_rng.permutation(group["item"].to_numpy())]
            posted, rest = items[:n], items[n:]
            raw_user = f"new-{user}"
            fold.append(_indices(served, served.recommend(raw_user, posted[::-1], K, recent_listens=3,
                                                          online_share=0.5, foldin_min_listens=1)))
            pop.append(_indices(served, served.recommend(raw_user, posted[::-1], K, recent_listens=3,
                                                         online_share=0.0, foldin_min_listens=10**9)))
            relevant_rows.append(np.full(len(rest), row))
            relevant_cols.append(rest)
        relevant = sp.csr_matrix((np.ones(sum(map(len, relevant_cols))),
                                  (np.concatenate(relevant_rows), np.concatenate(relevant_cols))),
                                 shape=(len(fold), served.n_items))
        n_rel = np.diff(relevant.indptr)
        nd_fold = metrics.ndcg_at_k(metrics.hits_matrix(np.asarray(fold), relevant), n_rel, K)
        nd_pop = metrics.ndcg_at_k(metrics.hits_matrix(np.asarray(pop), relevant), n_rel, K)
        cmp = metrics.paired_comparison(nd_pop, nd_fold, metric="ndcg@10")
        rows.append({"listens": n, "users": len(fold), "ndcg10_foldin": float(nd_fold.mean()),
                     "ndcg10_popular": float(nd_pop.mean()),
                     "uplift_pct": float(100 * (nd_fold.mean() / nd_pop.mean() - 1)),
                     "diff_ci_low": float(cmp.ci_low), "diff_ci_high": float(cmp.ci_high)})
        print(json.dumps(rows[-1]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    seconds = time.perf_counter() - started
    (RESULTS / "foldin.json").write_text(json.dumps({"rows": rows, "seconds": seconds, "held_out_users": len(held),
                                                     "cores": os.cpu_count()}, indent=2))
    lines = ["| listens posted (N) | held-out users | NDCG@10 fold-in | NDCG@10 popular | uplift "
             "| 95% CI of the difference |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['listens']} | {r['users']} | {r['ndcg10_foldin']:.4f} | {r['ndcg10_popular']:.4f} | "
              f"{r['uplift_pct']:+.0f}% | {r['diff_ci_low']:+.4f} … {r['diff_ci_high']:+.4f} |" for r in rows]
    (RESULTS / "foldin.md").write_text("\n".join(lines) + f"\n\n{seconds:.0f} s on {os.cpu_count()} cores\n")
    print("\n".join(lines))
    return 0


def _indices(served: ServedModel, rec) -> np.ndarray:
    return np.asarray([served.item_index[i] for i in rec.item_ids], dtype=np.int64)


if __name__ == "__main__":
    raise SystemExit(main())
