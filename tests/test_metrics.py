import numpy as np
import pytest
import torch

from tlkit import metrics


def test_accuracy_from_logits_and_labels():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert metrics.accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert metrics.accuracy(np.array([1, 1]), [1, 0]) == 0.5
    with pytest.raises(ValueError, match="differ in length"):
        metrics.accuracy([1, 0, 1], [1, 0])


def test_confusion_and_balanced_accuracy():
    y = [0, 0, 0, 0, 1]
    pred = [0, 0, 0, 0, 0]  # majority guess: 80% accurate, 50% balanced
    assert metrics.confusion(pred, y).tolist() == [[4, 0], [1, 0]]
    assert metrics.accuracy(pred, y) == 0.8
    assert metrics.balanced_accuracy(pred, y) == 0.5


def test_per_domain_and_entropy():
    acc = metrics.per_domain_accuracy([1, 0, 1, 1], [1, 1, 1, 0], ["s", "s", "t", "t"])
    assert acc == {"s": 0.5, "t": 0.5}
    assert metrics.mean_entropy(torch.zeros(3, 4)) == pytest.approx(np.log(4))
    assert metrics.mean_entropy(torch.tensor([[100.0, 0.0]])) == pytest.approx(0.0, abs=1e-6)
