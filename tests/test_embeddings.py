"""Unit tests for tlkit.embeddings on tiny in-test KeyedVectors (fast, offline)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from gensim.models import KeyedVectors

from tlkit import surgery
from tlkit.config import TrainConfig
from tlkit.embeddings import (MeanPoolClassifier, OOVReport, SentimentTask, TextDataset, Vocab, build_vocab,
                              collate, compare_neighbours, init_embedding, moved_most, neighbours, oov_report,
                              pca_2d, pretrained_rows, tokenize, vector_scale)
from tlkit.train import fit, loader

POS, NEG = ["good", "great", "fun", "superb", "lovely"], ["bad", "awful", "dreadful", "boring", "poor"]
WORDS = ["the", "film", "movie", "a", "not", "n't", "'s", "do", "it", "is"] + POS + NEG


def tiny_kv(words=WORDS, dim: int = 6, seed: int = 0) -> KeyedVectors:
    """Vectors where positive words share +x, negative words -x (so they carry the label)."""
    rng = np.random.default_rng(seed)
    vecs = rng.normal(0, 0.2, size=(len(words), dim)).astype(np.float32)
    for i, w in enumerate(words):
        if w in POS:
            vecs[i, 0] += 3.0
        if w in NEG:
            vecs[i, 0] -= 3.0
    kv = KeyedVectors(vector_size=dim)
    kv.add_vectors(list(words), vecs)
    return kv


def sentiment_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Snippets whose label is carried by one sentiment word; every word has a tiny_kv vector."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        word = rng.choice(POS if label else NEG)
        text = f"the {rng.choice(['film', 'movie'])} is {word} {rng.choice(['a', 'it', 'do'])}"
        rows.append({"text": text, "label": label})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- tokeniser and vocabulary
def test_tokenize_matches_glove_conventions():
    assert tokenize("It's not a BAD film, don't miss it!") == \
        ["it", "'s", "not", "a", "bad", "film", ",", "do", "n't", "miss", "it", "!"]
    assert tokenize("''Conan'' -- well-made... 3.5 stars, the 21st century") == \
        ["''", "conan", "''", "--", "well-made", "...", "3.5", "stars", ",", "the", "21st", "century"]
    with pytest.raises(TypeError):
        tokenize(None)


def test_vocab_order_specials_and_encoding():
    v = build_vocab(["b a a", "c a b", "a"])
    assert v.itos == ["<pad>", "<unk>", "a", "b", "c"]          # most frequent first, ties alphabetical
    assert v.pad_id == 0 and v.unk_id == 1
    assert v.counts["a"] == 4 and len(v) == 5
    assert v.encode(["a", "zzz", "c"]) == [2, 1, 4]
    assert v.decode([2, 4]) == ["a", "c"]
    assert build_vocab(["b a a", "c"], min_count=2).itos == ["<pad>", "<unk>", "a"]
    assert len(build_vocab(["a b c d"], max_size=4)) == 4
    with pytest.raises(ValueError, match="no texts"):
        build_vocab([])
    with pytest.raises(ValueError):
        Vocab(["a", "b"])


def test_vocab_includes_unlabelled_text():
    labelled, unlabelled = ["good film"], ["awful movie"]
    v = build_vocab(labelled + unlabelled)
    assert "awful" in v and "good" in v


# --------------------------------------------------------------------------- OOV and initialisation
def test_oov_report_counts_types_and_tokens():
    v = build_vocab(["good good good zzq", "bad zzq blorp"])
    r = oov_report(v, tiny_kv())
    assert isinstance(r, OOVReport)
    assert (r.n_types, r.types_covered) == (4, 2)          # good, bad known; zzq, blorp missing
    assert (r.n_tokens, r.tokens_covered) == (7, 4)
    assert r.type_coverage == pytest.approx(0.5) and r.token_coverage == pytest.approx(4 / 7)
    assert r.missing == [("zzq", 2), ("blorp", 1)]
    assert "zzq" in r.summary() and "random normal" in r.summary()
    assert list(r.frame().columns) == ["word", "count"]


def test_embedding_rows_equal_pretrained_vectors():
    kv = tiny_kv()
    v = build_vocab(["the good film is not bad , zzq", "awful movie zzq zzq"])
    emb = init_embedding(v, kv, seed=0)
    assert emb.weight.shape == (len(v), kv.vector_size)
    for i, w in enumerate(v.itos):
        if w in kv.key_to_index:
            assert torch.equal(emb.weight[i].detach(), torch.tensor(kv[w])), w
    assert torch.count_nonzero(emb.weight[v.pad_id]) == 0
    assert emb.padding_idx == v.pad_id
    # OOV rows (zzq, ",", <unk>) are random at the vectors' scale, and differ by seed
    oov = [v.stoi[w] for w in ("zzq", ",")] + [v.unk_id]
    assert torch.count_nonzero(emb.weight[oov]) > 0
    assert not torch.equal(emb.weight[oov], init_embedding(v, kv, seed=1).weight[oov])
    assert torch.count_nonzero(init_embedding(v, kv, oov="zeros").weight[oov]) == 0


def test_pretrained_rows_known_mask():
    kv = tiny_kv()
    v = build_vocab(["good zzq"])
    matrix, known = pretrained_rows(v, kv)
    assert matrix.shape == (len(v), kv.vector_size) and matrix.dtype == np.float32
    assert known.tolist() == [False, False, True, False]
    np.testing.assert_array_equal(matrix[v.stoi["good"]], kv["good"])


def test_row_check_catches_misaligned_rows():
    kv = tiny_kv()
    v = build_vocab(["good bad film"])
    matrix, known = pretrained_rows(v, kv)
    shifted = np.roll(matrix, 1, axis=0)       # the classic off-by-one bug
    with pytest.raises(AssertionError, match="differs from its pretrained vector"):
        init_embedding(v, kv, rows=(shifted, known))


def test_random_init_matches_vector_scale_and_needs_scale():
    kv = tiny_kv()
    v = build_vocab([" ".join(f"w{i}" for i in range(3000))])
    mean, std = vector_scale(kv)
    emb = init_embedding(v, None, seed=0, scale=(mean, std))
    w = emb.weight.detach().numpy()[2:]
    np.testing.assert_allclose(w.std(0), std, rtol=0.1)
    assert np.all(np.abs(w.mean(0) - mean) < 0.1 * std)
    with pytest.raises(ValueError, match="scale"):
        init_embedding(v, None)
    with pytest.raises(ValueError, match="oov"):
        init_embedding(v, kv, oov="mean")


# --------------------------------------------------------------------------- model, data, freezing
def test_mean_pool_ignores_padding_and_groups():
    kv = tiny_kv()
    v = build_vocab(["good film"])
    model = MeanPoolClassifier(init_embedding(v, kv), hidden=8)
    ids = torch.tensor([[v.stoi["good"], v.stoi["film"], 0, 0]])
    expect = (torch.tensor(kv["good"]) + torch.tensor(kv["film"])) / 2
    torch.testing.assert_close(model.pool(ids)[0], expect)
    assert model(ids).shape == (1, 2)
    groups = surgery.layer_groups(model)
    assert [g.name for g in groups] == ["embedding", "head"]


def test_dataset_and_collate_pad_per_batch():
    v = build_vocab(["good film", "bad"])
    ds = TextDataset(["good film", "bad", ""], [1, 0, 1], v)
    ids, y = collate([ds[0], ds[1], ds[2]])
    assert ids.shape == (3, 2) and ids.dtype == torch.long
    assert ids[1].tolist() == [v.stoi["bad"], 0]
    assert ids[2].tolist() == [v.unk_id, 0]               # an empty text still has one token
    assert y.tolist() == [1, 0, 1]
    sub = ds.subset([2, 0])
    assert len(sub) == 2 and sub.labels.tolist() == [1, 1]
    with pytest.raises(ValueError):
        TextDataset(["a"], [0, 1], v)


def test_frozen_embedding_does_not_move_and_padding_gets_no_gradient():
    kv = tiny_kv()
    df = sentiment_frame(64)
    v = build_vocab(df["text"])
    ds = TextDataset(list(df["text"]), list(df["label"]), v)
    dl = loader(ds, 16, shuffle=True, collate_fn=collate)

    frozen = MeanPoolClassifier(init_embedding(v, kv), hidden=8)
    before = frozen.embedding.weight.detach().clone()
    fit(frozen, dl, None, TrainConfig(epochs=2, lr=1e-2, frozen=("embedding",), device="cpu"))
    assert torch.equal(frozen.embedding.weight.detach(), before)

    tuned = MeanPoolClassifier(init_embedding(v, kv), hidden=8)
    before = tuned.embedding.weight.detach().clone()
    fit(tuned, dl, None, TrainConfig(epochs=2, lr=1e-2, optimizer="adam", frozen=(), device="cpu"))
    after = tuned.embedding.weight.detach()
    assert not torch.equal(after[v.stoi["good"]], before[v.stoi["good"]])
    assert torch.count_nonzero(after[v.pad_id]) == 0         # padding row stays zero
    # words of the vocabulary that no training snippet contains keep their vectors (Adam, no decay)


# --------------------------------------------------------------------------- one experiment
def test_sentiment_task_runs_every_strategy_and_pretrained_helps():
    kv = tiny_kv()
    train, test = sentiment_frame(200, seed=0), sentiment_frame(100, seed=1)
    task = SentimentTask.build(train, {"in": test, "other": test.iloc[:50]}, kv, steps=30, device="cpu")
    assert task.config("frozen", 10).frozen == ("embedding",)
    assert task.config("fine-tuned", 10).frozen == ()
    for m in ("random", "frozen", "fine-tuned"):   # the recipes give what the strategies always trained with
        c = task.config(m, 10)
        assert (c.train_bn, c.lrs, c.lr_decay, c.optimizer) == (False, None, 1.0, "adam")
    assert [g.name for g in surgery.layer_groups(task.make_model("frozen"))] == list(MeanPoolClassifier.GROUPS)
    with pytest.raises(ValueError, match="strategy"):
        task.config("pretrained", 10)
    assert task.config("random", 4).epochs == 30               # tiny budgets still get ~steps updates
    big = task.config("random", 5_000)
    assert big.batch_size == 64 and big.epochs == 1            # at least one epoch, larger batches
    assert len(task.encode(test)) == len(test)
    results = {m: task.run(m, budget=2, seed=0) for m in ("random", "frozen", "fine-tuned")}
    for out in results.values():
        assert {"acc", "bacc", "in_acc", "in_bacc", "other_acc", "other_bacc"} <= set(out)
        assert all(0.0 <= out[k] <= 1.0 for k in ("acc", "bacc", "other_acc"))
    # 2 labelled snippets per class: the pretrained sentiment axis generalises, random vectors cannot
    assert results["frozen"]["acc"] >= 0.95
    assert results["frozen"]["acc"] > results["random"]["acc"] + 0.1
    out, model = task.run("fine-tuned", budget=None, seed=1, return_model=True)
    assert isinstance(model, MeanPoolClassifier) and out["acc"] >= 0.9 and out["steps"] > 0
    with pytest.raises(ValueError, match="test set"):
        SentimentTask.build(train, {}, kv)
    with pytest.raises(ValueError, match="strategy"):
        task.make_model("pretrained")


def test_moved_most_and_neighbours():
    v = build_vocab(["good good good good good bad bad bad bad bad film film film film film x"])
    before = torch.eye(len(v), 4)[: len(v)] + 0.01
    after = before.clone()
    after[v.stoi["bad"]] += torch.tensor([0.0, 0.0, 3.0, 0.0])
    df = moved_most(before, after, v, k=3, min_count=5)
    assert df["word"].iloc[0] == "bad" and df["moved"].iloc[0] == pytest.approx(3.0)
    assert "x" not in set(df["word"])                             # below min_count
    with pytest.raises(ValueError, match="one row per vocabulary word"):
        moved_most(before[:-1], after, v)
    m = torch.tensor([[0, 0], [0, 0], [1, 0], [0.9, 0.1], [0, 1], [0.1, 1]], dtype=torch.float)
    v2 = Vocab(["<pad>", "<unk>", "a", "b", "c", "d"])
    assert [w for w, _ in neighbours(m, v2, "a", k=2)] == ["b", "d"]
    with pytest.raises(KeyError, match="not in the vocabulary"):
        neighbours(m, v2, "zzz")
    table = compare_neighbours(["a"], m, m.flip(0), v2, k=1, min_count=0)
    assert list(table.columns) == ["word", "before (GloVe)", "after fine-tuning"]


def test_pca_2d_keeps_the_main_direction():
    rng = np.random.default_rng(0)
    x = np.outer(rng.normal(size=100), [3.0, 0, 0, 0]) + rng.normal(0, 0.1, size=(100, 4))
    p = pca_2d(x)
    assert p.shape == (100, 2)
    assert abs(np.corrcoef(p[:, 0], x[:, 0])[0, 1]) > 0.99


def test_vocab_extra_texts_add_only_words_with_vectors():
    kv = tiny_kv()
    v = build_vocab(["good film zzq"], extra=["awful movie blorp", "good"], known=kv)
    assert v.itos[:5] == ["<pad>", "<unk>", "film", "good", "zzq"]
    assert set(v.itos[5:]) == {"awful", "movie"}              # blorp has no vector: stays <unk>
    assert v.counts["awful"] == 0
    r = oov_report(v, kv)                                      # coverage is about the training text
    assert (r.n_types, r.types_covered) == (3, 2)
    with pytest.raises(ValueError, match="known"):
        build_vocab(["a"], extra=["b"])
