"""Pretrained CNNs for chapter 3: build, preprocess, predict, extract and cache features, fine-tune.

The offline backbone is torchvision's MobileNetV2 with its ImageNet weights
(``IMAGENET1K_V1``, shipped in a pip pack and located by ``tlkit.assets``);
EfficientNet-Lite0 (optional pip pack) and ResNet-18/50 (download) work the same way.
What the kit knows about each architecture (groups, head, pooling, input statistics,
weights) is one entry of ``tlkit.backbones.TABLE``.

    model = build("mobilenet_v2")                       # strict load of the ImageNet checkpoint
    top5(model, photos["coffee"])                       # [("espresso", 0.41), ...]
    pre = Preprocess(size=64)                           # resize, grey->RGB, ImageNet normalisation
    fs = extract_features(model, X_train, pre)          # (N, 1280), cached on disk
    head, state = train_linear(fs.X, y_train)           # a linear head in seconds
    net = classifier("mobilenet_v2", num_classes=10)    # ImageNet body + new 10-way head
    fit(net, loader(ImageDataset(X, y, pre), 32), cfg=recipes.last_n(surgery.layer_groups(net), 3))

Feature caches live under ``$TLKIT_CACHE/features`` (default ``~/.cache/tlkit``),
keyed by architecture, a fingerprint of the weights, a fingerprint of the
images and the preprocessing settings, so changing any of them recomputes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import backbones, recipes, surgery
from . import train as _train
from .backbones import IMAGENET_MEAN, IMAGENET_STD
from .config import TrainConfig

BACKBONES = tuple(backbones.names())   # every name build() knows; pretrained weights: see tlkit.assets
_CACHE_VERSION = 1  # bump when the feature computation itself changes


# --------------------------------------------------------------------------- models
def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names in output order (from torchvision's weights metadata; no download)."""
    import torchvision

    return list(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Copy ``state`` into ``model`` after checking that every name and shape matches.

    Like nanoGPT's ``from_pretrained``: a mismatch raises a ``ValueError`` that
    lists the missing, unexpected and wrongly shaped tensors, instead of
    PyTorch's generic message or a silent partial load.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{source} does not fit {type(model).__name__}: {len(missing)} missing (first {missing[:3]}), "
            f"{len(unexpected)} unexpected (first {unexpected[:3]}), {len(shapes)} shape mismatches "
            f"{shapes[:3]}. Build the architecture the checkpoint was saved from "
            "(e.g. mobilenet_v2 for mobilenet_v2-b0353104.pth) before loading.")
    model.load_state_dict(state, strict=True)


def build(name: str = "mobilenet_v2", *, pretrained: bool = True, num_classes: int | None = None,
          channels_last: bool = True, seed: int | None = None) -> nn.Module:
    """A backbone of ``tlkit.backbones.TABLE`` with ImageNet weights (``pretrained``) or randomly initialised.

    Weights come from ``tlkit.assets.cnn_weights(name)`` and are loaded strictly.
    ``num_classes`` (other than 1000) replaces the last linear layer by a new,
    randomly initialised one (seeded by ``seed``). ``channels_last`` stores the
    convolution weights NHWC, which oneDNN and cuDNN run faster.
    """
    entry = backbones.by_name(name)  # raises, listing the known names
    if seed is not None:
        torch.manual_seed(seed)
    model = entry.models[name]()
    if pretrained:
        from . import assets

        path = assets.cnn_weights(name)
        state = torch.load(path, map_location="cpu", weights_only=True)
        load_strict(model, state, source=str(path))
    if num_classes is not None and num_classes != 1000:
        replace_head(model, num_classes)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def classifier(name: str = "mobilenet_v2", num_classes: int = 10, *, pretrained: bool = True,
               seed: int = 0, channels_last: bool = True) -> nn.Module:
    """``build`` for a new task: ImageNet body (or random init) + a new ``num_classes`` head."""
    return build(name, pretrained=pretrained, num_classes=num_classes, channels_last=channels_last, seed=seed)


def _entry(model: nn.Module) -> backbones.Backbone:
    entry = backbones.find(model)
    if entry is None or entry.features is None:
        raise TypeError(f"{type(model).__name__} is not an image backbone of tlkit.backbones.TABLE "
                        f"(known: {', '.join(BACKBONES)}); add an entry with its head slot and pooling")
    return entry


