"""The model the service answers from: the registered pyfunc's tables as flat numpy indexes.

:func:`load_champion` resolves ``models:/<name>@<alias>`` to one version, loads exactly that
version with ``mlflow.pyfunc.load_model`` (so the service reads the same bundle as every other
consumer of the registry) and turns the pandas tables into arrays a request can slice in
microseconds: item id -> index, the ranker's lists and the similar-items table in CSR layout,
the popular list extended to the whole catalogue (so every request can get ``k`` items).
A :class:`ServedModel` is immutable once built: the service swaps whole objects on reload.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from encore.serving.blend import Blended, Ranked, interleave, neighbour_scores
from encore.serving.foldin import EmbeddingFoldIn
from encore.serving.pyfunc import EncoreServingModel
from encore.serving.rerank import NEW_SOURCE, ServedReranker, csr_indptr

log = logging.getLogger("encore.serving")


class ModelLoadError(RuntimeError):
    """The configured model could not be resolved or loaded (the message says which step)."""


def _csr(keys: np.ndarray, values: np.ndarray, scores: np.ndarray, n_keys: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays from rows already sorted by (key, rank)."""
    return csr_indptr(keys, n_keys), values.astype(np.int64), scores.astype(np.float64)


@dataclass(frozen=True)
class Recommendation:
    """One list as the API returns it."""

    item_ids: list[str]
    scores: list[float]
    sources: list[str]
    names: list[str]


