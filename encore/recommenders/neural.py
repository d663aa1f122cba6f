"""What the neural kinds (``twotower``, ``sasrec``) share: PyTorch on demand, seeding and threads,
epochs with progress and early stopping, and scoring from exported embeddings.

PyTorch is an optional extra (``pip install 'encore[neural]'``): this module, and the kinds built
on it, import without it, so the kind registry (:mod:`.kinds`) and the rest of Encore never need
it. Only ``fit`` imports torch (:func:`import_torch`); a fitted model scores, recommends, saves
and loads from its exported numpy embeddings alone (``user_factors`` ``(n_users, k)`` and
``item_factors`` ``(n_items, k)``, float32, ``score = user_factors @ item_factors.T``), as ALS does.

Early stopping. A neural model trains for up to ``epochs`` epochs. When an ``epoch_scorer`` is set
on it (``model.epoch_scorer = f``; ``f(model) -> float``, higher is better), it is called after
every epoch with the embeddings of that epoch exported, the best epoch's embeddings are kept, and
training stops after ``patience`` epochs without improvement. The pipeline sets it to the
ranker-target part's score on the base fit (never test: :func:`encore.candidates.target_scorer`),
and refits on base + target with the best epoch count; ``tune`` reports the same scores to Optuna
for pruning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from ..foldin import l2_normalised
from ..progress import Progress
from .base import Recommender, as_ids, drop_self, factor_pair_scores, topk
from .generator_config import SideDataMissing

TORCH_PIN = "torch==2.13.0"
log = logging.getLogger(__name__)


class TorchMissing(SideDataMissing):
    """A neural kind asked for without PyTorch installed. A :class:`SideDataMissing` so the
    pipeline reports it as it reports any kind that cannot run here: one line naming the instance."""


def import_torch(kind: str) -> Any:
    """The ``torch`` module, or :class:`TorchMissing` saying what to install."""
    try:
        import torch
    except ImportError:
        raise TorchMissing(f"kind '{kind}' needs PyTorch, which is not installed: pip install 'encore[neural]' "
                           f"(or pip install {TORCH_PIN}, the CPU build)") from None
    return torch


@contextmanager
def torch_session(torch: Any, seed: int | None, num_threads: int) -> Iterator[None]:
    """Seeded (the global RNG is forked, so a fit leaves the caller's torch RNG as it was) and, with
    ``num_threads > 0``, that many intra-op threads; 0 keeps ``torch.set_num_threads``' setting."""
    previous = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else seed)
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def state_arrays(module: Any, prefix: str = "w.") -> dict[str, np.ndarray]:
    """A torch module's parameters and buffers as float32 numpy arrays (saved in the ``.npz``, never pickled)."""
    return {prefix + key: value.detach().cpu().numpy().copy() for key, value in module.state_dict().items()}


def optimizer_step(optimizer: Any, loss: Any) -> float:
    """One gradient step on ``loss``; its value, for the epoch's mean."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.item())


EpochScorer = Callable[[Recommender], float]


class EmbeddingRecommender(Recommender):
    """Base of the neural kinds: fitted state is ``user_factors_``/``item_factors_`` (plus whatever
    :meth:`_extra_state` adds); subclasses implement :meth:`fit` with :meth:`_train`."""

    epoch_scorer: EpochScorer | None = None
    """Called after each epoch when set (see the module doc); not a hyper-parameter, never saved."""

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    best_epoch_: int
    epoch_scores_: list[float]

    # -- training loop ---------------------------------------------------------------------

    def _train(self, net: Any, run_epoch: Callable[[], float],
               export: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
        """Up to ``self.epochs`` calls of ``run_epoch`` (returns the mean loss) with a progress line
        per epoch (loss, ETA); with an ``epoch_scorer``, stop after ``self.patience`` epochs without
        a better score and keep the best epoch (the torch module ``net``'s weights then are restored).
        The kept weights end in ``weights_`` (arrays, saved without pickle)."""
        epochs, patience = self.epochs, self.patience

        def snapshot() -> Any:
            return {key: value.clone() for key, value in net.state_dict().items()}

        restore = net.load_state_dict
        self.epoch_scores_, self.best_epoch_ = [], epochs
        best: tuple[float, int, Any] | None = None
        started, cpu_started = time.monotonic(), time.process_time()
        with Progress(f"{self.name} fit", epochs, unit="epochs") as progress:
            for epoch in range(1, epochs + 1):
                loss = run_epoch()
                if not np.isfinite(loss):
                    raise FloatingPointError(f"kind '{self.name}': the training loss is {loss} at epoch {epoch}; "
                                             "lower learning_rate")
                self.user_factors_, self.item_factors_ = export()
                note = f"loss {loss:.4f}"
                if self.epoch_scorer is not None:
                    score = float(self.epoch_scorer(self))
                    self.epoch_scores_.append(score)
                    note += f", target {score:.4f}"
                    if best is None or score > best[0]:
                        best = (score, epoch, snapshot())
                log.debug("%s epoch %d: %s", self.name, epoch, note)
                progress.advance(1)
                if best is not None and epoch - best[1] >= patience:
                    break
        if best is not None:
            self.best_epoch_ = best[1]
            restore(best[2])
            self.user_factors_, self.item_factors_ = export()
        self.weights_ = state_arrays(net)
        self.fit_seconds_ = time.monotonic() - started
        self.fit_cpu_seconds_ = time.process_time() - cpu_started  # what a loaded machine does not inflate

    # -- scoring from the embeddings -------------------------------------------------------

    def score(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """``user_factors_[user_ids] @ item_factors_.T`` (``user_items`` unused: fixed at fit)."""
        self._check_fitted()
        return self.user_factors_[as_ids(user_ids)] @ self.item_factors_.T

    def score_pairs(self, users: np.ndarray, items: np.ndarray, user_items: csr_matrix,
                    batch_size: int = 1024) -> np.ndarray:
        self._check_fitted()
        return factor_pair_scores(self.user_factors_, self.item_factors_, users, items)

    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of the item embeddings, the item itself excluded."""
        self._check_fitted()
        item_ids = as_ids(item_ids)
        normalised = l2_normalised(self.item_factors_)
        ids, scores = topk(normalised[item_ids] @ normalised.T, min(N + 1, self.n_items_))
        if ids.shape[1] < N + 1:
            pad = N + 1 - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return drop_self(item_ids, ids, scores, N)

    # -- persistence ----------------------------------------------------------------------

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {}

    def _set_extra_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`_extra_state` returned."""

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "best_epoch": np.array(self.best_epoch_), **self._extra_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors_ = state.pop("user_factors")
        self.item_factors_ = state.pop("item_factors")
        self.best_epoch_ = int(state.pop("best_epoch"))
        self._set_extra_state(state)
