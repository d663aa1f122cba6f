"""Bytes an experiment's run leaves in ``outputs/``, per component and per file kind.

    python -m benchmarks.outputs_size OUTPUTS_EXPERIMENT_DIR --label before [--commit SHA] [--out FILE]

Reads one ``outputs/<experiment>/`` folder (every ``<component>-<fingerprint>/`` in it) and adds
an entry ``runs.<label>`` to ``benchmarks/results/outputs-<experiment>.json``: total bytes, bytes per
component and per file (``model_*.npz``, ``candidates_*.parquet`` ...), the commit measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from encore.config.experiment import REPO_ROOT
from encore.lineage import git_commit

RESULTS = REPO_ROOT / "benchmarks" / "results"


def sizes(experiment_dir: Path) -> dict[str, Any]:
    components: dict[str, dict[str, int]] = {}
    for folder in sorted(p for p in experiment_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = {f.name: f.stat().st_size for f in folder.rglob("*") if f.is_file()}
        components[folder.name.rsplit("-", 1)[0]] = dict(sorted(files.items())) | {"total": sum(files.values())}
    return {"total_bytes": sum(c["total"] for c in components.values()), "components": components}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outputs_size", description=__doc__.split("\n")[0])
    parser.add_argument("experiment_dir", type=Path)
    parser.add_argument("--label", required=True)
    parser.add_argument("--commit", default=None, help="the commit the run was made on (default: HEAD)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or RESULTS / f"outputs-{args.experiment_dir.name}.json"
    report = json.loads(out.read_text()) if out.is_file() else {"runs": {}}
    commit = args.commit or git_commit()
    report["runs"][args.label] = {"commit": commit} | sizes(args.experiment_dir)
    report["commit"] = commit  # the file's latest measurement (docs_figures names it)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.label}: {report['runs'][args.label]['total_bytes'] / 2**20:,.1f} MiB -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
