"""SASRec (Kang & McAuley 2018): causal self-attention over each user's time-ordered items.

Listening is sequential: what a user plays next follows from what they played last. Each user's
items are ordered by their last-play time (the ``timestamps`` side data; a dataset without it
cannot run this kind) and the last ``max_len`` + 1 of them make the training sequence: at every
position the network reads the items so far (a causal mask) and is trained to score the next
item above ``n_negatives`` items drawn uniformly (a sampled softmax, one shared draw per batch).
A batch holds users of similar history length, without the columns that are padding in all of
its rows (:func:`length_batches`, :func:`trimmed`): the cost of an epoch follows the real items.

After training, the hidden state at each user's last item is that user's embedding
(``user_factors_``) and the input item embeddings are ``item_factors_``: ``score(u, i)`` is their
dot product, so lists, ranker pair features and similar items come from the exported embeddings
(numpy, no torch needed to serve). The network's weights are saved beside them (``w.*`` arrays).

Only the stage's own data is read: the ``base`` fit sees base-part plays and times only, the
``train`` fit base + target; test events never (``tests/recommenders/test_neural.py`` moves the
test window and gets the same training).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Self

import numpy as np
from scipy.sparse import csr_matrix

from encore.config.types import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, UnitInterval

from .base import check_user_items
from .generator_config import GeneratorConfig, SettingUnfit, SideDataMissing
from .neural import EmbeddingRecommender, import_torch, optimizer_step, torch_session


class SASRecConfig(GeneratorConfig):
    """Settings of a ``sasrec`` generator instance (``components.<name>: {kind: sasrec, ...}``)."""

    kind: Literal["sasrec"] = "sasrec"
    factors: PositiveInt = 64
    n_blocks: PositiveInt = 2
    n_heads: PositiveInt = 2
    max_len: PositiveInt = 50
    dropout: UnitInterval = 0.2
    n_negatives: PositiveInt = 128
    learning_rate: PositiveFloat = 0.002
    weight_decay: NonNegativeFloat = 0.0
    epochs: PositiveInt = 15
    patience: PositiveInt = 2
    train_batch_size: PositiveInt = 128
    num_threads: NonNegativeInt = 0


def sequences(timestamps: csr_matrix, length: int) -> np.ndarray:
    """``(n_users, length)`` int64: each user's last ``length`` items by last-play time (ties by
    item id), as item id + 1, left-padded with 0."""
    out = np.zeros((timestamps.shape[0], length), dtype=np.int64)
    indptr, indices, times = timestamps.indptr, timestamps.indices, timestamps.data
    for user in range(timestamps.shape[0]):
        lo, hi = indptr[user], indptr[user + 1]
        if hi == lo:
            continue
        items = indices[lo:hi]
        ordered = items[np.lexsort((items, times[lo:hi]))][-length:]
        out[user, length - len(ordered):] = ordered + 1
    return out


def trimmed(batch: np.ndarray) -> np.ndarray:
    """``batch`` ``(B, L)`` (left-padded with 0) without its leading columns that are padding in
    every row (at least one column kept): attention over padding costs time and changes nothing."""
    filled = (batch > 0).any(axis=0)
    first = int(np.argmax(filled)) if filled.any() else batch.shape[1] - 1
    return batch[:, first:]


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices in batches of ``batch_size`` of rows of similar ``lengths`` (sorted by length,
    ties in random order), the batches in random order: trimmed batches then carry little padding."""
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _network(torch: Any, n_items: int, factors: int, n_blocks: int, n_heads: int, max_len: int,
             dropout: float) -> Any:
    nn = torch.nn

    class SASRecNetwork(nn.Module):
        """Item + position embeddings, ``n_blocks`` pre-norm causal self-attention blocks."""

        def __init__(self) -> None:
            super().__init__()
            self.items = nn.Embedding(n_items + 1, factors, padding_idx=0)  # 0: padding
            self.positions = nn.Embedding(max_len, factors)
            self.dropout = nn.Dropout(dropout)
            block = nn.TransformerEncoderLayer(factors, n_heads, dim_feedforward=factors, dropout=dropout,
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(block, n_blocks, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(factors)
            nn.init.normal_(self.items.weight, std=factors ** -0.5)
            with torch.no_grad():
                self.items.weight[0].zero_()

        def forward(self, seq: Any) -> Any:
            """``(B, L)`` item ids + 1 (0 = padding), ``L <= max_len``, the last column the latest item
            -> ``(B, L, factors)`` states. A batch may come with its all-padding leading columns cut
            (:func:`trimmed`): positions count back from the latest item, so the states of the real
            items do not change."""
            length = seq.shape[1]
            real = seq > 0
            x = self.items(seq) * math.sqrt(factors) + self.positions(torch.arange(max_len - length, max_len))
            x = self.dropout(x) * real.unsqueeze(-1)
            # Position i attends to positions <= i that hold an item, and always to itself (a row
            # with nothing to attend to would be NaN; left padding makes such rows).
            causal = torch.ones(length, length, dtype=torch.bool).tril()
            allowed = causal & (real.unsqueeze(1) | torch.eye(length, dtype=torch.bool))
            mask = (~allowed).repeat_interleave(n_heads, dim=0)
            return self.norm(self.blocks(x, mask=mask)) * real.unsqueeze(-1)

    return SASRecNetwork()


class SASRecRecommender(EmbeddingRecommender):
    """Self-attentive sequential recommendation on ``user_items`` ``(n_users, n_items)`` ordered by
    ``timestamps`` (same shape, last-play unix seconds).

    Parameters
    ----------
    factors:
        Embedding size (a multiple of ``n_heads``).
    n_blocks, n_heads:
        Self-attention blocks and heads per block.
    max_len:
        Items of a user's history read (the latest ones): bounds memory and time per user.
    dropout:
        On embeddings and inside the blocks.
    n_negatives:
        Items drawn uniformly per batch as the sampled softmax's negatives.
    learning_rate, weight_decay:
        Adam's.
    epochs, patience:
        At most ``epochs`` passes over the users; with an ``epoch_scorer`` (the pipeline's
        ranker-target score), stop after ``patience`` epochs without improvement, keep the best.
    train_batch_size:
        Users per gradient step.
    num_threads:
        torch intra-op threads during fit; 0 keeps ``torch.set_num_threads``' setting.
    random_state:
        Seed of the initial weights, the order of users, dropout and the negatives.
    """

    name = "sasrec"
    config_class = SASRecConfig
    side_data = ("timestamps",)
    required_side_data = ("timestamps",)

    def __init__(self, factors: int = 64, n_blocks: int = 2, n_heads: int = 2, max_len: int = 50,
                 dropout: float = 0.2, n_negatives: int = 128, learning_rate: float = 0.002,
                 weight_decay: float = 0.0, epochs: int = 15, patience: int = 2, train_batch_size: int = 128,
                 num_threads: int = 0, random_state: int | None = 42):
        self.factors = factors
        self.n_blocks = n_blocks
        self.n_heads = n_heads
        self.max_len = max_len
        self.dropout = dropout
        self.n_negatives = n_negatives
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.patience = patience
        self.train_batch_size = train_batch_size
        self.num_threads = num_threads
        self.random_state = random_state

    def fit(self, user_items: csr_matrix, timestamps: csr_matrix | None = None) -> Self:
        """Fit on the items of ``user_items`` ordered by ``timestamps`` (same shape)."""
        user_items = check_user_items(user_items)
        if timestamps is None:
            raise SideDataMissing(f"kind '{self.name}' needs timestamps, which this dataset does not have")
        if self.factors % self.n_heads:
            raise SettingUnfit("n_heads", f"factors ({self.factors}) must be a multiple of n_heads ({self.n_heads})")
        torch = import_torch(self.name)
        timestamps = csr_matrix(timestamps)
        if timestamps.shape != user_items.shape:
            raise ValueError(f"timestamps have shape {timestamps.shape}, user_items {user_items.shape}")
        self.n_users_, self.n_items_ = user_items.shape
        # One more item than max_len: inputs are [:-1], next-item targets [1:].
        train = sequences(timestamps, self.max_len + 1)
        train = train[(train > 0).sum(axis=1) >= 2]
        train_lengths = (train > 0).sum(axis=1)
        latest = sequences(timestamps, self.max_len)
        by_length = np.argsort((latest > 0).sum(axis=1), kind="stable")  # export in trimmed chunks
        rng = np.random.default_rng(self.random_state)
        with torch_session(torch, self.random_state, self.num_threads):
            net = _network(torch, self.n_items_, self.factors, self.n_blocks, self.n_heads, self.max_len,
                           self.dropout)
            optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

            def run_epoch() -> float:
                net.train()
                total, steps = 0.0, 0
                # Users of similar length per batch, padding columns cut: most histories are much
                # shorter than max_len, and attention over padding was most of an epoch's time.
                for rows in length_batches(train_lengths, self.train_batch_size, rng):
                    batch = torch.from_numpy(trimmed(train[rows]))
                    inputs, targets = batch[:, :-1], batch[:, 1:]
                    states = net(inputs)
                    real = targets > 0
                    negatives = torch.randint(1, self.n_items_ + 1, (self.n_negatives,))
                    positive = (states * net.items(targets)).sum(-1, keepdim=True)
                    negative = states @ net.items(negatives).T
                    # A drawn negative that is the position's own target is no negative.
                    negative = negative.masked_fill(targets.unsqueeze(-1) == negatives, float("-inf"))
                    logits = torch.cat([positive, negative], dim=-1)[real]
                    loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))
                    total, steps = total + optimizer_step(optimizer, loss), steps + 1
                return total / max(steps, 1)

            def export() -> tuple[np.ndarray, np.ndarray]:
                net.eval()
                users = np.zeros((self.n_users_, self.factors), dtype=np.float32)
                with torch.no_grad():
                    for start in range(0, self.n_users_, 1024):
                        rows = by_length[start:start + 1024]
                        users[rows] = net(torch.from_numpy(trimmed(latest[rows])))[:, -1].numpy()
                    items = net.items.weight[1:].numpy().astype(np.float32, copy=True)
                return users, items

            self._train(net, run_epoch, export)
        return self

    def _extra_state(self) -> dict[str, np.ndarray]:
        return dict(self.weights_)

    def _set_extra_state(self, state: dict[str, np.ndarray]) -> None:
        self.weights_ = {key: value for key, value in state.items() if key.startswith("w.")}
