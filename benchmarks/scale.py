"""Scale benchmark: the whole pipeline at 1M, 3M and 10M synthetic interactions.

    python -m benchmarks.scale [--sizes 1m,3m,10m] [--name scale] [--workdir DIR]

For each size (``experiments/synthetic_<size>.yaml``) every component of the default
pipeline (prepare, every generator instance, ranker, evaluate) runs in a fresh process of
its own, in pipeline order, with tracking on (a fresh SQLite store), so each component's
wall time and peak RSS are its own (read by the process itself, :mod:`benchmarks.peak`).
Reported per size: per-component time
and peak RSS, the pipeline's total (the sum, process start-ups included) and its peak (the
largest component's), the ranker's NDCG@10 against the best single generator with the
paired CI from ``evaluate``; between sizes, each component's growth exponent
``log(t2 / t1) / log(n2 / n1)`` over the interaction counts. Written to
``benchmarks/results/<name>.json`` and ``.md``; this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.peak import measured_command, read_peak_bytes
from scripts.core.config import REPO_ROOT, MachineSettings, load_config
from scripts.core.outputs import EvaluateOutput
from scripts.core.prepared import PreparedData
from scripts.pipeline.runner import output_dir, pipeline_components

RESULTS = REPO_ROOT / "benchmarks" / "results"
GIB = 2**30


def run_component(experiment: Path, component: str, env: dict[str, str], log_file: Path) -> dict[str, float]:
    """One component in a fresh process: wall seconds and peak RSS (bytes) of that process,
    read by the process itself (:mod:`benchmarks.peak`)."""
    peak_file = log_file.with_name(f".peak-{component}")
    command = measured_command("scripts.pipeline.runner", ["--experiment", str(experiment), "--components",
                                                           component], peak_file)
    started = time.perf_counter()
    with log_file.open("a") as log:
        code = subprocess.run(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{component} failed (exit {code}); see {log_file}")
    return {"seconds": wall, "peak_rss_bytes": read_peak_bytes(peak_file)}


def bench_size(size: str, workdir: Path) -> dict[str, Any]:
    experiment = REPO_ROOT / "experiments" / f"synthetic_{size}.yaml"
    folder = workdir / size
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = os.environ | {"ENCORE_OUTPUT_DIR": str(folder / "outputs"),
                        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    settings = MachineSettings(_env_file=None, encore_output_dir=folder / "outputs",
                               mlflow_tracking_uri=env["MLFLOW_TRACKING_URI"])
    config = load_config(experiment, settings=settings)
    components: dict[str, dict[str, float]] = {}
    for component in pipeline_components(config):
        components[component] = run_component(experiment, component, env, folder / "pipeline.log")
        print(f"  {size} {component}: {components[component]['seconds']:.1f} s, "
              f"{components[component]['peak_rss_bytes'] / GIB:.2f} GiB", flush=True)
    summary = PreparedData(output_dir(config, "prepare")).summary
    significance = EvaluateOutput(output_dir(config, "evaluate")).significance()
    return {
        "experiment": str(experiment.relative_to(REPO_ROOT)),
        "n_interactions": int(summary["n_interactions"]), "n_users": int(summary["n_users"]),
        "n_items": int(summary["n_items"]),
        "components": components,
        "total_seconds": sum(c["seconds"] for c in components.values()),
        "peak_rss_bytes": max(c["peak_rss_bytes"] for c in components.values()),
        "best_generator": significance["best_generator"],
        "vs_best_generator": significance.get("vs_best_generator", {}),
    }


def growth(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per component, the exponent of time in interactions between consecutive sizes."""
    sizes = list(results)
    out: dict[str, dict[str, float]] = {}
    for small, large in itertools.pairwise(sizes):
        ratio = math.log(results[large]["n_interactions"] / results[small]["n_interactions"])
        out[f"{small}->{large}"] = {
            name: math.log(results[large]["components"][name]["seconds"] / timing["seconds"]) / ratio
            for name, timing in results[small]["components"].items() if name in results[large]["components"]
        }
    return out


def machine() -> dict[str, Any]:
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "0")
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "memory_gib": round(int(memory) / 2**20, 1), "load_average_at_start": os.getloadavg()}


def markdown(report: dict[str, Any]) -> str:
    results, exponents = report["results"], report["growth"]
    sizes = list(results)
    lines = [f"Machine: {report['machine']['cpus']} cores, {report['machine']['memory_gib']} GiB, "
             f"Python {report['machine']['python']}; load average at start "
             f"{report['machine']['load_average_at_start'][0]:.1f}, at end {report['load_average_at_end'][0]:.1f}.",
             "", "| component | " + " | ".join(f"{s}: s / GiB" for s in sizes) + " | "
             + " | ".join(f"exponent {k}" for k in exponents) + " |",
             "|---|" + "---|" * (len(sizes) + len(exponents))]
    for name in results[sizes[0]]["components"]:
        cells = [f"{results[s]['components'][name]['seconds']:.0f} / "
                 f"{results[s]['components'][name]['peak_rss_bytes'] / GIB:.2f}" for s in sizes]
        cells += [f"{exponents[k].get(name, float('nan')):.2f}" for k in exponents]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **pipeline** | " + " | ".join(
        f"**{results[s]['total_seconds']:.0f} / {results[s]['peak_rss_bytes'] / GIB:.2f}**" for s in sizes)
        + " |" + " |" * len(exponents))
    lines += ["", "| size | interactions | users × items | ranker NDCG@10 | best generator | uplift (95% CI) |",
              "|---|---|---|---|---|---|"]
    for s in sizes:
        r = results[s]
        vs = {key: r["vs_best_generator"].get(key, float("nan"))
              for key in ("mean_a", "mean_b", "rel_uplift", "rel_ci_low", "rel_ci_high")}
        lines.append(f"| {s} | {r['n_interactions']:,} | {r['n_users']:,} × {r['n_items']:,} | "
                     f"{vs['mean_b']:.4f} | {r['best_generator']} {vs['mean_a']:.4f} | "
                     f"{100 * vs['rel_uplift']:+.1f}% "
                     f"({100 * vs['rel_ci_low']:+.1f}% .. {100 * vs['rel_ci_high']:+.1f}%) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1m,3m,10m", help="comma-separated: experiments/synthetic_<size>.yaml")
    parser.add_argument("--name", default="scale", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "outputs" / "benchmark-scale",
                        help="where each size's outputs and MLflow store go (default outputs/benchmark-scale)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"machine": machine(), "results": {}}
    for size in args.sizes.split(","):
        report["results"][size] = bench_size(size, args.workdir)
    report["growth"] = growth(report["results"])
    report["load_average_at_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
