"""Chapter 1: pretrained word vectors -> vocabulary -> ``nn.Embedding`` -> a small classifier.

The pieces, in the order the chapter uses them:

    vocab = build_vocab(texts)                      # every word of ALL training text, labelled or not
    report = oov_report(vocab, kv)                  # how much of the text the vectors cover
    emb = init_embedding(vocab, kv, seed=0)         # row i == kv[vocab.itos[i]] (checked)
    model = MeanPoolClassifier(emb)                 # groups: embedding, head
    task = SentimentTask.build(train_df, {"movies": test_df}, kv)
    task.run(method="frozen", budget=25, seed=0)    # one (strategy, budget, seed) run, for sweep()

then ``moved_most`` and ``compare_neighbours`` show what fine-tuning did to the vectors.

Why the vocabulary comes from all training text: a word seen only in
unlabelled reviews still gets its pretrained vector, and a frozen model can use
it at test time. Built from the few labelled snippets alone, most test words
would be out of vocabulary and the benefit of pretraining roughly halves.

No matplotlib or widgets here, and no gensim import: any object with gensim's
``key_to_index``, ``vectors`` and ``vector_size`` works as ``kv``.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import recipes
from .config import TrainConfig

PAD, UNK = "<pad>", "<unk>"
# The chapter's three strategies as recipes over MeanPoolClassifier's groups (embedding, head):
# "random" and "fine-tuned" train both, "frozen" only the head; "random" starts without GloVe.
STRATEGY_RECIPES = {
    "random": recipes.Recipe(recipes.all_layers, {"train_bn": False}, pretrained=False),
    "frozen": recipes.Recipe(recipes.head_only),
    "fine-tuned": recipes.Recipe(recipes.all_layers, {"train_bn": False}),
}
STRATEGIES = tuple(STRATEGY_RECIPES)

# --------------------------------------------------------------------------- tokeniser
# GloVe 6B was trained on lower-cased, Stanford-tokenised text: "don't" is "do" + "n't",
# "it's" is "it" + "'s", punctuation marks are tokens. Matching that split keeps these
# frequent pieces in vocabulary instead of turning "don't" into an unknown word.
_NT = re.compile(r"n't\b")
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|''|``|\.\.\.|--|\d+(?:[.,]\d+)+|[^\W_]+(?:-[^\W_]+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-case ``text`` and split it the way GloVe's corpus was split.

    >>> tokenize("It's not a bad film, don't miss it!")
    ['it', "'s", 'not', 'a', 'bad', 'film', ',', 'do', "n't", 'miss', 'it', '!']
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize needs a string, got {type(text).__name__}: {text!r}")
    return _TOKEN.findall(_NT.sub(" n't", text.lower()))


# --------------------------------------------------------------------------- vocabulary
@dataclass
class Vocab:
    """Index <-> word, with ``<pad>`` at 0 and ``<unk>`` at 1; ``counts`` are training-text counts."""

    itos: list[str]
    counts: Counter = field(default_factory=Counter, repr=False)
    pad_id: ClassVar[int] = 0
    unk_id: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.itos[:2] != [PAD, UNK]:
            raise ValueError(f"a Vocab starts with {[PAD, UNK]}, got {self.itos[:2]}; use build_vocab()")
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a Vocab's words must be unique")

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Vocab({len(self.itos):,} words: {', '.join(self.itos[2:8])}, ...)"

    def __contains__(self, word: str) -> bool:
        return word in self.stoi

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; words outside the vocabulary map to ``unk_id``."""
        return [self.stoi.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]


