"""Multi-output estimators that predict all 72 countries in one call.

Each is the last step of a pipeline (after `FeatureFrame`), takes a float
matrix and returns `predict_proba(X) -> (n, 72)` positive-class probabilities
in COUNTRIES order, clipped to [PROBA_MIN, 1 - PROBA_MIN].

- `PriorRates`: each country's base rate (the baseline).
- `CompiledLogistic`: 72 logistic regressions fitted with scikit-learn, then
  compiled into one (d x 72) weight matrix: prediction is one matrix product.
- `MultiLabelMLP`: one hidden layer shared by the 72 outputs, trained by
  full-batch L-BFGS (deterministic, no mini-batch noise).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from hit_platform.domain.countries import COUNTRIES, REGION_OF
from hit_platform.domain.models.frame import label_matrix

PROBA_MIN = 1e-6  # probabilities live in [PROBA_MIN, 1 - PROBA_MIN]: log loss stays finite


def clip_proba(P: np.ndarray) -> np.ndarray:
    return np.clip(P, PROBA_MIN, 1.0 - PROBA_MIN, out=P)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, PROBA_MIN, 1.0 - PROBA_MIN)
    return np.log(p) - np.log1p(-p)


class MultiLabelModel(BaseEstimator):
    """Shared behaviour: the output order (`countries_`), a 0.5-threshold `predict`, input checks."""

    countries_: tuple[str, ...] = COUNTRIES

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, 72) bool: probability >= 0.5 (a probability model; thresholds are the caller's choice)."""
        return self.predict_proba(X) >= 0.5

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self)
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"{type(self).__name__}: expected {self.n_features_in_} feature columns, "
                             f"got array of shape {X.shape}")
        return X

    def _start_fit(self, X, Y) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) == 0:
            raise ValueError(f"{type(self).__name__}: expected a non-empty 2-D feature matrix, got {X.shape}")
        if np.isnan(X).any():
            raise ValueError(f"{type(self).__name__}: features contain NaN (impute them first)")
        Y = label_matrix(Y, len(X), where=type(self).__name__)
        self.n_features_in_ = X.shape[1]
        return X, Y


class PriorRates(MultiLabelModel):
    """Every song gets each country's training base rate: the baseline any model must beat."""

    def fit(self, X, Y) -> PriorRates:
        X = np.asarray(X)
        Y = label_matrix(Y, len(X), where="PriorRates")
        self.n_features_in_ = X.shape[1]
        self.rates_ = np.clip(Y.mean(axis=0), PROBA_MIN, 1.0 - PROBA_MIN)
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = self._check_X(X)
        return np.tile(self.rates_, (len(X), 1))


class CompiledLogistic(MultiLabelModel):
    """One L2 logistic regression per country, compiled into weights_ (d, 72) and intercepts_ (72,).

    Fitting uses sklearn's LogisticRegression (lbfgs) country by country; the
    fitted coefficients are then stacked so that prediction is
    sigmoid(X @ weights_ + intercepts_): microseconds, instead of 72 Python
    calls. A country with a single class in training gets a constant at its
    (clipped) base rate."""

    def __init__(self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-6):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X, Y) -> CompiledLogistic:
        X, Y = self._start_fit(X, Y)
        weights = np.zeros((X.shape[1], Y.shape[1]))
        intercepts = np.zeros(Y.shape[1])
        for j in range(Y.shape[1]):
            y = Y[:, j]
            if y.all() or not y.any():
                intercepts[j] = logit(np.array(y.mean()))
                continue
            lr = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol).fit(X, y)
            weights[:, j] = lr.coef_[0]
            intercepts[j] = lr.intercept_[0]
        self.weights_ = np.ascontiguousarray(weights)
        self.intercepts_ = intercepts
        return self

    def decision_function(self, X) -> np.ndarray:
        # einsum, not `@`: BLAS takes another path for one row than for many, and the last bit of a
        # probability would depend on how many songs came with it (serving batches /predict)
        return np.einsum("nd,dk->nk", self._check_X(X), self.weights_) + self.intercepts_

    def predict_proba(self, X) -> np.ndarray:
        return clip_proba(expit(self.decision_function(X)))