def _head_slot(model: nn.Module) -> tuple[nn.Module, str]:
    """(parent module, attribute) of the final linear layer."""
    return _entry(model).head_slot(model)


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Swap the final linear layer for a fresh ``in_features -> num_classes`` one; returns it.

    The layer stays inside the same container, so ``surgery.layer_groups``
    still puts it in the ``head`` group.
    """
    parent, attr = _head_slot(model)
    old = getattr(parent, attr)
    new = nn.Linear(old.in_features, num_classes)
    setattr(parent, attr, new)
    return new


class Body(nn.Module):
    """The network without its classifier: images ``(N, 3, H, W)`` -> pooled features ``(N, F)``.

    Shares parameters with the model it wraps (no copy): F = 1280 for
    MobileNetV2 and EfficientNet-Lite0, 512 for ResNet-18, 2048 for ResNet-50.
    The pooling is the backbone table's ``features`` for that architecture.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def dim(self) -> int:
        parent, attr = _head_slot(self.model)
        return getattr(parent, attr).in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _entry(self.model).features(self.model, x)


# --------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocess:
    """Turn images into what the pretrained weights expect: ``(N, 3, size, size)`` float32.

    Steps: scale uint8 to [0, 1]; grey (one channel) -> three identical RGB
    channels; resize the shorter side to ``resize`` (default ``size``) and
    centre-crop ``size`` x ``size``; subtract ImageNet's per-channel mean and
    divide by its std (``normalize=False`` skips this, to show what it is worth).
    ``Preprocess.imagenet()`` is torchvision's evaluation transform (256 -> 224).
    """

    size: int = 96
    resize: int | None = None
    normalize: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 16:
            raise ValueError(f"Preprocess.size must be an int >= 16 (pixels), got {self.size!r}")
        if self.resize is not None and self.resize < self.size:
            raise ValueError(f"Preprocess.resize ({self.resize}) must be >= size ({self.size}) or None")

    @classmethod
    def for_backbone(cls, name: str, **kw: Any) -> "Preprocess":
        """The input statistics the backbone ``name``'s weights were trained with (its table entry)."""
        entry = backbones.by_name(name)
        return cls(**{"mean": entry.mean, "std": entry.std, **kw})

    @classmethod
    def imagenet(cls, **kw: Any) -> "Preprocess":
        """torchvision's ImageNet evaluation transform: shorter side 256, centre crop 224."""
        return cls(**{"size": 224, "resize": 256, **kw})

    def key(self) -> str:
        """A stable string of every setting (part of the feature-cache key)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def __call__(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``images``: (N, H, W) or (N, H, W, C) uint8/float arrays, (N, C, H, W) tensors, or one
        (H, W[, C]) image. Returns ``(N, 3, size, size)`` float32 (channels_last memory)."""
        x = to_tensor(images)
        n, c, h, w = x.shape
        if c == 1:
            x = x.expand(n, 3, h, w)
        elif c == 4:
            x = x[:, :3]
        elif c != 3:
            raise ValueError(f"expected 1 (grey), 3 (RGB) or 4 (RGBA) channels, got {c}")
        short = self.resize or self.size
        if (h, w) != (self.size, self.size):
            nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
            # antialias when shrinking (big photos), plain bilinear when enlarging (28 px clothes)
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=nh < h)
            top, left = (nh - self.size) // 2, (nw - self.size) // 2
            x = x[:, :, top:top + self.size, left:left + self.size]
        if self.normalize:
            mean = torch.tensor(self.mean, dtype=x.dtype).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype).view(1, 3, 1, 1)
            x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last)


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Images as float32 ``(N, C, H, W)`` in [0, 1]: uint8 is divided by 255; numpy arrays
    are (N, H, W) or (N, H, W, C) (or one (H, W[, C]) image); tensors are already NCHW."""
    if isinstance(images, torch.Tensor):
        x = images
        if x.dim() == 3:
            x = x.unsqueeze(0)
    else:
        a = np.asarray(images)
        if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] > 4):
            a = a[None]                          # one image
        if a.ndim == 3:
            a = a[..., None]                     # (N, H, W) grey
        if a.ndim != 4:
            raise ValueError(f"expected images shaped (N, H, W) or (N, H, W, C), got {a.shape}")
        x = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


class ImageDataset(torch.utils.data.Dataset):
    """``(image, label)`` pairs preprocessed on the fly: image ``(3, size, size)`` float32, label int64.

    ``images`` is (N, H, W[, C]) uint8 (e.g. Fashion-MNIST's (N, 28, 28)).
    Kept small in memory: images stay uint8 until a batch asks for them.
    ``flip=True`` mirrors images left-right at random (a cheap augmentation).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | Sequence[int], preprocess: Preprocess,
                 *, flip: bool = False):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels; they must pair up")
        self.images = images
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.preprocess = preprocess
        self.flip = flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocess(self.images[i:i + 1])[0]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.labels[i]


