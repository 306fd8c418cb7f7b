"""Unit tests for tlkit.text: the real MiniLM tokenizer (offline pip pack) and, where a model
is trained, a tiny randomly initialised BERT so the tests stay fast."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tlkit import surgery, text
from tlkit.train import clone_weights, fit

TEXTS = ["A wonderful film.", "Dull.", "I did not expect to enjoy this movie as much as I did, but I loved it.",
         "Terrible acting and a boring plot.", "Great!", "The worst two hours of my life, honestly."]


@pytest.fixture(scope="module")
def tok():
    return text.load_tokenizer("minilm-l6")


@pytest.fixture(scope="module")
def minilm():
    return text.load_classifier("minilm-l6", num_labels=2, seed=0)


def tiny_model(num_layers: int = 2, seed: int = 0, pooling: str = "mean") -> text.BertClassifier:
    """A 2-layer, 32-wide BERT with MiniLM's vocabulary: trains in milliseconds."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=2)
    return text.BertClassifier(BertForSequenceClassification(cfg), pooling=pooling)


# --------------------------------------------------------------------------- tokenisation and padding
def test_encode_adds_special_tokens_and_truncates(tok):
    ids = text.encode(tok, TEXTS, max_length=8)
    assert all(x[0] == tok.cls_token_id and x[-1] == tok.sep_token_id for x in ids)
    assert max(len(x) for x in ids) == 8
    assert len(text.encode(tok, ["Great!"], max_length=64)[0]) == 4  # [CLS] great ! [SEP]
    with pytest.raises(ValueError, match="max_length"):
        text.encode(tok, TEXTS, max_length=1)


def test_pad_collate_pads_to_the_longest_in_the_batch():
    batch = [([101, 5, 102], 1), ([101, 5, 6, 7, 102], 0)]
    out = text.PadCollate(pad_id=0)(batch)
    assert out["input_ids"].tolist() == [[101, 5, 102, 0, 0], [101, 5, 6, 7, 102]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert out["labels"].tolist() == [1, 0]
    assert text.PadCollate(multiple=8)(batch)["input_ids"].shape == (2, 8)
    fixed = text.PadCollate(pad_to=16)(batch)
    assert fixed["input_ids"].shape == (2, 16) and int(fixed["attention_mask"].sum()) == 8
    with pytest.raises(ValueError, match="pad_to"):
        text.PadCollate(pad_to=4)(batch)
    assert "labels" not in text.PadCollate()([([101, 102], -1)])  # unlabelled dataset


def test_token_dataset_checks_lengths_and_subsets():
    ds = text.TokenDataset([[1, 2], [1, 2, 3], [1]], [0, 1, 0])
    assert ds.lengths.tolist() == [2, 3, 1] and ds[1] == ([1, 2, 3], 1)
    sub = ds.subset([2, 0])
    assert sub.ids == [[1], [1, 2]] and sub.labels.tolist() == [0, 0]
    assert text.TokenDataset([[1]])[0] == ([1], -1)
    with pytest.raises(ValueError, match="labels"):
        text.TokenDataset([[1], [2]], [0])


def test_bucket_sampler_covers_every_index_once_and_is_seeded():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 80, size=203)
    s = text.BucketSampler(lengths, 16, shuffle=True, seed=3, bucket_batches=4)
    e1, e2 = list(s), list(s)
    for epoch in (e1, e2):
        flat = sorted(i for b in epoch for i in b)
        assert flat == list(range(203))
        assert len(epoch) == len(s)
    assert e1 != e2  # a new order every epoch...
    again = text.BucketSampler(lengths, 16, shuffle=True, seed=3, bucket_batches=4)
    assert list(again) == e1  # ...but the same sequence for the same seed
    ordered = list(text.BucketSampler(lengths, 16, shuffle=False))
    flat = [i for b in ordered for i in b]
    assert list(lengths[flat]) == sorted(lengths) and len(ordered) == 13
    dropped = text.BucketSampler(lengths, 16, shuffle=True, drop_last=True, bucket_batches=4)
    assert all(len(b) == 16 for b in dropped) and len(list(dropped)) == len(dropped)


