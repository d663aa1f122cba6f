"""The abstract recommender: the interface every generator kind implements.

Orientation, everywhere in this package:

* ``user_items`` is a :class:`scipy.sparse.csr_matrix` of shape ``(n_users, n_items)``,
  float32, whose nonzeros are the items a user listened to (value = play count, > 0).
  Methods that score users take the *full* history matrix plus an array of user ids and
  select the rows themselves, so history-based models (EASE, item-kNN, item2item) can use
  the history and every model filters already-seen items the same way.
* Users and items are contiguous ints ``0 .. n_users-1`` / ``0 .. n_items-1``.
* Returned ids are int64, scores float32; missing slots are padded with id ``-1`` and
  score ``-inf``.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Self

import numpy as np
from scipy.sparse import csr_matrix, issparse

from .generator_config import GeneratorConfig, ModelOutputError, SideData, SideDataMissing, StageView
from .kernels import (  # re-exported: models import them from here
    PathOrFile,
    _npz_path,
    as_ids,
    check_user_items,
    compact,
    drop_self,
    factor_pair_scores,
    history_pair_scores,
    is_seen,
    mask_seen,
    mask_seen_sparse,
    npz_bytes,
    save_npz_compressed,
    seen_flat_indices,
    single_threaded_blas,
    topk,
    topk_sparse,
)

__all__ = [
    "PathOrFile", "Recommender", "as_ids", "check_lists", "check_scores", "check_user_items", "compact",
    "drop_self", "factor_pair_scores",
    "history_pair_scores", "is_seen", "mask_seen", "mask_seen_sparse", "npz_bytes", "seen_flat_indices",
    "single_threaded_blas", "topk", "topk_sparse",
]



# ---------------------------------------------------------------------------------------
# the abstract recommender
# ---------------------------------------------------------------------------------------


_SAVED_NAMES: dict[str, type[Recommender]] = {}
"""Every defined subclass by its ``name``: what :meth:`Recommender.load` dispatches on. Kept
here rather than asked of :mod:`.kinds` (which imports this module), so the two do not
import each other."""


def _absent(side: object) -> bool:
    """Side data a dataset does not have: none at all, or a matrix without a single entry."""
    return side is None or (issparse(side) and side.nnz == 0)


def _what(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"a {type(value).__name__}"


def _check_values(values: np.ndarray, where: str, what: str) -> None:
    """No NaN nor +inf among ``values`` (-inf, "never propose", is allowed)."""
    ok = values < np.inf  # False for NaN and +inf alike, in one pass
    if ok.all():
        return
    bad = ~ok
    n_bad, n = int(bad.sum()), values.size
    first = np.unravel_index(int(np.argmax(bad)), values.shape)
    at = f"row {first[0]}, column {first[1]}" if len(first) == 2 else f"entry {first[0]}"
    found = "NaN" if np.isnan(values[first]) else "+inf"
    share = f"all {n}" if n_bad == n else f"{n_bad} of {n}"
    raise ModelOutputError(f"{where} returned NaN or +inf for {share} {what} (first: {found} at {at}); "
                           f"{what} must be numbers, -inf for an item never to propose")


def check_scores(model: Recommender, block: object, n_rows: int) -> np.ndarray:
    """``block`` if it is what ``model.score`` must return for ``n_rows`` users: a float
    ``(n_rows, n_items)`` array without NaN or +inf; else :class:`ModelOutputError` naming the class."""
    where = f"{type(model).__name__}.score"
    expected = (n_rows, model.n_items_)
    if not isinstance(block, np.ndarray) or block.shape != expected:
        raise ModelOutputError(f"{where} returned {_what(block)}, expected a float array of shape {expected}")
    if not np.issubdtype(block.dtype, np.floating):
        raise ModelOutputError(f"{where} returned {block.dtype} scores, expected floats")
    _check_values(block, where, "scores")
    return block


def check_lists(model: Recommender, method: str, ids: object, scores: object, n_rows: int,
                N: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, scores)`` if they are what ``model.<method>`` (``recommend``, ``similar_items``)
    must return: ``(n_rows, N)`` integer ids in ``-1 .. n_items - 1`` and float scores without
    NaN or +inf; else :class:`ModelOutputError` naming the class, the method and what it found."""
    where = f"{type(model).__name__}.{method}"
    expected = (n_rows, N)
    for what, array, kind in (("ids", ids, np.integer), ("scores", scores, np.floating)):
        if not isinstance(array, np.ndarray) or array.shape != expected:
            raise ModelOutputError(f"{where} returned {what} as {_what(array)}, expected shape {expected}")
        if not np.issubdtype(array.dtype, kind):
            raise ModelOutputError(f"{where} returned {array.dtype} {what}, expected "
                                   f"{'integers' if kind is np.integer else 'floats'}")
    assert isinstance(ids, np.ndarray) and isinstance(scores, np.ndarray)
    out_of_range = (ids < -1) | (ids >= model.n_items_)
    if out_of_range.any():
        row, col = np.argwhere(out_of_range)[0]
        raise ModelOutputError(f"{where} returned item id {ids[row, col]} at row {row}, column {col}; "
                               f"ids must be -1 (no item) or 0 .. {model.n_items_ - 1}")
    _check_values(scores, where, "scores")
    return ids, scores