@dataclass(frozen=True)
class ServedModel:
    """Immutable indexes over one registered model version."""

    name: str
    version: str
    run_id: str | None
    loaded_at: str
    load_seconds: float
    item_ids: np.ndarray
    item_index: dict[str, int]
    user_index: dict[str, int]
    rec_indptr: np.ndarray
    rec_items: np.ndarray
    rec_scores: np.ndarray
    sim_indptr: np.ndarray
    sim_items: np.ndarray
    sim_scores: np.ndarray
    popular: Ranked
    heard_indptr: np.ndarray | None = None
    heard_items: np.ndarray | None = None
    """What each known user heard in training (CSR by user row), from the bundle's ``heard``."""
    item_names: np.ndarray | None = None
    """Display name by item index (from the bundle's ``items``; "" where the data has none)."""


    reranker: ServedReranker | None = None
    """The rerank component's steps, from the bundle (None: lists served as blended)."""
    foldin: EmbeddingFoldIn | None = None
    """A two-tower model's fold-in, from the bundle (None: fold-in over the similar-items table)."""

    @classmethod
    def from_tables(cls, model: EncoreServingModel, *, name: str, version: str, run_id: str | None,
                    load_seconds: float = 0.0) -> ServedModel:
        """Index the tables of a loaded :class:`EncoreServingModel` (vectorised, once per load)."""
        recs, sim, pop = model.recommendations, model.similar, model.popular
        ids = pd.unique(pd.concat([model.items["item_id"], recs["item_id"], sim["item_id"],
                                   sim["similar_item_id"], pop["item_id"]], ignore_index=True).astype(str))
        item_ids = np.asarray(ids, dtype=object)
        codes = pd.Index(item_ids)
        users = recs["user_id"].astype(str)
        user_codes, user_ids = pd.factorize(users, sort=False)
        # recommendations are sorted by (user_id, rank) by load_bundle; factorize keeps that order
        order = np.lexsort((recs["rank"].to_numpy(), user_codes))
        rec_indptr, rec_items, rec_scores = _csr(user_codes[order], codes.get_indexer(recs["item_id"])[order],
                                                 recs["score"].to_numpy()[order], len(user_ids))
        sim = sim[sim["item_id"] != sim["similar_item_id"]]
        src = codes.get_indexer(sim["item_id"])
        order = np.lexsort((sim["rank"].to_numpy(), src))
        sim_indptr, sim_items, sim_scores = _csr(src[order], codes.get_indexer(sim["similar_item_id"])[order],
                                                 sim["score"].to_numpy()[order], len(item_ids))
        pop_items = codes.get_indexer(pop.sort_values("_pop_rank")["item_id"])
        rest = np.setdiff1d(np.arange(len(item_ids)), pop_items)  # the tail, in catalogue order
        popular = Ranked(np.r_[pop_items, rest].astype(np.int64),
                         np.r_[pop.sort_values("_pop_rank")["score"].to_numpy(), np.zeros(len(rest))], "popular")
        heard = getattr(model, "heard", None)
        heard_indptr = heard_items = None
        if heard is not None and len(heard):
            rows = pd.Index(user_ids.astype(str)).get_indexer(heard["user_id"].astype(str))
            cols = codes.get_indexer(heard["item_id"].astype(str))
            keep = (rows >= 0) & (cols >= 0)
            order = np.lexsort((cols[keep], rows[keep]))
            heard_indptr, heard_items, _ = _csr(rows[keep][order], cols[keep][order],
                                                np.zeros(int(keep.sum())), len(user_ids))
        item_names = model.names.reindex(item_ids).fillna("").to_numpy(object)


        rerank = getattr(model, "rerank", None)
        user_index = {str(u): i for i, u in enumerate(user_ids)}
        reranker = ServedReranker.from_tables(rerank, codes, user_index) if rerank is not None else None
        arrays = getattr(model, "foldin", None)  # absent from bundles logged before it
        foldin = EmbeddingFoldIn.from_arrays(arrays, codes) if arrays is not None else None
        return cls(foldin=foldin, name=name, version=str(version), run_id=run_id,
                   loaded_at=datetime.now(UTC).isoformat(timespec="seconds"), load_seconds=load_seconds,
                   item_ids=item_ids, item_index={item: i for i, item in enumerate(item_ids)},
                   user_index=user_index, reranker=reranker,
                   rec_indptr=rec_indptr, rec_items=rec_items, rec_scores=rec_scores,
                   sim_indptr=sim_indptr, sim_items=sim_items, sim_scores=sim_scores, popular=popular,
                   heard_indptr=heard_indptr, heard_items=heard_items, item_names=item_names)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def offline(self, user_id: str) -> Ranked | None:
        """The ranker's list for a known user, else None."""
        row = self.user_index.get(user_id)
        if row is None:
            return None
        start, end = self.rec_indptr[row], self.rec_indptr[row + 1]
        return Ranked(self.rec_items[start:end], self.rec_scores[start:end], "ranker")

    def heard(self, user_id: str) -> np.ndarray:
        """Item indices ``user_id`` heard in training (empty for an unknown user or an old bundle)."""
        row = self.user_index.get(user_id)
        if row is None or self.heard_indptr is None:
            return np.zeros(0, dtype=np.int64)
        return self.heard_items[self.heard_indptr[row]:self.heard_indptr[row + 1]]

    def neighbours(self, history: np.ndarray, limit: int, source: str) -> Ranked:
        return neighbour_scores(self.sim_indptr, self.sim_items, self.sim_scores, history, limit, source)

    def recommend(self, user_id: str, history: np.ndarray, k: int, *, recent_listens: int, online_share: float,
                  foldin_min_listens: int, exclude_heard: bool = True,
                  rejected: np.ndarray | None = None) -> Recommendation:
        """The service's list for one user; ``history`` = item indices, newest first (module
        :mod:`encore.serving.blend` documents the rule). ``exclude_heard``: nothing the user heard
        in training either (the ranker's list already holds none; online items and the popular
        fill could). ``rejected`` (item indices the user disliked or blocked) never appear; with
        a bundle's re-ranking, the blended pool is re-ranked by its steps (:mod:`encore.serving.rerank`)."""
        offline = self.offline(user_id)
        heard = self.heard(user_id) if exclude_heard else np.zeros(0, dtype=np.int64)
        exclude = np.union1d(history, heard) if len(heard) else history
        limit = k + len(history) + len(heard)
        if offline is None and len(history) >= foldin_min_listens:
            # The two-tower model places the listener when the bundle has one, else item-to-item.
            online = (self.foldin.rank(history, limit, "foldin") if self.foldin is not None
                      else self.neighbours(history, limit, "foldin"))
            share = 1.0
        elif len(history):
            online, share = self.neighbours(history[:recent_listens], limit, "online"), online_share
        else:
            online, share = Ranked.empty("online"), 0.0
        rejected = np.zeros(0, dtype=np.int64) if rejected is None else np.asarray(rejected, dtype=np.int64)
        if self.reranker is None:
            return self._out(interleave(online, offline if offline is not None else self.popular, self.popular, k,
                                        share, exclude=np.union1d(exclude, rejected)))
        pool = interleave(online, offline if offline is not None else self.popular, self.popular,
                          max(k, self.reranker.settings.top_k), share, exclude=exclude)
        # The steps weigh the ranker's scores only: an online, fold-in or popular item, or a
        # completion, is unscored (nan) and keeps the place the blend gave it (mixing scales would
        # reorder the blend). What the user heard is no content candidate either.
        row, now = self.user_index.get(user_id), time.time()
        ranker_scores = np.where(np.asarray(pool.sources) == "ranker", pool.scores, np.nan)
        items, new = self.reranker.apply(row, pool.items, ranker_scores, np.union1d(rejected, exclude), now=now)
        items, new = items[:k], new[:k]
        score_of = dict(zip(pool.items.tolist(), pool.scores.tolist(), strict=True))
        source_of = dict(zip(pool.items.tolist(), pool.sources, strict=True))
        reranked = Blended(items, np.array([score_of.get(i, 0.0) for i in items.tolist()]),
                           [NEW_SOURCE if n else source_of[i] for i, n in zip(items.tolist(), new, strict=True)])
        if len(items) < k:  # exclusions emptied the pool, or k > top_k: popular items complete it
            fill = interleave(Ranked.empty("none"), Ranked.empty("none"), self.popular, k - len(items), 0.0,
                              exclude=np.concatenate([exclude, rejected, self.reranker.kept_out(row, now), items]))
            reranked = Blended(np.r_[items, fill.items], np.r_[reranked.scores, fill.scores],
                               [*reranked.sources, *fill.sources])
        return self._out(reranked)

    def similar(self, item: int, k: int) -> Recommendation:
        """Items similar to ``item`` (never itself), completed from popularity."""
        start, end = self.sim_indptr[item], self.sim_indptr[item + 1]
        ranked = Ranked(self.sim_items[start:end], self.sim_scores[start:end], "similar")
        return self._out(interleave(ranked, Ranked.empty("none"), self.popular, k, 1.0,
                                    exclude=np.asarray([item])))

    def item_name(self, item: int) -> str:
        return "" if self.item_names is None else str(self.item_names[item])

    def _out(self, blended: Blended) -> Recommendation:
        names = self.item_names[blended.items] if self.item_names is not None else [""] * len(blended.items)
        return Recommendation(item_ids=[str(i) for i in self.item_ids[blended.items]],
                              # 0 for an item the ranker did not score (its completion from popular items)
                              scores=[round(float(s), 6) if np.isfinite(s) else 0.0 for s in blended.scores],
                              sources=blended.sources,
                              names=[str(n) for n in names])

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id, "loaded_at": self.loaded_at,
                "load_seconds": round(self.load_seconds, 3), "users": len(self.user_index), "items": self.n_items,
                "foldin": f"twotower:{self.foldin.source}" if self.foldin is not None else "similar_items"}


