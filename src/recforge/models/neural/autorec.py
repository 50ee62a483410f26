"""Item-based AutoRec (I-AutoRec): Sedhain, Menon, Sanner & Xie, "AutoRec: Autoencoders meet
collaborative filtering" (WWW 2015).

Each item is the vector ``r_i`` of its ratings by every user (zero where unobserved). One
hidden layer of sigmoid units encodes it, ``h_i = sigmoid(V^T r_i + mu)``, and an identity
layer reconstructs it, ``r_hat_ui = w_u . h_i + b_u``. Training minimises the squared error
over observed ratings only plus ``reg / 2 (|W|^2 + |V|^2)``, with full-batch gradients (four
sparse-dense matrix products) and L-BFGS, as in the paper. The hidden codes ``h_i``
are the model's item vectors.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from recforge.data.interactions import Interactions
from recforge.models.factorization._sgd_kernels import predict_pairs
from recforge.models.iterative import IterativeRecommender
from recforge.models.registry import register
from recforge.numerics import LBFGS, dot
from recforge.params import INIT_STD, MAX_EPOCHS, PENALTY, SEED, WIDTH, Integer, Rule


class _Objective:
    """Masked squared error + L2 of I-AutoRec and its gradient, over a flat float64 parameter
    vector ``[V (n_users x h), mu (h), W (n_users x h), b (n_users)]`` (the optimiser's); the
    matrix products run in ``dtype`` (float32 by default: about three times faster than
    float64, and precise enough for L-BFGS)."""

    def __init__(self, train: Interactions, hidden: int, reg: float,
                 dtype: type = np.float32):
        self.dtype = dtype
        self.items_by_user = train.item_user_csr.astype(dtype)  # item x user
        self.users_by_item = train.csr.astype(dtype)  # user x item
        nnz = self.items_by_user.nnz
        self.pair_items = np.repeat(np.arange(train.n_items, dtype=np.int32),
                                    np.diff(self.items_by_user.indptr))
        self.pair_users = self.items_by_user.indices
        # position in items_by_user of each entry of users_by_item (same sorted order)
        slot = sp.csr_matrix((np.arange(nnz, dtype=np.float64) + 1,
                              self.items_by_user.indices, self.items_by_user.indptr),
                             shape=self.items_by_user.shape).T.tocsr()
        self.to_user_order = slot.data.astype(np.int64) - 1
        self.no_item_bias = np.zeros(train.n_items, dtype=dtype)
        self.n_users, self.hidden, self.reg = train.n_users, hidden, reg

    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, ...]:
        """Views ``(V, mu, W, b)`` into ``theta``."""
        n, h = self.n_users, self.hidden
        enc = theta[: n * h].reshape(n, h)
        enc_bias = theta[n * h: n * h + h]
        dec = theta[n * h + h: 2 * n * h + h].reshape(n, h)
        dec_bias = theta[2 * n * h + h:]
        return enc, enc_bias, dec, dec_bias

    def codes(self, theta: np.ndarray) -> np.ndarray:
        """Hidden codes ``h_i`` of every item, ``(n_items, hidden)``."""
        enc, enc_bias, _, _ = self.unpack(theta)
        return expit(self.items_by_user @ enc.astype(self.dtype) + enc_bias.astype(self.dtype))

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        enc, _, dec, dec_bias = (a.astype(self.dtype) for a in self.unpack(theta))
        codes = self.codes(theta)
        pred = predict_pairs(self.pair_users, self.pair_items, 0.0, dec_bias, self.no_item_bias,
                             dec, codes)
        err = pred - self.items_by_user.data
        loss = dot(err.astype(np.float64), err.astype(np.float64)) + 0.5 * self.reg * float(
            np.sum(enc * enc, dtype=np.float64) + np.sum(dec * dec, dtype=np.float64))
        twice = 2.0 * err
        resid = sp.csr_matrix((twice, self.items_by_user.indices, self.items_by_user.indptr),
                              shape=self.items_by_user.shape)
        resid_t = sp.csr_matrix((twice[self.to_user_order], self.users_by_item.indices,
                                 self.users_by_item.indptr), shape=self.users_by_item.shape)
        grad = np.empty_like(theta)
        g_enc, g_enc_bias, g_dec, g_dec_bias = self.unpack(grad)
        g_dec[:] = resid_t @ codes + self.reg * dec
        g_dec_bias[:] = np.bincount(self.pair_users, weights=twice, minlength=self.n_users)
        back = (resid @ dec) * codes * (1.0 - codes)
        g_enc[:] = self.users_by_item @ back + self.reg * enc
        g_enc_bias[:] = back.sum(axis=0)
        return loss, grad


@register("autorec")
class AutoRec(IterativeRecommender):
    """I-AutoRec: ``hidden`` sigmoid units, identity output, L2 ``reg``; each epoch runs
    ``lbfgs_steps`` iterations of one L-BFGS optimiser (its memory kept across epochs).

    Memory: the ``2 n_users hidden`` parameters are held in float64 by the optimiser, which
    keeps 10 curvature pairs, so about ``24 x 8`` bytes per parameter (180 MB on ML-100K with
    the defaults; 100k users need ``hidden`` near 100 to stay under 4 GB).

    Deterministic per ``seed``. Items without training ratings are predicted at the global
    mean (the paper uses a default rating). Defaults were chosen on validation splits carved
    from training data only (per-user random 10% of ML-100K ``u1.base``/``u2.base``, and of
    two synthetic sets), never on a test split: ``reg`` in {1, 10, 30, 100, 300, 1000} on the
    u1 carve with early stopping (best validation RMSE 0.922, 0.920, 0.915, 0.902, 0.895,
    0.938; up to 100 with an earlier loop that restarted scipy's L-BFGS-B every epoch), then
    100/200/300 at a fixed 120 L-BFGS steps (mean of the u1/u2 carves 0.940,
    0.902, 0.903; synthetic 0.840 at 100 with 200 steps, 0.842 at 200, 0.858 at 300); 500
    hidden units as in the paper (250: 0.898 on the u1 carve at reg 300).

    Paper: Sedhain et al., "AutoRec: autoencoders meet collaborative filtering", WWW 2015.
    Hyperparameters (defaults): ``hidden=500``, ``reg=200.0``, ``lbfgs_steps=10``,
        ``init_std=0.03``; training (`recforge.nn.TrainingConfig`, the rest at its defaults):
        ``epochs=12``, ``patience=3``.
    Defaults: chosen as described above.
    Consumes: interactions, ratings.
    """

    requires_ratings = True
    predicts_ratings = True
    param_rules: ClassVar[dict[str, Rule]] = {
        "hidden": WIDTH, "reg": PENALTY, "lbfgs_steps": Integer(1, MAX_EPOCHS),
        "init_std": INIT_STD, "seed": SEED,
    }

    def __init__(self, hidden: int = 500, reg: float = 200.0, epochs: int = 12,
                 lbfgs_steps: int = 10, init_std: float = 0.03, seed: int = 0,
                 patience: int = 3, verbose: bool = False):
        self.hidden = hidden
        self.reg = reg
        self.epochs = epochs
        self.lbfgs_steps = lbfgs_steps
        self.init_std = init_std
        self.seed = seed
        self.patience = patience
        self.verbose = verbose

    def _init_training(self, train: Interactions) -> None:
        rng = np.random.default_rng(self.seed)
        objective = _Objective(train, self.hidden, self.reg)
        n, h = train.n_users, self.hidden
        theta = np.zeros(2 * n * h + h + n)
        enc, _, dec, dec_bias = objective.unpack(theta)
        enc[:] = rng.normal(0.0, self.init_std, size=enc.shape)
        dec[:] = rng.normal(0.0, self.init_std, size=dec.shape)
        dec_bias[:] = self.global_mean_
        self._training = SimpleNamespace(objective=objective, optimiser=LBFGS(objective, theta))
        self._publish()

    def _publish(self) -> None:
        """Copy the optimiser's flat parameters into the saved float32 state."""
        t = self._training
        _, _, dec, dec_bias = t.objective.unpack(t.optimiser.x)
        self.user_weights_ = dec.astype(np.float32)
        self.user_bias_ = dec_bias.astype(np.float32)
        self.item_codes_ = t.objective.codes(t.optimiser.x).astype(np.float32)

    def _run_epoch(self, epoch: int) -> float:
        loss = self._training.optimiser.run(self.lbfgs_steps)
        self._publish()
        return loss / self._training.objective.items_by_user.nnz

    def _score(self, users: np.ndarray) -> np.ndarray:
        scores = self.user_weights_[users] @ self.item_codes_.T + self.user_bias_[users, None]
        scores[:, self.popularity_ == 0] = self.global_mean_
        return scores

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        no_item_bias = np.zeros(self.n_items_, dtype=np.float32)
        pred = predict_pairs(users, items, 0.0, self.user_bias_, no_item_bias,
                             self.user_weights_, self.item_codes_)
        pred[self.popularity_[items] == 0] = self.global_mean_
        return pred

    def item_vectors(self) -> np.ndarray:
        return self.item_codes_
