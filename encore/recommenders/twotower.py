"""Two-tower retrieval: a user tower and an item tower trained with an in-batch softmax.

* **User tower**: the user's id embedding plus a linear map of the *bag* of their history (the mean
  of history-item embeddings weighted by ``log1p(plays)``). During training the id embedding is
  dropped with probability ``id_dropout`` and the positive item is left out of its own bag, so the
  bag path alone learns to place a user: that is what :meth:`TwoTowerRecommender.fold_in` uses for a
  user the model never saw (no refit).
* **Item tower**: the item's id embedding plus the mean of its tags' embeddings (tag counts from
  ``item_features``, where the data has tags; zero otherwise).

Both towers end L2-normalised; the loss is a softmax over the batch's items of cosine / ``temperature``
(the other pairs of the batch are the negatives; repeats of the same item or user are masked).
``score(u, i)`` is the cosine of the exported ``user_factors_`` and ``item_factors_``.
"""

from __future__ import annotations

from typing import Any, Literal, Self

import numpy as np
from scipy.sparse import csr_matrix

from encore.config.types import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, UnitInterval
from encore.foldin import FOLD_IN_WEIGHTS, fold_in_embeddings, history_weights

from .base import as_ids, check_user_items
from .generator_config import GeneratorConfig
from .neural import EmbeddingRecommender, import_torch, optimizer_step, torch_session


class TwoTowerConfig(GeneratorConfig):
    """Settings of a ``twotower`` generator instance (``components.<name>: {kind: twotower, ...}``)."""

    kind: Literal["twotower"] = "twotower"
    factors: PositiveInt = 64
    temperature: PositiveFloat = 0.1
    id_dropout: UnitInterval = 0.5
    use_tags: bool = True
    learning_rate: PositiveFloat = 0.005
    weight_decay: NonNegativeFloat = 0.0
    epochs: PositiveInt = 9
    patience: PositiveInt = 2
    train_batch_size: PositiveInt = 2048
    num_threads: NonNegativeInt = 0