def test_length_buckets_waste_less_padding_than_random_batches(tok):
    rng = np.random.default_rng(1)
    texts = [" ".join(["word"] * int(n)) for n in rng.integers(1, 60, size=256)]
    ds = text.TokenDataset.from_texts(tok, texts, [0] * len(texts), max_length=64)
    bucketed = text.padding_stats(text.text_loader(ds, 16, shuffle=True, seed=0))
    plain = text.padding_stats(text.text_loader(ds, 16, shuffle=True, seed=0, bucket=False))
    fixed = text.padding_stats(text.text_loader(ds, 16, pad_to=64, bucket=False))
    assert bucketed["real_tokens"] == plain["real_tokens"] == fixed["real_tokens"]
    assert bucketed["useful_fraction"] > 0.9 > plain["useful_fraction"] > fixed["useful_fraction"]


# --------------------------------------------------------------------------- pooling and embeddings
def test_mean_pool_matches_a_direct_average_and_ignores_padding():
    torch.manual_seed(0)
    h = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    ref = np.stack([h[i, : int(mask[i].sum())].numpy().mean(0) for i in range(3)])
    np.testing.assert_allclose(text.mean_pool(h, mask).numpy(), ref, rtol=1e-6, atol=1e-6)
    h2 = h.clone()
    h2[mask == 0] = 1e3  # whatever sits at padded positions must not matter
    np.testing.assert_allclose(text.mean_pool(h2, mask).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_embed_keeps_order_ignores_batch_padding_and_restores_train_mode(tok, minilm):
    minilm.train()
    e = text.embed(minilm, tok, TEXTS, batch_size=4)
    assert e.shape == (len(TEXTS), 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    alone = np.stack([text.embed(minilm, tok, [t])[0] for t in TEXTS[:2]])
    np.testing.assert_allclose(e[:2], alone, atol=2e-5)  # padded in a batch == embedded alone
    rev = text.embed(minilm, tok, TEXTS[::-1], batch_size=4)
    np.testing.assert_allclose(rev[::-1], e, atol=2e-5)
    assert minilm.training
    sim = text.cosine_matrix(e)
    assert sim[0, 2] > sim[0, 3]  # "wonderful film" is closer to "loved it" than to "terrible acting"
    np.testing.assert_allclose(np.diag(sim), 1.0, rtol=1e-6)


def test_feature_cache_hits_memory_and_disk(tok, minilm, tmp_path):
    cache = text.FeatureCache(tmp_path)
    a = cache.features(minilm, tok, TEXTS[:3], max_length=32)
    b = cache.features(minilm, tok, TEXTS[:3], max_length=32)
    assert b is a and (cache.hits, cache.misses) == (1, 1)
    assert len(list(tmp_path.glob("*.npy"))) == 1

    class Boom(torch.nn.Module):
        def forward(self, *a, **k):
            raise AssertionError("a cache hit must not run the model")

    fresh = text.FeatureCache(tmp_path)
    np.testing.assert_array_equal(fresh.features(Boom(), tok, TEXTS[:3], max_length=32), a)
    assert fresh.hits == 1
    other = cache.features(minilm, tok, TEXTS[:3], max_length=16)  # another max length: recomputed
    assert cache.misses == 2 and other.shape == a.shape


def test_linear_probe_on_separable_features():
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    X = rng.normal(size=(40, 8)) + 4 * y[:, None]
    out = text.linear_probe(X[:20], y[:20], {"test": (X[20:], y[20:])})
    assert out == {"test_acc": 1.0, "test_bacc": 1.0}


def test_probe_head_starts_the_classifier_at_the_probe_and_checks_shapes():
    torch.manual_seed(0)
    model = tiny_model()
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    X = (rng.normal(size=(40, 32)) + 2 * y[:, None]).astype(np.float32)
    out = text.probe_head(model, X, y)
    assert out["train_acc"] == 1.0
    with torch.no_grad():
        logits = model.hf.classifier(torch.from_numpy(X))   # the head alone, on the probe's inputs
    assert (logits.argmax(-1).numpy() == y).all()
    with pytest.raises(ValueError, match="un-normalised mean-pooled"):
        text.probe_head(model, X[:, :8], y)
    with pytest.raises(ValueError, match="exactly 0..1"):
        text.probe_head(model, X, y + 1)


# --------------------------------------------------------------------------- models, groups, freezing
def test_minilm_loads_offline_with_bert_groups(minilm):
    names = [g.name for g in surgery.layer_groups(minilm)]
    assert names == ["word_embeddings", "embeddings"] + [f"layer{i}" for i in range(6)] + ["head"]
    assert minilm.num_layers == 6
    groups = {g.name: g for g in surgery.layer_groups(minilm)}
    assert groups["word_embeddings"].n_params == 30522 * 384
    ids = torch.tensor([[101, 2307, 102]])
    assert minilm(ids).shape == (1, 2)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_the_gpu_attention_mask_means_the_same_as_the_padding_mask(tok, pooling):
    """On a GPU the classifier hands the encoder a 4-D boolean mask (no host sync); it must give
    the very same outputs as the 2-D padding mask, and padding must still be masked."""
    model = tiny_model(pooling=pooling).eval()
    ds = text.TokenDataset.from_texts(tok, ["a good film", "a long, slow and rather boring film, sadly"], [1, 0], 32)
    batch = next(iter(text.text_loader(ds, 2)))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert mask.min() == 0  # the batch has padding
    mask4 = text.encoder_mask(model.hf, mask)
    with torch.no_grad():
        two_d = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        four_d = model.encoder(input_ids=ids, attention_mask=mask4).last_hidden_state
        unmasked = model.encoder(input_ids=ids).last_hidden_state
        logits = model.hf(input_ids=ids, attention_mask=mask4).logits
    if mask4.dim() == 4:  # transformers >= 5 with SDPA attention
        assert mask4.shape == (2, 1, 1, ids.shape[1]) and mask4.dtype == torch.bool
    torch.testing.assert_close(four_d, two_d)
    assert not torch.allclose(unmasked[0, :3], two_d[0, :3], atol=1e-4)  # the short text's padding is masked
    if pooling == "cls":
        torch.testing.assert_close(logits, model(ids, mask))


def test_the_gpu_attention_mask_also_fits_distilbert():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    hf = DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64)).eval()
    ids = torch.randint(1000, 2000, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, 5:] = 0
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids, attention_mask=text.encoder_mask(hf, mask)).logits,
                                   hf(input_ids=ids, attention_mask=mask).logits)


