"""tlkit.data: sentiment domains, seeded stratified splits, label budgets, digits (incl. the
MNIST-M-style construction), Fashion-MNIST (Debian files and the download path from 127.0.0.1)."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tlkit import assets, data
from tlkit.assets import Asset, AssetError, Download


@functools.lru_cache(maxsize=None)
def _sentiment(domain: str, neutral: float = 0.5) -> pd.DataFrame:
    return data.load_sentiment(domain, neutral=neutral)


@functools.lru_cache(maxsize=None)
def _digits(name: str, seed: int | None = None):
    return data.load_digits(name, seed=seed)


# ---------------------------------------------------------------- sentiment

@pytest.mark.parametrize("domain, rows", [("movies", 10_605), ("amazon", 3_708), ("nyt", 5_190), ("tweets", 4_200)])
def test_vader_files_parse_completely(domain, rows):
    raw = data._read_vader(assets.locate("vader-sentiment") / data.VADER_FILES[domain], domain)
    assert len(raw) == rows  # the counts Hutto & Gilbert report
    assert raw["text"].str.len().min() > 0 and raw["score"].between(-4, 4).all()


@pytest.mark.parametrize("domain", ["movies", "amazon", "nyt", "tweets"])
def test_load_sentiment_labels_follow_the_mean_rating(domain):
    df = _sentiment(domain)
    assert list(df.columns[:4]) == ["text", "label", "score", "domain"]
    assert df["label"].dtype == np.int64 and set(df["label"]) == {0, 1}
    assert (df["score"].abs() >= 0.5).all()
    assert ((df["score"] > 0) == (df["label"] == 1)).all()
    assert (df["domain"] == domain).all()
    everything = _sentiment(domain, 0.0)
    assert len(everything) > len(df)  # near-neutral snippets were dropped, nothing else
    assert len(everything) - len(df) == ((everything["score"].abs() < 0.5)).sum()


def test_load_sentiment_unknown_domain_and_bad_threshold():
    with pytest.raises(ValueError, match="movies, amazon, nyt, tweets, sst2, imdb, amazon_polarity"):
        data.load_sentiment("yelp")
    with pytest.raises(ValueError, match="neutral must be >= 0"):
        data.load_sentiment("movies", neutral=-1)


def test_online_sentiment_offline_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TLKIT_HOME", str(tmp_path))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(AssetError, match="(?s)sst2.*Hugging Face.*tlkit assets install sst2"):
        data.load_sentiment("sst2")


# ---------------------------------------------------------------- split / budget

def test_split_is_stratified_disjoint_and_deterministic():
    df = _sentiment("amazon")
    sp = data.split(df, valid=0.1, test=0.2, seed=3)
    ids = [set(part["id"]) for part in sp]
    assert sum(map(len, ids)) == len(df) and set.union(*ids) == set(df["id"])
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert abs(len(sp.test) / len(df) - 0.2) < 0.01 and abs(len(sp.valid) / len(df) - 0.1) < 0.01
    rate = df["label"].mean()
    for part in sp:
        assert abs(part["label"].mean() - rate) < 0.01
        assert list(part.index) == list(range(len(part)))
    again = data.split(df, valid=0.1, test=0.2, seed=3)
    assert all(a.equals(b) for a, b in zip(sp, again))
    other = data.split(df, valid=0.1, test=0.2, seed=4)
    assert not sp.test["id"].equals(other.test["id"])
    with pytest.raises(ValueError, match="valid \\+ test < 1"):
        data.split(df, valid=0.5, test=0.5)


def test_budget_exact_nested_deterministic_and_too_large():
    train = data.split(_sentiment("tweets"), seed=0).train
    b25 = data.budget(train, 25, seed=1)
    assert b25["label"].value_counts().to_dict() == {0: 25, 1: 25}
    assert b25.equals(data.budget(train, 25, seed=1))
    b100 = data.budget(train, 100, seed=1)
    assert set(b25["id"]) <= set(b100["id"])  # learning curves add data, never redraw it
    assert set(b25["id"]) != set(data.budget(train, 25, seed=2)["id"])
    assert len(data.budget(train, None)) == len(train)
    n_neg = int((train["label"] == 0).sum())
    with pytest.raises(ValueError, match=f"larger than the data.*use at most {n_neg} per class"):
        data.budget(train, n_neg + 1)
    with pytest.raises(ValueError, match="positive integer"):
        data.budget(train, 0)


def test_budget_indices_and_split_arrays_on_arrays():
    y = np.repeat(np.arange(3), [50, 30, 20])
    idx = data.budget_indices(y, 10, seed=0)
    assert np.bincount(y[idx]).tolist() == [10, 10, 10] and np.all(np.diff(idx) > 0)
    X = np.arange(len(y) * 2).reshape(-1, 2)
    Xtr, ytr, Xte, yte = data.split_arrays(X, y, test=0.2, seed=0)
    assert np.bincount(yte).tolist() == [10, 6, 4] and len(Xtr) == 80
    assert set(Xtr[:, 0]) | set(Xte[:, 0]) == set(X[:, 0]) and not set(Xtr[:, 0]) & set(Xte[:, 0])
    assert np.array_equal(Xte, data.split_arrays(X, y, test=0.2, seed=0)[2])
    with pytest.raises(ValueError, match="class"):
        data.budget_indices(y, 21)


# ---------------------------------------------------------------- digits and photos

def test_digits_offline_sets():
    for name, n in (("mnist", 5000), ("uci", 1797)):
        X, y = _digits(name)
        assert X.shape == (n, 1, 28, 28) and X.dtype == np.float32 and y.dtype == np.int64
        assert 0 <= X.min() and X.max() <= 1 and set(np.unique(y)) == set(range(10))
        # white digit on a black background, centred like MNIST: the border is (almost) empty
        assert X[:, :, :2].mean() < 0.02 and X[:, :, 10:18, 10:18].mean() > 0.2
    X, _ = data.load_digits("uci", size=32, rgb=True)
    assert X.shape == (1797, 3, 32, 32) and np.array_equal(X[:, 0], X[:, 2])


def test_mnist_m_is_a_deterministic_colour_blend():
    X, y = _digits("mnist_m", 0)
    Xs, ys = _digits("mnist")
    assert X.shape == (5000, 3, 28, 28) and np.array_equal(y, ys)
    assert 0 <= X.min() and X.max() <= 1
    assert np.array_equal(X, _digits("mnist_m", 0)[0]) and np.array_equal(X, data.load_digits("mnist_m")[0])
    assert not np.array_equal(X, data.load_digits("mnist_m", seed=1)[0])
    # colour: channels differ; and blending inverted the photo under the strokes (|patch - 1|),
    # so ink pixels are not simply brighter than the background as in MNIST
    assert np.abs(X[:, 0] - X[:, 1]).mean() > 0.02
    ink = Xs[:, 0] > 0.9
    assert abs(X.mean(1)[ink].mean() - X.mean(1)[~ink].mean()) < 0.3
    assert data.load_digits("mnist_m", size=32)[0].shape == (5000, 3, 32, 32)  # colour by default
    grey = data.load_digits("mnist_m", size=32, rgb=False)[0]  # asked for grey: honoured, not ignored
    assert grey.shape == (5000, 1, 32, 32) and np.allclose(grey[:, 0], data.load_digits("mnist_m", size=32)[0].mean(1))


def test_unknown_digit_set():
    with pytest.raises(ValueError, match="mnist, uci, mnist_m, mnist_full, usps, svhn"):
        data.load_digits("emnist")


def test_sample_photos():
    photos = data.sample_photos()
    assert {"astronaut", "coffee", "chelsea", "china", "flower"} <= set(photos)
    for img in photos.values():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 256


def test_resize_preserves_constant_images_and_mean():
    X = np.full((2, 1, 8, 8), 0.5, np.float32)
    for size in (5, 20, 96):
        out = data._resize(X, size)
        assert out.shape == (2, 1, size, size) and np.allclose(out, 0.5)


# ---------------------------------------------------------------- Fashion-MNIST

def test_fashion_mnist_from_debian_files():
    X, y = data.load_fashion_mnist("test")
    assert X.shape == (10_000, 28, 28) and X.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [1000] * 10 and len(data.FASHION_CLASSES) == 10
    X[0, 0, 0] = 7  # writable: callers may normalise in place
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_fashion_mnist("valid")


def test_fashion_mnist_download_path_from_localhost(tmp_path, monkeypatch):
    """Without the Debian package the loader downloads the four files (sha256-checked) into the
    cache; here they are served from 127.0.0.1 out of the real Debian files."""
    src_dir = Path(assets.locate("fashion-mnist"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(src_dir))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        real = assets.REGISTRY["fashion-mnist"]
        files = tuple((url + name, name, sha) for name, sha in real.checks)
        monkeypatch.setitem(assets.REGISTRY, "fashion-mnist", Asset(
            real.name, real.kind, real.title, real.size_mb, real.license, real.chapters,
            (Download("fashion-mnist", files),), checks=real.checks))
        monkeypatch.setenv("TLKIT_HOME", str(tmp_path / "home"))  # read-only asset folder: nothing there
        monkeypatch.setenv("TLKIT_CACHE", str(tmp_path))            # downloads land in the user's cache
        monkeypatch.delenv("TLKIT_OFFLINE", raising=False)
        monkeypatch.setattr(assets, "locate", functools.partial(assets.locate, progress=False))
        X, y = data.load_fashion_mnist("test")
        assert X.shape == (10_000, 28, 28) and np.array_equal(y, data._read_idx(src_dir / "t10k-labels-idx1-ubyte.gz"))
        cached = sorted(p.name for p in (tmp_path / "fashion-mnist").iterdir())
        assert cached == sorted(name for name, _ in real.checks)  # the four files, no temp leftovers
        monkeypatch.setenv("TLKIT_OFFLINE", "1")  # now served from the cache
        assert data.load_fashion_mnist("test")[0].shape == (10_000, 28, 28)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------- online code paths, fed locally

def test_online_digits_code_path_reads_a_torchvision_root(tmp_path, monkeypatch):
    """``load_digits("mnist_full")`` reads torchvision's MNIST layout; here that layout is filled
    with the (same-format) Fashion-MNIST IDX files so the real code path runs without a download."""
    import gzip
    import shutil

    raw = tmp_path / "torchvision" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    src = Path(assets.locate("fashion-mnist"))
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        with gzip.open(src / f"{name}.gz", "rb") as fin, open(raw / name, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    monkeypatch.setenv("TLKIT_HOME", str(tmp_path))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")  # found in the cache: no download attempted
    X, y = data.load_digits("mnist_full", split="test", size=32, rgb=True)
    Xf, yf = data.load_fashion_mnist("test")
    assert X.shape == (10_000, 3, 32, 32) and np.array_equal(y, yf)
    X28, _ = data.load_digits("mnist_full", split="test")
    assert np.allclose(X28[:, 0] * 255, Xf)


def test_online_digits_offline_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TLKIT_HOME", str(tmp_path))
    monkeypatch.setenv("TLKIT_OFFLINE", "1")
    with pytest.raises(AssetError, match="(?s)'svhn'.*torchvision.datasets.SVHN.*tlkit assets install svhn"):
        data.load_digits("svhn")


def test_online_sentiment_code_path_reads_hub_parquet_files(tmp_path, monkeypatch):
    """The SST-2 reader takes the Hugging Face parquet layout (data/<split>-0000x-of-0000n.parquet)."""
    (tmp_path / "data").mkdir()
    pd.DataFrame({"idx": [0, 1, 2], "sentence": [" good film ", "bad film", "fine"], "label": [1, 0, 1]}) \
        .to_parquet(tmp_path / "data" / "validation-00000-of-00001.parquet")
    pd.DataFrame({"idx": [0], "sentence": ["x"], "label": [-1]}) \
        .to_parquet(tmp_path / "data" / "test-00000-of-00001.parquet")
    monkeypatch.setattr(assets, "locate", lambda name, **kw: tmp_path if name == "sst2" else pytest.fail(name))
    df = data.load_sentiment("sst2", split="test")  # SST-2's test labels are hidden: "test" = validation
    assert list(df.columns) == ["text", "label", "score", "domain", "id"]
    assert df["text"].tolist() == ["good film", "bad film", "fine"] and df["label"].tolist() == [1, 0, 1]
    assert df["score"].tolist() == [1.0, -1.0, 1.0]


def test_mnist_rows_are_mixed_and_aligned_with_mnist_m():
    X, y = _digits("mnist")
    assert len(set(y[:50].tolist())) >= 8  # not sorted by class: a prefix is a mixed sample
    Xm, ym = _digits("mnist_m", 0)
    assert np.array_equal(y, ym)
    # row i of mnist_m is digit i of mnist: under digit i's strokes the colour jumps away from the
    # surrounding patch, much more than under the strokes of another digit
    def contrast(digits):
        ink, grey = digits[:, 0] > 0.5, Xm.mean(1)
        return np.mean([abs(grey[i][ink[i]].mean() - grey[i][~ink[i]].mean()) for i in range(0, len(Xm), 10)])

    assert contrast(X) > 2 * contrast(np.roll(X, 1, axis=0))
