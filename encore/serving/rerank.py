"""The re-ranking inside the served model: the rerank component's steps, configured from the bundle.

``register`` copies what the ``rerank`` component chose into the bundle (``rerank.json``: the
setting, blocked items, the offline rejections; ``rerank_items.npz``: item ages, popularity, vectors,
attributes and release dates by raw item id; ``rerank_content.parquet``: each user's content candidates). A
served list is the blended candidate pool re-ranked by :func:`encore.reranking.steps.rerank`
-- the function the component ran -- with the user's rejections (the offline file's and those
posted to ``/events``) and items not released yet excluded. For a known user without new listens
the pool is the ranker's list, so the served list is the component's
(tests/serving/test_rerank_serving.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encore.reranking.spread import full_chain, with_ranked_content
from encore.reranking.steps import ItemSide, Settings, lists_from_scores, rejection_keys, rerank
from encore.serving.pyfunc import RERANK_CONFIG, RERANK_CONTENT, RERANK_ITEMS, RERANK_REJECTIONS

NEW_SOURCE = "new"
"""The ``source`` of a served item that only content proposed (a new item)."""


@dataclass(frozen=True)
class ServedReranker:
    """The steps of one bundle over the served item indexes."""

    settings: Settings
    side: ItemSide
    blocked: np.ndarray
    content: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    """Per user row: content candidate items (served indexes), scores and the content generator's
    ranks, best first."""
    rejected: dict[int, np.ndarray] = field(default_factory=dict)
    """Per user row: items rejected offline (the experiment's rejections file)."""
    capped: dict[int, np.ndarray] = field(default_factory=dict)
    """Per user row: items the component's exposure cap refused this user (removed at the cap's place)."""
    promoted: dict[int, np.ndarray] = field(default_factory=dict)
    """Per user row: items the component's coverage fill moved into this user's top places."""
    release: np.ndarray | None = None
    """Release unix seconds by served index (NaN unknown), or None: an item is served from its
    release on (the catalogue's rule at request time; offline lists used the stage's horizon)."""

    @classmethod
    def from_tables(cls, tables: dict[str, Any], codes: pd.Index, user_index: dict[str, int]) -> ServedReranker:
        """``tables`` as :meth:`encore.serving.pyfunc.EncoreServingModel.load_bundle` read them;
        ``codes`` the served item ids in index order."""
        config, arrays = tables["config"], tables["items"]
        at = codes.get_indexer(pd.Index(arrays["item_id"].astype(str)))
        known = at >= 0
        n = len(codes)
        ages = np.full(n, np.nan)
        ages[at[known]] = arrays["age_days"][known]
        embeddings = attribute = None
        if arrays["embeddings"].size:
            embeddings = np.zeros((n, arrays["embeddings"].shape[1]))
            embeddings[at[known]] = arrays["embeddings"][known]
        if arrays["attribute"].size:
            attribute = np.full(n, -1, dtype=np.int64)
            attribute[at[known]] = arrays["attribute"][known]
        popularity = None
        if "popularity" in arrays and arrays["popularity"].size:
            # An item the bundle does not know (none: the served codes are the experiment's) is unpenalised.
            popularity = np.zeros(n)
            popularity[at[known]] = arrays["popularity"][known]
        release = None
        if "release" in arrays and arrays["release"].size:
            release = np.full(n, np.nan)
            release[at[known]] = arrays["release"][known]
        blocked = codes.get_indexer(pd.Index([str(i) for i in config["blocked"]]))
        pairs = {name: pd.DataFrame(config.get(name, {"user_id": [], "item_id": []}))
                 for name in ("capped", "promoted")}
        return cls(settings=Settings(**config["settings"]),
                   side=ItemSide(age_days=ages, embeddings=embeddings, attribute=attribute, popularity=popularity),
                   blocked=blocked[blocked >= 0], content=_by_user(tables["content"], codes, user_index, True),
                   rejected={row: items for row, (items, _, _) in
                             _by_user(tables["rejections"], codes, user_index, False).items()},
                   **{name: {row: items for row, (items, _, _) in _by_user(frame, codes, user_index, False).items()}
                      for name, frame in pairs.items()},
                   release=release)

    def not_out_yet(self, now: float) -> np.ndarray:
        """Served indexes of the items released after ``now`` (unix seconds)."""
        if self.release is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.nan_to_num(self.release, nan=-np.inf) > now)

    def apply(self, user_row: int | None, items: np.ndarray, scores: np.ndarray,
              rejected: np.ndarray, now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The pool ``items``/``scores`` re-ranked for one user (``user_row`` None: unknown user),
        without ``rejected``, the bundle's blocked and offline-rejected items, nor items released
        after ``now`` (unix seconds; default: the clock): the items (up to ``settings.top_k``) and
        whether each came from content only."""
        lists = lists_from_scores(np.zeros(1, dtype=np.int64), items[None, :], scores[None, :])
        none = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64))
        extra, extra_scores, extra_ranks = self.content.get(user_row, none) if user_row is not None else none
        lists = with_ranked_content(lists, extra[None, :], extra_scores[None, :], extra_ranks[None, :], self.settings)
        offline = self.rejected.get(user_row, np.zeros(0, dtype=np.int64)) if user_row is not None else []
        gone = np.union1d(np.asarray(rejected, dtype=np.int64), offline)
        n_items = len(self.side.age_days)

        def keys(per_user: dict[int, np.ndarray]) -> np.ndarray:
            found = per_user.get(user_row, np.zeros(0, dtype=np.int64)) if user_row is not None else []
            return rejection_keys(np.zeros(len(found)), np.asarray(found, dtype=np.int64), n_items)

        # The cap's refusals and the fill's promotions for this user, applied where the component's
        # steps across users ran (a new listener: none).
        blocked = np.union1d(self.blocked, self.not_out_yet(time.time() if now is None else now))
        steps = full_chain(self.settings, blocked=blocked,
                           rejected=rejection_keys(np.zeros(len(gone)), gone, n_items), n_items=n_items,
                           capped=keys(self.capped), promoted=keys(self.promoted))
        out = rerank(lists, self.side, steps, self.settings.top_k)[0][0]
        out = out[out >= 0]
        return out, ~np.isin(out, items)


def _by_user(frame: pd.DataFrame, codes: pd.Index, user_index: dict[str, int],
             ordered: bool) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    if frame is None or frame.empty:
        return {}
    rows = frame["user_id"].astype(str).map(user_index)
    items = codes.get_indexer(pd.Index(frame["item_id"].astype(str)))
    keep = rows.notna().to_numpy() & (items >= 0)
    data = pd.DataFrame({"row": rows[keep].astype(np.int64).to_numpy(), "item": items[keep],
                         "score": frame["score"].to_numpy()[keep] if "score" in frame else 0.0,
                         "rank": frame["rank"].to_numpy()[keep] if ordered else 0})
    data = data.sort_values(["row", "rank"], kind="stable")
    return {int(row): (group["item"].to_numpy(np.int64), group["score"].to_numpy(np.float64),
                       group["rank"].to_numpy(np.int64))
            for row, group in data.groupby("row", sort=False)}



def write_rerank_bundle(bundle_dir: Path, *, config: dict[str, Any], items: dict[str, np.ndarray],
                        content: pd.DataFrame, rejections: pd.DataFrame) -> None:
    """The bundle's re-ranking files (ids raw, as strings): ``config`` (``settings``, ``blocked``),
    ``items`` (``item_id``, ``age_days``, ``embeddings``, ``attribute``), ``content`` (user_id,
    item_id, score, rank) and the offline ``rejections`` (user_id, item_id)."""
    folder = Path(bundle_dir)
    (folder / RERANK_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    np.savez(folder / RERANK_ITEMS, **{**items, "item_id": np.asarray(items["item_id"]).astype(str)})
    content.astype({"user_id": str, "item_id": str}).reset_index(drop=True).to_parquet(folder / RERANK_CONTENT,
                                                                                       index=False)
    rejections.astype({"user_id": str, "item_id": str}).reset_index(drop=True).to_parquet(
        folder / RERANK_REJECTIONS, index=False)