class RawPixels(torch.utils.data.Dataset):
    """Baseline input: ``(1, H, W)`` float32 pixels in [0, 1] at the native size (no ImageNet anything)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | Sequence[int]):
        self.x = to_tensor(images)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.labels[i]


# --------------------------------------------------------------------------- what the network knows
@torch.inference_mode()
def top5(model: nn.Module, image: np.ndarray, *, k: int = 5, preprocess: Preprocess | None = None) -> list[tuple[str, float]]:
    """The ``k`` most likely ImageNet classes of one photo ``(H, W, 3)`` uint8: [(name, probability), ...]."""
    preprocess = preprocess or Preprocess.imagenet()
    model.eval()
    device = next(model.parameters()).device
    probs = model(preprocess(image).to(device)).float().softmax(-1)[0].cpu()
    p, idx = probs.topk(k)
    names = imagenet_classes()
    return [(names[i], float(q)) for q, i in zip(p.tolist(), idx.tolist())]


def first_layer_filters(model: nn.Module) -> np.ndarray:
    """The first convolution's kernels as RGB images ``(out_channels, kh, kw, 3)`` scaled to [0, 1]
    each (so colour and orientation are visible)."""
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    w = conv.weight.detach().float().cpu()
    if w.shape[1] != 3:
        raise ValueError(f"the first convolution has {w.shape[1]} input channels; expected RGB (3)")
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    return ((w - lo) / (hi - lo + 1e-8)).permute(0, 2, 3, 1).numpy()


@torch.inference_mode()
def feature_maps(model: nn.Module, image: np.ndarray, group: str = "stem", *,
                 preprocess: Preprocess | None = None, n: int = 8) -> np.ndarray:
    """Activations after layer group ``group`` for one image: the ``n`` most active channels,
    ``(n, h, w)`` float32 (strongest first). Shows what early vs late layers respond to."""
    preprocess = preprocess or Preprocess.imagenet()
    groups = surgery.layer_groups(model)
    names = [g.name for g in groups]
    if group not in names[:-1]:
        raise ValueError(f"unknown body group {group!r}; choose one of {names[:-1]}")
    captured: dict[str, torch.Tensor] = {}
    last = groups[names.index(group)].modules[-1]
    handle = last.register_forward_hook(lambda m, i, o: captured.__setitem__("out", o))
    try:
        model.eval()
        model(preprocess(image).to(next(model.parameters()).device))
    finally:
        handle.remove()
    fm = captured["out"][0].float().cpu()
    order = fm.mean(dim=(1, 2)).argsort(descending=True)[:n]
    return fm[order].numpy()


# --------------------------------------------------------------------------- features and their cache
def fingerprint(obj: Any) -> str:
    """A short sha256 of arrays, tensors, state dicts (name + dtype + shape + bytes) or strings."""
    h = hashlib.sha256()

    def feed(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous().reshape(-1)
            h.update(f"{t.dtype}{tuple(o.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, np.ndarray):
            a = np.ascontiguousarray(o)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        elif isinstance(o, dict):
            for k in sorted(o):
                h.update(str(k).encode())
                feed(o[k])
        else:
            h.update(str(o).encode())

    feed(obj)
    return h.hexdigest()[:20]


def cache_dir() -> Path:
    """``$TLKIT_CACHE/features`` (default ``~/.cache/tlkit/features``), the user's writable cache; never
    the working directory, nor ``$TLKIT_HOME`` (a class's shared asset folder may be read-only)."""
    from . import assets

    return assets.cache_home() / "features"


def cache_key(model: nn.Module, images: np.ndarray, preprocess: Preprocess, compute: str = "cpu-fp32") -> str:
    """What the cached features depend on: architecture, weights, images, preprocessing, and how
    they were computed (``compute``: GPU features in bf16 differ slightly from CPU fp32 ones)."""
    body_state = {k: v for k, v in Body(model).state_dict().items()}
    parts = {"version": _CACHE_VERSION, "arch": type(model).__name__, "weights": fingerprint(body_state),
             "data": fingerprint(np.asarray(images)), "preprocess": preprocess.key(), "compute": compute}
    return fingerprint(json.dumps(parts, sort_keys=True))


@dataclass
class FeatureSet:
    """Extracted features ``X (N, F)`` float32 on CPU, where they are cached and how they were got."""

    X: torch.Tensor
    path: Path | None
    from_cache: bool
    seconds: float

    @property
    def images_per_s(self) -> float:
        return len(self.X) / self.seconds if self.seconds > 0 else float("inf")


@torch.inference_mode()
def embed(model: nn.Module, images: np.ndarray, preprocess: Preprocess, *, batch_size: int = 32,
          device: str | torch.device | None = None, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Run the frozen body over ``images`` in batches: ``(N, F)`` float32 on CPU (no cache).

    Under ``inference_mode`` (no autograd bookkeeping) and in eval mode, so
    BatchNorm uses its ImageNet running statistics. Batches of 32 keep the
    activations small (~50 MB at 96 px; 64 costs ~150 MB more at the peak).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    body = Body(model).eval().to(device)
    precision = _train.pick_precision(device)
    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i:i + batch_size]).to(device)
        with _train.autocast(device, precision):
            out.append(body(x).float().cpu())
        if progress is not None:
            progress(min(i + batch_size, len(images)), len(images))
    return torch.cat(out) if out else torch.empty(0, Body(model).dim)


