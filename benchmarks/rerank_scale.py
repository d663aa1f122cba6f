"""What one setting of the re-ranking grid costs as the number of users grows.

    python -m benchmarks.rerank_scale [--users 10000,100000,1000000] [--items 200000]
                                      [--top-k 100] [--grid-from RESULT] [--name rerank_scale]

The component re-ranks every user's lists once per grid setting (``encore.components.rerank.
reranked``: the steps per user batch by batch, then the exposure cap and the coverage fill over
every user at once); the steps per user run once per group of settings that share them
(``before_cap``). For each size this times both parts, with the component's own functions, on
synthetic lists shaped like a music service's: ``top_k``
candidates per user drawn from a Zipf(1) popularity over the catalogue (a heavy head, a long
tail), probabilities falling with rank, 20 content candidates among the newest 2% of items, and
users' idle days exponential with a 30-day mean. Each size runs in a fresh process, so its peak
resident memory (``VmHWM``) is its own. The settings are the coverage configuration's
(docs/reranking.md, Results): no re-ranking, the popularity penalty alone, the fill alone, and
the fill weighed by chance with a cost limit, for active users first; and MMR over 256-dimensional
item vectors, the default grid's step. The report also costs two grids: a recorded re-ranking
run's (``--grid-from``) and the default one, each by its settings, the groups of them that share
their per-user steps, and how many of each run the dear step (MMR, the fill). Results go to
``benchmarks/results/<name>.json``; ``python -m benchmarks.docs_figures`` renders them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.docs_figures import RESULTS, write_result
from benchmarks.peak import measured_command, read_peak_bytes
from benchmarks.scale import machine
from encore.components.rerank import StageLists, before_cap, before_cap_key, reranked
from encore.config.experiment import REPO_ROOT, load_config
from encore.config.machine import MachineSettings
from encore.lineage import git_commit
from encore.reranking.steps import ItemSide, Settings, settings_grid

CONTENT = 20
NEW_SHARE = 0.02
EMBEDDING_DIMS = 256
"""MMR's item vectors: item2item's tag SVD has 256 dimensions by default (``embeddings_from``)."""
SETTINGS = {
    "unchanged": {},
    "MMR λ 0.8": {"mmr_lambda": 0.8},
    "popularity penalty 0.25": {"popularity_penalty": 0.25},
    "fill 8": {"coverage_slots": 8},
    "fill 10 (active 30 d first) by chance ≤ 0.03, penalty 0.25": {
        "popularity_penalty": 0.25, "coverage_slots": 10, "coverage_active_days": 30.0,
        "coverage_active_first": True, "coverage_cost": "chance", "coverage_max_cost": 0.03},
}
"""The settings timed, by label: MMR (the default grid's step) and the coverage configuration's
kinds of step (``Settings`` fields)."""


def synthetic_lists(n_users: int, n_items: int, top_k: int, seed: int = 0) -> tuple[StageLists, ItemSide]:
    """Every user's ranker list and content candidates, and the item side, shaped like music data."""
    rng = np.random.default_rng(seed)
    n_new = max(int(NEW_SHARE * n_items), CONTENT)
    heard = n_items - n_new
    weights = 1.0 / np.arange(1, heard + 1)
    cumulative = np.cumsum(weights / weights.sum())
    items = np.empty((n_users, top_k), dtype=np.int64)
    for start in range(0, n_users, 65536):  # bounded memory: the draw is 1.5 x top_k per user
        rows = min(65536, n_users - start)
        drawn = np.minimum(np.searchsorted(cumulative, rng.random((rows, int(1.5 * top_k)))), heard - 1)
        drawn = np.sort(drawn, axis=1)
        drawn[:, 1:][drawn[:, 1:] == drawn[:, :-1]] = -1  # repeats out, each row's distinct items kept
        order = np.argsort(drawn < 0, axis=1, kind="stable")
        distinct = np.take_along_axis(drawn, order, axis=1)[:, :top_k]
        shuffled = np.argsort(np.where(distinct >= 0, rng.random(distinct.shape), 2.0), axis=1)
        items[start:start + rows] = np.take_along_axis(distinct, shuffled, axis=1)
    ranks = np.arange(1, top_k + 1)
    confidence = rng.lognormal(0.0, 0.5, n_users)[:, None]
    scores = np.where(items >= 0, np.minimum(0.3 * confidence * ranks ** -0.7, 0.99), 0.0)  # 0: padding, as read
    content_items = heard + (rng.integers(0, n_new, n_users)[:, None] + np.arange(CONTENT)) % n_new  # distinct
    content_scores = np.sort(rng.random((n_users, CONTENT)), axis=1)[:, ::-1]
    content_ranks = np.sort(rng.integers(1, 500, (n_users, CONTENT)), axis=1)
    lists = StageLists(np.arange(n_users, dtype=np.int64), items, scores, content_items, content_scores,
                       content_ranks, rng.exponential(30.0, n_users), np.ones(n_users, dtype=bool))
    ages = np.concatenate([rng.uniform(30.0, 3000.0, heard), rng.uniform(0.0, 30.0, n_new)])
    listeners = np.concatenate([n_users * weights / weights[0], np.zeros(n_new)])
    vectors = rng.standard_normal((n_items, EMBEDDING_DIMS))
    side = ItemSide(age_days=ages, embeddings=vectors / np.linalg.norm(vectors, axis=1, keepdims=True),
                    popularity=np.log1p(listeners) / np.log1p(listeners.max()))
    return lists, side


def measure(n_users: int, n_items: int, top_k: int) -> dict[str, Any]:
    """Per setting: the seconds of its per-user steps (:func:`before_cap`, once per group of
    settings that share them) and of the rest (the cap, the floor, the fill, the cut to ``top_k``)."""
    started = time.perf_counter()
    lists, side = synthetic_lists(n_users, n_items, top_k)
    built = time.perf_counter() - started
    nothing = np.zeros(0, dtype=np.int64)
    per_user, across = {}, {}
    for label, fields in SETTINGS.items():
        settings = Settings(top_k=top_k, **fields)
        started = time.perf_counter()
        start = before_cap(lists, side, settings, blocked=nothing, rejected=nothing, n_items=n_items)
        per_user[label] = time.perf_counter() - started
        started = time.perf_counter()
        out = reranked(lists, side, settings, blocked=nothing, rejected=nothing, n_items=n_items, start=start)
        across[label] = time.perf_counter() - started
        assert out.shape == (n_users, top_k)
        del start
        print(f"{n_users:,} users: {label}: {per_user[label]:.2f} + {across[label]:.2f} s", flush=True)
    return {"n_users": n_users, "n_items": n_items, "top_k": top_k, "build_seconds": built,
            "per_user_seconds": per_user, "across_seconds": across}


def grid_size(experiment: Path, overrides: list[str], name: str) -> dict[str, Any]:
    """The rerank grid of ``experiment`` with ``overrides``: how many settings, how many groups of
    them share their per-user steps (:func:`before_cap_key`), and of each how many run the dear
    step: groups with MMR (λ < 1), settings with the coverage fill."""
    config = load_config(experiment, ["components.rerank.enabled=true", *overrides],
                         settings=MachineSettings(_env_file=None, encore_data_dir=None, encore_output_dir=None,
                                                  mlflow_tracking_uri=None))
    grid = settings_grid(config.components.rerank, config.components.ranker.top_k)
    groups = {before_cap_key(s): s for s in grid}
    return {"name": name, "settings": len(grid), "groups": len(groups),
            "mmr_groups": sum(s.mmr_lambda < 1.0 for s in groups.values()),
            "fill_settings": sum(s.coverage_slots > 0 for s in grid)}


def grids(result: Path) -> list[dict[str, Any]]:
    """The grids the report costs: the recorded run's (its experiment and overrides) and the
    default one (``config/components.yaml``'s, which ``enabled: true`` alone searches)."""
    recorded = json.loads(result.read_text())
    return [grid_size(REPO_ROOT / recorded["experiment"], recorded["overrides"], result.name.removesuffix(".json")),
            grid_size(REPO_ROOT / recorded["experiment"], [], "the default grid")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rerank_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--users", default="10000,100000,1000000", help="comma-separated numbers of users")
    parser.add_argument("--items", type=int, default=200_000, help="catalogue size")
    parser.add_argument("--top-k", type=int, default=100, help="the ranker's list length (components.ranker.top_k)")
    parser.add_argument("--grid-from", type=Path,
                        default=RESULTS / "rerank-lastfm2k_time-fill-first-top100-xfit-limit.json",
                        help="a re-ranking result file whose grid the report costs (beside the default grid)")
    parser.add_argument("--name", default="rerank_scale", help="results file name")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a size, in this process: the child's mode
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        args.out.write_text(json.dumps(measure(args.one, args.items, args.top_k)))
        return 0
    sizes = [int(size) for size in args.users.split(",")]
    report: dict[str, Any] = {"commit": git_commit(), "machine": machine(), "settings": SETTINGS,
                              "embedding_dims": EMBEDDING_DIMS,
                              "grids": grids(args.grid_from), "sizes": []}
    with tempfile.TemporaryDirectory() as scratch:
        for size in sizes:
            out, peak = Path(scratch) / f"{size}.json", Path(scratch) / f"{size}.peak"
            command = measured_command("benchmarks.rerank_scale", ["--one", str(size), "--out", str(out),
                                                                   "--items", str(args.items),
                                                                   "--top-k", str(args.top_k)], peak)
            subprocess.run(command, check=True, cwd=REPO_ROOT)
            report["sizes"].append(json.loads(out.read_text()) | {"peak_rss_mib": read_peak_bytes(peak) / 2**20})
    report["load_average_at_end"] = os.getloadavg()
    write_result(args.name, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