def test_load_classifier_names_the_fix_when_a_model_is_missing(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception) as info:
        text.load_classifier("bert-base-uncased")
    msg = str(info.value)
    if "Tried" not in msg:  # in the Hugging Face cache already (an online machine): then it loads
        pytest.skip("bert-base-uncased is cached here")
    assert "bert-base-uncased" in msg


def test_top_layers_train_the_last_layers_and_keep_word_embeddings_frozen():
    m = tiny_model(num_layers=3)
    groups = surgery.layer_groups(m)
    frozen = lambda k, **kw: text.top_layers(m, k, **kw)(groups).frozen  # noqa: E731
    assert frozen(0) == ("word_embeddings", "embeddings", "layer0", "layer1", "layer2")
    assert frozen(1) == ("word_embeddings", "embeddings", "layer0", "layer1")
    assert frozen(3) == ("word_embeddings",)
    assert frozen(3, freeze_word_embeddings=False) == ()
    with pytest.raises(ValueError, match="between 0"):
        text.top_layers(m, 4)
    assert list(text.layer_recipes(m)) == ["finetune_top0", "finetune_top1", "finetune_top2", "finetune_all"]


def test_fine_tuning_moves_trained_layers_only(tok):
    m = tiny_model(num_layers=3)
    ds = text.TokenDataset.from_texts(tok, TEXTS * 4, [1, 0, 1, 0, 1, 0] * 4, max_length=32)
    before = clone_weights(m)
    cfg = text.finetune_config(len(ds), train_last=1, model=m, batch_size=8, lr=1e-2, epochs=1, min_steps=4,
                               device="cpu")
    assert cfg.epochs == 2 and cfg.schedule == "linear" and cfg.warmup == 0.1
    state = fit(m, text.text_loader(ds, 8, shuffle=True), None, cfg)
    assert state.status == "finished" and state.step == 6
    change = text.weight_change(before, m)
    for g in ("word_embeddings", "embeddings", "layer0", "layer1"):
        assert change[g] == 0.0, g
    assert change["layer2"] > 0 and change["head"] > 0
    full = text.finetune_config(len(ds), train_last=3, model=m, batch_size=8, lr=1e-2, device="cpu")
    before = clone_weights(m)
    fit(m, text.text_loader(ds, 8, shuffle=True), None, full)
    change = text.weight_change(before, m)
    assert change["word_embeddings"] == 0.0 and all(change[f"layer{i}"] > 0 for i in range(3))
    with pytest.raises(ValueError, match="model="):
        text.finetune_config(10, train_last=1)
    with pytest.raises(ValueError, match="not both"):
        text.finetune_config(10, train_last=1, recipe=text.top_layers(m, 1), model=m)
    assert text.finetune_config(10, model=m, recipe=text.top_layers(m, 1)) == text.finetune_config(10, train_last=1, model=m)


