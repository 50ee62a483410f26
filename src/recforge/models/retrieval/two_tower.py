"""Two-tower retrieval model (Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large
Corpus Item Recommendations", RecSys 2019), on the shared neural trainer.

* User tower: a user-id embedding, the user's side features (categorical columns embedded,
  e.g. ML-100K's age bucket, gender, occupation and zip prefix; numeric columns standardised)
  and the mean of history embeddings of the user's ``history_length`` most recent training
  items, through a ReLU MLP (``layers``) to a unit-length vector.
* Item tower: an item-id embedding, the item's side features (multi-hot genres, standardised
  release year, categorical columns) and a text embedding of its ``text_columns`` (titles;
  `recforge.data.text`: all-MiniLM-L6-v2 with the ``text`` extra, else hashed bag of words),
  through its own MLP to a unit-length vector.
* Score: the dot product of the two vectors (a cosine). `user_embeddings` and
  `item_embeddings` expose them with one extra column that carries the popularity fallback of
  unknown users, so ``score(u, i) == user_embeddings([u]) @ item_embeddings()[i]`` for every
  user: a known user's row ends in 0, an unknown user's row is 0 except ``max popularity`` in
  the last column, and each item's last column is its popularity over the maximum.

Training (one example per training interaction, the user's history being the
``history_length`` interactions before it in time, equal timestamps ordered by the tie rule
``ties`` of `recforge.data.splits.order_by_time`, so training matches next-item prediction):
in-batch sampled softmax over the batch's positive items at ``temperature`` (fixed, or learned
with ``learn_temperature``), optionally mixed with ``uniform_negatives`` items drawn uniformly
per batch (Yang et al., WWW 2020); the logits are corrected by ``-log`` of each candidate's
expected count in the batch under that proposal (logQ correction; exact training frequencies
rather than the paper's streaming estimate); accidental hits (a candidate that is a training
positive of the row's user, the row's own positive aside) are removed. ``hard_negatives=h``
adds a second softmax over the positive and the ``h`` highest-scoring candidates of each row
(hard-negative mining). The trainer's ``loss``, ``negatives`` and ``sampling`` do not apply.

Cold start: ids without training interactions (and ``id_dropout`` of the known ones during
training) use a shared "unknown" id row, so the towers learn to work from features and
history alone. `encode_items` embeds new items from their features; `encode_users` new users
from features and/or a short history of item indices. Unknown categories, missing columns,
unknown item indices in a history and missing texts map to the unknown/zero inputs. Side
features go through `recforge.data.codec.FeatureCodec` (its JSON description is saved with
the model), histories through `recforge.data.sequences.Sequences`; feature tensors are
saved as arrays (no pickle).

Defaults were chosen on validation data carved from training data only, never on a test split
(``benchmarks/bench_two_tower.py --tune``, per-epoch curves in
``benchmarks/results/bench_two_tower_tuning.json``): ML-100K's leave-last-out training part
split again by leave-last-out, reading sampled-99 HR@10/NDCG@10 and full-ranking NDCG@10,
and, for cold items, 10% of the items of the cold split's training part held out. Temperature
0.1 (validation sampled HR@10 0.758, full HR@10 0.207 at 10 epochs) beat 0.05 (0.724 and
0.186 at 10 epochs, no better by 20); the curve at 0.1 is flat from epoch 5 to 10, so 10
epochs; without the logQ correction 0.624; 256-64 towers were level with 128-64 (0.738 vs
0.724), so the cheaper ones; ``id_dropout`` 0.3 was level with 0.1 on cold-item Recall@50
(0.688 vs 0.684 among the cold items, 0.270 vs 0.276 among all). Learning rate 0.003,
batches of 1,024, 64-wide id and history embeddings, 20 history items and 16-wide
categorical embeddings were set beforehand and not tuned (time). The synthetic implicit set
(the same inner leave-last-out, ``--tune-sets synthetic``,
``bench_two_tower_tuning_synthetic.json``) agreed on every choice: at 10 epochs the defaults
gave validation sampled HR@10 0.806, temperature 0.05 0.792, no logQ 0.707, 256-64 towers
0.804, id dropout 0.3 0.795.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.data.codec import INDEX_KINDS, FeatureCodec
from recforge.data.features import SideTable
from recforge.data.interactions import Interactions
from recforge.data.sampling import NegativeSampler
from recforge.data.sequences import Sequences, pad_histories
from recforge.data.splits import DEFAULT_TIES, TIES
from recforge.data.text import METHODS, embed_texts, resolve_method
from recforge.errors import InputError
from recforge.models.base import ValidationScore
from recforge.models.neural.torch_base import TorchRecommender
from recforge.models.registry import register
from recforge.nn.batching import Batch
from recforge.nn.trainer import ScoringModule
from recforge.params import (
    BOOLEAN,
    DROPOUT,
    MAX_COUNT,
    WIDTH,
    Choice,
    Integer,
    Mapping,
    Optional,
    Real,
    Rule,
    Text,
)
from recforge.params import Sequence as SequenceRule

#: categorical columns cut to a prefix before encoding (ML-100K's zip codes: the region)
DEFAULT_PREFIX = {"zip": 2}
_INIT_STD = 0.1
_MIN_TEMPERATURE = 0.01
#: longest history pooled into the user tower (every example holds one)
MAX_HISTORY = 10_000
#: most extra uniform candidates per batch (each batch row scores every candidate)
MAX_UNIFORM_NEGATIVES = 100_000


# ---------------------------------------------------------------------- feature encoding
def fit_codec(table: SideTable | None, prefix: dict[str, int]) -> dict[str, Any]:
    """The JSON-able description of a `FeatureCodec` fitted on ``table``'s categorical (cut
    to ``prefix``), numeric (standardised) and multihot columns."""
    return FeatureCodec.for_side_table(table, prefix).fit(table).to_dict()


def encode_table(table: SideTable | None, codec: dict[str, Any], texts: dict[str, str],
                 n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(categorical indices (n, C) int64, dense features (n, D) float32)`` of ``table`` by
    ``codec`` (`FeatureCodec.index_and_dense`), then the embeddings of the ``texts`` columns
    (column -> `embed_texts` method); missing columns, unknown categories, NaNs and missing
    texts give the unknown/zero inputs."""
    cats, dense = FeatureCodec.from_dict(codec).index_and_dense(table, n_rows)
    embedded = [embed_texts(table.text[c] if table is not None and c in table.text
                            else [None] * n_rows, method) for c, method in texts.items()]
    return cats, np.concatenate([dense, *embedded], axis=1).astype(np.float32)


