"""``python -m encore.pipeline.runner``: kept for existing commands and imports; the pipeline's
code is split by job into :mod:`~encore.pipeline.catalogue` (which components, their order and
dependencies), :mod:`~encore.pipeline.reuse_keys` (fingerprints, output folders, tuned
settings), :mod:`~encore.pipeline.execution` (running them, folds included),
:mod:`~encore.pipeline.folds` and :mod:`~encore.pipeline.cli`. New code imports from those
modules or from :mod:`encore.pipeline`.
"""

from __future__ import annotations

import sys

from encore.pipeline.catalogue import (
    FIRST,
    GENERATOR_MODULE,
    LAST,
    ON_DEMAND,
    TUNE,
    UNTUNED,
    all_components,
    component_module,
    dependencies,
    enabled,
    generator_names,
    parse_components,
    pipeline_components,
    run_order,
    section,
)
from encore.pipeline.cli import DEFAULT_EXPERIMENT, base_parser, cli_main, component_main, main, setup_logging
from encore.pipeline.component import ComponentFailed, Context, Result
from encore.pipeline.execution import data_hash_tags, run_component, run_components, run_pipeline
from encore.pipeline.reuse_keys import code_digests, fingerprint, input_digests, input_files, output_dir, tuned

__all__ = [
    "DEFAULT_EXPERIMENT", "FIRST", "GENERATOR_MODULE", "LAST", "ON_DEMAND", "TUNE", "UNTUNED",
    "ComponentFailed", "Context", "Result", "all_components", "base_parser", "cli_main", "code_digests",
    "component_main", "component_module", "data_hash_tags", "dependencies", "enabled", "fingerprint",
    "generator_names", "input_digests", "input_files", "main", "output_dir", "parse_components",
    "pipeline_components", "run_component", "run_components", "run_order", "run_pipeline", "section",
    "setup_logging", "tuned",
]

if __name__ == "__main__":
    sys.exit(main())
