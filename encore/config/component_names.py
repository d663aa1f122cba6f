"""The pipeline's own component names: the one list the config and the runner both read.

A generator instance may take any other name (``components.<name>``); these are reserved
because each is already a component with its own module, output folder and MLflow run. The
config rejects them as instance names and the runner orders and dispatches by them, so they
are declared here, below both (no import beyond the standard library).
"""

from __future__ import annotations

FIRST: tuple[str, ...] = ("prepare",)
"""Run before everything else: build the prepared dataset every later component reads."""
TUNE = "tune"
"""Chooses generator settings on the ranker-target part; what runs after it uses its choice."""
UNTUNED: tuple[str, ...] = (*FIRST, TUNE)
"""The components that run on the config as written; every later one runs on tune's choice."""
LAST: tuple[str, ...] = ("ranker", "rerank", "evaluate")
"""Run after every generator instance: they consume the instances' candidates and scores."""
RANKING_STAGES: tuple[str, ...] = ("ranker", "rerank")
"""Components whose lists are evaluated beside the generators' but are no generator: never the
"best generator" the ranker is compared with."""
ON_DEMAND: tuple[str, ...] = ("register", "promote")
"""Run only when named: every ``register`` makes a new model version."""
STANDALONE: tuple[str, ...] = ("download", "compare")
"""Commands outside the pipeline's order (fetch a dataset, compare runs) that still own a name."""
RESERVED_NAMES: tuple[str, ...] = (*UNTUNED, *LAST, *ON_DEMAND, *STANDALONE)
"""Component names that are not generator instances."""
