"""Chapter 4: unsupervised domain adaptation on top of the core ``fit`` loop.

A model learns from labelled *source* images and unlabelled *target* images,
and is judged on the target. Everything here plugs into ``tlkit.train.fit``
through a custom ``step=``; there is no second training loop.

    model = adapt.DigitNet()
    train_dl = adapt.PairedLoader(source_train, target_train, batch_size=64, seed=0)
    state = train.fit(model, train_dl, {"source": src_test_dl, "target": tgt_test_dl}, cfg,
                      step=adapt.dann_step(lambda_max=0.3))

Pieces, from the bottom up:

- ``grad_reverse`` / ``GradientReversal``: identity forward, ``-lambda * grad`` backward.
- ``dann_lambda``: the schedule ``lambda_max * (2 / (1 + exp(-10 p)) - 1)``.
- ``DomainDiscriminator`` and ``DigitNet`` (LeNet-size CNN whose ``forward`` always
  returns class logits; ``.features(x)``, ``.domain_logits(f, coeff)``, ``layer_groups()``).
- ``PairedLoader``: ``(source_batch, target_x)`` pairs, the target cycled, target labels dropped.
- Step functions for ``fit``: ``source_only_step``, ``dann_step(...)``, ``coral_step(...)``, ``mmd_step(...)``.
- Losses: ``coral_loss``, ``mmd_loss`` (multi-kernel Gaussian, DAN-style).
- Measuring the shift without target labels: ``proxy_a_distance``, ``diagnostics``.
- Experiment helpers: ``DomainPair``, ``make_pair``, ``train_run``, ``run``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from . import metrics as _metrics
from . import train as _train
from .config import TrainConfig

METHODS = ("source_only", "dann", "coral", "mmd")
REFERENCE = "target_only"


# --------------------------------------------------------------------------- gradient reversal
class GradientReversalFunction(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by ``-coeff`` in the backward pass.

    Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015.
    Placed between the feature extractor and the domain discriminator, it lets one
    ``loss.backward()`` train the discriminator to *tell* the domains apart while
    pushing the features to make them *indistinguishable*.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = float(coeff)
        return x.view_as(x)  # a new tensor node, so autograd calls our backward

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.coeff * grad_output, None  # no gradient for ``coeff``


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """``x`` unchanged forward; gradient ``-coeff * grad`` backward. Shape: any."""
    return GradientReversalFunction.apply(x, coeff)


class GradientReversal(nn.Module):
    """Module form of ``grad_reverse``; ``coeff`` may be changed between steps."""

    def __init__(self, coeff: float = 1.0):
        super().__init__()
        self.coeff = float(coeff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.coeff)

    def extra_repr(self) -> str:
        return f"coeff={self.coeff}"


def dann_lambda(progress: float, lambda_max: float = 1.0, gamma: float = 10.0) -> float:
    """Adaptation weight at training progress ``p`` in [0, 1]: ``lambda_max * (2 / (1 + exp(-gamma p)) - 1)``.

    Ganin & Lempitsky (2015), section 5: 0 at the start, when the features are
    still noise and the domain signal would only disturb the classifier, rising
    smoothly towards ``lambda_max`` (0.987 of it at p = 0.5, 0.9999 at p = 1).
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must lie in [0, 1], got {progress!r}; pass state.progress or step/total_steps")
    return float(lambda_max) * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


# --------------------------------------------------------------------------- models
class DomainDiscriminator(nn.Module):
    """MLP that says "source" (logit > 0) or "target" from a feature vector.

    Default: 3 linear layers, 1,024 hidden units (the discriminator of
    pytorch-adapt's DANN and of Ganin et al. 2016's larger experiments). A weak
    discriminator is a trap: with 64 hidden units its own accuracy fell to ~0.5
    on MNIST -> MNIST-M-style while a fresh linear domain classifier still told
    the features apart at 0.88 -- it had stopped giving the features a useful
    signal, not aligned them. So its accuracy near 0.5 never proves alignment;
    ``proxy_a_distance`` with a *fresh* classifier is the better check.

    Shape: ``f: (N, F)`` -> ``(N,)`` logits for "comes from the source domain".
    """

    def __init__(self, in_features: int, hidden: int = 1024, layers: int = 3):
        super().__init__()
        if layers < 1:
            raise ValueError(f"DomainDiscriminator needs layers >= 1, got {layers}")
        mods: list[nn.Module] = []
        width = in_features
        for _ in range(layers - 1):
            mods += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        mods.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f).squeeze(-1)


