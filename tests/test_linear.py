"""tlkit.linear.LogisticRegression: scikit-learn's objective without importing scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest

from tlkit.linear import LogisticRegression


def _objective(clf, X, y, C):
    p = clf.predict_proba(X)[np.arange(len(y)), np.searchsorted(clf.classes_, y)]
    return -np.log(p).sum() + 0.5 / C * (clf.coef_ ** 2).sum()


@pytest.mark.parametrize("k", [2, 3])
def test_reaches_scikit_learns_optimum_and_predictions(k):
    sk = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(k)
    w = rng.normal(size=(20, k))
    X = rng.normal(size=(120, 20))
    y = (X @ w + rng.normal(size=(120, k)) * 2).argmax(1) + 5        # labels need not start at 0
    ours = LogisticRegression(C=0.5).fit(X, y)
    ref = sk.LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000).fit(X, y)
    assert ours.coef_.shape == ref.coef_.shape and list(ours.classes_) == list(ref.classes_)
    assert _objective(ours, X, y, 0.5) <= _objective(ref, X, y, 0.5) + 1e-4
    Xt = rng.normal(size=(300, 20))
    assert np.abs(ours.predict_proba(Xt) - ref.predict_proba(Xt)).max() < 1e-3
    assert (ours.predict(Xt) == ref.predict(Xt)).mean() > 0.99


@pytest.mark.parametrize("k", [2, 4])
def test_as_logits_gives_a_layer_with_the_same_probabilities(k):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = np.arange(60) % k
    clf = LogisticRegression().fit(X, y)
    W, b = clf.as_logits()
    assert W.shape == (k, 5) and b.shape == (k,)
    z = X @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.allclose(p, clf.predict_proba(X), atol=1e-5)


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="C must be > 0"):
        LogisticRegression(C=0)
    with pytest.raises(ValueError, match="two classes"):
        LogisticRegression().fit(np.zeros((4, 2)), [1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"X must be \(N, D\)"):
        LogisticRegression().fit(np.zeros((4, 2)), [0, 1, 0])