def extract_features(model: nn.Module, images: np.ndarray, preprocess: Preprocess, *, batch_size: int = 32,
                     cache: bool = True, directory: str | os.PathLike | None = None,
                     device: str | torch.device | None = None) -> FeatureSet:
    """Features of ``images`` from the frozen body, computed once and then read from disk.

    The cache file name is ``cache_key(model, images, preprocess)``: change the
    weights, the images or any preprocessing setting (size, normalisation) and
    the features are recomputed. Files are written atomically (temp file +
    rename) so an interrupted run never leaves a half-written cache.
    """
    t0 = time.perf_counter()
    path = None
    if cache:
        dev = torch.device(device) if device is not None else next(model.parameters()).device
        compute = f"{dev.type}-{_train.pick_precision(dev)}"
        d = Path(directory) if directory is not None else cache_dir()
        path = d / f"{type(model).__name__.lower()}-{cache_key(model, images, preprocess, compute)}.pt"
        if path.exists():
            try:
                X = torch.load(path, map_location="cpu", weights_only=True)
                if X.shape[0] == len(images):
                    return FeatureSet(X, path, True, time.perf_counter() - t0)
            except Exception:  # noqa: BLE001 - a corrupt cache file is recomputed, not fatal
                pass
    X = embed(model, images, preprocess, batch_size=batch_size, device=device)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(X, tmp)
        os.replace(tmp, path)
    return FeatureSet(X, path, False, time.perf_counter() - t0)


