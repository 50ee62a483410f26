"""Neural Collaborative Filtering and the dot-product baseline, on the shared neural trainer.

He, Liao, Zhang, Nie, Hu & Chua, "Neural Collaborative Filtering", WWW 2017:

* GMF: ``y_ui = sigma(h . (p_u * q_i) + b)``, a learned weighting of the element-wise product
  of user and item embeddings;
* MLP: the concatenation ``[p_u, q_i]`` through a ReLU tower (``layers``: the input width,
  then each hidden layer's width; the last is the number of predictive factors), then
  ``sigma(h . z + b)``;
* NeuMF: both branches with their own embeddings, ``sigma(h . [phi_GMF, phi_MLP] + b)``. With
  ``pretrain=True`` the fit first trains a GMF and an MLP, then starts NeuMF from their
  weights with the output layer ``h = [alpha * h_GMF, (1 - alpha) * h_MLP]`` (and the bias
  blended alike), as in section 3.4.1 of the paper.

Rendle, Krichene, Zhang & Anderson, "Neural Collaborative Filtering vs. Matrix Factorization
Revisited", RecSys 2020, found a plain dot product beats the learned similarity when tuned:

* DotMF: ``y_ui = sigma(p_u . q_i + b_u + b_i)``, same loss, sampler and trainer.

All four share one module (`NCFModule`) and train through `TorchRecommender` (`torch_base`):
pointwise log loss with ``negatives`` uniformly sampled items per positive (the paper's
setting, 4 by default) or the pairwise BPR loss (``loss="bpr"``). Scoring every item uses the
algebra of the layers instead of pairs: the GMF part is one matrix product, and the MLP's
first layer splits into a user and an item part computed once per user and per item.
GMF and dot-MF logits are inner products of a user and an item vector (biases folded in as
extra coordinates), exposed as `user_embeddings`/`item_embeddings` for ANN retrieval; the
MLP and NeuMF scores do not factorise, so those return None.

Defaults were chosen on validation splits carved from training data only: leave-last-out of
the leave-last-out training part of ML-100K, and the same of the synthetic implicit set
(2000 users x 1000 items x 100k), reading sampled-99 HR@10/NDCG@10 and full-ranking NDCG@10
off per-epoch validation curves (``benchmarks/bench_ncf.py --tune``, results in
``benchmarks/results/bench_ncf_tuning.json``): GMF with 32 factors, learning rate 0.003,
weight decay 1e-5, 12 epochs (8 and 16 factors were lower on both sets); the MLP tower
128-64-32-16 (above 64-32-16-8 on both), learning rate 0.003, 20 epochs (the synthetic
curve still rises at 12); dot-MF with 32 factors, 12 epochs (64 factors with weight decay
were equal on ML-100K and lower on synthetic); NeuMF built from those parts, fine-tuned 1
epoch with plain SGD at 0.01, the paper's choice for the pre-trained model (validation
sampled HR@10 after that epoch 0.675 on ML-100K and 0.783 on synthetic, against 0.666 and
0.767 at the best epoch of Adam at 1e-3, 0.672/0.775 of Adam at 1e-4, 0.670/0.772 of SGD at
0.05 and 0.665/0.779 with alpha 0.7; every curve peaks within 1-2 epochs of the blend, and
Adam's then falls; run on an H100, ``--grid-entries 12 13 14 15 16``).
Weight decay 1e-4 collapsed GMF and dot-MF to constant or popularity scores; popularity-
sampled negatives, 2 or 8 negatives, batches of 256, a cosine schedule and an embedding
init of 0.1 were not better on ML-100K validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from recforge.data.interactions import Interactions, PairData
from recforge.data.streaming import ParquetInteractions
from recforge.models.base import ValidationScore
from recforge.models.neural.torch_base import TorchRecommender
from recforge.models.registry import register
from recforge.nn.trainer import ScoringModule
from recforge.params import (
    BOOLEAN,
    INIT_STD,
    UNIT,
    WIDTH,
    NestedParams,
    Optional,
    Rule,
    parameter_error,
)
from recforge.params import Sequence as SequenceRule

Head = Literal["gmf", "mlp", "neumf", "dot"]
#: (users x items x first hidden width) floats computed at once when scoring the MLP branch
_MLP_SCORE_FLOATS = 1 << 22


class NCFModule(ScoringModule):
    """Embeddings and scoring of GMF, MLP, NeuMF (``head``) and the dot product (``"dot"``).

    ``factors`` sizes the GMF/dot embeddings; ``layers`` the MLP tower (``layers[0]`` is the
    concatenated input, so each MLP embedding has ``layers[0] // 2`` entries). Embeddings start
    from ``N(0, init_std^2)`` (the paper's 0.01); as in the authors' Keras code, the tower's
    weights are Glorot-uniform and the output layer's LeCun-uniform, all biases zero. (With
    PyTorch's default biases of up to ``1/sqrt(fan_in)``, which dwarf inputs of scale 0.01,
    units with a negative bias start dead and the MLP can collapse to a constant.)
    """

    def __init__(self, n_users: int, n_items: int, head: Head, factors: int = 8,
                 layers: Sequence[int] = (64, 32, 16, 8), init_std: float = 0.01):
        super().__init__()
        self.head = head
        self.gmf = head in ("gmf", "neumf", "dot")
        self.mlp = head in ("mlp", "neumf")
        if self.gmf:
            self.user_gmf = _embedding(n_users, factors, init_std)
            self.item_gmf = _embedding(n_items, factors, init_std)
        if self.mlp:
            _check_layers(layers)
            self.user_mlp = _embedding(n_users, layers[0] // 2, init_std)
            self.item_mlp = _embedding(n_items, layers[0] // 2, init_std)
            self.tower = nn.Sequential(*(module for width_in, width_out in pairwise(layers)
                                         for module in (nn.Linear(width_in, width_out), nn.ReLU())))
        if head == "dot":
            self.user_bias = _embedding(n_users, 1, 0.0)
            self.item_bias = _embedding(n_items, 1, 0.0)
        else:
            width = (factors if self.gmf else 0) + (layers[-1] if self.mlp else 0)
            self.output = nn.Linear(width, 1)
        self._init_linear()

    def _init_linear(self) -> None:
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                if layer is getattr(self, "output", None):  # LeCun uniform: variance 1/fan_in
                    nn.init.kaiming_uniform_(layer.weight, a=1.0)
                else:
                    nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of the pairs ``(users[n], items[n])``."""
        if self.head == "dot":
            dot = (self.user_gmf(users) * self.item_gmf(items)).sum(-1)
            return dot + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]
        parts = []
        if self.gmf:
            parts.append(self.user_gmf(users) * self.item_gmf(items))
        if self.mlp:
            parts.append(self.tower(torch.cat([self.user_mlp(users), self.item_mlp(items)], -1)))
        return self.output(torch.cat(parts, -1))[:, 0]

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), n_items)`` logits of every item."""
        if self.head == "dot":
            scores = self.user_gmf(users) @ self.item_gmf.weight.T
            return scores + self.user_bias(users) + self.item_bias.weight.T
        weight = self.output.weight[0]
        n_gmf = self.user_gmf.embedding_dim if self.gmf else 0
        scores = self.output.bias.expand(len(users), self._n_items()).clone()
        if self.gmf:
            scores += (self.user_gmf(users) * weight[:n_gmf]) @ self.item_gmf.weight.T
        if self.mlp:
            scores += self._mlp_scores(users, weight[n_gmf:])
        return scores

    def _mlp_scores(self, users: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``h_MLP . z_ui`` for every item: the first layer ``W [p; q] + b`` is computed as
        ``(W_u p + b)`` per user plus ``W_i q`` per item, then broadcast over the pairs."""
        first = self.tower[0]
        half = self.user_mlp.embedding_dim
        per_user = self.user_mlp(users) @ first.weight[:, :half].T + first.bias
        per_item = self.item_mlp.weight @ first.weight[:, half:].T
        rest = self.tower[1:]
        step = max(1, _MLP_SCORE_FLOATS // per_item.numel())
        return torch.cat([rest(per_user[lo:lo + step, None, :] + per_item[None]) @ weight
                          for lo in range(0, len(users), step)])

    def _n_items(self) -> int:
        table = self.item_gmf if self.gmf else self.item_mlp
        return table.num_embeddings

    def item_vectors(self) -> torch.Tensor:
        gmf = [self.item_gmf.weight] if self.gmf else []
        return torch.cat(gmf + ([self.item_mlp.weight] if self.mlp else []), 1)

    def user_embeddings(self, users: torch.Tensor) -> torch.Tensor | None:
        """Retrieval query vectors whose inner product with `item_embeddings` is the logit:
        ``[p_u, b_u, 1]`` (dot), ``[h * p_u, b]`` (GMF); None when an MLP branch is present."""
        if self.head == "dot":
            ones = torch.ones_like(self.user_bias(users))
            return torch.cat([self.user_gmf(users), self.user_bias(users), ones], 1)
        if self.head == "gmf":
            embedded = self.user_gmf(users) * self.output.weight[0]
            return torch.cat([embedded, self.output.bias.expand(len(users), 1)], 1)
        return None

    def item_embeddings(self) -> torch.Tensor | None:
        """Item side of `user_embeddings`: ``[q_i, 1, b_i]`` (dot), ``[q_i, 1]`` (GMF)."""
        if self.head not in ("dot", "gmf"):
            return None
        ones = torch.ones_like(self.item_gmf.weight[:, :1])
        bias = [self.item_bias.weight] if self.head == "dot" else []
        return torch.cat([self.item_gmf.weight, ones, *bias], 1)

    @torch.no_grad()
    def load_pretrained(self, gmf: NCFModule, mlp: NCFModule, alpha: float) -> None:
        """NeuMF from a trained GMF and MLP: their embeddings and tower, and the output layer
        ``[alpha * h_GMF, (1 - alpha) * h_MLP]`` with the biases blended alike."""
        if not (self.gmf and self.mlp and gmf.head == "gmf" and mlp.head == "mlp"):
            raise ValueError("load_pretrained needs a NeuMF module, a GMF and an MLP")
        state = {k: v for part in (gmf, mlp) for k, v in part.state_dict().items()
                 if not k.startswith("output.")}
        state["output.weight"] = torch.cat([alpha * gmf.output.weight,
                                            (1 - alpha) * mlp.output.weight], 1)
        state["output.bias"] = alpha * gmf.output.bias + (1 - alpha) * mlp.output.bias
        self.load_state_dict(state)


def _embedding(n: int, dim: int, std: float) -> nn.Embedding:
    table = nn.Embedding(n, dim)
    if std > 0:
        nn.init.normal_(table.weight, std=std)
    else:
        nn.init.zeros_(table.weight)
    return table


def _numpy(vectors: torch.Tensor | None) -> np.ndarray | None:
    return None if vectors is None else vectors.float().cpu().numpy()


class TowerLayers(SequenceRule):
    """The MLP tower: at least two positive widths, the first even (user and item halves)."""

    def __init__(self) -> None:
        super().__init__(WIDTH, min_len=2)

    def check(self, name: str, value: Any) -> tuple[int, ...]:
        layers = super().check(name, value)
        if layers[0] % 2:
            raise parameter_error(f"{name}[0]", f"the input width must be even (user and item "
                                                f"halves), got {layers[0]}")
        return layers


LAYERS = TowerLayers()


def _check_layers(layers: Sequence[int]) -> None:
    LAYERS.check("layers", layers)


class _NCF(TorchRecommender):
    """Shared parts of the four models: the module's head and the item vectors. Each fits on
    `Interactions` or streams its epochs from a `ParquetInteractions`."""

    head: ClassVar[Head]
    trains_on: ClassVar[tuple[type, ...]] = (Interactions, ParquetInteractions)
    init_std: float
    param_rules: ClassVar[dict[str, Rule]] = {"init_std": INIT_STD}

    def _module_args(self) -> dict[str, Any]:
        raise NotImplementedError

    def _build_module(self) -> NCFModule:
        return NCFModule(self.n_users_, self.n_items_, self.head, init_std=self.init_std,
                         **self._module_args())

    def user_embeddings(self, users: Any) -> np.ndarray | None:
        """The module's retrieval query vectors (GMF and dot-MF; None with an MLP branch)."""
        index = torch.from_numpy(self._user_index(users)).to(self.torch_device)
        with torch.no_grad():
            return _numpy(self.module_.user_embeddings(index))

    def item_embeddings(self) -> np.ndarray | None:
        """The module's retrieval item vectors (GMF and dot-MF; None with an MLP branch)."""
        with torch.no_grad():
            return _numpy(self.module_.item_embeddings())


@register("gmf")
class GMF(_NCF):
    """Generalized Matrix Factorization (He et al., WWW 2017): ``sigma(h . (p_u * q_i) + b)``.

    Training parameters: see `recforge.nn.TrainingConfig`.

    Paper: He et al., "Neural Collaborative Filtering", WWW 2017.
    Hyperparameters (defaults): ``factors=32``, ``init_std=0.01``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=12``,
        ``learning_rate=0.003``, ``weight_decay=1e-05``.
    Defaults: from per-epoch validation curves on validation splits carved from training data
        only, never a test split (module docstring).
    Consumes: interactions.
    """

    head = "gmf"
    param_rules: ClassVar[dict[str, Rule]] = {"factors": WIDTH}
    training_defaults: ClassVar[dict[str, Any]] = {"learning_rate": 0.003,
                                                   "weight_decay": 1e-5, "epochs": 12}

    def __init__(self, factors: int = 32, init_std: float = 0.01, **training: Any):
        self.factors = factors
        self.init_std = init_std
        super().__init__(**training)

    def _module_args(self) -> dict[str, Any]:
        return {"factors": self.factors}


@register("mlp")
class MLP(_NCF):
    """The NCF multi-layer perceptron (He et al., WWW 2017) over ``[p_u, q_i]``.

    ``layers``: the concatenated embedding width, then the hidden widths (ReLU).
    Training parameters: see `recforge.nn.TrainingConfig`.

    Paper: He et al., "Neural Collaborative Filtering", WWW 2017.
    Hyperparameters (defaults): ``layers=(128,64,32,16)``, ``init_std=0.01``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``learning_rate=0.003``.
    Defaults: from per-epoch validation curves on validation splits carved from training data
        only, never a test split (module docstring).
    Consumes: interactions.
    """

    head = "mlp"
    param_rules: ClassVar[dict[str, Rule]] = {"layers": LAYERS}
    training_defaults: ClassVar[dict[str, Any]] = {"learning_rate": 0.003, "epochs": 20}

    def __init__(self, layers: Sequence[int] = (128, 64, 32, 16), init_std: float = 0.01,
                 **training: Any):
        self.layers = layers
        self.init_std = init_std
        super().__init__(**training)

    def _module_args(self) -> dict[str, Any]:
        return {"layers": self.layers}


@register("dot-mf")
class DotMF(_NCF):
    """Dot-product matrix factorisation ``sigma(p_u . q_i + b_u + b_i)`` trained with the NCF
    loss and sampler (the baseline of Rendle et al., RecSys 2020).

    Training parameters: see `recforge.nn.TrainingConfig`.

    Paper: Rendle, Krichene, Zhang & Anderson, "Neural Collaborative Filtering vs. Matrix
        Factorization Revisited", RecSys 2020.
    Hyperparameters (defaults): ``factors=32``, ``init_std=0.01``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=12``,
        ``learning_rate=0.003``.
    Defaults: from per-epoch validation curves on validation splits carved from training data
        only, never a test split (module docstring).
    Consumes: interactions.
    """

    head = "dot"
    param_rules: ClassVar[dict[str, Rule]] = {"factors": WIDTH}
    training_defaults: ClassVar[dict[str, Any]] = {"learning_rate": 0.003, "epochs": 12}

    def __init__(self, factors: int = 32, init_std: float = 0.01, **training: Any):
        self.factors = factors
        self.init_std = init_std
        super().__init__(**training)

    def _module_args(self) -> dict[str, Any]:
        return {"factors": self.factors}


#: training parameters a NeuMF passes on to the GMF and MLP it pre-trains
_SHARED_WITH_PRETRAINING = ("train_batch_size", "loss", "negatives", "sampling", "patience",
                            "device", "precision", "threads", "compile", "seed", "verbose",
                            "log_file", "checkpoint_every", "resume", "chunk_rows")


@register("neumf")
class NeuMF(_NCF):
    """Neural Matrix Factorization (He et al., WWW 2017): GMF and MLP branches fused.

    ``pretrain=True`` trains a `GMF` and an `MLP` first (their default training parameters,
    except those in `_SHARED_WITH_PRETRAINING`, which follow this model's; ``gmf_params`` and
    ``mlp_params`` override any of them) and starts from their weights blended by ``alpha``.
    With a ``checkpoint_dir`` they checkpoint to its ``gmf``/``mlp`` subfolders. The training
    defaults (one epoch of SGD at 0.01) are the fine-tuning ones; from scratch
    (``pretrain=False``) use e.g. ``optimizer="adam", learning_rate=0.001, epochs=11``, the
    setting validated for that case. Training parameters: see `recforge.nn.TrainingConfig`.

    Paper: He et al., "Neural Collaborative Filtering", WWW 2017.
    Hyperparameters (defaults): ``factors=32``, ``layers=(128,64,32,16)``, ``init_std=0.01``,
        ``pretrain=True``, ``alpha=0.5``, ``gmf_params=None``, ``mlp_params=None``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=1``,
        ``optimizer='sgd'``, ``learning_rate=0.01``.
    Defaults: from per-epoch validation curves on validation splits carved from training data
        only, never a test split (module docstring).
    Consumes: interactions.
    """

    head = "neumf"
    param_rules: ClassVar[dict[str, Rule]] = {
        "factors": WIDTH, "layers": LAYERS, "pretrain": BOOLEAN, "alpha": UNIT,
        "gmf_params": Optional(NestedParams(GMF)), "mlp_params": Optional(NestedParams(MLP)),
    }
    training_defaults: ClassVar[dict[str, Any]] = {"optimizer": "sgd", "learning_rate": 0.01,
                                                   "epochs": 1}

    def __init__(self, factors: int = 32, layers: Sequence[int] = (128, 64, 32, 16),
                 init_std: float = 0.01, pretrain: bool = True, alpha: float = 0.5,
                 gmf_params: dict[str, Any] | None = None,
                 mlp_params: dict[str, Any] | None = None, **training: Any):
        self.factors = factors
        self.layers = layers
        self.init_std = init_std
        self.pretrain = pretrain
        self.alpha = alpha
        self.gmf_params = gmf_params
        self.mlp_params = mlp_params
        super().__init__(**training)

    def _module_args(self) -> dict[str, Any]:
        return {"factors": self.factors, "layers": self.layers}

    def _fit(self, train: PairData, valid: Interactions | ValidationScore | None) -> None:
        parts = self._pretrained_parts(train, valid) if self.pretrain else None
        self.pretrain_history_ = {name: part.history_ for name, part in (parts or {}).items()}
        self._parts = parts
        try:
            super()._fit(train, valid)
        finally:
            del self._parts

    def _pretrained_parts(self, train: PairData,
                          valid: Interactions | ValidationScore | None) -> dict[str, _NCF]:
        gmf = self._part(GMF, "gmf", {"factors": self.factors}, self.gmf_params)
        mlp = self._part(MLP, "mlp", {"layers": self.layers}, self.mlp_params)
        return {"gmf": gmf.fit(train, valid), "mlp": mlp.fit(train, valid)}

    def _part(self, cls: type[_NCF], name: str, own: dict[str, Any],
              overrides: dict[str, Any] | None) -> _NCF:
        shared = {key: getattr(self, key) for key in _SHARED_WITH_PRETRAINING}
        if self.checkpoint_dir is not None:
            shared["checkpoint_dir"] = str(Path(self.checkpoint_dir) / name)
        return cls(**own, init_std=self.init_std, **{**shared, **(overrides or {})})

    def _init_training(self, train: PairData) -> None:
        super()._init_training(train)
        if self._parts is not None:
            self.module_.load_pretrained(self._parts["gmf"].module_, self._parts["mlp"].module_,
                                         self.alpha)