class MultiLabelMLP(MultiLabelModel):
    """x -> tanh(x W1 + b1) W2 + b2 -> sigmoid: 72 logistic outputs on one shared hidden layer.

    The hidden layer learns the song-level patterns (tempo bumps, thresholds,
    interactions) once for all countries; each country gets its own output
    weights. Loss: binary log loss summed over outputs, averaged over songs,
    plus alpha/2 * |W|^2 / n_songs (scikit-learn's MLP convention), minimised
    by full-batch L-BFGS from a seeded initialisation, so a fit is a pure
    function of (data, parameters, random_state).

    pool > 0 (multi-task across a region's countries): a country's output weights are its region's plus a
    deviation, W2[:, c] = A[:, region(c)] + D[:, c], the region's penalised by alpha, the deviation by
    alpha * pool. A country with few hits then follows its region's ear instead of its own noise. The fit
    is stored as the plain W2 = A[:, regions] + D, so prediction and explanations see one MLP.

    bag > 1: that many nets fitted from their own seeded starts, their logits averaged (L-BFGS lands each
    in another local optimum; the mean ranks better). Stored as one MLP too: the hidden layers side by
    side, the output weights each divided by bag."""

    def __init__(self, hidden: int = 32, alpha: float = 30.0, max_iter: int = 300,
                 random_state: int = 0, pool: float = 0.0, bag: int = 1):
        self.hidden = hidden
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state
        self.pool = pool
        self.bag = bag

    def fit(self, X, Y) -> MultiLabelMLP:
        X, Y = self._start_fit(X, Y)
        if int(self.bag) < 1:
            raise ValueError(f"MultiLabelMLP: bag must be >= 1 (nets averaged), got {self.bag!r}")
        # the first net from random_state alone: a bag of one is the same bytes as an MLP without bag
        nets = [self._fit_net(X, Y, self.random_state if i == 0 else [self.random_state, i])
                for i in range(int(self.bag))]
        if len(nets) == 1:
            W1, b1, W2, b2 = nets[0][:4]
        else:
            W1, b1 = np.hstack([m[0] for m in nets]), np.concatenate([m[1] for m in nets])
            W2, b2 = np.vstack([m[2] for m in nets]) / len(nets), np.mean([m[3] for m in nets], axis=0)
        self.W1_, self.b1_ = np.ascontiguousarray(W1), b1.copy()
        self.W2_, self.b2_ = np.ascontiguousarray(W2), b2.copy()
        self.n_iter_ = max(m[4] for m in nets)
        self.loss_ = float(np.mean([m[5] for m in nets]))
        return self

    def _fit_net(self, X: np.ndarray, Y: np.ndarray, seed) -> tuple:
        """(W1, b1, W2, b2, iterations, loss) of one net from the seeded start `seed`."""
        n, d = X.shape
        k, h = Y.shape[1], int(self.hidden)
        pool = float(self.pool)
        if not pool >= 0:
            raise ValueError(f"MultiLabelMLP: pool must be >= 0 (0: no pooling), got {self.pool!r}")
        # M (k, regions): which region each output belongs to (none when pool is 0)
        regions = list(dict.fromkeys(REGION_OF[c] for c in COUNTRIES)) if pool > 0 else []
        M = np.array([[REGION_OF[c] == r for r in regions] for c in COUNTRIES], dtype=np.float64) if pool > 0 \
            else np.zeros((k, 0))
        g = M.shape[1]
        rng = np.random.default_rng(seed)
        base = logit(Y.mean(axis=0))
        params0 = np.concatenate([
            rng.normal(0.0, 1.0 / np.sqrt(d), d * h), np.zeros(h),
            rng.normal(0.0, 1.0 / np.sqrt(h), h * k), base, np.zeros(h * g),
        ])
        Yf = Y.astype(np.float64)
        alpha = float(self.alpha)
        dev = alpha * pool if pool > 0 else alpha  # the penalty on a country's own output weights

        def unpack(w):
            W1 = w[:d * h].reshape(d, h)
            b1 = w[d * h:d * h + h]
            D = w[d * h + h:d * h + h + h * k].reshape(h, k)
            at = d * h + h + h * k
            A = w[at + k:].reshape(h, g)
            return W1, b1, D, w[at:at + k], A

        def loss_and_grad(w):
            W1, b1, D, b2, A = unpack(w)
            W2 = D + A @ M.T if g else D
            H = np.tanh(X @ W1 + b1)
            Z = H @ W2 + b2
            # One exp serves both the loss, softplus(Z) - y Z, and its gradient, sigmoid(Z) - y.
            E = np.exp(-np.abs(Z))
            loss = (np.maximum(Z, 0.0) + np.log1p(E) - Yf * Z).sum() / n
            if g:
                loss += 0.5 * (alpha * ((W1 ** 2).sum() + (A ** 2).sum()) + dev * (D ** 2).sum()) / n
            else:  # as it always was: the same bytes as the models fitted before pooling existed
                loss += 0.5 * alpha * ((W1 ** 2).sum() + (D ** 2).sum()) / n
            G = np.where(Z >= 0, 1.0, E) / (1.0 + E)
            G -= Yf
            G /= n
            dA = (G @ W2.T) * (1.0 - H ** 2)
            dW2 = H.T @ G
            grad = np.concatenate([
                (X.T @ dA + alpha * W1 / n).ravel(), dA.sum(axis=0),
                (dW2 + dev * D / n).ravel(), G.sum(axis=0), (dW2 @ M + alpha * A / n).ravel(),
            ])
            return loss, grad

        # One BLAS thread: the same sums in the same order whatever the machine's thread
        # settings (bit-identical fits), and no oversubscription on small matrices.
        with threadpool_limits(limits=1, user_api="blas"):
            result = minimize(loss_and_grad, params0, jac=True, method="L-BFGS-B",
                          options={"maxiter": int(self.max_iter), "ftol": 1e-12, "gtol": 1e-8})
        W1, b1, D, b2, A = unpack(result.x)
        return W1, b1, (D + A @ M.T if g else D), b2, int(result.nit), float(result.fun)

    def decision_function(self, X) -> np.ndarray:
        X = self._check_X(X)
        hidden = np.tanh(np.einsum("nd,dh->nh", X, self.W1_) + self.b1_)  # einsum: see CompiledLogistic
        return np.einsum("nh,hk->nk", hidden, self.W2_) + self.b2_

    def predict_proba(self, X) -> np.ndarray:
        return clip_proba(expit(self.decision_function(X)))