def codec_widths(codec: dict[str, Any], dense_width: int) -> dict[str, Any]:
    """Input sizes of a tower: vocabulary sizes (with the unknown entry) and dense width."""
    fitted = FeatureCodec.from_dict(codec)
    sizes = fitted.sizes()
    return {"cardinalities": [sizes[name] for name in fitted.names(*INDEX_KINDS)],
            "dense": int(dense_width)}


def histories(train: Interactions, length: int, ties: str = DEFAULT_TIES, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(users, items, history before each, final history per user)``: every training
    interaction (users in order, each in time order, equal timestamps by the tie rule
    ``ties``, ``seed`` seeding ``"random"``; see `recforge.data.splits.order_by_time`) with
    the ``length`` items its user had before it, and each user's last ``length`` items;
    padding is ``n_items`` (`Sequences`)."""
    seq = Sequences.from_interactions(train, ties=ties, seed=seed)
    return seq.users, seq.items, seq.prefix_windows(length), seq.padded(length)


# ---------------------------------------------------------------------- module
class Tower(nn.Module):
    """Id embedding (last row: unknown), categorical embeddings, dense features and an
    optional pooled history through a ReLU MLP to a unit vector."""

    def __init__(self, n_ids: int, id_dim: int, cardinalities: Sequence[int], cat_dim: int,
                 dense: int, extra: int, layers: Sequence[int]):
        super().__init__()
        self.unknown = n_ids
        self.ids = _embedding(n_ids + 1, id_dim)
        self.cats = _embedding(max(1, sum(cardinalities)), cat_dim)
        offsets = np.concatenate([[0], np.cumsum(cardinalities)[:-1]]).astype(np.int64)
        self.register_buffer("offsets", torch.from_numpy(offsets), persistent=False)
        widths = [id_dim + len(cardinalities) * cat_dim + dense + extra, *layers]
        blocks: list[nn.Module] = []
        for w_in, w_out in itertools.pairwise(widths):
            blocks += [nn.Linear(w_in, w_out), nn.ReLU()]
        self.mlp = nn.Sequential(*blocks[:-1])

    def forward(self, ids: torch.Tensor, cats: torch.Tensor, dense: torch.Tensor,
                extra: torch.Tensor | None = None) -> torch.Tensor:
        """Unit-length outputs; ``ids`` of -1 mean unknown."""
        ids = torch.where(ids < 0, self.unknown, ids)
        parts = [self.ids(ids), self.cats(cats + self.offsets).flatten(1), dense]
        return F.normalize(self.mlp(torch.cat(parts + ([] if extra is None else [extra]), 1)),
                           dim=1)


class TwoTowerModule(ScoringModule):
    """The two towers, the history embeddings, the temperature and the feature tensors of the
    training users and items (buffers, saved with the weights)."""

    def __init__(self, n_users: int, n_items: int, user_widths: dict[str, Any],
                 item_widths: dict[str, Any], id_dim: int, cat_dim: int,
                 layers: Sequence[int], history_length: int, temperature: float,
                 learn_temperature: bool, id_dropout: float):
        super().__init__()
        self.n_items = n_items
        self.id_dropout = id_dropout
        self.history = nn.Embedding(n_items + 1, id_dim, padding_idx=n_items)
        nn.init.normal_(self.history.weight[:n_items], std=_INIT_STD)
        self.user_tower = Tower(n_users, id_dim, user_widths["cardinalities"], cat_dim,
                                user_widths["dense"], id_dim, layers)
        self.item_tower = Tower(n_items, id_dim, item_widths["cardinalities"], cat_dim,
                                item_widths["dense"], 0, layers)
        self.log_temperature = nn.Parameter(torch.tensor(float(np.log(temperature))),
                                            requires_grad=learn_temperature)
        for name, shape, dtype in (
                ("user_cats", (n_users, len(user_widths["cardinalities"])), torch.int64),
                ("user_dense", (n_users, user_widths["dense"]), torch.float32),
                ("user_history", (n_users, history_length), torch.int64),
                ("user_ids", (n_users,), torch.int64),
                ("item_cats", (n_items, len(item_widths["cardinalities"])), torch.int64),
                ("item_dense", (n_items, item_widths["dense"]), torch.float32),
                ("item_ids", (n_items,), torch.int64)):
            self.register_buffer(name, torch.zeros(shape, dtype=dtype))

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp_min(_MIN_TEMPERATURE)

    def _drop(self, ids: torch.Tensor) -> torch.Tensor:
        """Training only: each id becomes unknown (-1) with probability ``id_dropout``."""
        if not self.training or self.id_dropout <= 0:
            return ids
        return torch.where(torch.rand(ids.shape, device=ids.device) < self.id_dropout, -1, ids)

    def pool(self, history: torch.Tensor) -> torch.Tensor:
        """Mean history embedding of each row (zero for an empty history)."""
        count = (history != self.n_items).sum(1, keepdim=True).clamp_min(1)
        return self.history(history).sum(1) / count

    def encode_users(self, ids: torch.Tensor, cats: torch.Tensor, dense: torch.Tensor,
                     history: torch.Tensor) -> torch.Tensor:
        """User vectors from raw inputs (id -1: unknown)."""
        return self.user_tower(self._drop(ids), cats, dense, self.pool(history))

    def encode_items(self, ids: torch.Tensor, cats: torch.Tensor,
                     dense: torch.Tensor) -> torch.Tensor:
        """Item vectors from raw inputs (id -1: unknown)."""
        return self.item_tower(self._drop(ids), cats, dense)

    def users(self, users: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors of training users (their last items as history unless given)."""
        history = self.user_history[users] if history is None else history
        return self.encode_users(self.user_ids[users], self.user_cats[users],
                                 self.user_dense[users], history)

    def items(self, items: torch.Tensor) -> torch.Tensor:
        """Vectors of catalogue items."""
        return self.encode_items(self.item_ids[items], self.item_cats[items],
                                 self.item_dense[items])

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores (cosines) of the pairs ``(users[n], items[n])``."""
        return (self.users(users) * self.items(items)).sum(-1)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        return self.users(users) @ self.item_vectors().T

    def item_vectors(self) -> torch.Tensor:
        return self.items(torch.arange(self.n_items, device=self.item_ids.device))


def _embedding(n: int, dim: int) -> nn.Embedding:
    table = nn.Embedding(n, dim)
    nn.init.normal_(table.weight, std=_INIT_STD)
    return table


# ---------------------------------------------------------------------- recommender
@register("two-tower")
class TwoTower(TorchRecommender):
    """Two-tower retrieval model with features, history and sampled softmax (module docstring).

    ``layers``: the MLP widths of each tower, the last being the embedding size; ``id_dim``:
    id and history embedding width; ``cat_dim``: width per categorical column;
    ``history_length``: recent items pooled into the user tower; ``temperature`` (learned
    from that start when ``learn_temperature``); ``logq``: sampling-bias correction;
    ``remove_accidental_hits``; ``uniform_negatives``: extra uniform candidates per batch;
    ``hard_negatives``: hardest candidates per row in a second softmax; ``id_dropout``;
    ``text_method``: ``auto``, ``minilm`` or ``hashed``; ``text_columns``: item text
    columns to embed; ``category_prefix``: categorical columns cut to a prefix (default
    `DEFAULT_PREFIX`); ``ties``: how a user's training events with equal timestamps are
    ordered in their histories, the rules of `recforge.data.splits.order_by_time`
    (``"file-order"``, the default of the leave-last-out split; ``"item-id"``, the rule of
    the figures before issue 11; ``"random"``, seeded by ``seed``). Training parameters: see
    `recforge.nn.TrainingConfig`; ``chunk_rows`` must be None (each example carries its
    per-event history, so the epoch is built in memory).

    Paper: Covington et al., RecSys 2016; Yi et al., "Sampling-bias-corrected neural modeling",
        RecSys 2019.
    Hyperparameters (defaults): ``layers=(128,64)``, ``id_dim=64``, ``cat_dim=16``,
        ``history_length=20``, ``temperature=0.1``, ``learn_temperature=False``, ``logq=True``,
        ``remove_accidental_hits=True``, ``uniform_negatives=0``, ``hard_negatives=0``,
        ``id_dropout=0.1``, ``text_method='auto'``, ``text_columns=('title',)``,
        ``category_prefix=None``, ``ties='file-order'``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=10``,
        ``learning_rate=0.003``.
    Defaults: on validation splits carved from training data only, never a test split (module
        docstring).
    Consumes: interactions; reads the user and item side tables when present.
    """

    training_defaults: ClassVar[dict[str, Any]] = {"epochs": 10, "train_batch_size": 1024,
                                                   "learning_rate": 0.003}
    streams_epochs = False
    training_state = ("_training", "_features", "_examples", "_frequency", "_positives")
    param_rules: ClassVar[dict[str, Rule]] = {
        "layers": SequenceRule(WIDTH, min_len=1), "id_dim": WIDTH, "cat_dim": WIDTH,
        "history_length": Integer(1, MAX_HISTORY), "temperature": Real(0, low_open=True),
        "learn_temperature": BOOLEAN, "logq": BOOLEAN, "remove_accidental_hits": BOOLEAN,
        "uniform_negatives": Integer(0, MAX_UNIFORM_NEGATIVES),
        "hard_negatives": Integer(0, MAX_COUNT), "id_dropout": DROPOUT,
        "text_method": Choice(*METHODS), "text_columns": SequenceRule(Text()),
        "category_prefix": Optional(Mapping(Integer(1, MAX_COUNT))), "ties": TIES,
    }

    def __init__(self, layers: Sequence[int] = (128, 64), id_dim: int = 64, cat_dim: int = 16,
                 history_length: int = 20, temperature: float = 0.1,
                 learn_temperature: bool = False, logq: bool = True,
                 remove_accidental_hits: bool = True, uniform_negatives: int = 0,
                 hard_negatives: int = 0, id_dropout: float = 0.1, text_method: str = "auto",
                 text_columns: Sequence[str] = ("title",),
                 category_prefix: dict[str, int] | None = None, ties: str = DEFAULT_TIES,
                 **training: Any):
        self.layers = layers
        self.id_dim = id_dim
        self.cat_dim = cat_dim
        self.history_length = history_length
        self.temperature = temperature
        self.learn_temperature = learn_temperature
        self.logq = logq
        self.remove_accidental_hits = remove_accidental_hits
        self.uniform_negatives = uniform_negatives
        self.hard_negatives = hard_negatives
        self.id_dropout = id_dropout
        self.text_method = text_method
        self.text_columns = text_columns
        self.category_prefix = category_prefix
        self.ties = ties
        super().__init__(**training)

    # ------------------------------------------------------------------ building
    def _build_module(self) -> TwoTowerModule:
        return TwoTowerModule(self.n_users_, self.n_items_, self.user_widths_, self.item_widths_,
                              self.id_dim, self.cat_dim, self.layers, self.history_length,
                              self.temperature, self.learn_temperature, self.id_dropout)

    def _fit(self, train: Interactions, valid: Interactions | ValidationScore | None) -> None:
        prefix = DEFAULT_PREFIX if self.category_prefix is None else self.category_prefix
        method = resolve_method(self.text_method) if self.text_columns else "hashed"
        items = train.item_features
        self.user_codec_ = fit_codec(train.user_features, prefix)
        self.item_codec_ = fit_codec(items, prefix)
        self.item_texts_ = {c: method for c in self.text_columns
                            if items is not None and c in items.text}
        self._features = (encode_table(train.user_features, self.user_codec_, {}, train.n_users),
                          encode_table(items, self.item_codec_, self.item_texts_, train.n_items))
        self.user_widths_ = codec_widths(self.user_codec_, self._features[0][1].shape[1])
        self.item_widths_ = codec_widths(self.item_codec_, self._features[1][1].shape[1])
        super()._fit(train, valid)

    def _init_training(self, train: Interactions) -> None:
        super()._init_training(train)
        users, items, before, final = histories(train, self.history_length, self.ties,
                                                self.seed)
        (user_cats, user_dense), (item_cats, item_dense) = self._features
        known_items = train.item_counts > 0
        values = {"user_cats": user_cats, "user_dense": user_dense, "user_history": final,
                  "user_ids": _ids_or_unknown(train.user_counts > 0),
                  "item_cats": item_cats, "item_dense": item_dense,
                  "item_ids": _ids_or_unknown(known_items)}
        with torch.no_grad():
            for name, value in values.items():
                getattr(self.module_, name).copy_(torch.from_numpy(value))
        counts = train.item_counts.astype(np.float64)
        device = self.torch_device
        self._examples = {"user": torch.from_numpy(users), "item": torch.from_numpy(items),
                          "history": torch.from_numpy(before)}
        self._frequency = torch.from_numpy(counts / counts.sum()).float().to(device)
        csr = train.binary_csr
        self._positives = tuple(torch.from_numpy(a.astype(np.int64)).to(device)
                                for a in (csr.indptr, csr.indices))

    def _epoch_examples(self, sampler: NegativeSampler, rng: np.random.Generator) -> Batch:
        """Every training interaction with the history before it (the same each epoch)."""
        return self._examples

    # ------------------------------------------------------------------ loss
    def _batch_loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """In-batch (plus uniform) sampled softmax with logQ correction, accidental hits
        removed, and the optional hard-negative term."""
        net: TwoTowerModule = getattr(module, "_orig_mod", module)
        users, items = batch["user"], batch["item"]
        candidates = items
        if self.uniform_negatives:
            extra = torch.randint(self.n_items_, (self.uniform_negatives,), device=items.device)
            candidates = torch.cat([items, extra])
        # each distinct candidate goes through the item tower once
        distinct, column = torch.unique(candidates, return_inverse=True)
        vectors = net.items(distinct)
        logits = (net.users(users, batch["history"]) @ vectors.T).float()[:, column]
        logits = logits / net.temperature
        if self.logq:
            expected = len(items) * self._frequency[candidates] + (
                self.uniform_negatives / self.n_items_)
            logits = logits - torch.log(expected.clamp_min(1e-12))
        if self.remove_accidental_hits:
            logits = logits.masked_fill(self._accidental_hits(users, distinct, column),
                                        -torch.inf)
        target = torch.arange(len(items), device=items.device)
        loss = F.cross_entropy(logits, target)
        if self.hard_negatives:
            loss = loss + _hard_negative_loss(logits, target, self.hard_negatives)
        return loss

    def _accidental_hits(self, users: torch.Tensor, distinct: torch.Tensor,
                         column: torch.Tensor) -> torch.Tensor:
        """``(len(users), len(column))``: candidate ``distinct[column[j]]`` is a training
        positive of row ``i``'s user, other than the row's own positive (the diagonal). Only
        the batch users' positives are looked up, among the sorted distinct candidates."""
        indptr, indices = self._positives
        starts, lengths = indptr[users], indptr[users + 1] - indptr[users]
        rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), lengths)
        within = torch.arange(len(rows), device=users.device) - torch.repeat_interleave(
            lengths.cumsum(0) - lengths, lengths)
        items = indices[torch.repeat_interleave(starts, lengths) + within]
        found = torch.searchsorted(distinct, items).clamp_max(len(distinct) - 1)
        match = distinct[found] == items
        hits = torch.zeros((len(users), len(distinct)), dtype=torch.bool, device=users.device)
        hits[rows[match], found[match]] = True
        hits = hits[:, column]
        diagonal = torch.arange(len(users), device=users.device)
        hits[diagonal, diagonal] = False
        return hits

    # ------------------------------------------------------------------ embeddings
    def _vectors(self, fn: Any, *arrays: np.ndarray) -> np.ndarray:
        """``fn`` of the arrays as tensors on the module's device, evaluated, as numpy."""
        self.check_fitted()
        self.module_.eval()
        device = self.torch_device
        with torch.no_grad():
            out = fn(*(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays))
        return out.float().cpu().numpy()

    def _with_fallback_column(self, vectors: np.ndarray, last: np.ndarray) -> np.ndarray:
        return np.concatenate([vectors, last[:, None].astype(np.float32)], axis=1)

    def user_embeddings(self, users: Any) -> np.ndarray:
        """``(n, layers[-1] + 1)`` vectors such that ``score(u, i)`` is their dot product with
        `item_embeddings` (unknown users: popularity through the last column)."""
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        known = self.is_known_user(users)
        out = np.zeros((len(users), self.layers[-1]), dtype=np.float32)
        if known.any():
            out[known] = self._vectors(self.module_.users, users[known])
        last = np.where(known, 0.0, self.popularity_.max())
        return self._with_fallback_column(out, last)

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, layers[-1] + 1)``: the item tower's vectors, then popularity / max."""
        self.check_fitted()
        return self._with_fallback_column(self.item_vectors(),
                                           self.popularity_ / self.popularity_.max())

    def encode_items(self, features: SideTable) -> np.ndarray:
        """Embeddings (as in `item_embeddings`, last column 0) of new items from their
        features alone."""
        self._check_codec()
        cats, dense = encode_table(features, self.item_codec_, self.item_texts_, len(features))
        ids = np.full(len(features), -1, dtype=np.int64)
        vectors = self._vectors(self.module_.encode_items, ids, cats, dense)
        return self._with_fallback_column(vectors, np.zeros(len(features)))

    def encode_users(self, features: SideTable | None = None,
                     history: Sequence[Sequence[int]] | None = None) -> np.ndarray:
        """Embeddings (as in `user_embeddings`, last column 0) of new users from their
        features and/or their recent item indices (oldest first)."""
        if features is None and history is None:
            raise ValueError("encode_users needs features, a history or both")
        n = len(features) if features is not None else len(history)
        if history is not None and len(history) != n:
            raise ValueError(f"{len(history)} histories for {n} users")
        self._check_codec()
        cats, dense = encode_table(features, self.user_codec_, {}, n)
        pad = self.n_items_
        rows = (np.full((n, self.history_length), pad, dtype=np.int64) if history is None else
                pad_histories(history, self.history_length, self.popularity_ > 0, pad))
        ids = np.full(n, -1, dtype=np.int64)
        vectors = self._vectors(self.module_.encode_users, ids, cats, dense, rows)
        return self._with_fallback_column(vectors, np.zeros(n))


    def _check_codec(self) -> None:
        """Cold-start encoding needs the `FeatureCodec` state saved since recforge 0.2; a model
        saved before it (no ``item_texts_``) still recommends, but cannot encode new rows."""
        self.check_fitted()
        if not hasattr(self, "item_texts_"):
            raise InputError(f"{type(self).__name__} was saved by an earlier recforge whose "
                             "feature encoding cannot be rebuilt; recommend and similar work, "
                             "but encoding new users or items needs the model retrained")


def _ids_or_unknown(known: np.ndarray) -> np.ndarray:
    """Each index where ``known``, else -1 (the unknown id)."""
    return np.where(known, np.arange(len(known)), -1).astype(np.int64)


def _hard_negative_loss(logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax of each row's positive against its ``k`` highest-scoring negatives."""
    negatives = logits.clone()
    negatives[target, target] = -torch.inf
    hardest = negatives.topk(min(k, negatives.shape[1] - 1), dim=1).values
    both = torch.cat([logits[target, target][:, None], hardest], 1)
    return F.cross_entropy(both, torch.zeros_like(target))
