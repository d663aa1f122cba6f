"""The command lines: ``python -m encore.pipeline`` (``scripts/pipeline/run.sh``) and each
component's own (``python -m encore.components.<name>``).

Loads the config, runs what was asked (:mod:`encore.pipeline.execution`) and turns known
failures — a bad config, data, an unreachable tracking server, a failed component — into one
line on stderr and exit code 2. ``python -m encore.pipeline --help`` lists the options.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from encore.config.envfile import DEFAULTS_DIR
from encore.config.experiment import REPO_ROOT, ConfigError, EncoreConfig, load_config
from encore.data.dataset import DataError
from encore.pipeline.catalogue import UNTUNED, generator_names, parse_components
from encore.pipeline.clean import main as clean_main
from encore.pipeline.component import ComponentFailed
from encore.pipeline.execution import run_component, run_pipeline
from encore.pipeline.folds import fold_configs, n_folds
from encore.pipeline.reuse_keys import tuned
from encore.tracking.client import TrackingServerUnreachable
from encore.tracking.runs import service_failure, tracking_uri

log = logging.getLogger("encore")

DEFAULT_EXPERIMENT = REPO_ROOT / "experiments" / "lastfm2k.yaml"


def setup_logging() -> None:
    """Logging as ``config/logger_config.yaml`` says (the CLIs' console format)."""
    path = DEFAULTS_DIR / "logger_config.yaml"
    logging.config.dictConfig(yaml.safe_load(path.read_text()))


def base_parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The options every Encore CLI shares: the experiment file and ``--set`` overrides."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--experiment", "-e", type=Path, default=DEFAULT_EXPERIMENT,
                        help="experiment file overriding config/components.yaml (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set components.als.factors=128 (repeatable)")
    return parser


def tuned_overrides(config: EncoreConfig, overrides: Sequence[str] | None) -> list[str]:
    """The ``--set`` keys (``components.<instance>.<setting>``) that ``tuning.grid`` searches: the
    tuned value wins over them wherever tune runs."""
    keys = [text.partition("=")[0].strip() for text in overrides or []]
    return [key for key in keys
            if (parts := key.split("."))[0] == "components" and len(parts) == 3
            and parts[2] in config.tuning.grid.get(parts[1], {})]


def cli_main(body: Callable[[argparse.Namespace, EncoreConfig], None], parser: argparse.ArgumentParser,
             argv: Sequence[str] | None = None) -> int:
    """Parse, load the config, run ``body``; known failures become one clear line and exit 2."""
    args = parser.parse_args(argv)
    setup_logging()
    config: EncoreConfig | None = None
    try:
        config = load_config(args.experiment, args.overrides)
        for key in tuned_overrides(config, args.overrides):
            log.warning("--set %s: the key is in tuning.grid, so tune chooses its value for this run; the value "
                        "set stands only where the grid is not searched (drop the key from the grid to fix it)", key)
        body(args, config)
    except (ConfigError, DataError, TrackingServerUnreachable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        component = exc.component if isinstance(exc, ComponentFailed) else None
        cause = exc.__cause__ if component and exc.__cause__ is not None else exc
        if isinstance(cause, ConfigError | DataError | TrackingServerUnreachable):
            # A cause that names the component already says it all: "component 'x' needs ...".
            named = component is not None and str(cause).startswith(f"component '{component}'")
            print(f"error: {cause if named else exc}", file=sys.stderr)
            return 2
        failure = service_failure(cause, tracking_uri(config)) if config is not None else None
        if failure is not None:
            where = f"component '{component}' stopped: " if component else ""
            print(f"error: {where}{failure}", file=sys.stderr)
            return 2
        if component is None:
            raise
        log.exception("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def component_main(name: str | None, argv: Sequence[str] | None = None, *, description: str = "") -> int:
    """CLI of one component: ``python -m encore.components.<name>``, or, with ``name`` None, of
    a generator instance named on the command line (``python -m encore.components.generator als``)."""
    parser = base_parser(description.strip().splitlines()[0] if description.strip() else f"run {name}")
    if name is None:
        parser.add_argument("instance", help="generator instance: a key of `components` in the config")
    parser.add_argument("--force", action="store_true", help="recompute even if a complete output exists")

    def body(args: argparse.Namespace, config: EncoreConfig) -> None:
        target = name or args.instance
        if name is None and target not in config.components.generators:
            raise ConfigError(f"components.{target}: no such generator instance; known: "
                              f"{', '.join(generator_names(config))}")
        for fold_config in fold_configs(config):  # one config unless split.folds > 1
            try:
                run_component(fold_config if target in UNTUNED else tuned(fold_config), target,
                              force=args.force)
            except Exception as exc:
                raise ComponentFailed(target, exc) from exc

    return cli_main(body, parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m encore.pipeline``: run chosen components in order under one parent run;
    ``python -m encore.pipeline clean``: remove outputs no recent run used (:mod:`encore.pipeline.clean`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["clean"]:
        return clean_main(argv[1:])
    parser = base_parser("Run a chosen subset of Encore's components in order under one MLflow parent run.",
                         prog="python -m encore.pipeline")  # not "__main__.py"; run.sh and runner run the same
    parser.add_argument("--components", "-c", default="",
                        help="comma-separated components to run, in pipeline order (default: prepare, every "
                             "generator instance of the config, ranker, evaluate)")
    parser.add_argument("--force", default="",
                        help="comma-separated components to recompute even when a complete output exists")
    parser.epilog = "python -m encore.pipeline clean --help: remove the outputs no recent run used"
    parser.add_argument("--note", default=None,
                        help="a few words naming this run in the MLflow UI (appended to the run name)")

    def body(args: argparse.Namespace, config: EncoreConfig) -> None:
        chosen = parse_components(config, args.components) if args.components else None
        results = run_pipeline(config, chosen, force=parse_components(config, args.force) if args.force else (),
                               note=args.note)
        if n_folds(config) > 1 and results:
            log.info("the last fold's figures (every fold pooled: the tables above):")
        for name, result in results.items():
            headline = {k: round(v, 4) for k, v in result.metrics.items() if k in {"ndcg@10", "recall@10"}}
            log.info("%-10s %s", name, headline or "")

    return cli_main(body, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
