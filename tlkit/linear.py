"""L2-regularised logistic regression in PyTorch: the linear head on frozen features.

Same objective as scikit-learn's ``LogisticRegression(C=C)`` (lbfgs): the summed
cross-entropy plus ``||W||^2 / (2 C)``, bias not penalised; binary tasks use one
sigmoid output, more classes a softmax. It exists so a chapter that only needs a
linear probe does not import scikit-learn (about 140 MB of resident memory in a
kernel that Binder restarts at 2 GB), and so its weights can initialise a
network's classifier layer directly (``as_logits_layer``).

    clf = LogisticRegression(C=1.0).fit(X_train, y_train)   # X (N, D), y (N,) ints
    clf.predict(X_test)                                     # (M,) ints
    clf.predict_proba(X_test)                               # (M, K)
"""
from __future__ import annotations

import numpy as np
import torch


class LogisticRegression:
    """Full-batch L-BFGS on float64; deterministic for given data. ``classes_``, ``coef_``
    ``(1 or K, D)`` and ``intercept_`` mirror scikit-learn's attributes after ``fit``."""

    def __init__(self, C: float = 1.0, max_iter: int = 500, tol: float = 1e-6):
        if not C > 0:
            raise ValueError(f"C must be > 0 (inverse regularisation strength), got {C!r}")
        self.C, self.max_iter, self.tol = float(C), int(max_iter), float(tol)

    def fit(self, X, y) -> "LogisticRegression":
        X = torch.as_tensor(np.asarray(X), dtype=torch.float64)
        y_np = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y_np):
            raise ValueError(f"X must be (N, D) with one label per row; got X {tuple(X.shape)} and {len(y_np)} labels")
        self.classes_, y_idx = np.unique(y_np, return_inverse=True)
        k = len(self.classes_)
        if k < 2:
            raise ValueError(f"need at least two classes to fit a classifier, got only {self.classes_.tolist()}")
        out = 1 if k == 2 else k
        t = torch.as_tensor(y_idx, dtype=torch.long)
        W = torch.zeros(out, X.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(out, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=self.max_iter, tolerance_grad=self.tol,
                                tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")
        penalty = 0.5 / self.C

        def closure():
            opt.zero_grad()
            z = X @ W.T + b
            if out == 1:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(z[:, 0], t.double(), reduction="sum")
            else:
                loss = torch.nn.functional.cross_entropy(z, t, reduction="sum")
            loss = loss + penalty * (W * W).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        self.coef_ = W.detach().numpy().copy()
        self.intercept_ = b.detach().numpy().copy()
        return self

    def decision_function(self, X) -> np.ndarray:
        z = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_
        return z[:, 0] if z.shape[1] == 1 else z

    def predict_proba(self, X) -> np.ndarray:
        z = self.decision_function(X)
        if z.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-z))
            return np.stack([1 - p, p], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        z = self.decision_function(X)
        idx = (z > 0).astype(np.int64) if z.ndim == 1 else z.argmax(axis=1)
        return self.classes_[idx]

    def as_logits(self) -> tuple[np.ndarray, np.ndarray]:
        """``(weight (K, D), bias (K,))`` of a K-logit linear layer with the same predictions
        and probabilities (binary: the logit difference split evenly across two rows)."""
        if self.coef_.shape[0] == 1:
            w, c = self.coef_[0] / 2, self.intercept_[0] / 2
            return np.stack([-w, w]).astype(np.float32), np.array([-c, c], dtype=np.float32)
        return self.coef_.astype(np.float32), self.intercept_.astype(np.float32)

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y)))


__all__ = ["LogisticRegression"]
