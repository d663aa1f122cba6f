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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encore.reranking.spread import full_chain, with_ranked_content
from encore.reranking.steps import ItemSide, Settings, lists_from_scores, rejection_keys, rerank
from encore.serving.pyfunc import RERANK_CONFIG, RERANK_CONTENT, RERANK_ITEMS, RERANK_REJECTIONS

NEW_SOURCE = "new"
"""The ``source`` of a served item that only content proposed (a new item)."""


def csr_indptr(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """Row pointers of entries sorted by ``keys`` (each in ``[0, n_keys)``): row ``r``'s entries
    are ``[indptr[r], indptr[r + 1])``. Here, not in :mod:`encore.serving.blend`: ``register``
    writes the bundle with this module, and its reuse key covers no more of serving than that."""
    return np.r_[0, np.cumsum(np.bincount(np.asarray(keys, dtype=np.int64), minlength=n_keys))].astype(np.int64)


@dataclass(frozen=True)
class ByUser:
    """Per user row, a run of items with their scores and ranks, best first, in flat arrays (CSR):
    row ``r``'s are ``[indptr[r], indptr[r + 1])``. One array per column, not one per user: a
    bundle of millions of users loads in seconds."""

    indptr: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame | None, codes: pd.Index, users: pd.Index) -> ByUser:
        """``frame`` (``user_id``, ``item_id``, optional ``score`` and ``rank``; raw ids) over the
        served item ``codes`` and user rows ``users``; pairs naming neither are left out."""
        frame = pd.DataFrame(columns=["user_id", "item_id"]) if frame is None else frame
        rows = users.get_indexer(pd.Index(frame["user_id"].astype(str)))
        items = codes.get_indexer(pd.Index(frame["item_id"].astype(str)))
        keep = (rows >= 0) & (items >= 0)
        scores = frame["score"].to_numpy(np.float64)[keep] if "score" in frame else np.zeros(int(keep.sum()))
        ranks = frame["rank"].to_numpy(np.int64)[keep] if "rank" in frame else np.zeros(int(keep.sum()), np.int64)
        order = np.lexsort((ranks, rows[keep]))
        return cls(indptr=csr_indptr(rows[keep][order], len(users)), items=items[keep][order].astype(np.int64),
                   scores=scores[order], ranks=ranks[order])

    def of(self, row: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row ``row``'s items, scores and ranks (empty for None: an unknown user)."""
        if row is None:
            return self.items[:0], self.scores[:0], self.ranks[:0]
        start, end = self.indptr[row], self.indptr[row + 1]
        return self.items[start:end], self.scores[start:end], self.ranks[start:end]


@dataclass(frozen=True)
class ServedReranker:
    """The steps of one bundle over the served item indexes."""

    settings: Settings
    side: ItemSide
    blocked: np.ndarray
    content: ByUser
    """Per user row: content candidate items (served indexes), scores and the content generator's
    ranks, best first."""
    rejected: ByUser
    """Per user row: items rejected offline (the experiment's rejections file)."""
    capped: ByUser
    """Per user row: items the component's exposure cap refused this user (removed at the cap's place)."""
    promoted: ByUser
    """Per user row: items the component's coverage fill moved into this user's top places."""
    release: np.ndarray | None = None
    """Release unix seconds by served index (NaN unknown), or None: an item is served from its
    release on (the catalogue's rule at request time; offline lists used the stage's horizon)."""

    @classmethod
    def from_tables(cls, tables: dict[str, Any], codes: pd.Index, user_index: dict[str, int]) -> ServedReranker:
        """``tables`` as :meth:`encore.serving.pyfunc.EncoreServingModel.load_bundle` read them;
        ``codes`` the served item ids in index order; ``user_index`` the served user rows."""
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
        names = np.empty(len(user_index), dtype=object)
        names[np.fromiter(user_index.values(), dtype=np.int64, count=len(user_index))] = list(user_index)
        users = pd.Index(names)
        per_user = {name: ByUser.from_frame(pd.DataFrame(config[name]) if name in config else None, codes, users)
                    for name in ("capped", "promoted")}
        return cls(settings=Settings(**config["settings"]),
                   side=ItemSide(age_days=ages, embeddings=embeddings, attribute=attribute, popularity=popularity),
                   blocked=blocked[blocked >= 0], content=ByUser.from_frame(tables["content"], codes, users),
                   rejected=ByUser.from_frame(tables["rejections"], codes, users), **per_user, release=release)

    def kept_out(self, user_row: int | None, now: float) -> np.ndarray:
        """Served indexes ``user_row`` (None: an unknown user) is never served, whatever fills its
        list: the bundle's blocked items, the user's offline rejections and the items the
        component's exposure cap refused it, and the items released after ``now``."""
        return np.unique(np.concatenate([self.blocked, self.not_out_yet(now), self.rejected.of(user_row)[0],
                                         self.capped.of(user_row)[0]]))

    def not_out_yet(self, now: float) -> np.ndarray:
        """Served indexes of the items released after ``now`` (unix seconds)."""
        if self.release is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.nan_to_num(self.release, nan=-np.inf) > now)

    def apply(self, user_row: int | None, items: np.ndarray, scores: np.ndarray,
              rejected: np.ndarray, now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The pool ``items``/``scores`` re-ranked for one user (``user_row`` None: unknown user),
        without ``rejected`` (with what the user has heard: a content candidate is not one), the
        bundle's blocked and offline-rejected items, nor items released after ``now`` (unix
        seconds; default: the clock): the items (up to ``settings.top_k``) and whether each came
        from content only. A nan score is an item the ranker did not score (a completion, an item
        the blend put in): it keeps its place in the pool's order (:func:`scaled`)."""
        gone = np.union1d(np.asarray(rejected, dtype=np.int64), self.rejected.of(user_row)[0])
        n_items = len(self.side.age_days)

        def keys(per_user: ByUser) -> np.ndarray:
            found = per_user.of(user_row)[0]
            return rejection_keys(np.zeros(len(found)), found, n_items)

        # The cap's refusals and the fill's promotions for this user, applied where the component's
        # steps across users ran (a new listener: none).
        blocked = np.union1d(self.blocked, self.not_out_yet(time.time() if now is None else now))
        steps = full_chain(self.settings, blocked=blocked,
                           rejected=rejection_keys(np.zeros(len(gone)), gone, n_items), n_items=n_items,
                           capped=keys(self.capped), promoted=keys(self.promoted))
        # The exclusions (the chain's first step) first, then the new items by rank: as the component.
        lists = steps[0](lists_from_scores(np.zeros(1, dtype=np.int64), items[None, :], scores[None, :]), self.side)
        extra, extra_scores, extra_ranks = self.content.of(user_row)
        lists = with_ranked_content(lists, extra[None, :], extra_scores[None, :], extra_ranks[None, :], self.settings)
        out = rerank(lists, self.side, steps, self.settings.top_k)[0][0]
        out = out[out >= 0]
        return out, ~np.isin(out, items)


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