def build_vocab(texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None,
                extra: Iterable[str] = (), known: Any = None) -> Vocab:
    """Vocabulary of every token in ``texts`` seen at least ``min_count`` times, most frequent first.

    Pass ALL the text you may train on, labelled or not (the label budget only
    limits which snippets have labels, not which words the model may know).
    ``extra`` texts (e.g. the unlabelled text of other domains) add only the words
    that ``known`` (a KeyedVectors) has a vector for, with count 0: that equals
    keeping the vectors' whole vocabulary, trimmed to the words our texts use.
    """
    counts: Counter = Counter()
    n = 0
    for text in texts:
        counts.update(tokenize(text))
        n += 1
    if n == 0:
        raise ValueError("build_vocab got no texts; pass the training snippets (a list of strings)")
    words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
    if max_size is not None:
        words = words[: max(0, max_size - 2)]
    extra = list(extra)
    if extra:
        if known is None:
            raise ValueError("build_vocab(extra=...) needs known=<KeyedVectors>: only words with a "
                             "pretrained vector are added from extra texts")
        seen = set(words)
        more: Counter = Counter(t for text in extra for t in tokenize(text))
        words += [w for w, _ in sorted(more.items(), key=lambda kv: (-kv[1], kv[0]))
                  if w not in seen and w in known.key_to_index]
    return Vocab([PAD, UNK] + words, counts)


# --------------------------------------------------------------------------- coverage report
@dataclass
class OOVReport:
    """How well the pretrained vectors cover a vocabulary (types) and its text (tokens)."""

    n_types: int
    types_covered: int
    n_tokens: int
    tokens_covered: int
    missing: list[tuple[str, int]]       # most frequent words without a vector, with counts
    oov_init: str
    dim: int

    @property
    def type_coverage(self) -> float:
        return self.types_covered / self.n_types if self.n_types else float("nan")

    @property
    def token_coverage(self) -> float:
        return self.tokens_covered / self.n_tokens if self.n_tokens else float("nan")

    def summary(self) -> str:
        top = ", ".join(f"{w!r} ({c})" for w, c in self.missing[:10]) or "none"
        return (f"{self.types_covered:,} of {self.n_types:,} word types have a {self.dim}-d vector "
                f"({self.type_coverage:.1%}); they make up {self.token_coverage:.1%} of the "
                f"{self.n_tokens:,} running tokens.\nMost frequent missing words: {top}.\n"
                f"Rows of missing words: {self.oov_init}.")

    def frame(self):
        """The missing words as a DataFrame (word, count)."""
        import pandas as pd

        return pd.DataFrame(self.missing, columns=["word", "count"])

    def __str__(self) -> str:
        return self.summary()


OOV_INITS = {
    "random": "random normal with the pretrained vectors' per-dimension mean and std "
              "(same scale as real vectors; they are learned only if the embedding trains)",
    "zeros": "zeros (they add nothing to the mean-pooled vector until trained)",
}


def oov_report(vocab: Vocab, kv: Any, *, top: int = 20, oov: str = "random") -> OOVReport:
    """Token and type coverage of ``vocab``'s training text (words with a count) by the vectors ``kv``."""
    words = [w for w in vocab.itos[2:] if vocab.counts[w] > 0]
    known = [w for w in words if w in kv.key_to_index]
    known_set = set(known)
    n_tokens = sum(vocab.counts[w] for w in words)
    covered = sum(vocab.counts[w] for w in known)
    missing = sorted(((w, vocab.counts[w]) for w in words if w not in known_set), key=lambda x: (-x[1], x[0]))
    return OOVReport(len(words), len(known), n_tokens, covered, missing[:top], OOV_INITS[oov], kv.vector_size)