def test_cls_pooling_uses_the_stock_head_and_reset_head_is_seeded():
    m = tiny_model(pooling="cls")
    ids = torch.tensor([[101, 2307, 999, 102]])
    m.eval()
    with torch.no_grad():
        assert torch.allclose(m(ids), m.hf(input_ids=ids).logits)
    text.reset_head(m, seed=5)
    w1 = m.hf.classifier.weight.clone()
    text.reset_head(m, seed=5)
    assert torch.equal(w1, m.hf.classifier.weight) and float(m.hf.classifier.bias.detach().abs().sum()) == 0.0
    with pytest.raises(ValueError, match="pooling"):
        text.BertClassifier(m.hf, pooling="max")


def test_finetune_runner_runs_every_method(tok, tmp_path):
    texts = [f"{w} movie number {i}" for i in range(12) for w in ("great", "awful")]
    labels = np.array([1, 0] * 12)
    runner = text.FineTuneRunner(tok, texts, labels, {"movies": (texts[:8], labels[:8])}, max_length=16,
                                 cache=text.FeatureCache(tmp_path), model=tiny_model(num_layers=2),
                                 recipe=dict(batch_size=4, lr=5e-3, min_steps=6, device="cpu"))
    feats = runner.run("features", 4, seed=0)
    assert set(feats) == {"acc", "bacc", "movies_acc", "movies_bacc"} and 0 <= feats["acc"] <= 1
    top = runner.run("finetune_top1", 4, seed=0)
    assert top["steps"] == 6 and runner.last_state.cfg.frozen == ("word_embeddings", "embeddings", "layer0")
    probed = runner.run("finetune_top1", 4, seed=0, head_init="probe", min_steps=1, epochs=1)
    assert 0 <= probed["acc"] <= 1 and runner.raw_features().shape == (24, 32)
    with pytest.raises(ValueError, match="head_init"):
        runner.run("finetune_top1", 4, head_init="glove")
    full = runner.run("finetune_all", 4, seed=1, eval_on=["movies"])
    assert runner.last_state.cfg.frozen == ("word_embeddings",) and 0 <= full["acc"] <= 1
    assert text.weight_change(runner.before(), runner.model)["layer1"] > 0  # trained...
    runner.fresh_model(1)                                                   # ...restored
    restored = text.weight_change(runner.before(), runner.model)
    assert restored == {g: 0.0 for g in restored}
    with pytest.raises(ValueError, match="unknown method"):
        runner.run("scratch", 4)


def test_finetune_runner_keeps_no_copy_of_the_frozen_word_embeddings_but_notices_writes(tok, monkeypatch):
    texts = [f"{w} film {i}" for i in range(4) for w in ("good", "bad")]
    labels = np.array([1, 0] * 4)
    runner = text.FineTuneRunner(tok, texts, labels, {"movies": (texts, labels)}, max_length=8,
                                 model=tiny_model(num_layers=1))
    word = runner.model.encoder.embeddings.word_embeddings.weight
    assert runner._word_key not in runner.pretrained and len(runner.pretrained) > 0
    original = word.detach().clone()
    reloads = []
    monkeypatch.setattr(text, "load_classifier", lambda *a, **k: reloads.append(1) or tiny_copy(original))
    runner.fresh_model(0)
    assert reloads == []                       # untouched: nothing to restore
    with torch.no_grad():
        word.add_(1.0)                         # e.g. a panel run with the matrix unfrozen
    runner.fresh_model(0)
    assert reloads == [1] and torch.equal(word.detach(), original)
    # before(): no copy of the matrix either, yet weight_change still sees a write to it
    before = runner.before()
    assert before[runner._word_key].data_ptr() == word.data_ptr() and reloads == [1]
    assert text.weight_change(before, runner.model)["word_embeddings"] == 0.0
    with torch.no_grad():
        word.add_(0.5)
    assert text.weight_change(before, runner.model)["word_embeddings"] == pytest.approx(0.5)
    assert reloads == [1, 1] and set(before) == set(runner.model.state_dict())
    assert text.weight_change(before, runner.model)["word_embeddings"] == pytest.approx(0.5)
    assert reloads == [1, 1]                   # read from disk once per snapshot, not per question
    runner.release()
    assert runner.pretrained is None
    with pytest.raises(RuntimeError, match="release"):
        runner.fresh_model(0)


def tiny_copy(word_weight):
    """A stand-in for a freshly loaded classifier: only its word-embedding matrix is read."""
    m = tiny_model(num_layers=1)
    with torch.no_grad():
        m.encoder.embeddings.word_embeddings.weight.copy_(word_weight)
    return m
