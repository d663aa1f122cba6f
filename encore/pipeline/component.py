"""What a component is handed and what it returns (the contract between components and the runner).

A component is a module exposing ``NAME`` (or, for generator instances, the template in
:mod:`encore.components.generator`), ``DEPENDS_ON`` (names, or a function of the config) and a
pure function ``run(config, ctx) -> Result``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encore.config.experiment import EncoreConfig


@dataclass
class Result:
    """What a component reports: metrics to log and files (in its output folder) to attach."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    parent_metrics: dict[str, float] = field(default_factory=dict)
    """Logged on the pipeline's parent run too (the headline numbers compared in the UI)."""
    parent_tags: dict[str, str] = field(default_factory=dict)
    """Tags of the pipeline's parent run that name what its headline metrics are of."""


@dataclass
class Context:
    """Where a component writes, where its upstream components wrote, and its own name
    (a generator instance's name: one template module runs every instance)."""

    config: EncoreConfig
    output: Path
    inputs: dict[str, Path]
    name: str = ""


class ComponentFailed(RuntimeError):
    def __init__(self, component: str, cause: BaseException, *, where: str = ""):
        super().__init__(f"{where}component '{component}' failed: {cause}")
        self.component = component