def resolve_version(client: Any, name: str, alias: str) -> Any:
    """The model version the alias points at (an MLflow ModelVersion), or ModelLoadError."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise ModelLoadError(f"models:/{name}@{alias}: {exc.message}") from exc
    except Exception as exc:  # an unreachable server surfaces as requests/urllib3 errors
        raise ModelLoadError(f"models:/{name}@{alias}: {type(exc).__name__}: {exc}") from exc


def load_version(name: str, version: str, run_id: str | None) -> ServedModel:
    """Load exactly ``models:/<name>/<version>`` and index it."""
    import mlflow

    # models:/ URIs resolve against the process's registry URI, which ModelHolder.client set
    # (cli_client): one service process serves one registry.
    started = time.perf_counter()
    uri = f"models:/{name}/{version}"
    try:
        pyfunc = mlflow.pyfunc.load_model(uri)
        tables = pyfunc.unwrap_python_model()
    except Exception as exc:  # MLflow raises many kinds (missing artifacts, bad source, network)
        raise ModelLoadError(f"{uri}: {type(exc).__name__}: {exc}") from exc
    if not hasattr(tables, "recommendations") or not hasattr(tables, "similar"):
        raise ModelLoadError(f"{uri} is not an Encore serving model ({type(tables).__name__})")
    served = ServedModel.from_tables(tables, name=name, version=version, run_id=run_id,
                                     load_seconds=time.perf_counter() - started)
    log.info("loaded %s (run %s): %d users, %d items in %.1f s", uri, run_id, len(served.user_index),
             served.n_items, served.load_seconds)
    return served