# --------------------------------------------------------------------------- heads and baselines
class Standardize(nn.Module):
    """``(x - mean) / std`` with statistics fixed from training data (a buffer, not trained)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float().clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - self.mean) / self.std


def linear_head(X: torch.Tensor, num_classes: int) -> nn.Sequential:
    """Standardise (statistics of ``X (N, F)``) then one linear layer ``F -> num_classes``."""
    X = X.flatten(1).float()
    return nn.Sequential(Standardize(X.mean(0), X.std(0)), nn.Linear(X.shape[1], num_classes))


def train_linear(X: torch.Tensor, y: torch.Tensor | np.ndarray, X_valid: torch.Tensor | None = None,
                 y_valid: torch.Tensor | np.ndarray | None = None, *, num_classes: int | None = None,
                 epochs: int = 30, lr: float = 1e-3, weight_decay: float = 1e-2, batch_size: int = 64,
                 seed: int = 0, callbacks: Sequence[_train.Callback] = ()) -> tuple[nn.Module, _train.State]:
    """Logistic regression on fixed inputs ``X (N, F)`` (cached features or raw pixels) with ``fit``.

    Takes seconds on features because the body never runs: one epoch is one
    matrix multiply per batch. Returns (head, State); ``head(X)`` gives logits.
    """
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    X = X.flatten(1).float()
    num_classes = num_classes or int(y.max()) + 1
    torch.manual_seed(seed)
    head = linear_head(X, num_classes)
    train_dl = _train.loader(torch.utils.data.TensorDataset(X, y), batch_size, shuffle=True, seed=seed)
    valid_dl = None
    if X_valid is not None and y_valid is not None:
        valid_dl = _train.loader(torch.utils.data.TensorDataset(
            X_valid.flatten(1).float(), torch.as_tensor(np.asarray(y_valid), dtype=torch.long)), 1024)
    cfg = TrainConfig(epochs=epochs, lr=lr, weight_decay=weight_decay, batch_size=batch_size, seed=seed,
                      device="cpu", schedule="warmup_cosine", warmup=0.05)
    state = _train.fit(head, train_dl, valid_dl, cfg, callbacks=callbacks)
    return head, state


class SmallCNN(nn.Module):
    """A fair from-scratch baseline for 28 x 28 grey images: two conv blocks + linear head (~60k parameters).

    Input ``(N, 1, 28, 28)`` raw pixels in [0, 1]; layer groups: stem, block, head.
    """

    def __init__(self, num_classes: int = 10, width: int = 32, channels: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.block = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
                                   nn.MaxPool2d(2), nn.Conv2d(2 * width, 2 * width, 3, padding=1),
                                   nn.BatchNorm2d(2 * width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        return [("stem", [self.stem]), ("block", [self.block]), ("head", [self.head])]


# --------------------------------------------------------------------------- fine-tuning
def recalibrate_bn(model: nn.Module, dl, device: str | torch.device | None = None) -> None:
    """Re-estimate every BatchNorm layer's running mean and variance on the batches of ``dl``.

    After a short run with BatchNorm training (from scratch, or fine-tuning everything), the
    running statistics used in eval mode are an exponential average dominated by the first,
    very different, steps: eval-mode predictions can collapse to one class. One pass over the
    training data with a cumulative average (``torch.optim.swa_utils.update_bn``) fixes them.
    Weights are not changed; the model's train/eval mode is restored.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    with torch.no_grad():
        torch.optim.swa_utils.update_bn(dl, model, device=device)   # takes x from (x, y) batches


# --------------------------------------------------------------------------- one run of the budget sweep
METHODS = {
    "pixels+logreg": "logistic regression on raw 28x28 pixels (baseline)",
    "small CNN (scratch)": "a ~60k-parameter CNN trained from scratch on 28x28 pixels (baseline)",
    "MobileNetV2 (scratch)": "the same architecture, random init, every layer trained",
    "features+logreg": "frozen ImageNet MobileNetV2 features (cached) + logistic regression",
    "fine-tune last N": "ImageNet MobileNetV2, last N groups trained, frozen BatchNorm in eval mode",
    "fine-tune all": "ImageNet MobileNetV2, every layer trained, body LR x multiplier",
}