class DigitNet(nn.Module):
    """LeNet-size CNN for 28x28 digit images, with a domain discriminator attached.

    ``forward(x)`` ALWAYS returns class logits ``(N, n_classes)``, in train and
    eval mode alike (so ``fit``, ``evaluate`` and ``predict`` treat it like any
    classifier). ``features(x)`` gives the ``(N, feature_dim)`` vectors that the
    adaptation losses align; ``domain_logits(f, coeff)`` sends features through
    gradient reversal into the discriminator. Layer groups: ``conv``, ``fc``,
    ``domain`` (the discriminator, only trained by DANN) and ``head``.

    Default widths 8/16 channels: on 2 CPU cores a DANN step costs about half of
    what 16/32 costs, and the saved time buys more steps, which adversarial training
    needs more than width. ``benchmarks/dann_recipe.py`` measures the methods at these
    defaults on chapter 4's data.

    BatchNorm: the adaptation steps forward source and target as two separate
    batches (``batchnorm="separate"``, the default), so in training each domain is
    normalised with its own batch statistics and the running averages describe
    both; ``source_only_step`` never sees a target image, so its statistics are the
    source's. ``adabn`` measures how much of an adaptation gain statistics alone explain.
    """

    def __init__(self, in_channels: int = 3, n_classes: int = 10, widths: tuple[int, int] = (8, 16),
                 feature_dim: int = 64, disc_hidden: int = 1024, dropout: float = 0.1, size: int = 28):
        super().__init__()
        c1, c2 = widths
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5), nn.BatchNorm2d(c1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(c1, c2, 5), nn.BatchNorm2d(c2), nn.Dropout2d(dropout), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten())
        side = ((size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"DigitNet needs images of at least 16x16 pixels, got size={size}")
        self.fc = nn.Sequential(nn.Linear(c2 * side * side, feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, n_classes)
        self.discriminator = DomainDiscriminator(feature_dim, disc_hidden)
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, feature_dim)``."""
        return self.fc(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def domain_logits(self, f: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
        """Discriminator logits ``(N,)`` for features ``f: (N, F)`` seen through gradient reversal."""
        return self.discriminator(grad_reverse(f, coeff))

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        return [("conv", [self.conv]), ("fc", [self.fc]), ("domain", [self.discriminator]),
                ("head", [self.head])]


# --------------------------------------------------------------------------- data
class PairedLoader:
    """Yields ``(source_batch, target_x)``: a labelled source batch and an unlabelled target batch.

    One epoch is one pass over the source; the target loader is restarted
    (reshuffled with a new seed) whenever it runs out, so a small target set is
    cycled. Target labels, if the dataset has them, are dropped here, so no step
    function can use them by accident. Shapes: ``source_batch = (x_s (B, C, H, W),
    y_s (B,))``, ``target_x: (B_t, C, H, W)``.
    """

    def __init__(self, source: Dataset, target: Dataset, batch_size: int = 64, *, seed: int = 0,
                 target_batch_size: int | None = None):
        if len(source) == 0 or len(target) == 0:  # type: ignore[arg-type]
            raise ValueError("PairedLoader needs a non-empty source and target dataset")
        self.source, self.target, self.seed = source, target, seed
        self.batch_size = batch_size
        self.target_batch_size = target_batch_size or batch_size
        # drop_last keeps source and target batches the same size (BatchNorm and the
        # domain loss then see balanced domains in every step).
        self._source_dl = _train.loader(source, batch_size, shuffle=True, seed=seed, drop_last=True)
        if len(self._source_dl) == 0:
            raise ValueError(f"the source set has {len(source)} examples, fewer than one batch of {batch_size}; "
                             "lower batch_size")
        self._target_epoch = 0
        self._target_iter: Iterator | None = None

    def __len__(self) -> int:
        return len(self._source_dl)

    def _next_target(self) -> torch.Tensor:
        for _ in range(2):
            if self._target_iter is None:
                dl = _train.loader(self.target, self.target_batch_size, shuffle=True,
                                   seed=self.seed + 1000 + self._target_epoch,
                                   drop_last=len(self.target) >= self.target_batch_size)
                self._target_epoch += 1
                self._target_iter = iter(dl)
            try:
                batch = next(self._target_iter)
            except StopIteration:
                self._target_iter = None
                continue
            return batch[0] if isinstance(batch, (tuple, list)) else batch
        raise RuntimeError("the target loader yielded no batch; is the target dataset empty?")

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        for source_batch in self._source_dl:
            yield tuple(source_batch[:2]), self._next_target()


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(x_s, y_s, x_t or None) from a paired batch or a plain ``(x, y)`` batch."""
    first = batch[0]
    if isinstance(first, (tuple, list)):
        (xs, ys), xt = first[:2], batch[1]
        return xs, ys, xt
    return batch[0], batch[1], None


def _need_target(xt: torch.Tensor | None, name: str) -> torch.Tensor:
    if xt is None:
        raise ValueError(f"{name} needs unlabelled target images: train with "
                         "adapt.PairedLoader(source_ds, target_ds) instead of a plain loader")
    return xt


# --------------------------------------------------------------------------- losses
def coral_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    r"""Deep CORAL loss: distance between the feature covariances of two domains.

    Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV-W 2016.

    .. math::
        \ell_{CORAL} = \frac{1}{4 d^2} \lVert C_S - C_T \rVert_F^2, \qquad
        C = \frac{1}{n-1}\Big(X^\top X - \frac{1}{n}(\mathbf{1}^\top X)^\top(\mathbf{1}^\top X)\Big)

    Matching second-order statistics is cheap (no extra network) and, unlike
    DANN, has no adversary to destabilise training.

    Inputs:
        - f_s: source features
        - f_t: target features
    Shape:
        - f_s: ``(N_s, d)``, f_t: ``(N_t, d)`` with ``N_s, N_t >= 2``
        - Output: scalar
    Example:
        >>> coral_loss(torch.randn(32, 64), torch.randn(32, 64)).shape
        torch.Size([])
    """
    if f_s.dim() != 2 or f_t.dim() != 2 or f_s.shape[1] != f_t.shape[1]:
        raise ValueError(f"coral_loss needs (N, d) features with the same d, got {tuple(f_s.shape)} and "
                         f"{tuple(f_t.shape)}")
    if len(f_s) < 2 or len(f_t) < 2:
        raise ValueError("coral_loss needs at least 2 samples per domain to estimate a covariance")
    d = f_s.shape[1]

    def cov(x: torch.Tensor) -> torch.Tensor:
        x = x.float() - x.float().mean(0, keepdim=True)
        return x.T @ x / (len(x) - 1)

    return ((cov(f_s) - cov(f_t)) ** 2).sum() / (4 * d * d)


def gaussian_kernels(x: torch.Tensor, y: torch.Tensor, *, n_kernels: int = 5, mul: float = 2.0,
                     bandwidth: float | None = None) -> torch.Tensor:
    r"""Sum of ``n_kernels`` Gaussian kernels between all rows of ``x`` and ``y``.

    ``k(a, b) = sum_i exp(-||a - b||^2 / (bw * mul^(i - n_kernels // 2)))``; the base
    bandwidth ``bw`` defaults to the mean squared distance over the pooled rows
    (detached: a data-driven scale, not something to optimise), as in DAN.

    Shape: ``x: (N, d)``, ``y: (M, d)`` -> ``(N + M, N + M)`` kernel matrix of the pooled rows.
    """
    z = torch.cat([x, y]).float()
    d2 = torch.cdist(z, z).pow(2)
    if bandwidth is None:
        n = len(z)
        bandwidth = float(d2.detach().sum() / (n * n - n)) if n > 1 else 1.0
        bandwidth = max(bandwidth, 1e-8)
    k = torch.zeros_like(d2)
    for i in range(n_kernels):
        k = k + torch.exp(-d2 / (bandwidth * mul ** (i - n_kernels // 2)))
    return k


def mmd_loss(f_s: torch.Tensor, f_t: torch.Tensor, *, n_kernels: int = 5, mul: float = 2.0,
             bandwidth: float | None = None) -> torch.Tensor:
    r"""Multi-kernel maximum mean discrepancy between two feature sets (biased estimate).

    Long et al., "Learning Transferable Features with Deep Adaptation Networks" (DAN), ICML 2015;
    Gretton et al., "A Kernel Two-Sample Test", JMLR 2012.

    .. math::
        \widehat{MMD}^2_k(S, T) = \frac{1}{n^2}\sum_{i,j} k(s_i, s_j)
            + \frac{1}{m^2}\sum_{i,j} k(t_i, t_j) - \frac{2}{nm}\sum_{i,j} k(s_i, t_j)

    with ``k`` a sum of Gaussian kernels at bandwidths ``bw * mul^(i - n_kernels // 2)``
    (see ``gaussian_kernels``). Zero when the two samples are identical; it
    compares all moments of the distributions, not only the covariance (CORAL).

    Inputs:
        - f_s: source features
        - f_t: target features
    Shape:
        - f_s: ``(N, d)``, f_t: ``(M, d)``
        - Output: scalar
    Example:
        >>> mmd_loss(torch.randn(32, 64), torch.randn(32, 64) + 1) > 0
        tensor(True)
    """
    if f_s.dim() != 2 or f_t.dim() != 2 or f_s.shape[1] != f_t.shape[1]:
        raise ValueError(f"mmd_loss needs (N, d) features with the same d, got {tuple(f_s.shape)} and "
                         f"{tuple(f_t.shape)}")
    n = len(f_s)
    k = gaussian_kernels(f_s, f_t, n_kernels=n_kernels, mul=mul, bandwidth=bandwidth)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


# --------------------------------------------------------------------------- step functions for fit
StepFn = Callable[[nn.Module, Any, "_train.StepContext"], dict]


def _classify(model: nn.Module, f_s: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model.head(f_s)
    return F.cross_entropy(logits.float(), ys), (logits.argmax(-1) == ys).float().mean()


def source_only_step(model: nn.Module, batch: Any, ctx: _train.StepContext) -> dict[str, torch.Tensor]:
    """Cross-entropy on the source batch; the target batch (if any) is ignored.

    The baseline every adaptation method must beat. Accepts paired or plain batches.
    """
    xs, ys, _ = _unpack(batch)
    loss, acc = _classify(model, model.features(xs), ys)  # model(x) is head(features(x))
    return {"loss": loss, "acc": acc, "n": len(ys)}


BATCHNORM_MODES = ("separate", "joint")


def domain_features(model: nn.Module, xs: torch.Tensor, xt: torch.Tensor,
                    batchnorm: str = "separate") -> tuple[torch.Tensor, torch.Tensor]:
    """Features of a source and a target batch: ``(f_s (N_s, F), f_t (N_t, F))``.

    ``batchnorm="separate"`` (the default) runs two forward passes, so every
    BatchNorm layer normalises each domain with that domain's own batch
    statistics. ``"joint"`` runs ONE pass over ``cat([xs, xt])``: the statistics
    then describe the source/target mix, the domain difference survives
    normalisation, and the alignment loss must remove it alone. On MNIST ->
    MNIST-M-style the joint batch cost DANN 19-29 points of target accuracy (the
    chapter shows it); it is kept to teach that difference, not as a choice.
    """
    if batchnorm == "separate":
        return model.features(xs), model.features(xt)
    if batchnorm == "joint":
        f = model.features(torch.cat([xs, xt]))
        return f[: len(xs)], f[len(xs):]
    raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")


def dann_step(lambda_max: float = 1.0, gamma: float = 10.0, batchnorm: str = "separate") -> StepFn:
    """DANN step (Ganin & Lempitsky 2015) for ``fit(step=...)``.

    Source and target go through the feature extractor as two batches
    (``domain_features``: BatchNorm sees each domain on its own); the classifier
    loss uses source labels only; the discriminator learns to tell the domains
    apart while the gradient reversal layer (weight ``dann_lambda(ctx.progress)``,
    rising to ``lambda_max``, the paper's 1.0 by default) pushes the features
    towards domain-invariance. Logs ``cls_loss``, ``domain_loss``, ``domain_acc``
    (the discriminator's own accuracy: near 0.5 says it is beaten, NOT that the
    features are aligned; check with a fresh classifier, ``proxy_a_distance``) and ``lambda``.
    """
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")

    def step(model: nn.Module, batch: Any, ctx: _train.StepContext) -> dict[str, torch.Tensor]:
        xs, ys, xt = _unpack(batch)
        xt = _need_target(xt, "dann_step")
        f_s, f_t = domain_features(model, xs, xt, batchnorm)
        cls_loss, acc = _classify(model, f_s, ys)
        coeff = dann_lambda(ctx.progress, lambda_max, gamma)
        d_logits = model.domain_logits(torch.cat([f_s, f_t]), coeff).float()
        d_true = torch.cat([torch.ones(len(xs)), torch.zeros(len(xt))]).to(d_logits.device)
        # The discriminator always learns at full strength; only the feature
        # extractor's share is scaled (and reversed) by the GRL coefficient.
        domain_loss = F.binary_cross_entropy_with_logits(d_logits, d_true)
        domain_acc = ((d_logits > 0).float() == d_true).float().mean()
        return {"loss": cls_loss + domain_loss, "acc": acc, "n": len(ys),
                "cls_loss": cls_loss.detach(), "domain_loss": domain_loss.detach(),
                "domain_acc": domain_acc, "lambda": torch.tensor(coeff)}

    step.__name__ = f"dann_step(lambda_max={lambda_max}, batchnorm={batchnorm!r})"
    return step


def _alignment_step(name: str, align: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], weight: float,
                    ramp: bool, batchnorm: str = "separate") -> StepFn:
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")

    def step(model: nn.Module, batch: Any, ctx: _train.StepContext) -> dict[str, torch.Tensor]:
        xs, ys, xt = _unpack(batch)
        xt = _need_target(xt, f"{name}_step")
        f_s, f_t = domain_features(model, xs, xt, batchnorm)
        cls_loss, acc = _classify(model, f_s, ys)
        w = dann_lambda(ctx.progress, weight) if ramp else float(weight)
        align_loss = align(f_s.float(), f_t.float())
        return {"loss": cls_loss + w * align_loss, "acc": acc, "n": len(ys),
                "cls_loss": cls_loss.detach(), f"{name}_loss": align_loss.detach(), "lambda": torch.tensor(w)}

    step.__name__ = f"{name}_step(weight={weight}, batchnorm={batchnorm!r})"
    return step


def coral_step(weight: float = 1.0, ramp: bool = True, batchnorm: str = "separate") -> StepFn:
    """Deep CORAL step: source cross-entropy + ``weight * coral_loss(f_s, f_t)``.

    With ``ramp`` the weight follows the DANN schedule (0 at the start, like DANN's lambda);
    ``batchnorm`` as in ``domain_features``.
    """
    return _alignment_step("coral", coral_loss, weight, ramp, batchnorm)


def mmd_step(weight: float = 1.0, ramp: bool = True, batchnorm: str = "separate") -> StepFn:
    """DAN-style step: source cross-entropy + ``weight * mmd_loss(f_s, f_t)`` (multi-kernel Gaussian)."""
    return _alignment_step("mmd", mmd_loss, weight, ramp, batchnorm)


def make_step(method: str, *, weight: float | None = None, lambda_max: float = 1.0, coral_weight: float = 1.0,
              mmd_weight: float = 1.0, batchnorm: str = "separate") -> StepFn:
    """The step function for a method name in ``METHODS`` (or ``"target_only"``, plain supervised).

    ``weight``, when given, is the one "adaptation weight" knob (the control
    panel's slider): DANN's ``lambda_max``, or the CORAL / MMD loss weight.
    ``batchnorm`` ("separate" or "joint", see ``domain_features``) applies to the adaptation methods.
    """
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")
    if method == "source_only":
        return source_only_step
    if method == "dann":
        return dann_step(lambda_max if weight is None else weight, batchnorm=batchnorm)
    if method == "coral":
        return coral_step(coral_weight if weight is None else weight, batchnorm=batchnorm)
    if method == "mmd":
        return mmd_step(mmd_weight if weight is None else weight, batchnorm=batchnorm)
    if method == REFERENCE:
        return _train.supervised_step
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS + (REFERENCE,))}")


# --------------------------------------------------------------------------- BatchNorm statistics
@torch.no_grad()
def adabn(model: nn.Module, target_x: torch.Tensor, *, batch_size: int = 256) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated on target images.

    AdaBN (Li et al., "Revisiting Batch Normalization for Practical Domain
    Adaptation", 2016): no training, no labels, only forward passes over
    ``target_x: (N, C, H, W)``. Why it matters here: the adaptation steps forward
    target batches too, so their BatchNorm running statistics have seen target
    images, while a source-only model normalises target images with source
    statistics. Comparing source-only with source-only + AdaBN shows how much of
    an adaptation gain BatchNorm statistics alone explain.
    The copy is returned in eval mode; ``model`` is not changed.
    """
    import copy

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ValueError("adabn: the model has no BatchNorm layer, so there are no statistics to re-estimate")
    new = copy.deepcopy(model)
    device = next(new.parameters()).device
    for m in new.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None        # cumulative average over all target batches, not an EMA
    new.train()
    features = getattr(new, "features", new)   # BatchNorm lives in the feature extractor of DigitNet
    for i in range(0, len(target_x), batch_size):
        features(target_x[i:i + batch_size].to(device))
    for m in new.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1         # back to PyTorch's default, should the copy be trained further
    return new.eval()


# --------------------------------------------------------------------------- measuring the shift
@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """``model.features`` over ``x: (N, C, H, W)`` in eval mode -> ``(N, F)`` on CPU; restores train mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [model.features(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def proxy_a_distance(f_s: np.ndarray | torch.Tensor, f_t: np.ndarray | torch.Tensor, *, seed: int = 0,
                     C: float = 1.0) -> dict[str, float]:
    r"""Proxy A-distance (Ben-David et al. 2007/2010) via a linear domain classifier.

    Train logistic regression to tell source rows from target rows on one half,
    measure its error ``eps`` on the other half: ``PAD = 2 (1 - 2 eps)``. 0 means
    the domains look alike to the classifier (accuracy 0.5), 2 means they are
    perfectly separable. Needs no class labels at all.

    Shape: ``f_s: (N, d)``, ``f_t: (M, d)`` (features or flattened pixels).
    Returns ``{"pad": ..., "domain_acc": ...}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    a = np.asarray(f_s, dtype=np.float32).reshape(len(f_s), -1)
    b = np.asarray(f_t, dtype=np.float32).reshape(len(f_t), -1)
    x = np.concatenate([a, b])
    d = np.concatenate([np.ones(len(a)), np.zeros(len(b))])
    x_tr, x_te, d_tr, d_te = train_test_split(x, d, test_size=0.5, random_state=seed, stratify=d)
    scaler = StandardScaler().fit(x_tr)
    clf = LogisticRegression(C=C, max_iter=300).fit(scaler.transform(x_tr), d_tr)
    acc = float(clf.score(scaler.transform(x_te), d_te))
    err = 1.0 - acc
    return {"pad": 2.0 * (1.0 - 2.0 * min(err, 0.5)), "domain_acc": acc}


def diagnostics(model: nn.Module, source_x: torch.Tensor, source_y: torch.Tensor, target_x: torch.Tensor,
                *, n: int = 1000, seed: int = 0) -> dict[str, float]:
    """Label-free warning signs after adaptation (no target labels used).

    - ``source_acc``: accuracy on held-out *source* data (labels we do have). A
      drop vs source-only means alignment is costing the classifier.
    - ``domain_acc`` / ``pad``: a fresh linear domain classifier on the features.
    - ``target_entropy``: mean prediction entropy on the target (nats); high = unsure.
    - ``target_class_balance``: entropy of the predicted-class histogram on the
      target divided by log(classes); 1 = all classes predicted equally often,
      low = predictions collapsed onto a few classes.

    Shapes: ``source_x: (N, C, H, W)``, ``source_y: (N,)``, ``target_x: (M, C, H, W)``.
    """
    g = torch.Generator().manual_seed(seed)
    si = torch.randperm(len(source_x), generator=g)[:n]
    ti = torch.randperm(len(target_x), generator=g)[:n]
    f_s = extract_features(model, source_x[si])
    f_t = extract_features(model, target_x[ti])
    dev = next(model.parameters()).device
    with torch.no_grad():
        ls, lt = model.head(f_s.to(dev)).float().cpu(), model.head(f_t.to(dev)).float().cpu()
    pad = proxy_a_distance(f_s, f_t, seed=seed)
    counts = np.bincount(lt.argmax(-1).numpy(), minlength=lt.shape[1]).astype(float)
    p = counts / counts.sum()
    balance = max(0.0, float(-(p[p > 0] * np.log(p[p > 0])).sum() / math.log(lt.shape[1])))  # no "-0.0"
    return {"source_acc": _metrics.accuracy(ls, source_y[si]), "domain_acc": pad["domain_acc"], "pad": pad["pad"],
            "target_entropy": _metrics.mean_entropy(lt), "target_class_balance": balance}


# --------------------------------------------------------------------------- experiments
@dataclass
class DomainPair:
    """Train/test arrays of a source and a target domain (images ``(N, C, H, W)`` in [0, 1])."""

    name: str
    source_train: tuple[torch.Tensor, torch.Tensor]
    source_test: tuple[torch.Tensor, torch.Tensor]
    target_train: tuple[torch.Tensor, torch.Tensor]   # labels used only by the target_only reference
    target_test: tuple[torch.Tensor, torch.Tensor]

    def loaders(self, batch_size: int = 256) -> dict[str, Any]:
        """Evaluation loaders ``{"source": ..., "target": ...}`` for ``fit``'s history."""
        return {"source": _train.loader(TensorDataset(*self.source_test), batch_size),
                "target": _train.loader(TensorDataset(*self.target_test), batch_size)}

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)[1]) for k in ("source_train", "source_test", "target_train", "target_test")}


def make_pair(name: str, source: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray], *,
              test: float = 0.2, seed: int = 0, n_source: int | None = None, n_target: int | None = None,
              n_test: int | None = None) -> DomainPair:
    """Split source and target arrays (stratified, seeded) into a ``DomainPair`` of tensors.

    ``n_source`` / ``n_target`` keep only that many training examples and
    ``n_test`` that many test examples per domain (smaller presets), drawn at
    random (seeded) so every class keeps about its share.
    """
    from .data import split_arrays

    parts = []
    for (x, y), n in ((source, n_source), (target, n_target)):
        x_tr, y_tr, x_te, y_te = split_arrays(np.asarray(x), np.asarray(y), test=test, seed=seed)
        if n is not None and n < len(y_tr):   # subsample (a copy) only when asked: memory matters on Binder
            keep = np.sort(np.random.default_rng([seed, 4]).permutation(len(y_tr))[:n])
            x_tr, y_tr = x_tr[keep], y_tr[keep]
        if n_test is not None and n_test < len(y_te):
            keep = np.sort(np.random.default_rng([seed, 5]).permutation(len(y_te))[:n_test])
            x_te, y_te = x_te[keep], y_te[keep]
        parts.append(((torch.as_tensor(x_tr, dtype=torch.float32), torch.as_tensor(y_tr, dtype=torch.long)),
                      (torch.as_tensor(x_te, dtype=torch.float32), torch.as_tensor(y_te, dtype=torch.long))))
    (s_tr, s_te), (t_tr, t_te) = parts
    return DomainPair(name, s_tr, s_te, t_tr, t_te)


def train_run(method: str, pair: DomainPair, *, seed: int = 0, steps: int = 1000, batch_size: int = 64,
              lr: float = 1e-3, lambda_max: float = 1.0, coral_weight: float = 1.0, mmd_weight: float = 1.0,
              batchnorm: str = "separate", eval_every: int | None = None, device: str = "auto", callbacks: Sequence = (),
              control: _train.Control | None = None, model_kw: dict | None = None,
              cfg: TrainConfig | None = None) -> tuple[DigitNet, _train.State]:
    """Train one (method, seed) run through ``tlkit.train.fit`` and return ``(model, state)``.

    ``method`` is one of ``METHODS`` or ``"target_only"`` (the upper reference,
    trained on *labelled target* data; every other method sees target images only).
    The history has ``source_acc`` and ``target_acc`` columns from ``fit``'s dict of loaders.
    """
    if method not in METHODS + (REFERENCE,):
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS + (REFERENCE,))}")
    _train.seed_everything(seed)
    channels = pair.source_train[0].shape[1]
    model = DigitNet(in_channels=channels, size=pair.source_train[0].shape[-1], **(model_kw or {}))
    if method == REFERENCE:
        train_dl = _train.loader(TensorDataset(*pair.target_train), batch_size, shuffle=True, seed=seed,
                                 drop_last=True)
    else:
        train_dl = PairedLoader(TensorDataset(*pair.source_train), TensorDataset(pair.target_train[0]),
                                batch_size, seed=seed)
    epochs = max(1, math.ceil(steps / len(train_dl)))
    base = cfg or TrainConfig()
    cfg = dataclasses.replace(base, epochs=epochs, max_steps=steps, lr=lr, batch_size=batch_size,
                              optimizer=base.optimizer if cfg else "adam", seed=seed, device=device,
                              eval_every=eval_every if eval_every is not None else base.eval_every)
    step = make_step(method, lambda_max=lambda_max, coral_weight=coral_weight, mmd_weight=mmd_weight,
                     batchnorm=batchnorm)
    state = _train.fit(model, train_dl, pair.loaders(), cfg, step=step, callbacks=callbacks, control=control)
    return model, state


