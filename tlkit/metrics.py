"""Classification metrics on logits or predicted labels (torch or numpy in, floats out)."""
from __future__ import annotations

import numpy as np
import torch


def _labels(pred) -> np.ndarray:
    a = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    return a.argmax(-1) if a.ndim == 2 else a.astype(np.int64)


def _targets(y) -> np.ndarray:
    return (y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)).astype(np.int64)


def accuracy(pred, y) -> float:
    """Share of correct predictions; ``pred`` is logits ``(N, C)`` or labels ``(N,)``."""
    p, t = _labels(pred), _targets(y)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and labels {t.shape} differ in length")
    return float((p == t).mean()) if len(t) else float("nan")


def confusion(pred, y, n_classes: int | None = None) -> np.ndarray:
    """Confusion matrix ``C[true, predicted]`` of counts."""
    p, t = _labels(pred), _targets(y)
    k = n_classes or int(max(p.max(initial=0), t.max(initial=0)) + 1)
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (t, p), 1)
    return m


def balanced_accuracy(pred, y) -> float:
    """Mean per-class recall over the classes present in ``y`` (robust to class imbalance)."""
    m = confusion(pred, y)
    present = m.sum(1) > 0
    if not present.any():
        return float("nan")
    return float((np.diag(m)[present] / m.sum(1)[present]).mean())


def per_domain_accuracy(pred, y, domain) -> dict[str, float]:
    """Accuracy within each value of ``domain`` (e.g. ``{"source": .98, "target": .61}``)."""
    p, t = _labels(pred), _targets(y)
    d = np.asarray(domain)
    return {str(k): float((p[d == k] == t[d == k]).mean()) for k in np.unique(d)}


def mean_entropy(logits) -> float:
    """Mean prediction entropy in nats: a label-free sign of confusion on a new domain."""
    x = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(logits)
    p = torch.softmax(x.float(), -1)
    return float(-(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean())
