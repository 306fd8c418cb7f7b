"""Chapter 4 (domain adaptation): checked exercises and quiz."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from tlkit.exercises import Exercise, Mistake, close, need_loss, need_tensor
from tlkit.quiz import Option, Question, find, which_best


# --------------------------------------------------------------------------- ch4_grl
def _test_grl(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    coeff = float(rng.uniform(0.2, 3.0))
    x = torch.randn(int(rng.integers(2, 6)), int(rng.integers(2, 6)), generator=g, requires_grad=True)
    w = torch.randn(x.shape, generator=g)        # upstream gradient: d(sum(w * y))/dy = w
    y = answer(x, coeff)
    need_tensor(y, "the output", tuple(x.shape))
    if not close(y, x):
        if close(y, -x) or close(y, -coeff * x):
            raise Mistake("the forward pass changed x: gradient reversal is the identity going forward; only the "
                          "backward pass multiplies the gradient by -coeff (write a torch.autograd.Function).")
        raise Mistake("the forward pass must return x unchanged (the identity).")
    if not y.requires_grad:
        raise Mistake("no gradient flows through your function (detached?): the feature extractor must receive the "
                      "reversed gradient.")
    (y * w).sum().backward()
    grad = x.grad
    if grad is None:
        raise Mistake("x received no gradient.")
    if close(grad, -coeff * w):
        return
    if close(grad, w):
        raise Mistake("the gradient comes back unchanged: its sign must be reversed (multiplied by -coeff), so that "
                      "the features learn to FOOL the domain discriminator.")
    if close(grad, coeff * w):
        raise Mistake("the gradient is scaled by +coeff: the sign is wrong. Gradient reversal multiplies it by "
                      "-coeff.")
    if close(grad, -w):
        raise Mistake("the sign is reversed but coeff is ignored: the backward pass returns -coeff * grad "
                      "(coeff is DANN's lambda, ramped up during training).")
    raise Mistake("backward must return -coeff times the incoming gradient.")


# --------------------------------------------------------------------------- ch4_coral
def _test_coral(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch

    from tlkit.adapt import coral_loss

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    d = int(rng.integers(3, 9))
    f_s = (torch.randn(int(rng.integers(12, 30)), d, generator=g) * 2 + 3).requires_grad_(True)  # not centred
    f_t = torch.randn(int(rng.integers(12, 30)), d, generator=g).requires_grad_(True)
    got = answer(f_s, f_t)
    need_loss(got, "the features")
    want = coral_loss(f_s, f_t)
    if close(got, want, rtol=1e-4):
        return

    def cov(x: Any, centre: bool = True, unbiased: bool = True) -> Any:
        x = x - x.mean(0, keepdim=True) if centre else x
        return x.T @ x / (len(x) - 1 if unbiased else len(x))
    frob = ((cov(f_s) - cov(f_t)) ** 2).sum()
    if close(got, frob, rtol=1e-4):
        raise Mistake("the normalisation is missing: divide the squared Frobenius norm by 4 d^2 (d = feature "
                      "dimension), as in Sun & Saenko, so the loss does not grow with the width of the features.")
    if close(got, frob.sqrt(), rtol=1e-4) or close(got, frob.sqrt() / (4 * d * d), rtol=1e-4):
        raise Mistake("use the SQUARED Frobenius norm (sum of squared differences), not the norm itself.")
    if close(got, ((cov(f_s, centre=False) - cov(f_t, centre=False)) ** 2).sum() / (4 * d * d), rtol=1e-4):
        raise Mistake("the features are not centred: a covariance subtracts each feature's mean first "
                      "(x - x.mean(0)).")
    if close(got, ((cov(f_s, unbiased=False) - cov(f_t, unbiased=False)) ** 2).sum() / (4 * d * d), rtol=1e-4):
        raise Mistake("almost: divide the covariance by n - 1 (the unbiased estimate, as in the paper), not n.")
    raise Mistake(f"got {float(got):.5g}, expected ||C_s - C_t||_F^2 / (4 d^2) with C the (n-1)-normalised "
                  "covariance of each domain's features.")


# --------------------------------------------------------------------------- ch4_lambda
def _test_lambda(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    lam_max, gamma = float(rng.uniform(0.2, 1.5)), float(rng.choice([5.0, 10.0]))
    ps = [0.0, 0.05, 0.1, 0.3, 0.5, 1.0]
    got = [float(answer(p, lam_max, gamma)) for p in ps]
    want = [lam_max * (2 / (1 + math.exp(-gamma * p)) - 1) for p in ps]
    if np.allclose(got, want, rtol=1e-6, atol=1e-9):
        return
    if abs(got[0]) > 1e-9:
        raise Mistake(f"at p = 0 the weight is {got[0]:.3g}; it must start at 0: early on the features are noise and "
                      "the domain signal would only disturb the classifier.")
    if all(v <= 0 for v in got[1:]):
        raise Mistake("the weight goes negative: the exponent's sign is wrong (exp(-gamma * p), with the minus).")
    if np.allclose(got, [w / lam_max for w in want], rtol=1e-6):
        raise Mistake("lambda_max is ignored: the schedule rises to lambda_max, not to 1.")
    raise Mistake("the weight should be lambda_max * (2 / (1 + exp(-gamma * p)) - 1).")


EXERCISES = [
    Exercise("ch4_grl", 4, "The gradient reversal layer", "grad_reverse",
             "Write `grad_reverse(x, coeff)`: the identity in the forward pass; in the backward pass the gradient "
             "is multiplied by `-coeff`. (Hint: a `torch.autograd.Function` with static `forward` and `backward`.)",
             _test_grl),
    Exercise("ch4_coral", 4, "The CORAL loss", "coral",
             "Write `coral(f_s, f_t)`: source features `(N_s, d)`, target features `(N_t, d)` -> the scalar "
             "`||C_s - C_t||_F^2 / (4 d^2)`, with `C` each domain's feature covariance (divided by n - 1). It must "
             "stay differentiable.", _test_coral),
    Exercise("ch4_lambda", 4, "DANN's lambda schedule", "dann_weight",
             "Write `dann_weight(p, lambda_max, gamma)`: the adaptation weight at training progress `p` in [0, 1], "
             "0 at the start and rising smoothly towards `lambda_max` (Ganin & Lempitsky: "
             "`lambda_max * (2 / (1 + exp(-gamma p)) - 1)`).", _test_lambda),
]


# --------------------------------------------------------------------------- quiz
QUIZ_TITLE = "Chapter 4 quiz: domain adaptation"


def _q_best_target(r: dict) -> Question:
    """Which method reached the best target accuracy"""
    # the first pair the chapter records (MNIST -> MNIST-M-style); the second pair is recorded after it
    first = {m: rs[0] for (m, k), rs in r.items()
             if k == "target_acc" and not m.startswith("panel") and m != "target_only"}
    pairs = {x.get("pair") for x in first.values()}
    pair = next(iter(pairs)) if len(pairs) == 1 and None not in pairs else None
    where = f" on {pair}" if pair else ""
    return which_best(f"Which method reached the highest target-domain accuracy{where} in this run (without "
                      "target labels)?", {m: float(x["value"]) for m, x in first.items()})


def _q_dann_gain(r: dict) -> Question:
    """Whether DANN beat source-only training on the target"""
    gain = find(r, "dann", "gain_over_source_only")
    noisy = abs(gain) < 0.02
    return Question("By how much did DANN beat source-only training on the target domain in this run?", (
        Option("By more than 2 points", gain >= 0.02, f"The measured gain was {gain:+.3f}."),
        Option("Within 2 points either way: no clear difference", noisy,
               f"The measured gain was {gain:+.3f}" + ("; compare it with the seed-to-seed spread." if noisy else ".")),
        Option("DANN was worse by more than 2 points (negative transfer)", gain <= -0.02,
               f"The measured gain was {gain:+.3f}."),
    ), from_run=True)


QUIZ = [
    Question("What does the gradient reversal layer do?", (
        Option("Identity forward; multiplies the gradient by -lambda backward", True,
               "Right: the discriminator learns to tell domains apart, the features learn to fool it."),
        Option("Reverses the input features", False, "The forward pass leaves the features unchanged."),
        Option("Stops the gradient, like detach()", False, "It passes the gradient on, with the sign flipped."),
    )),
    Question("Why does DANN ramp lambda from 0 up to lambda_max?", (
        Option("Early features are noise; a strong domain signal then only disturbs the classifier", True,
               "Right: the ramp 2/(1+exp(-10p)) - 1 starts at 0."),
        Option("To save computation early in training", False, "Every step costs the same whatever lambda is."),
        Option("Because the discriminator has no parameters at the start", False, "It has them from the start."),
    )),
    Question("What do Deep CORAL and MMD align, compared with DANN?", (
        Option("Statistics of the feature distributions (covariances, kernel means), with no adversary", True,
               "Right: a differentiable distance instead of a discriminator; usually more stable."),
        Option("The labels of the target domain", False, "No target labels are used by any of the three."),
        Option("The raw pixels", False, "They align learned features, not the input."),
    )),
    Question("Before crediting an adaptation loss for a gain, what should you compare against?", (
        Option("AdaBN: the source model with BatchNorm statistics re-estimated on target data", True,
               "Right: part of a gain can be plain BatchNorm statistics."),
        Option("A model trained on the target labels", False,
               "That is an upper bound, not a control for where the gain comes from."),
        Option("Nothing: a higher target accuracy is proof enough", False,
               "Seeds vary; compare with a cheap control and with the seed spread."),
    )),
    Question("How should you choose lambda_max or the CORAL weight in a real unsupervised adaptation task?", (
        Option("With label-free signals (source accuracy, domain-classifier accuracy, prediction balance)", True,
               "Right: in the real setting there are no target labels to tune on."),
        Option("By the best target test accuracy", False,
               "That peeks at labels you would not have; the reported number becomes optimistic."),
        Option("Always the largest value", False, "lambda_max = 1 was unstable in the chapter's experiments."),
    )),
    _q_best_target,
    _q_dann_gain,
]