def bags(matrix: csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rows`` of ``matrix`` as EmbeddingBag input: (column ids, offsets, values), concatenated."""
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    offsets = np.cumsum(lengths) - lengths
    positions = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
    return matrix.indices[positions].astype(np.int64), offsets.astype(np.int64), matrix.data[positions]


def _network(torch: Any, n_users: int, n_items: int, n_tags: int, factors: int) -> Any:
    nn = torch.nn

    class TwoTowerNetwork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.users = nn.Embedding(n_users, factors)
            self.history = nn.EmbeddingBag(n_items, factors, mode="sum")
            self.bag = nn.Linear(factors, factors)
            self.items = nn.Embedding(n_items, factors)
            self.tags = nn.EmbeddingBag(max(n_tags, 1), factors, mode="sum")
            for table in (self.users, self.history, self.items, self.tags):
                nn.init.normal_(table.weight, std=factors ** -0.5)

    return TwoTowerNetwork()


class TwoTowerRecommender(EmbeddingRecommender):
    """Two towers on ``user_items`` ``(n_users, n_items)`` and, with ``use_tags``, ``item_features``
    ``(n_items, n_tags)``.

    Parameters
    ----------
    factors:
        Embedding size of both towers.
    temperature:
        Divides the cosines in the softmax (lower: sharper).
    id_dropout:
        Probability of dropping a user's id embedding in a training example (trains the history
        path that :meth:`fold_in` relies on).
    use_tags:
        Add the item's tag embeddings to its tower (ignored when the data has no tags).
    learning_rate, weight_decay:
        Adam's.
    epochs, patience:
        At most ``epochs`` passes over the (user, item) pairs; with an ``epoch_scorer`` (the
        pipeline's ranker-target score), stop after ``patience`` epochs without improvement.
    train_batch_size:
        Pairs per step; the batch's other items are each pair's negatives. 2048 (was 512): every
        step updates the whole id tables with Adam, which was half an epoch's time at 512 on 1M
        interactions (``docs/neural.md``, "Training time").
    num_threads:
        torch intra-op threads during fit; 0 keeps ``torch.set_num_threads``' setting.
    random_state:
        Seed of the initial weights, the order of pairs and the id dropout.
    """

    name = "twotower"
    config_class = TwoTowerConfig
    side_data = ("item_features",)

    def __init__(self, factors: int = 64, temperature: float = 0.1, id_dropout: float = 0.5, use_tags: bool = True,
                 learning_rate: float = 0.005, weight_decay: float = 0.0, epochs: int = 9, patience: int = 2,
                 train_batch_size: int = 2048, num_threads: int = 0, random_state: int | None = 42):
        self.factors = factors
        self.temperature = temperature
        self.id_dropout = id_dropout
        self.use_tags = use_tags
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.patience = patience
        self.train_batch_size = train_batch_size
        self.num_threads = num_threads
        self.random_state = random_state

    def fit(self, user_items: csr_matrix, item_features: csr_matrix | None = None) -> Self:
        """Fit on ``user_items`` (and the tag counts ``item_features`` when ``use_tags``)."""
        user_items = check_user_items(user_items)
        torch = import_torch(self.name)
        functional = torch.nn.functional
        self.n_users_, self.n_items_ = user_items.shape
        weights = history_weights(user_items)
        tags = None
        if self.use_tags and item_features is not None and item_features.nnz:
            tags = history_weights(csr_matrix(item_features, dtype=np.float32))  # tag shares per item
        n_tags = 0 if tags is None else tags.shape[1]
        pair_users = np.repeat(np.arange(self.n_users_), np.diff(weights.indptr))
        pair_items = weights.indices.astype(np.int64)
        pair_weights = weights.data
        rng = np.random.default_rng(self.random_state)
        with torch_session(torch, self.random_state, self.num_threads):
            net = _network(torch, self.n_users_, self.n_items_, n_tags, self.factors)
            optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

            def item_tower(items: np.ndarray) -> Any:
                vectors = net.items(torch.from_numpy(items))
                if tags is not None:
                    ids, offsets, shares = bags(tags, items)
                    vectors = vectors + net.tags(torch.from_numpy(ids), torch.from_numpy(offsets),
                                                 per_sample_weights=torch.from_numpy(shares))
                return vectors

            def bag_tower(users: np.ndarray, leave_out: np.ndarray | None = None) -> Any:
                """The history path; ``leave_out`` (one item per user, with its weight) is removed
                from each bag and the rest re-normalised: a positive never predicts itself."""
                ids, offsets, shares = bags(weights, users)
                bag = net.history(torch.from_numpy(ids), torch.from_numpy(offsets),
                                  per_sample_weights=torch.from_numpy(shares))
                if leave_out is not None:
                    left = torch.from_numpy(pair_weights[leave_out]).unsqueeze(-1)
                    bag = (bag - left * net.history.weight[torch.from_numpy(pair_items[leave_out])]) / \
                        (1.0 - left).clamp_min(1e-6)
                return net.bag(bag)

            def run_epoch() -> float:
                total, steps = 0.0, 0
                order = rng.permutation(len(pair_users))
                for start in range(0, len(order), self.train_batch_size):
                    pairs = order[start:start + self.train_batch_size]
                    users, items = pair_users[pairs], pair_items[pairs]
                    keep = torch.from_numpy(rng.random(len(pairs)) >= self.id_dropout).unsqueeze(-1)
                    u = bag_tower(users, pairs) + net.users(torch.from_numpy(users)) * keep
                    logits = functional.normalize(u, dim=-1) @ functional.normalize(item_tower(items), dim=-1).T
                    # Another pair of the same user or item in the batch is no negative.
                    same = (users[:, None] == users[None, :]) | (items[:, None] == items[None, :])
                    np.fill_diagonal(same, False)
                    logits = (logits / self.temperature).masked_fill(torch.from_numpy(same), float("-inf"))
                    loss = functional.cross_entropy(logits, torch.arange(len(pairs)))
                    total, steps = total + optimizer_step(optimizer, loss), steps + 1
                return total / max(steps, 1)

            def export() -> tuple[np.ndarray, np.ndarray]:
                with torch.no_grad():
                    all_users, all_items = np.arange(self.n_users_), np.arange(self.n_items_)
                    users = bag_tower(all_users) + net.users.weight
                    items = item_tower(all_items)
                    return (functional.normalize(users, dim=-1).numpy().copy(),
                            functional.normalize(items, dim=-1).numpy().copy())

            self._train(net, run_epoch, export)
        return self

    def fold_in(self, user_items: csr_matrix, user_ids: np.ndarray | None = None) -> np.ndarray:
        """``(n, factors)`` embeddings of users from their history rows alone (no id, no refit):
        the user tower's history path, L2-normalised, for users the model never saw.

        ``user_items`` holds the histories (``(n_users, n_items)``, play counts); ``user_ids``
        selects rows (default: all). Score items with ``fold_in(...) @ item_factors_.T``.
        """
        self._check_fitted()
        user_items = check_user_items(user_items, self.n_items_)
        rows = user_items if user_ids is None else user_items[as_ids(user_ids)]
        return fold_in_embeddings(rows, self.weights_)

    def fold_in_state(self) -> dict[str, np.ndarray]:
        """What :meth:`fold_in` and scoring need, and no more: the :data:`~encore.foldin.FOLD_IN_WEIGHTS`
        and ``item_factors`` ``(n_items, factors)`` (the service's bundle holds these, not the
        ``(n_users, factors)`` user embeddings)."""
        self._check_fitted()
        return {key: self.weights_[key] for key in FOLD_IN_WEIGHTS} | {"item_factors": self.item_factors_}

    def _extra_state(self) -> dict[str, np.ndarray]:
        return dict(self.weights_)

    def _set_extra_state(self, state: dict[str, np.ndarray]) -> None:
        self.weights_ = {key: value for key, value in state.items() if key.startswith("w.")}
