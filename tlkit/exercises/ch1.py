"""Chapter 1 (word embeddings): checked exercises and quiz."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from tlkit.exercises import Exercise, Mistake, close, need_tensor
from tlkit.quiz import Option, Question, which_best
from tlkit.sweep import budget_order


def _words(rng: np.random.Generator, n: int) -> list[str]:
    syll = ["ka", "lo", "mi", "ru", "te", "zo", "pe", "an", "is", "ul", "or", "ve"]
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(syll, size=int(rng.integers(2, 4)))))
    return sorted(out)


# --------------------------------------------------------------------------- ch1_vocab
def _test_vocab(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    from tlkit import embeddings

    words = _words(rng, 40)
    common, rare = words[:20], words[20:]

    def snippet(pool: list[str], extra: str | None = None) -> str:
        toks = list(rng.choice(pool, size=int(rng.integers(3, 7))))
        if extra:
            toks.append(extra)
        toks[0] = toks[0].capitalize()            # "Kalo ..." must become "kalo"
        return " ".join(toks) + rng.choice([".", "!", "?", " ..."])  # punctuation is a token of its own
    labelled = [snippet(common) for _ in range(12)]
    # every rare word appears exactly once, and only in the unlabelled text
    unlabelled = [snippet(common, w) for w in rare]
    vocab = answer(list(labelled), list(unlabelled))
    if not isinstance(vocab, embeddings.Vocab):
        raise Mistake(f"return a tlkit.embeddings.Vocab (embeddings.build_vocab makes one), got {type(vocab).__name__}.")
    raw = [w for t in labelled + unlabelled for w in t.split()]
    if any(w in vocab for w in raw if any(ch.isalpha() for ch in w) and (w != w.lower() or not w.isalnum())):
        raise Mistake("the vocabulary holds words such as 'Kalo' or 'zo.' with capitals or punctuation attached: "
                      "tokenise with embeddings.tokenize (lower case, punctuation split), as the model's encoder does.")
    from collections import Counter

    counts = Counter(t for s in labelled + unlabelled for t in embeddings.tokenize(s))
    lab_words = {t for s in labelled for t in embeddings.tokenize(s)}
    only_unlab = set(counts) - lab_words
    missing = sorted(set(counts) - set(vocab.itos))
    if missing and all(counts[w] == 1 for w in missing) and any(w in vocab for w in only_unlab):
        raise Mistake(f"{len(missing)} words that appear only once are missing (e.g. {missing[0]!r}): a min_count "
                      "above 1 drops rare words, and rare words are where pretrained vectors help most.")
    if missing and lab_words <= set(vocab.itos) and not any(w in vocab for w in only_unlab):
        raise Mistake("words that occur only in the unlabelled snippets are unknown (<unk>): build the vocabulary from "
                      "ALL the training text, labelled or not. The label budget limits which snippets have labels, not "
                      "which words the model may know.")
    if missing:
        raise Mistake(f"{len(missing)} words of the snippets are still unknown, e.g. {missing[0]!r}.")
    for s in labelled + unlabelled:
        if embeddings.Vocab.unk_id in vocab.encode(embeddings.tokenize(s)):
            raise Mistake(f"{s!r} still encodes to <unk>.")


# --------------------------------------------------------------------------- ch1_init
def _test_init(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch

    dim = int(rng.integers(6, 13))
    scale = float(rng.uniform(0.03, 0.08))            # GloVe-like: far from N(0, 1)
    words = _words(rng, 30)
    known = words[:20]
    vectors = {w: (rng.standard_normal(dim) * scale).astype(np.float32) for w in known}
    itos = ["<pad>", "<unk>"] + list(rng.permutation(words))
    out = answer(list(itos), dict(vectors))
    need_tensor(out, "the matrix", (len(itos), dim))
    m = out.detach().float()
    rows_known = [i for i, w in enumerate(itos) if w in vectors]
    table = list(vectors.values())
    misplaced = [i for i in range(len(itos)) if (itos[i] not in vectors or not close(m[i], vectors[itos[i]]))
                 and any(close(m[i], v) for v in table)]
    if misplaced:
        raise Mistake("some rows hold pretrained vectors in the wrong places: row i must be the vector of itos[i] "
                      "(look each vocabulary word up by name), not the i-th vector of the pretrained table.")
    if not all(close(m[i], vectors[itos[i]]) for i in rows_known):
        raise Mistake("row i must equal the pretrained vector of word itos[i] for every word that has one.")
    if not torch.all(m[0] == 0):
        raise Mistake("row 0 is <pad>: make it all zeros, so padding carries no information.")
    unknown = [i for i, w in enumerate(itos) if i > 0 and w not in vectors]
    u = m[unknown]
    if torch.all(u == 0):
        raise Mistake("the words without a pretrained vector got all-zero rows: every unknown word then means the "
                      "same (nothing) and a mean over the snippet just shrinks. Draw small random vectors instead.")
    if len(unknown) > 1 and torch.allclose(u, u[:1].expand_as(u)):
        raise Mistake("every unknown word got the same row: give each its own random vector.")
    ratio = float(u.std() / m[rows_known].std())
    if ratio > 4:
        raise Mistake(f"the random rows are {ratio:.0f}x larger than the pretrained ones (torch.randn is N(0, 1); "
                      "the vectors here have a std near 0.05): scale them to the pretrained vectors' spread, or the "
                      "unknown words dominate every average.")
    if ratio < 0.25:
        raise Mistake(f"the random rows are {1 / ratio:.0f}x smaller than the pretrained ones: use the pretrained "
                      "vectors' standard deviation as the scale.")


# --------------------------------------------------------------------------- ch1_bacc
def _test_bacc(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    from sklearn.metrics import balanced_accuracy_score

    n_classes = int(rng.integers(2, 4))
    sizes = rng.integers(10, 60, size=n_classes)
    sizes[0] = sizes.sum() * 3                             # very unbalanced, like a cross-domain test set
    y_true = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)])
    y_pred = np.where(rng.random(len(y_true)) < 0.8, 0, rng.integers(0, n_classes, len(y_true)))  # over-predicts 0
    got = answer(y_true.copy(), y_pred.copy())
    want = balanced_accuracy_score(y_true, y_pred)
    acc = float(np.mean(y_true == y_pred))
    try:
        got = float(got)
    except (TypeError, ValueError):
        raise Mistake(f"return one number (a float), got {type(got).__name__}.") from None
    if abs(got - want) < 1e-6:
        return
    if abs(got - acc) < 1e-6:
        raise Mistake(f"that is plain accuracy ({acc:.3f}): a model predicting mostly the big class scores high on "
                      "it. Balanced accuracy averages the recall of each TRUE class.")
    prec = np.mean([np.mean(y_true[y_pred == c] == c) for c in np.unique(y_pred)])
    if abs(got - prec) < 1e-6:
        raise Mistake("you averaged over the PREDICTED classes (that is precision); balanced accuracy averages, "
                      "over the true classes, the share of each class predicted correctly (recall).")
    raise Mistake(f"got {got:.4f}; balanced accuracy here is the mean over true classes c of "
                  "(correct predictions of c) / (examples of c).")


# --------------------------------------------------------------------------- ch1_pool
def _test_pool(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    pad_id = 0
    b, length, d = int(rng.integers(3, 6)), int(rng.integers(5, 9)), int(rng.integers(3, 7))
    vectors = torch.randn(b, length, d, generator=g) + 1.0    # padded positions hold the <pad> row's vector
    ids = torch.as_tensor(rng.integers(2, 50, size=(b, length)))
    lengths = rng.integers(1, length, size=b)
    lengths[0] = 0                                            # an empty snippet (every word filtered out)
    for i, n in enumerate(lengths):
        ids[i, n:] = pad_id
    out = answer(vectors.clone(), ids.clone(), pad_id)
    if isinstance(out, torch.Tensor) and not torch.isfinite(out.detach()).all():
        raise Mistake("the result has NaN for a snippet made only of padding (0 / 0): count at least 1 token "
                      "(clamp the count to >= 1) so an empty snippet averages to zeros.")
    need_tensor(out, "the pooled output", (b, d))
    mask = (ids != pad_id).unsqueeze(-1).float()
    want = (vectors * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    if close(out, want):
        return
    if close(out[1:], vectors.mean(1)[1:]):
        raise Mistake("you averaged over every position, padding included: a short snippet in a batch with a long "
                      "one gets diluted by padding. Leave positions where ids == pad_id out of the average.")
    if close(out[1:], (vectors * mask).sum(1)[1:]):
        raise Mistake("that is the sum of the word vectors: it grows with the length of the snippet. Divide by "
                      "the number of real (non-padding) words.")
    raise Mistake("not the mean of the vectors at positions where ids != pad_id.")


EXERCISES = [
    Exercise("ch1_vocab", 1, "A vocabulary without unknown words", "build_vocabulary",
             "Write `build_vocabulary(labelled, unlabelled)` that returns an `embeddings.Vocab` in which none of "
             "the training snippets (labelled or not) has an unknown word.", _test_vocab),
    Exercise("ch1_init", 1, "Pretrained rows for nn.Embedding", "embedding_matrix",
             "Write `embedding_matrix(itos, vectors)` that returns a float tensor `(len(itos), dim)`: row i is the "
             "pretrained vector of word `itos[i]` (`vectors` is a dict word -> numpy vector), row 0 (`<pad>`) is "
             "zeros, and words without a vector get small random rows at the scale of the pretrained ones.",
             _test_init),
    Exercise("ch1_pool", 1, "Average the words, not the padding", "mean_of_words",
             "Write `mean_of_words(vectors, ids, pad_id)`: `vectors` is `(B, L, D)` (the embedding of each position), "
             "`ids` `(B, L)` the word ids with `pad_id` at padded positions. Return `(B, D)`: the mean over the real "
             "words only (zeros for a snippet that is all padding).", _test_pool),
    Exercise("ch1_bacc", 1, "Balanced accuracy", "balanced_accuracy",
             "Write `balanced_accuracy(y_true, y_pred)` (numpy integer arrays) without scikit-learn: the mean, over "
             "the true classes, of the share of each class that is predicted correctly.", _test_bacc),
]


# --------------------------------------------------------------------------- quiz
QUIZ_TITLE = "Chapter 1 quiz: word embeddings"


def _q_best_small(r: dict) -> Question:
    """Which initialisation won at the smallest label budget"""
    rows = [x for m in ("random", "frozen", "fine-tuned") for x in r.get((m, "movies_acc"), [])]
    if not rows:
        raise KeyError("random|frozen|fine-tuned / movies_acc")
    smallest = budget_order(x.get("budget") for x in rows)[0]  # "all" (the CPU preset's last budget) sorts last
    acc = {x["method"]: float(x["value"]) for x in rows if x.get("budget") == smallest}
    return which_best(f"In this run, at {smallest} labels per class, which embedding initialisation had the "
                      "highest mean movie test accuracy?", acc)


def _q_gain(r: dict) -> Question:
    """Whether pretrained vectors beat random init at the smallest budget"""
    key = next((k for k in r if k[0] == "pretrained - random" and k[1].startswith("acc_gain@")), None)
    if key is None:
        raise KeyError("pretrained - random / acc_gain@...")
    gain = float(r[key][-1]["value"])
    pos = gain > 0
    return Question(
        f"With the fewest labels ({key[1].split('@')[1]} per class), did pretrained vectors beat random "
        "initialisation in this run?",
        (Option("Yes", pos, f"The best pretrained strategy was {gain:+.3f} above random init: "
                + ("transfer helps most when labels are few." if pos else "not here — look at the seed spread.")),
         Option("No", not pos, f"The measured gain was {gain:+.3f}"
                + (": with so few labels and a few seeds the spread can hide it; check the std." if not pos
                   else ", so pretrained vectors did help."))),
        from_run=True)


QUIZ = [
    Question("What does row i of the embedding matrix hold after initialising from GloVe?", (
        Option("The GloVe vector of the i-th word of OUR vocabulary", True,
               "Right: the model looks up rows by our vocabulary's ids, so row i must be our word i's vector."),
        Option("The i-th vector of the GloVe file", False,
               "GloVe's order is its own; copied in that order, 'good' would get another word's vector."),
        Option("A random vector that training will turn into the GloVe vector", False,
               "Training does not discover GloVe; the point of transfer is to start from it."),
    )),
    Question("Why build the vocabulary from all the training text, not only the labelled snippets?", (
        Option("Unlabelled text is free, and words seen only there still get their pretrained vectors", True,
               "Right: with the vectors, the model understands words it never saw with a label."),
        Option("It makes training faster", False, "A bigger vocabulary makes nothing faster; it is about coverage."),
        Option("Labelled snippets contain no new words", False,
               "They do, but few: with 25 labels per class most words of the test set are missing from them."),
    )),
    Question("When do frozen pretrained vectors help most, compared with random initialisation?", (
        Option("When labels are scarce", True, "Right: the vectors bring knowledge the few labels cannot teach."),
        Option("When labels are plentiful", False,
               "With thousands of labels random init catches up and frozen vectors even fall behind fine-tuning."),
        Option("Always equally", False, "The chapter's budget sweep shows the gap shrinking as labels grow."),
    )),
    Question("What does fine-tuning the embedding change compared with freezing it?", (
        Option("The word vectors move to fit the task (e.g. sentiment antonyms drift apart)", True,
               "Right: the 'moved most' table shows which words changed."),
        Option("Nothing: only the head is ever trained", False, "That is the frozen setting."),
        Option("It replaces GloVe by new random vectors", False, "It starts from GloVe and adjusts it."),
    )),
    Question("A model trained on movie reviews predicts 'negative' for 85% of Amazon reviews. Which number "
             "shows the problem best?", (
        Option("Balanced accuracy", True, "Right: it averages recall over classes, so a one-sided model scores low."),
        Option("Accuracy", False, "If most Amazon reviews in the test set are negative, accuracy looks fine."),
        Option("Training loss", False, "The training loss is on movies; it says nothing about the new domain."),
    )),
    _q_best_small,
    _q_gain,
]
