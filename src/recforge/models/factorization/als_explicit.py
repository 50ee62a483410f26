"""Explicit-feedback ALS with weighted-lambda regularisation (ALS-WR).

Zhou, Wilkinson, Schreiber & Pan, "Large-scale parallel collaborative filtering for the
Netflix Prize" (AAIM 2008): ``r_ui ~ mu + p_u . q_i`` minimising the squared error plus
``lambda (n_u |p_u|^2 + n_i |q_i|^2)``, where ``n_u``/``n_i`` count the ratings of the user/item,
by alternating exact least-squares solves. Differences from the paper: ratings are centred on
the global mean ``mu`` and factors start from small Gaussian noise (the paper seeds the first
item factor with the item's mean rating).
"""

from __future__ import annotations

from recforge.models.factorization.mf import AlternatingLeastSquares
from recforge.models.registry import register


@register("als-wr")
class ExplicitALS(AlternatingLeastSquares):
    """ALS-WR (Zhou et al. 2008): no biases, regularisation ``reg`` scaled by rating counts.

    Defaults were chosen on validation splits carved from training data only (per-user random
    10% of ML-100K ``u1.base``/``u2.base``; grid over factors 2..50 and reg 0.05..0.3; mean
    validation RMSE 0.928). Without bias terms the first factors must model the user and
    item offsets, and more factors overfit at every regularisation tried.

    Paper: Zhou et al., "Large-scale parallel collaborative filtering for the Netflix Prize",
        AAIM 2008.
    Hyperparameters (defaults): ``factors=3``, ``reg=0.07``, ``init_std=0.1``; training
        (`recforge.nn.TrainingConfig`, the rest at its defaults): ``epochs=15``,
        ``patience=3``.
    Defaults: chosen as described above.
    Consumes: interactions, ratings.
    """

    weighted_reg = True

    def __init__(self, factors: int = 3, epochs: int = 15, reg: float = 0.07,
                 init_std: float = 0.1, seed: int = 0, patience: int = 3,
                 verbose: bool = False):
        self.factors = factors
        self.epochs = epochs
        self.reg = reg
        self.init_std = init_std
        self.seed = seed
        self.patience = patience
        self.verbose = verbose

    def _bias_reg(self) -> None:
        return None
