"""Former entry point of the docs' figures, kept so ``python -m benchmarks.readme_results`` still works.

    python -m benchmarks.readme_results [--experiment experiments/lastfm2k.yaml] [--check]

Without ``--check`` it records the experiment's finished run into ``benchmarks/results/`` and
rewrites every figure block (``benchmarks.docs_figures record`` followed by
``benchmarks.docs_figures``); with ``--check`` it only checks the blocks against the committed
result files. The pipeline's wall time now comes from the committed pipeline benchmark
(``benchmarks/results/lastfm2k-pipeline.json``), so the former ``--seconds`` is gone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.docs_figures import ROOT, record
from benchmarks.docs_figures import main as figures_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--experiment", type=Path, default=ROOT / "experiments" / "lastfm2k.yaml")
    parser.add_argument("--check", action="store_true", help="exit 1 if any figure block is stale; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        return figures_main(["--check"])
    record(args.experiment)
    return figures_main([])


if __name__ == "__main__":
    sys.exit(main())