def summarize_run(model: nn.Module, state: _train.State, pair: DomainPair, *, seed: int = 0,
                  diagnose: bool = True) -> dict[str, float]:
    """Final metrics of a trained run: ``source_acc``, ``target_acc`` (last history row), ``steps``,
    ``train_s`` and, with ``diagnose``, the label-free ``diagnostics`` on the test images."""
    if state.status != "finished":
        raise RuntimeError(f"the run ended with status {state.status!r}: {state.message}")
    last = state.history[-1]
    out = {"source_acc": last["source_acc"], "target_acc": last["target_acc"], "steps": float(state.step),
           "train_s": state.elapsed}
    if diagnose:
        d = diagnostics(model, *pair.source_test, pair.target_test[0], seed=seed)
        out.update({k: v for k, v in d.items() if k != "source_acc"})
    return out


def run(method: str, pair: DomainPair, *, seed: int = 0, diagnose: bool = True, **kw) -> dict[str, float]:
    """One (method, seed) run -> final metrics, shaped for ``tlkit.sweep.sweep``.

    Trains with ``train_run`` (keyword arguments go there) and summarises with
    ``summarize_run``: ``source_acc``, ``target_acc`` and, with ``diagnose``, the
    label-free diagnostics (``domain_acc``, ``pad``, ``target_entropy``,
    ``target_class_balance``) computed on test images.
    """
    model, state = train_run(method, pair, seed=seed, **kw)
    return summarize_run(model, state, pair, seed=seed, diagnose=diagnose)