# --------------------------------------------------------------------------- embedding initialisation
def pretrained_rows(vocab: Vocab, kv: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix (V, D) float32, known (V,) bool)``: row i is ``kv[vocab.itos[i]]`` where the
    vectors know word i, zeros elsewhere (``<pad>`` and ``<unk>`` are never "known")."""
    dim = int(kv.vector_size)
    matrix = np.zeros((len(vocab), dim), dtype=np.float32)
    known = np.zeros(len(vocab), dtype=bool)
    idx = [(i, kv.key_to_index[w]) for i, w in enumerate(vocab.itos) if i >= 2 and w in kv.key_to_index]
    if idx:
        rows, src = map(np.asarray, zip(*idx))
        vecs = np.asarray(kv.vectors[src], dtype=np.float32)
        assert vecs.shape == (len(rows), dim), f"expected {(len(rows), dim)} vectors, got {vecs.shape}"
        matrix[rows] = vecs
        known[rows] = True
    return matrix, known


def init_embedding(vocab: Vocab, kv: Any | None = None, *, seed: int = 0, oov: str = "random",
                   scale: tuple[np.ndarray, np.ndarray] | None = None,
                   rows: tuple[np.ndarray, np.ndarray] | None = None) -> nn.Embedding:
    """An ``nn.Embedding(len(vocab), D, padding_idx=0)``.

    With ``kv``: row i is the pretrained vector of ``vocab.itos[i]`` (checked
    row by row, nanoGPT ``from_pretrained`` style); rows of words the vectors
    lack (and ``<unk>``) get ``oov`` init ("random": normal with the real vectors'
    per-dimension mean and std, or "zeros"). Without ``kv`` (the "random"
    strategy) every row is random at that same scale, pass it as ``scale=(mean,
    std)``, so the comparison is about what the vectors know, not their size.
    The ``<pad>`` row is zero and gets no gradient. ``rows`` reuses a precomputed
    ``pretrained_rows(vocab, kv)``.
    """
    if oov not in OOV_INITS:
        raise ValueError(f"oov must be one of {list(OOV_INITS)}, got {oov!r}")
    g = np.random.default_rng(seed)
    if kv is not None:
        matrix, known = rows if rows is not None else pretrained_rows(vocab, kv)
        dim = int(kv.vector_size)
        assert matrix.shape == (len(vocab), dim), f"matrix {matrix.shape} != ({len(vocab)}, {dim})"
        mean, std = scale if scale is not None else vector_scale(kv)
        matrix = matrix.copy()
        unknown = ~known
        if oov == "random":
            matrix[unknown] = g.normal(mean, std, size=(int(unknown.sum()), dim)).astype(np.float32)
        else:
            matrix[unknown] = 0.0
    else:
        if scale is None:
            raise ValueError("random initialisation needs scale=(mean, std) of the vectors it stands in for, "
                             "e.g. scale=vector_scale(kv); or pass kv to load pretrained vectors")
        mean, std = scale
        dim = len(np.atleast_1d(std))
        matrix = g.normal(mean, std, size=(len(vocab), dim)).astype(np.float32)
    matrix[vocab.pad_id] = 0.0
    emb = nn.Embedding(len(vocab), matrix.shape[1], padding_idx=vocab.pad_id)
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(matrix))
    if kv is not None:
        _check_rows(emb, vocab, kv, known)
    return emb


def _check_rows(emb: nn.Embedding, vocab: Vocab, kv: Any, known: np.ndarray) -> None:
    """Assert that every known word's row equals its vector (catches off-by-one index bugs)."""
    idx = np.flatnonzero(known)
    if len(idx) == 0:
        return
    src = np.asarray([kv.key_to_index[vocab.itos[i]] for i in idx])
    expect = torch.from_numpy(np.asarray(kv.vectors[src], dtype=np.float32))
    got = emb.weight.detach()[torch.from_numpy(idx)].cpu()
    assert got.shape == expect.shape, f"embedding rows {tuple(got.shape)} vs vectors {tuple(expect.shape)}"
    if not torch.equal(got, expect):
        bad = int(idx[(got != expect).any(1).numpy().argmax()])
        raise AssertionError(f"embedding row {bad} ({vocab.itos[bad]!r}) differs from its pretrained vector")


