"""Run a chosen subset of Encore's components in order under one MLflow parent run.

Usually called through ``scripts/pipeline/run.sh``; ``python -m scripts.pipeline.runner --help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from scripts.core.config import ConfigError, EncoreConfig
from scripts.core.runner import ALL_COMPONENTS, PIPELINE, base_parser, cli_main, run_pipeline

log = logging.getLogger("encore")


def parse_components(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_COMPONENTS]
    if unknown:
        raise ConfigError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(ALL_COMPONENTS)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--components", "-c", default=",".join(PIPELINE),
                        help="comma-separated components to run, in pipeline order (default: %(default)s)")
    parser.add_argument("--force", default="",
                        help="comma-separated components to recompute even when a complete output exists")
    parser.add_argument("--note", default=None,
                        help="a few words naming this run in the MLflow UI (appended to the run name)")

    def body(args: argparse.Namespace, config: EncoreConfig) -> None:
        results = run_pipeline(config, parse_components(args.components),
                               force=parse_components(args.force) if args.force else (), note=args.note)
        for name, result in results.items():
            headline = {k: round(v, 4) for k, v in result.metrics.items() if k in {"ndcg@10", "recall@10"}}
            log.info("%-10s %s", name, headline or "")

    return cli_main(body, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
