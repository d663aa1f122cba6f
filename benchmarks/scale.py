"""Scale benchmark: the whole pipeline at 1M, 3M and 10M synthetic interactions.

    python -m benchmarks.scale [--sizes 1m,3m,10m] [--name scale] [--workdir DIR]

For each size (``experiments/synthetic_<size>.yaml``) the default pipeline (prepare, every
generator instance, ranker, evaluate) runs as a user runs it — one ``python -m encore.pipeline``
process, fresh for each size, with tracking on (a fresh SQLite store). The runner logs each
component's wall time (``time_run_seconds``) and its own peak RSS (``peak_rss_mib``: the
process's ``VmHWM``, reset as the component starts, :func:`encore.resources.measure_peak`);
the benchmark reads them back from the store. Reported per size: per-component time and peak
RSS, the pipeline's wall time (the process's, start-up and tracking included) and its peak (the
process's), the ranker's NDCG@10 against the best single generator with the paired CI from
``evaluate``; between sizes, each component's growth exponent ``log(t2 / t1) / log(n2 / n1)``
over the interaction counts; each component's CPU seconds (user + sys of the process, every
thread: ``cpu_run_seconds``) beside its wall time, since the wall time of a shared machine grows
with its load. Written to ``benchmarks/results/<name>.json`` and ``.md``; this is a benchmark,
not a test.

    python -m benchmarks.scale --project 30m [--project-from scale.json]

writes ``benchmarks/results/scale-30m-projection.json`` instead: each component's time and peak
RSS at 30M interactions extrapolated from the measured file's smallest and largest sizes
(``t_30M = t_10M * 3 ** exponent``, the same for the peak with its own exponent), with the
commit those measurements were taken on. A projection, not a measurement: it assumes each
component keeps the growth it showed between the measured sizes.

    python -m benchmarks.scale --add-phases scale.json [--workdir DIR]

adds each component's phases (``fit_base``, ``recommend_train``, ...: the ``*_seconds`` metrics
of its run) to a file measured before they were recorded, from the stores its runs left in the
workdir; refused unless those runs were made on the file's commit.

    python -m benchmarks.scale --sizes 3m --replace-in scale.json

re-runs the given sizes and replaces them in an existing result file measured on the same commit
(growth recomputed, the re-run sizes marked ``rerun``): for a size whose run was disturbed by
other work on the machine, without re-running the others.
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

from benchmarks.docs_figures import cpu_model
from benchmarks.peak import measured_command, read_peak_bytes
from encore.config.experiment import REPO_ROOT, EncoreConfig, MachineSettings, load_config
from encore.data.prepared import PreparedData
from encore.lineage import git_commit
from encore.outputs import EvaluateOutput
from encore.pipeline import output_dir, pipeline_components

RESULTS = REPO_ROOT / "benchmarks" / "results"
GIB = 2**30


RUN_SECONDS = ("time_run_seconds", "cpu_run_seconds")
"""The runner's own figures of a component run; its other ``*_seconds`` metrics are its phases."""


def component_runs(config: EncoreConfig) -> dict[str, Any]:
    """Each component's MLflow run of the pipeline in the store, by component name."""
    import mlflow

    mlflow.set_tracking_uri(config.tracking.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[config.tracking.experiment_name or config.experiment.name],
                              output_format="list")
    return {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}


def phases(metrics: dict[str, float]) -> dict[str, float]:
    """A component's named phases (``fit_base``, ``recommend_train``, ...: ``encore.progress.Timings``)."""
    return {key.removesuffix("_seconds"): value for key, value in sorted(metrics.items())
            if key.endswith("_seconds") and key not in RUN_SECONDS}


def component_figures(config: EncoreConfig) -> dict[str, dict[str, Any]]:
    """Each component run's ``seconds``, ``peak_rss_bytes``, CPU seconds and phases, in pipeline
    order, from the store."""
    by_name = {name: run.data.metrics for name, run in component_runs(config).items()}
    return {name: {"seconds": by_name[name]["time_run_seconds"],
                   "peak_rss_bytes": by_name[name]["peak_rss_mib"] * 2**20}
            | ({"cpu_seconds": by_name[name]["cpu_run_seconds"]} if "cpu_run_seconds" in by_name[name] else {})
            | {"phases": phases(by_name[name])}
            for name in pipeline_components(config) if name in by_name}