def results_table(df, metrics: Sequence[str] = ("target_acc", "source_acc"), order: Sequence[str] | None = None):
    """Mean ± std (over seeds) per method of ``df`` (a ``sweep``/list-of-dicts table with ``method``, ``seed``).

    Returns a DataFrame with one row per method, columns ``<metric>_mean``,
    ``<metric>_std`` and ``seeds``; methods in ``order`` (default: first appearance).
    """
    import pandas as pd

    df = pd.DataFrame(df)
    missing = [m for m in metrics if m not in df.columns]
    if missing:
        raise KeyError(f"results_table: no column(s) {missing}; columns are {list(df.columns)}")
    g = df.groupby("method", sort=False)
    out = pd.DataFrame({"seeds": g["seed"].nunique()})
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_std"] = g[m].std(ddof=1).fillna(0.0)
    order = list(order) if order is not None else list(dict.fromkeys(df["method"]))
    return out.loc[[m for m in order if m in out.index]]


__all__ = ["GradientReversalFunction", "grad_reverse", "GradientReversal", "dann_lambda", "DomainDiscriminator",
           "DigitNet", "PairedLoader", "coral_loss", "gaussian_kernels", "mmd_loss", "source_only_step",
           "dann_step", "coral_step", "mmd_step", "make_step",
           "domain_features", "BATCHNORM_MODES", "extract_features", "proxy_a_distance",
           "diagnostics", "adabn", "DomainPair", "make_pair", "train_run", "summarize_run", "run", "results_table", "METHODS", "REFERENCE"]