def vector_scale(kv: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the pretrained vectors, ``(D,)`` each (first 50k rows:
    the frequent words a classifier meets)."""
    v = np.asarray(kv.vectors[:50_000], dtype=np.float64)
    return v.mean(0).astype(np.float32), v.std(0).astype(np.float32)


# --------------------------------------------------------------------------- model
class MeanPoolClassifier(nn.Module):
    """Average the word vectors of a text, then an MLP: ``ids (B, L) -> logits (B, C)``.

    Padding (id 0) is left out of the average. Layer groups: ``embedding`` and
    ``head`` (the MLP), so ``surgery``, ``fit(cfg.frozen=("embedding",))`` and
    the panel freeze the vectors by name.
    """

    GROUPS: ClassVar[tuple[str, str]] = ("embedding", "head")

    def __init__(self, embedding: nn.Embedding, n_classes: int = 2, hidden: int = 64, dropout: float = 0.2):
        super().__init__()
        self.embedding = embedding
        d = embedding.embedding_dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, n_classes))

    def pool(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean of the non-padding word vectors: ``(B, L) -> (B, D)``."""
        pad = self.embedding.padding_idx if self.embedding.padding_idx is not None else -1
        mask = (ids != pad).unsqueeze(-1).float()                      # (B, L, 1)
        summed = (self.embedding(ids) * mask).sum(1)                   # (B, D)
        return summed / mask.sum(1).clamp_min(1.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(ids))

    def layer_groups(self) -> list[tuple[str, list[nn.Module]]]:
        return list(zip(self.GROUPS, ([self.embedding], [self.head])))


# --------------------------------------------------------------------------- data
class TextDataset(torch.utils.data.Dataset):
    """Tokenised, encoded snippets: item i is ``(ids LongTensor (L_i,), label int)``.

    Lives here, not in a notebook cell, so DataLoader workers can import it.
    ``max_len`` truncates very long texts (snippets are ~20 tokens).
    """

    def __init__(self, texts: Sequence[str], labels: Sequence[int], vocab: Vocab, max_len: int = 128):
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        self.ids = [torch.tensor(vocab.encode(tokenize(t))[:max_len] or [vocab.unk_id], dtype=torch.long)
                    for t in texts]
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.ids[i], int(self.labels[i])

    def subset(self, indices: Sequence[int]) -> "TextDataset":
        """A dataset of the chosen items (shares the encoded tensors)."""
        out = TextDataset.__new__(TextDataset)
        out.ids = [self.ids[int(i)] for i in indices]
        out.labels = self.labels[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
        return out


def collate(batch: Sequence[tuple[torch.Tensor, int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a batch to its longest text: ``(ids (B, L_max), labels (B,))``."""
    ids = nn.utils.rnn.pad_sequence([b[0] for b in batch], batch_first=True, padding_value=pad_id)
    return ids, torch.tensor([b[1] for b in batch], dtype=torch.long)


# --------------------------------------------------------------------------- one experiment
@dataclass
class SentimentTask:
    """Everything one (strategy, budget, seed) run needs, encoded once and shared by all runs.

    ``train`` holds all training snippets (their labels are drawn per budget);
    ``tests`` maps a name ("movies", "amazon", ...) to a test set. The vocabulary
    comes from ``vocab_texts`` (all training text, labelled or not).
    """

    vocab: Vocab
    train: TextDataset
    tests: dict[str, TextDataset]
    kv: Any
    rows: tuple[np.ndarray, np.ndarray]
    scale: tuple[np.ndarray, np.ndarray]
    hidden: int = 64
    lr: float = 3e-3
    batch_size: int = 32
    steps: int = 200
    device: str = "auto"

    @classmethod
    def build(cls, train_df, tests: Mapping[str, Any], kv: Any, *, vocab: Vocab | None = None,
              **kw) -> "SentimentTask":
        """From DataFrames with ``text`` and ``label`` columns (``tlkit.data.load_sentiment``).

        ``vocab`` defaults to ``build_vocab`` of all of ``train_df``'s text."""
        vocab = vocab if vocab is not None else build_vocab(train_df["text"])
        train = TextDataset(list(train_df["text"]), list(train_df["label"]), vocab)
        test_sets = {name: TextDataset(list(df["text"]), list(df["label"]), vocab) for name, df in tests.items()}
        if not test_sets:
            raise ValueError("SentimentTask needs at least one test set, e.g. {'movies': split.test}")
        return cls(vocab, train, test_sets, kv, pretrained_rows(vocab, kv), vector_scale(kv), **kw)

    def encode(self, df) -> TextDataset:
        """A ``TextDataset`` of a DataFrame's ``text``/``label`` with this task's vocabulary."""
        return TextDataset(list(df["text"]), list(df["label"]), self.vocab)

    def make_model(self, method: str, seed: int = 0) -> MeanPoolClassifier:
        """A fresh classifier whose embedding is random ("random") or GloVe ("frozen", "fine-tuned")."""
        if method not in STRATEGIES:
            raise ValueError(f"unknown strategy {method!r}; choose one of {STRATEGIES}")
        torch.manual_seed(seed)  # the MLP's init
        kv = self.kv if STRATEGY_RECIPES[method].pretrained else None
        emb = init_embedding(self.vocab, kv, seed=seed, scale=self.scale, rows=self.rows if kv is not None else None)
        return MeanPoolClassifier(emb, n_classes=2, hidden=self.hidden)

    def batch_for(self, n_train: int) -> int:
        """``batch_size``, doubled for large training sets (fewer, cheaper optimizer steps)."""
        return self.batch_size if n_train <= 2_000 else 2 * self.batch_size

    def config(self, method: str, n_train: int, seed: int = 0) -> TrainConfig:
        """Adam at ``lr`` for about ``steps`` updates whatever the budget (at least one epoch):
        tiny budgets get many passes over their few snippets, "all" gets a few epochs at a
        larger batch. The same step count for every strategy keeps the comparison fair.
        What is frozen is the strategy's recipe (``STRATEGY_RECIPES``)."""
        if method not in STRATEGY_RECIPES:
            raise ValueError(f"unknown strategy {method!r}; choose one of {STRATEGIES}")
        batch = self.batch_for(n_train)
        steps_per_epoch = max(1, math.ceil(n_train / batch))
        epochs = max(1, round(self.steps / steps_per_epoch))
        base = TrainConfig(epochs=epochs, lr=self.lr, batch_size=batch, optimizer="adam", seed=seed,
                           device=self.device)
        return STRATEGY_RECIPES[method](MeanPoolClassifier.GROUPS, base=base)

    def loaders(self, budget: int | None, seed: int = 0, batch_size: int | None = None):
        """(train loader over ``budget`` labelled snippets per class, {name: test loader})."""
        from .data import budget_indices
        from .train import loader

        idx = budget_indices(self.train.labels.numpy(), budget, seed=seed)
        train = self.train.subset(idx)
        train_dl = loader(train, batch_size or self.batch_for(len(train)), shuffle=True, seed=seed, collate_fn=collate)
        tests = {k: loader(v, 256, collate_fn=collate) for k, v in self.tests.items()}
        return train_dl, tests

    def run(self, method: str, budget: int | None, seed: int = 0, *, return_model: bool = False):
        """Train one (strategy, budget, seed) and return test metrics ``{"<name>_acc", "<name>_bacc"}``
        (plus ``"acc"``/``"bacc"`` of the first test set). Plug into ``tlkit.sweep.sweep(task.run, ...)``."""
        from .train import evaluate, fit

        model = self.make_model(method, seed)
        train_dl, tests = self.loaders(budget, seed)
        cfg = self.config(method, len(train_dl.dataset), seed)
        state = fit(model, train_dl, None, cfg)
        if state.status == "interrupted":   # the user pressed interrupt: stop the whole sweep, not just this run
            raise KeyboardInterrupt(f"{method}, budget={budget}, seed={seed} was interrupted at step {state.step}")
        if state.status != "finished":      # a half-trained model must not land in the results table
            raise RuntimeError(f"{method}, budget={budget}, seed={seed} ended as {state.status!r} at step "
                               f"{state.step}: {state.message}")
        out: dict[str, float] = {}
        for name, dl in tests.items():
            m = evaluate(model, dl)
            out[f"{name}_acc"], out[f"{name}_bacc"] = m["acc"], m["bacc"]
        first = next(iter(tests))
        out = {"acc": out[f"{first}_acc"], "bacc": out[f"{first}_bacc"], **out, "steps": float(state.step)}
        return (out, model) if return_model else out


# --------------------------------------------------------------------------- what fine-tuning did
def _unit(m: torch.Tensor) -> torch.Tensor:
    return m / m.norm(dim=1, keepdim=True).clamp_min(1e-8)


def moved_most(before: torch.Tensor, after: torch.Tensor, vocab: Vocab, *, k: int = 15,
               min_count: int = 5):
    """Words whose vectors changed most during fine-tuning: ``before, after (V, D)``.

    Returns a DataFrame (word, count, moved = L2 distance, cosine = cos(before,
    after)), biggest moves first, over words seen ``min_count`` times in the
    training text (rare words move little and noisily).
    """
    import pandas as pd

    if before.shape != after.shape or before.shape[0] != len(vocab):
        raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} must both be "
                         f"({len(vocab)}, D), one row per vocabulary word")
    before, after = before.detach().float().cpu(), after.detach().float().cpu()
    dist = (after - before).norm(dim=1)
    cos = (_unit(before) * _unit(after)).sum(1)
    rows = [(w, vocab.counts[w], float(dist[i]), float(cos[i])) for i, w in enumerate(vocab.itos)
            if i >= 2 and vocab.counts[w] >= min_count]
    df = pd.DataFrame(rows, columns=["word", "count", "moved", "cosine"])
    return df.sort_values("moved", ascending=False, kind="stable").head(k).reset_index(drop=True)


def neighbours(matrix: torch.Tensor, vocab: Vocab, word: str, *, k: int = 8,
               min_count: int = 0) -> list[tuple[str, float]]:
    """The ``k`` words whose rows are most cosine-similar to ``word``'s, within ``vocab``
    (``matrix (V, D)``), among words seen ``min_count`` times in the training text."""
    if word not in vocab:
        raise KeyError(f"{word!r} is not in the vocabulary ({len(vocab):,} words); pick a word from the training text")
    m = _unit(matrix.detach().float().cpu())
    sims = m @ m[vocab.stoi[word]]
    allowed = torch.tensor([i >= 2 and w != word and vocab.counts[w] >= min_count for i, w in enumerate(vocab.itos)])
    sims = torch.where(allowed, sims, torch.tensor(-2.0))
    top = sims.topk(min(k, int(allowed.sum())))
    return [(vocab.itos[int(i)], float(s)) for s, i in zip(top.values, top.indices)]


def compare_neighbours(words: Sequence[str], before: torch.Tensor, after: torch.Tensor, vocab: Vocab, *,
                       k: int = 6, min_count: int = 3):
    """A DataFrame with, per word, its nearest neighbours before and after fine-tuning."""
    import pandas as pd

    rows = []
    for w in words:
        b = ", ".join(x for x, _ in neighbours(before, vocab, w, k=k, min_count=min_count))
        a = ", ".join(x for x, _ in neighbours(after, vocab, w, k=k, min_count=min_count))
        rows.append({"word": w, "before (GloVe)": b, "after fine-tuning": a})
    return pd.DataFrame(rows)


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project rows ``(N, D)`` onto their first two principal components ``(N, 2)``."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


__all__ = ["PAD", "UNK", "STRATEGIES", "tokenize", "Vocab", "build_vocab", "OOVReport", "oov_report",
           "pretrained_rows", "init_embedding", "vector_scale", "MeanPoolClassifier", "TextDataset", "collate",
           "SentimentTask", "STRATEGY_RECIPES", "moved_most", "neighbours", "compare_neighbours", "pca_2d"]
