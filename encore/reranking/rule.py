"""The rule that picks one setting of the trade-off grid (docs/reranking.md, "Choosing the trade-off").

A grid is a table, one row per setting: a ``setting`` column (``ranker`` for the unre-ranked
lists, ``rerank`` for a grid setting, ``content`` for the content generator's own lists) and the
metrics measured on the ranker-target part. The rule keeps the settings whose primary metric is
within ``max_loss`` of the ranker row's; optionally also at least ``cold_reference`` on the
cold-item column (when any setting is: the loss bound wins); and among them takes the highest
sum of the objectives, each min-max scaled over the ranker and the settings (one objective: the
highest value). Nothing within the loss: the most accurate setting.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Choice:
    """The chosen row label, the labels within the rule's bounds, each row's rule score, and
    whether the cold-item bound held (None: not asked)."""

    chosen: int
    within: pd.Index
    score: pd.Series
    cold_matched: bool | None


def choose(table: pd.DataFrame, *, primary: str, objectives: list[str], max_loss: float,
           cold_column: str | None = None, cold_reference: float | None = None) -> Choice:
    """The rule over ``table`` (the ranker row first, labelled 0; see the module)."""
    settings = table.index[table["setting"] == "rerank"]
    if not len(settings):
        raise ValueError("the grid has no setting")
    floor = (1.0 - max_loss) * table.loc[table.index[0], primary]
    within = settings[table.loc[settings, primary] >= floor]
    matched = None
    if cold_column is not None and cold_reference is not None:
        cold = within[table.loc[within, cold_column] >= cold_reference]
        matched = bool(len(cold))
        within = cold if len(cold) else within
    part = table.loc[[table.index[0], *settings], objectives]
    span = (part.max() - part.min()).replace(0.0, 1.0)
    score = ((table[objectives] - part.min()) / span).sum(axis=1)
    chosen = int(score.loc[within].idxmax()) if len(within) else int(table.loc[settings, primary].idxmax())
    return Choice(chosen=chosen, within=within, score=score, cold_matched=matched)
