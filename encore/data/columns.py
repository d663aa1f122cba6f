"""Which columns of a tabular source hold what: the settings the tabular source and its loader
share (a module of their own, so the loader does not import the source declarations that import it).
"""

from __future__ import annotations

from pydantic import model_validator

from encore.config.types import Strict


class ColumnMapping(Strict):
    """Which columns of a tabular interactions file hold what."""

    user: str = "user"
    item: str = "item"
    weight: str | None = None
    timestamp: str | None = None

    @model_validator(mode="after")
    def _distinct(self) -> ColumnMapping:
        used = [c for c in (self.user, self.item, self.weight, self.timestamp) if c is not None]
        if len(set(used)) != len(used):
            raise ValueError(f"columns must be distinct, got {used}")
        return self


class FeatureColumnMapping(Strict):
    """Which columns of a tabular item-features file hold what."""

    item: str = "item"
    feature: str = "feature"
    weight: str | None = None

    @model_validator(mode="after")
    def _distinct(self) -> FeatureColumnMapping:
        used = [c for c in (self.item, self.feature, self.weight) if c is not None]
        if len(set(used)) != len(used):
            raise ValueError(f"columns must be distinct, got {used}")
        return self


class ReleaseColumnMapping(Strict):
    """Which columns of a tabular item-releases file hold what."""

    item: str = "item"
    release: str = "release"

    @model_validator(mode="after")
    def _distinct(self) -> ReleaseColumnMapping:
        if self.item == self.release:
            raise ValueError(f"columns must be distinct, got {[self.item, self.release]}")
        return self