def pairs_by_user_batch(users: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Group ``(n_pairs,)`` pair users by distinct user, ``batch_size`` distinct users at a time.

    Yields ``(batch_users, pairs, rows)``: the batch's distinct users (sorted), the positions of
    the pairs that belong to them, and each such pair's row in a ``(len(batch_users), ...)``
    block scored for the batch — so a pair-scoring method scores each user once."""
    uniq, inverse = np.unique(users, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    sorted_inverse = inverse[order]
    for start in range(0, len(uniq), batch_size):
        stop = min(start + batch_size, len(uniq))
        lo, hi = np.searchsorted(sorted_inverse, [start, stop])
        pairs = order[lo:hi]
        yield uniq[start:stop], pairs, inverse[pairs] - start


def _class_named(saved: str) -> type[Recommender]:
    """The class a saved file's ``__model__`` names; a ``module:Class`` name imports its module."""
    if saved not in _SAVED_NAMES and ":" in saved:
        try:
            importlib.import_module(saved.partition(":")[0])  # defining the class registers it
        except ImportError as exc:
            raise ValueError(f"file holds a '{saved}' model whose module cannot be imported ({exc})") from None
    try:
        return _SAVED_NAMES[saved]
    except KeyError:
        raise ValueError(f"file holds a '{saved}' model, and no recommender class has that name") from None


class Recommender(ABC):
    """A model fitted on ``user_items`` of shape ``(n_users, n_items)``.

    Subclasses implement :meth:`fit`, :meth:`score`, :meth:`similar_items` and the
    ``_get_state``/``_set_state`` pair; :meth:`recommend` and :meth:`score_pairs` have
    vectorised defaults built on :meth:`score` that subclasses override when they can do
    better. Constructor arguments are the model's hyper-parameters and are stored under
    the same names (scikit-learn style) so :meth:`get_params` and :meth:`load` can rebuild
    the model.

    Fitted attributes end with an underscore: ``n_users_``, ``n_items_``.
    """

    name: ClassVar[str] = "base"
    """The kind: registry key, also written into saved files. A class that does not set it (a
    user's own generator) is named by its import path ``module:Class``."""

    config_class: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    """The settings model of this kind (hyper-parameters = constructor arguments, with defaults)."""

    side_data: ClassVar[tuple[SideData, ...]] = ()
    """The parts of a :class:`StageView` beside ``user_items`` that :meth:`fit` takes, by keyword."""

    required_side_data: ClassVar[tuple[SideData, ...]] = ()
    """Side data without which the kind cannot fit (:meth:`fit_stage` fails with a clear error)."""

    zero_means_unscored: ClassVar[bool] = False
    """True for sparse-score models (e.g. friends) whose 0 means "no evidence": the default
    :meth:`recommend` then never returns 0-score items, as it never returns -inf ones, and ranks
    the stored entries of :meth:`score_sparse` instead of a dense block (cost of the evidence,
    not of users x items)."""

    n_users_: int
    n_items_: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = f"{cls.__module__}:{cls.__qualname__}"
        # First definition wins: a test's or user's class reusing a built-in name (the built-ins
        # are imported with this package, by encore.recommenders.kinds) never shadows it on load.
        _SAVED_NAMES.setdefault(cls.name, cls)

    @classmethod
    def from_config(cls, section: GeneratorConfig, seed: int | None = None) -> Self:
        """A model with the hyper-parameters of ``section``; ``seed`` becomes ``random_state``
        when the constructor takes one (one experiment seed drives every model)."""
        import inspect

        params = section.params()
        if seed is not None and "random_state" in inspect.signature(cls).parameters:
            params["random_state"] = seed
        return cls(**params)

    @classmethod
    def side_data_problem(cls, view: StageView) -> str | None:
        """Why this kind cannot fit on ``view``'s side data, or None. Cheap (no fitting): the pipeline
        asks every generator before the first one runs, so a data set without, e.g., item features
        fails in one line before any work. A kind with a stricter need than presence overrides it."""
        missing = [name for name in cls.required_side_data if _absent(getattr(view, name))]
        if missing:
            return (f"kind '{cls.name}' needs {' and '.join(n.replace('_', ' ') for n in missing)}, "
                    "which this dataset does not have")
        return None

    def fit_stage(self, view: StageView) -> Self:
        """Fit on one stage view: ``user_items`` plus the side data this kind declares."""
        problem = self.side_data_problem(view)
        if problem is not None:
            raise SideDataMissing(problem)
        return self.fit(view.user_items, **{name: getattr(view, name) for name in self.side_data})

    # -- hyper-parameters -------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments of this instance (JSON-serialisable values)."""
        import inspect

        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_items_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- the interface ----------------------------------------------------------------

    @abstractmethod
    def fit(self, user_items: csr_matrix) -> Self:
        """Fit on ``user_items`` ``(n_users, n_items)``, float32 play counts. Returns self."""

    @abstractmethod
    def score(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """Dense float32 ``(len(user_ids), n_items)`` scores of every item for these users.

        ``user_items`` is the full ``(n_users, n_items)`` history; rows are selected here.
        Seen items are *not* masked.
        """

    def score_sparse(self, user_ids: np.ndarray, user_items: csr_matrix) -> csr_matrix:
        """:meth:`score` as a sparse ``(len(user_ids), n_items)`` matrix; a ``zero_means_unscored``
        model overrides it with its native sparse product (and :meth:`score` densifies that)."""
        return csr_matrix(self.score(user_ids, user_items))

    @abstractmethod
    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """``(len(item_ids), N)`` most similar items (excluding the item), best first.

        Returns int64 ids (``-1`` padded) and float32 scores (``-inf`` padded).
        """

    def recommend(
        self,
        user_ids: np.ndarray,
        user_items: csr_matrix,
        N: int,
        *,
        filter_already_liked_items: bool = True,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` items for each user, best first.

        Parameters
        ----------
        user_ids:
            ``(n,)`` user indices (rows of ``user_items``).
        user_items:
            Full ``(n_users, n_items)`` history; its nonzeros are filtered when
            ``filter_already_liked_items``.
        N:
            Slots per user.
        batch_size:
            Users scored per dense ``(batch_size, n_items)`` block (bounds memory).

        Returns
        -------
        ids:
            ``(n, N)`` int64, ``-1`` padded when fewer than ``N`` items are available.
        scores:
            ``(n, N)`` float32, ``-inf`` padded.
        """
        self._check_fitted()
        user_ids = as_ids(user_ids)
        user_items = check_user_items(user_items, self.n_items_)
        ids = np.empty((len(user_ids), N), dtype=np.int64)
        scores = np.empty((len(user_ids), N), dtype=np.float32)
        for start in range(0, len(user_ids), batch_size):
            batch = user_ids[start : start + batch_size]
            stop = start + len(batch)
            if self.zero_means_unscored:
                evidence = csr_matrix(self.score_sparse(batch, user_items), dtype=np.float32, copy=True)
                if evidence.shape != (len(batch), self.n_items_):
                    raise ModelOutputError(f"{type(self).__name__}.score_sparse returned shape {evidence.shape}, "
                                           f"expected ({len(batch)}, {self.n_items_})")
                _check_values(evidence.data, f"{type(self).__name__}.score_sparse", "scores")
                evidence.data[evidence.data == 0] = -np.inf
                if filter_already_liked_items:
                    mask_seen_sparse(evidence, user_items[batch])
                ids[start:stop], scores[start:stop] = topk_sparse(evidence, N)
                continue
            block = check_scores(self, self.score(batch, user_items), len(batch))
            if filter_already_liked_items:
                mask_seen(block, user_items[batch])
            ids[start:stop], scores[start:stop] = topk(block, N)
        return ids, scores

    def score_pairs(
        self, users: np.ndarray, items: np.ndarray, user_items: csr_matrix, batch_size: int = 1024
    ) -> np.ndarray:
        """float32 ``(n_pairs,)`` score of each ``(users[p], items[p])`` pair.

        Used to build ranker features for candidates proposed by *other* generators, so it
        must equal ``score(users, user_items)[p, items[p]]``. The default groups pairs by
        unique user and scores ``batch_size`` users at a time with :meth:`score`.
        """
        self._check_fitted()
        users, items = as_ids(users), as_ids(items)
        if users.shape != items.shape:
            raise ValueError(f"users and items must have the same length, got {len(users)} and {len(items)}")
        user_items = check_user_items(user_items, self.n_items_)
        out = np.empty(len(users), dtype=np.float32)
        for batch_users, pairs, rows in pairs_by_user_batch(users, batch_size):
            out[pairs] = self.score(batch_users, user_items)[rows, items[pairs]]
        return out

    # -- persistence --------------------------------------------------------------------

    @abstractmethod
    def _get_state(self) -> dict[str, np.ndarray]:
        """Fitted arrays to save (no object arrays: files load with allow_pickle=False)."""

    @abstractmethod
    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`_get_state` returned."""

    def save(self, path: PathOrFile) -> None:
        """Write the model to one ``.npz`` file (suffix added to names without it).

        Layout: ``__model__`` (registry name), ``__params__`` (JSON constructor arguments)
        and the fitted arrays, zlib-compressed (:func:`~.kernels.save_npz_compressed`). Never pickled.
        """
        self._check_fitted()
        state = self._get_state()
        meta = {"n_users_": int(self.n_users_), "n_items_": int(self.n_items_)}
        save_npz_compressed(path, {
            "__model__": np.array(self.name),
            # default=: numpy scalars passed as hyper-parameters (np.float64(0.1) ...)
            "__params__": np.array(json.dumps(self.get_params(), default=lambda v: v.item())),
            "__meta__": np.array(json.dumps(meta)),
            **state,
        })

    @classmethod
    def load(cls, path: PathOrFile) -> Self:
        """Read a model written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(_npz_path(path), allow_pickle=False) as data:
            files = dict(data.items())
        saved = str(files.pop("__model__"))
        if cls.name != "base" and saved != cls.name:
            raise ValueError(f"file holds a '{saved}' model, not '{cls.name}'")
        params = json.loads(str(files.pop("__params__")))
        meta = json.loads(str(files.pop("__meta__")))
        # Recommender.load(path) dispatches on the saved name.
        model_cls = _class_named(saved) if cls.name == "base" else cls
        model = model_cls(**params)
        model.n_users_, model.n_items_ = meta["n_users_"], meta["n_items_"]
        model._set_state(files)
        return model  # type: ignore[return-value]
