"""Benchmark of the two preprocessing engines on Last.fm-1K-format listening events.

    python -m benchmarks.prepare_engines [--events 1000000,5000000] [--engines pandas,spark]

Writes a seeded synthetic events file in the Last.fm 1K layout (tab-separated, no header:
user, ISO timestamp, artist MBID, artist name, track MBID, track name; power-law artist
popularity, 5% of events without an artist MBID), then loads it with ``load_lastfm1k`` in a
fresh child process per engine: wall time of the load, peak memory of the Python process
and, for Spark, of its JVM (both from /proc VmHWM), and a check that both engines produced
the same interactions. Spark uses ``config/spark_config.yaml`` (or ``$ENCORE_SPARK_CONFIG``).
Results go to ``benchmarks/results/prepare_engines.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encore.config.experiment import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results"


def write_events(path: Path, n_events: int, *, seed: int = 0) -> None:
    """A Last.fm-1K-like events file with ``n_events`` lines, written in 1M-line chunks."""
    rng = np.random.default_rng(seed)
    n_users, n_artists = max(n_events // 20_000, 50), max(n_events // 100, 100)
    popularity = 1.0 / np.arange(1, n_artists + 1) ** 1.1
    popularity /= popularity.sum()
    artist_mbid = np.array([f"{i:08x}-77d8-4f12-8acd-{i:012x}" for i in range(n_artists)], dtype=object)
    artist_name = np.array([f"Artist {i}" for i in range(n_artists)], dtype=object)
    start = pd.Timestamp("2005-02-14").value // 10**9
    with path.open("w", encoding="utf-8") as fh:
        for first in range(0, n_events, 1_000_000):
            n = min(1_000_000, n_events - first)
            artist = rng.choice(n_artists, size=n, p=popularity)
            track = rng.integers(0, 12, size=n)
            seconds = start + rng.integers(0, 4 * 365 * 86400, size=n)
            frame = pd.DataFrame({
                "user": pd.Series(rng.integers(0, n_users, size=n)).map("user_{:06d}".format),
                "ts": pd.to_datetime(seconds, unit="s").strftime("%Y-%m-%dT%H:%M:%SZ"),
                "artist_mbid": np.where(rng.random(n) < 0.05, "", artist_mbid[artist]),
                "artist_name": artist_name[artist],
                "track_mbid": [f"t{a}-{t}" for a, t in zip(artist, track, strict=True)],
                "track_name": [f"Song {t}" for t in track],
            })
            frame.to_csv(fh, sep="\t", header=False, index=False)


CHILD = """
import hashlib, json, os, sys, time
from pathlib import Path
from encore.data.lastfm1k import load_lastfm1k

engine, path = sys.argv[1], Path(sys.argv[2])
spark = None
started = time.perf_counter()
if engine == "spark":
    from encore.data.spark_session import load_spark_settings, spark_session
    spark = spark_session(load_spark_settings())
session = time.perf_counter() - started
started = time.perf_counter()
ds = load_lastfm1k(path, spark=spark)
load = time.perf_counter() - started

def hwm_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0

children = [int(p) for p in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()]
digest = hashlib.sha256(ds.interactions.to_numpy(dtype="float64").tobytes()).hexdigest()[:16]
print(json.dumps({"engine": engine, "session_s": session, "load_s": load, "python_peak_mb": hwm_mb("self"),
                  "jvm_peak_mb": sum(hwm_mb(p) for p in children), "n_pairs": len(ds.interactions),
                  "n_users": ds.n_users, "n_items": ds.n_items, "interactions_sha": digest}))
"""


def run_engine(engine: str, path: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CHILD, engine, str(path)], capture_output=True, text=True,
                          cwd=REPO_ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(results: dict[str, Any]) -> str:
    lines = [f"Machine: {results['machine']}", "",
             "| events | file | engine | session start (s) | load + aggregate (s) | Python peak (MB) | "
             "JVM peak (MB) | pairs | same result |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        lines.append(
            f"| {run['events']:,} | {run['file_mb']:.0f} MB | {run['engine']} | {run['session_s']:.1f} | "
            f"{run['load_s']:.1f} | {run['python_peak_mb']:.0f} | {run['jvm_peak_mb']:.0f} | {run['n_pairs']:,} | "
            f"{run['same']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--events", default="1000000,5000000", help="comma-separated event counts")
    parser.add_argument("--engines", default="pandas,spark")
    parser.add_argument("--name", default="prepare_engines", help="results file name")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} "
                                          f"cores, Python {platform.python_version()}", "runs": []}
    with tempfile.TemporaryDirectory(prefix="encore-engines-") as tmp:
        for n_events in (int(x) for x in args.events.split(",")):
            path = Path(tmp) / f"events_{n_events}.tsv"
            write_events(path, n_events)
            digests = set()
            for engine in args.engines.split(","):
                run = run_engine(engine, path) | {"events": n_events, "file_mb": path.stat().st_size / 2**20}
                digests.add(run["interactions_sha"])
                results["runs"].append(run)
                print(json.dumps(run), flush=True)
            for run in results["runs"]:
                if run["events"] == n_events:
                    run["same"] = "yes" if len(digests) == 1 else "NO"
            path.unlink()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))
    return 0 if all(run["same"] == "yes" for run in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
