"""Bytes an experiment's run leaves in ``outputs/``, per component and per file kind.

    python -m benchmarks.outputs_size OUTPUTS_EXPERIMENT_DIR --label before [--commit SHA] [--out FILE]
    python -m benchmarks.outputs_size --run experiments/lastfm2k.yaml --label after [--out FILE]

Reads one ``outputs/<experiment>/`` folder (every ``<component>-<fingerprint>/`` in it) and adds
an entry ``runs.<label>`` to ``benchmarks/results/outputs-<experiment>.json``: total bytes, bytes per
component and per file (``model_*.npz``, ``candidates_*.parquet`` ...), the commit measured.
With ``--run``, it first runs that experiment's whole pipeline into a fresh temporary output
folder (nothing reused) and also records the pipeline's wall time, the load average before and
after it (timings on a shared machine are inflated by its load) and the ranker's primary metric.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from encore.config.experiment import REPO_ROOT, load_config
from encore.config.machine import MachineSettings
from encore.lineage import git_commit

RESULTS = REPO_ROOT / "benchmarks" / "results"


def sizes(experiment_dir: Path) -> dict[str, Any]:
    """Bytes per component folder and file, and the seconds generators spent saving models
    (their ``save_<stage>_seconds`` metrics: what writing, and deflating, the models cost)."""
    components: dict[str, dict[str, int]] = {}
    save_seconds = 0.0
    for folder in sorted(p for p in experiment_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = {f.name: f.stat().st_size for f in folder.rglob("*") if f.is_file()}
        components[folder.name.rsplit("-", 1)[0]] = dict(sorted(files.items())) | {"total": sum(files.values())}
        if (folder / "metrics.json").is_file():
            metrics = json.loads((folder / "metrics.json").read_text())
            save_seconds += sum(v for k, v in metrics.items() if k.startswith("save_") and k.endswith("_seconds"))
    return {"total_bytes": sum(c["total"] for c in components.values()),
            "model_save_seconds": round(save_seconds, 1), "components": components}


def timed_run(experiment: Path, root: Path) -> tuple[Path, dict[str, Any]]:
    """Run ``experiment``'s pipeline with outputs (and MLflow store) under the empty ``root``:
    its experiment folder and the run's wall time, load averages and ranker metric."""
    from encore.outputs import EvaluateOutput
    from encore.pipeline import output_dir, run_pipeline
    from encore.pipeline.cli import setup_logging

    setup_logging()
    settings = MachineSettings(mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
                               encore_output_dir=root / "outputs")
    config = load_config(experiment, settings=settings)
    load_before = os.getloadavg()
    started = time.perf_counter()
    run_pipeline(config, note="benchmarks.outputs_size")
    seconds = time.perf_counter() - started
    primary = config.evaluation.primary_metric
    ranker = float(EvaluateOutput(output_dir(config, "evaluate")).comparison().loc["ranker", primary])
    return config.run_dir, {"pipeline_seconds": round(seconds, 1), "loadavg_before": load_before,
                            "loadavg_after": os.getloadavg(), "cpus": os.cpu_count(), f"ranker_{primary}": ranker}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outputs_size", description=__doc__.split("\n")[0])
    parser.add_argument("experiment_dir", type=Path, nargs="?", default=None)
    parser.add_argument("--run", type=Path, default=None, metavar="EXPERIMENT_FILE",
                        help="run this experiment's pipeline from scratch first (timed), then measure its outputs")
    parser.add_argument("--label", required=True)
    parser.add_argument("--commit", default=None, help="the commit the run was made on (default: HEAD)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if (args.experiment_dir is None) == (args.run is None):
        parser.error("give an outputs/<experiment> folder or --run EXPERIMENT_FILE (one of them)")
    with tempfile.TemporaryDirectory(prefix="encore-outputs-size-") as tmp:
        timing: dict[str, Any] = {}
        experiment_dir = args.experiment_dir
        if args.run is not None:
            experiment_dir, timing = timed_run(args.run, Path(tmp))
        out = args.out or RESULTS / f"outputs-{experiment_dir.name}.json"
        report = json.loads(out.read_text()) if out.is_file() else {"runs": {}}
        commit = args.commit or git_commit()
        report["runs"][args.label] = {"commit": commit} | timing | sizes(experiment_dir)
    report["commit"] = commit  # the file's latest measurement (docs_figures names it)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.label}: {report['runs'][args.label]['total_bytes'] / 2**20:,.1f} MiB -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