@dataclass(frozen=True)
class SweepSettings:
    """Sizes of one budget sweep (the chapter picks them per preset).

    Training length scales with the budget, by one rule for every network the sweep trains
    (MobileNetV2 from scratch, fine-tune last N, fine-tune all, the small CNN): ``epochs``
    passes over the budget's images, and at least ``min_steps`` optimizer steps so the
    smallest budgets still train (``steps_for``). A fixed number of steps for every budget
    would be a fraction of one epoch at large budgets: fine-tuning then got *worse* with more
    labels. The LR schedule (warmup, then cosine decay to zero) spans the whole run.
    """

    size: int = 64                # image side for the CNN runs (pixels): fine-tuning costs ~3 forwards a step
    feature_size: int = 96        # image side for frozen features (computed once, so it can be larger)
    epochs: float = 6.0           # passes over the budget's images per network run
    min_steps: int = 60           # ... but at least this many optimizer steps (tiny budgets)
    batch_size: int = 32
    lr: float = 1e-3              # head LR (and scratch LR)
    backbone_lr_mult: float = 0.1
    last_n: int = 3               # groups trained by "fine-tune last N" (head, top, block4)
    linear_epochs: int = 40
    small_cnn_lr: float = 3e-3
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, float)) or not self.epochs > 0:
            raise ValueError(f"SweepSettings.epochs must be a number > 0 (passes over the budget's images), "
                             f"got {self.epochs!r}; e.g. epochs=6")
        for name in ("min_steps", "batch_size", "size", "feature_size", "linear_epochs", "last_n"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SweepSettings.{name} must be a whole number >= 1, got {v!r}")

    def steps_for(self, n_images: int) -> int:
        """Optimizer steps of one network run on ``n_images`` training images:
        ``max(min_steps, ceil(epochs * n_images / batch_size))`` (batches of ``min(batch_size, n_images)``)."""
        batch = min(self.batch_size, n_images)
        return max(self.min_steps, math.ceil(self.epochs * n_images / batch))


def cnn_recipes(settings: SweepSettings = SweepSettings()) -> dict[str, recipes.Recipe]:
    """The sweep's CNN methods as a table ``name -> Recipe`` (what is frozen, which LR where):
    from scratch, the last ``settings.last_n`` groups, every group with the body at
    ``settings.backbone_lr_mult`` times the head's LR. A chapter may pass its own table."""
    return {"MobileNetV2 (scratch)": recipes.Recipe(recipes.scratch, pretrained=False),
            "fine-tune last N": recipes.Recipe(recipes.last_n, {"n": settings.last_n}),
            "fine-tune all": recipes.Recipe(recipes.all_layers, {"body_lr_mult": settings.backbone_lr_mult})}


BASELINES = ("pixels+logreg", "small CNN (scratch)", "features+logreg")


class BudgetSweep:
    """Callable for ``tlkit.sweep.sweep``: ``run(method=, budget=, seed=) -> {"acc", "bacc", "train_s", "steps"}``.

    Holds one labelled pool (``X_pool`` uint8 images, ``y_pool``) and one test
    set. A run draws ``budget`` images per class from the pool with
    ``tlkit.data.budget_indices(seed=seed)`` (so every method sees the same
    images for a given seed), trains, and scores on the test set. Features for
    ``features+logreg`` are extracted once for pool and test (cached on disk).
    Methods are the ``BASELINES`` and the names of ``recipes`` (default ``cnn_recipes(settings)``):
    each recipe builds the backbone (pretrained or not, as the recipe says) with a new head
    and decides what is frozen and which LR each group gets.
    """

    def __init__(self, X_pool: np.ndarray, y_pool: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                 settings: SweepSettings = SweepSettings(), *, num_classes: int = 10, backbone: str = "mobilenet_v2",
                 recipes: Mapping[str, recipes.Recipe] | None = None):
        self.recipes = dict(recipes) if recipes is not None else cnn_recipes(settings)
        clash = sorted(set(self.recipes) & set(BASELINES))
        if clash:
            raise ValueError(f"recipe names {clash} are taken by the baselines; rename them")
        self.X_pool, self.y_pool = X_pool, np.asarray(y_pool)
        self.X_test, self.y_test = X_test, np.asarray(y_test)
        self.s = settings
        self.num_classes = num_classes
        self.backbone = backbone
        self.preprocess = Preprocess.for_backbone(backbone, size=settings.size)
        self.feature_preprocess = Preprocess.for_backbone(backbone, size=settings.feature_size)
        self._features: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def methods(self) -> list[str]:
        return list(BASELINES) + list(self.recipes)

    def features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(pool features, test features) of the frozen ImageNet body, extracted once (disk cache)."""
        if self._features is None:
            model = build(self.backbone, pretrained=True)
            self._features = (extract_features(model, self.X_pool, self.feature_preprocess).X,
                              extract_features(model, self.X_test, self.feature_preprocess).X)
        return self._features

    def __call__(self, method: str, budget: int | None, seed: int) -> dict[str, float]:
        from . import data, metrics

        idx = data.budget_indices(self.y_pool, budget, seed=seed)
        y = self.y_pool[idx]
        t0 = time.perf_counter()
        if method in ("features+logreg", "pixels+logreg"):
            if method == "features+logreg":
                F_pool, F_test = self.features()
                X, Xt = F_pool[idx], F_test
            else:
                X, Xt = to_tensor(self.X_pool[idx]).flatten(1), to_tensor(self.X_test).flatten(1)
            head, state = train_linear(X, y, num_classes=self.num_classes, epochs=self.s.linear_epochs, seed=seed,
                                       batch_size=min(64, len(idx)))
            steps = state.step
            with torch.inference_mode():
                logits = head(Xt)
        elif method == "small CNN (scratch)":
            torch.manual_seed(seed)
            model = SmallCNN(self.num_classes)
            steps = self.s.steps_for(len(idx))
            cfg = TrainConfig(epochs=10**6, max_steps=steps, lr=self.s.small_cnn_lr, batch_size=self.s.batch_size,
                              seed=seed, device=self.s.device, schedule="warmup_cosine", warmup=0.05, train_bn=True,
                              weight_decay=1e-2)
            logits = self._train_and_predict(model, RawPixels(self.X_pool[idx], y), RawPixels(self.X_test, self.y_test), cfg)
        elif method in self.recipes:
            recipe = self.recipes[method]
            model = classifier(self.backbone, self.num_classes, pretrained=recipe.pretrained, seed=seed)
            steps = self.s.steps_for(len(idx))
            base = TrainConfig(epochs=10**6, max_steps=steps, lr=self.s.lr, batch_size=self.s.batch_size,
                               seed=seed, device=self.s.device, schedule="warmup_cosine", warmup=0.1,
                               weight_decay=1e-2)
            cfg = recipe(surgery.layer_groups(model), base=base)
            logits = self._train_and_predict(model, ImageDataset(self.X_pool[idx], y, self.preprocess, flip=True),
                                             ImageDataset(self.X_test, self.y_test, self.preprocess), cfg)
        else:
            raise ValueError(f"unknown method {method!r}; choose one of {self.methods}")
        yt = torch.as_tensor(self.y_test)
        return {"acc": metrics.accuracy(logits, yt), "bacc": metrics.balanced_accuracy(logits, yt),
                "train_s": time.perf_counter() - t0, "steps": float(steps)}

    def _train_and_predict(self, model: nn.Module, train_ds, test_ds, cfg: TrainConfig) -> torch.Tensor:
        train_dl = _train.loader(train_ds, min(cfg.batch_size, len(train_ds)), shuffle=True, seed=cfg.seed or 0,
                                 drop_last=len(train_ds) > cfg.batch_size)
        state = _train.fit(model, train_dl, None, cfg)
        if state.status != "finished":
            raise RuntimeError(f"training ended with status {state.status!r}: {state.message}")
        if cfg.train_bn:   # a few dozen steps leave BatchNorm's running statistics far from the data's
            recalibrate_bn(model, train_dl, state.device)
        logits, _ = _train.predict(model, _train.loader(test_ds, 64), device=state.device)
        return logits


# --------------------------------------------------------------------------- throughput helpers
def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``x`` counted by ``torch.utils.flop_counter`` (a multiply-add = 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


def pca_2d(X: torch.Tensor | np.ndarray) -> np.ndarray:
    """Project ``X (N, F)`` onto its first two principal components: ``(N, 2)`` float32."""
    A = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    A = A - A.mean(0)
    _, _, V = torch.pca_lowrank(A, q=2, center=False, niter=4)
    return (A @ V[:, :2]).numpy()


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "BACKBONES", "imagenet_classes", "load_strict", "build", "classifier",
           "replace_head", "Body", "Preprocess", "to_tensor", "ImageDataset", "RawPixels", "top5",
           "first_layer_filters", "feature_maps", "fingerprint", "cache_dir", "cache_key", "FeatureSet", "embed",
           "extract_features", "Standardize", "linear_head", "train_linear", "SmallCNN", "cnn_recipes", "BASELINES",
           "recalibrate_bn",
           "METHODS", "SweepSettings", "BudgetSweep", "forward_flops", "pca_2d"]