def size_config(experiment: Path, folder: Path) -> EncoreConfig:
    """The experiment as one size's run sees it: outputs in ``folder/outputs``, its own SQLite store."""
    settings = MachineSettings(_env_file=None, encore_output_dir=folder / "outputs",
                               mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    return load_config(experiment, settings=settings)


def add_phases(name: str, workdir: Path) -> int:
    """Add each component's phases to the result file ``name`` from the stores its runs left in
    ``workdir`` (for files measured before phases were recorded); refused unless every run there
    was made on the file's commit, so the phases are those of the measured runs."""
    path = RESULTS / name
    report = json.loads(path.read_text())
    for size, result in report["results"].items():
        folder = workdir / size
        runs = component_runs(size_config(REPO_ROOT / result["experiment"], folder))
        commits = {run.data.tags.get("encore.git_commit") for run in runs.values()}
        if commits != {report["commit"]}:
            raise SystemExit(f"error: --add-phases: the {size} runs in {folder} were made on "
                             f"{sorted(map(str, commits))}, not on {name}'s commit {report['commit']}")
        for component, figures in result["components"].items():
            figures["phases"] = phases(runs[component].data.metrics)
    path.write_text(json.dumps(report, indent=2))
    print(f"{name}: phases added for {', '.join(report['results'])}")
    return 0


def bench_size(size: str, workdir: Path) -> dict[str, Any]:
    experiment = REPO_ROOT / "experiments" / f"synthetic_{size}.yaml"
    folder = workdir / size
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    load_at_start = os.getloadavg()
    config = size_config(experiment, folder)
    env = os.environ | {"ENCORE_OUTPUT_DIR": str(config.output_dir),
                        "MLFLOW_TRACKING_URI": str(config.tracking.tracking_uri)}
    peak_file = folder / ".peak-pipeline"
    started = time.perf_counter()
    with (folder / "pipeline.log").open("w") as log:
        code = subprocess.run(measured_command("encore.pipeline", ["--experiment", str(experiment)],
                                               peak_file),
                              env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"the {size} pipeline failed (exit {code}); see {folder / 'pipeline.log'}")
    components = component_figures(config)
    for name, figures in components.items():
        print(f"  {size} {name}: {figures['seconds']:.1f} s, {figures['peak_rss_bytes'] / GIB:.2f} GiB", flush=True)
    summary = PreparedData(output_dir(config, "prepare")).summary
    significance = EvaluateOutput(output_dir(config, "evaluate")).significance()
    return {
        "experiment": str(experiment.relative_to(REPO_ROOT)),
        "n_interactions": int(summary["n_interactions"]), "n_users": int(summary["n_users"]),
        "n_items": int(summary["n_items"]),
        "components": components,
        "total_seconds": wall,
        "overhead_seconds": wall - sum(c["seconds"] for c in components.values()),
        "peak_rss_bytes": read_peak_bytes(peak_file),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "best_generator": significance["best_generator"],
        "vs_best_generator": significance.get("vs_best_generator", {}),
    }


def growth(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per component, the exponent of time in interactions between consecutive sizes, and
    between the smallest and the largest (the target's 1M -> 10M) when there are more than two."""
    sizes = list(results)
    out: dict[str, dict[str, float]] = {}
    pairs = list(itertools.pairwise(sizes)) + ([(sizes[0], sizes[-1])] if len(sizes) > 2 else [])
    for small, large in pairs:
        ratio = math.log(results[large]["n_interactions"] / results[small]["n_interactions"])
        out[f"{small}->{large}"] = {
            name: math.log(results[large]["components"][name]["seconds"] / timing["seconds"]) / ratio
            for name, timing in results[small]["components"].items() if name in results[large]["components"]
        }
    return out


def machine() -> dict[str, Any]:
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "0")
    cpu = next((line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "cpu_model": cpu, "memory_gib": round(int(memory) / 2**20, 1), "load_average_at_start": os.getloadavg()}


def cpu_cell(figures: dict[str, float]) -> str:
    """A component's CPU seconds, or a dash for files measured before they were logged."""
    return f"{figures['cpu_seconds']:.0f}" if "cpu_seconds" in figures else "—"


def measured_commit(name: str) -> str:
    """The commit a result file's figures were measured on: its ``commit`` key, else its entry
    in ``benchmarks/results/provenance.json`` (files written before results carried it)."""
    report = json.loads((RESULTS / name).read_text())
    if report.get("commit"):
        return str(report["commit"])
    entry = json.loads((RESULTS / "provenance.json").read_text()).get(name, {})
    if not entry.get("measured_on"):
        raise SystemExit(f"error: benchmarks/results/provenance.json has no 'measured_on' for {name}")
    return str(entry["measured_on"])


def interactions(size: str) -> int:
    """``30m`` -> 30,000,000; ``500k`` -> 500,000."""
    units = {"k": 10**3, "m": 10**6, "b": 10**9}
    try:
        return int(float(size[:-1]) * units[size[-1].lower()])
    except (KeyError, ValueError, IndexError):
        raise SystemExit(f"error: --project {size!r}: expected a size such as 30m") from None


def project(measured: dict[str, Any], target: int) -> dict[str, Any]:
    """Each component's time and peak RSS at ``target`` interactions, from the measured
    report's smallest and largest sizes: ``value_large * (target / n_large) ** exponent`` with
    the exponent of that value between the two sizes (time and peak each their own). The
    start-up and tracking overhead is taken as the largest size's (it does not grow); the
    pipeline's time is the components' sum plus it, its peak the largest component peak."""
    sizes = list(measured["results"])
    small, large = measured["results"][sizes[0]], measured["results"][sizes[-1]]
    span = math.log(large["n_interactions"] / small["n_interactions"])
    ahead = target / large["n_interactions"]
    components = {}
    for name, figures in large["components"].items():
        base = small["components"][name]
        time_exp = math.log(figures["seconds"] / base["seconds"]) / span
        rss_exp = math.log(figures["peak_rss_bytes"] / base["peak_rss_bytes"]) / span
        components[name] = {"seconds": figures["seconds"] * ahead**time_exp, "time_exponent": time_exp,
                            "peak_rss_bytes": figures["peak_rss_bytes"] * ahead**rss_exp, "rss_exponent": rss_exp}
    return {"from_sizes": [sizes[0], sizes[-1]], "n_interactions": target,
            "components": components, "overhead_seconds": large["overhead_seconds"],
            "total_seconds": sum(c["seconds"] for c in components.values()) + large["overhead_seconds"],
            "peak_rss_bytes": max(c["peak_rss_bytes"] for c in components.values())}


def projection_markdown(report: dict[str, Any]) -> str:
    """The projection as a table: per component, projected seconds and GiB and the exponents used."""
    p = report["projection"]
    small, large = p["from_sizes"]
    lines = [f"Projection to {p['n_interactions']:,} interactions from {report['projected_from']} "
             f"({small} and {large}, measured on commit {report['measured_commit'][:7]}); not a measurement.",
             "", f"| component | projected s | time exponent {small}->{large} | projected GiB | "
             f"peak exponent {small}->{large} |", "|---|---|---|---|---|"]
    for name, c in p["components"].items():
        lines.append(f"| {name} | {c['seconds']:.0f} | {c['time_exponent']:.2f} | "
                     f"{c['peak_rss_bytes'] / GIB:.2f} | {c['rss_exponent']:.2f} |")
    lines.append(f"| start-up, tracking | {p['overhead_seconds']:.0f} | — | — | — |")
    lines.append(f"| **pipeline** | **{p['total_seconds']:.0f}** | | **{p['peak_rss_bytes'] / GIB:.2f}** | |")
    return "\n".join(lines) + "\n"


def markdown(report: dict[str, Any]) -> str:
    results, exponents = report["results"], report["growth"]
    sizes = list(results)
    lines = [f"Machine: {report['machine']['cpus']} cores{cpu_model(report['machine'])}, "
             f"{report['machine']['memory_gib']} GiB, "
             f"Python {report['machine']['python']}; load average at start "
             f"{report['machine']['load_average_at_start'][0]:.1f}, at end {report['load_average_at_end'][0]:.1f}.",
             "", "| component | " + " | ".join(f"{s}: s (CPU s) / GiB" for s in sizes) + " | "
             + " | ".join(f"exponent {k}" for k in exponents) + " |",
             "|---|" + "---|" * (len(sizes) + len(exponents))]
    for name in results[sizes[0]]["components"]:
        cells = [f"{results[s]['components'][name]['seconds']:.0f} ({cpu_cell(results[s]['components'][name])}) / "
                 f"{results[s]['components'][name]['peak_rss_bytes'] / GIB:.2f}" for s in sizes]
        cells += [f"{exponents[k].get(name, float('nan')):.2f}" for k in exponents]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| start-up, tracking | " + " | ".join(
        f"{results[s]['overhead_seconds']:.0f} / —" for s in sizes) + " |" + " |" * len(exponents))
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


COMPUTING_PATHS = ("encore", "experiments", "config", "setup.py", "pyproject.toml", "requirements.txt")
"""What a pipeline run's figures depend on: two commits equal on these compute the same."""


def same_computation(measured: str, current: str) -> bool:
    """Whether two commits (neither with uncommitted changes) hold the same ``COMPUTING_PATHS``."""
    if measured.endswith("-dirty") or current.endswith("-dirty") or "unknown" in (measured, current):
        return False
    diff = subprocess.run(["git", "diff", "--quiet", measured, current, "--", *COMPUTING_PATHS],
                          cwd=REPO_ROOT, capture_output=True)
    return diff.returncode == 0


def replace_sizes(name: str, sizes: list[str], workdir: Path) -> int:
    """Re-run ``sizes`` and put them into the result file ``name`` in place of its own runs of
    them; refused unless the file was measured on the current commit (a table mixes no commits)."""
    path = RESULTS / name
    if not path.exists():
        raise SystemExit(f"error: --replace-in: {path} does not exist")
    report = json.loads(path.read_text())
    commit = git_commit()
    if report.get("commit") != commit and not same_computation(report.get("commit", ""), commit):
        raise SystemExit(f"error: --replace-in: {name} was measured on {report.get('commit')}, and this "
                         f"tree ({commit}) computes differently ({', '.join(COMPUTING_PATHS)}); re-run every size")
    unknown = [size for size in sizes if size not in report["results"]]
    if unknown:
        raise SystemExit(f"error: --replace-in: {name} has no size {', '.join(unknown)}")
    for size in sizes:
        report["results"][size] = bench_size(size, workdir) | {"rerun_commit": commit}
    report["growth"] = growth(report["results"])
    path.write_text(json.dumps(report, indent=2))
    path.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1m,3m,10m", help="comma-separated: experiments/synthetic_<size>.yaml")
    parser.add_argument("--name", default="scale", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--project", metavar="SIZE",
                        help="instead of running: project each component to SIZE interactions (e.g. 30m) "
                             "from --project-from's smallest and largest sizes")
    parser.add_argument("--project-from", default="scale.json",
                        help="the measured result file the projection reads (default scale.json)")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "outputs" / "benchmark-scale",
                        help="where each size's outputs and MLflow store go (default outputs/benchmark-scale)")
    parser.add_argument("--replace-in", metavar="NAME",
                        help="re-run --sizes and replace them in this result file (same commit required)")
    parser.add_argument("--add-phases", metavar="NAME",
                        help="add each component's phases to this result file from the runs it measured "
                             "(still in --workdir, made on its commit)")
    args = parser.parse_args(argv)
    if args.add_phases:
        return add_phases(args.add_phases, args.workdir)
    if args.replace_in:
        return replace_sizes(args.replace_in, args.sizes.split(","), args.workdir)
    if args.project:
        source = RESULTS / args.project_from
        if not source.exists():
            raise SystemExit(f"error: --project-from: {source} does not exist")
        measured = json.loads(source.read_text())
        if len(measured.get("results", {})) < 2:
            raise SystemExit(f"error: --project-from: {source} holds fewer than two sizes; nothing to extrapolate")
        projected = {"commit": git_commit(), "projected_from": args.project_from,
                     "measured_commit": measured_commit(args.project_from),
                     "projection": project(measured, interactions(args.project))}
        name = f"scale-{args.project}-projection"
        (RESULTS / f"{name}.json").write_text(json.dumps(projected, indent=2))
        (RESULTS / f"{name}.md").write_text(projection_markdown(projected))
        print(projection_markdown(projected))
        return 0
    report: dict[str, Any] = {"commit": git_commit(), "machine": machine(), "results": {}}
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
