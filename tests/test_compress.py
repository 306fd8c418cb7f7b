"""tlkit.compress: distillation loss against a direct formula, students, int8, pruning, measurement helpers.

Transformer tests use a tiny randomly initialised BERT (built from a config, nothing downloaded)."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tlkit import compress, surgery, train
from tlkit.config import TrainConfig


def tiny_bert(layers: int = 4, heads: int = 4, hidden: int = 32, inter: int = 64, seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    from tlkit.text import BertClassifier

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=inter, max_position_embeddings=64, num_labels=2)
    model = BertClassifier(BertForSequenceClassification(cfg))
    return model.eval()


def batch(n: int = 3, length: int = 7, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[0, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


# --------------------------------------------------------------------------- distillation loss
def direct_loss(s: np.ndarray, t: np.ndarray, y: np.ndarray, T: float, alpha: float) -> float:
    """Hinton et al. (2015) written out in numpy: alpha T^2 KL(p_t || p_s) + (1 - alpha) CE on labelled rows."""
    def softmax(z):
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    ps, pt = softmax(s / T), softmax(t / T)
    kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))
    lab = y != -100
    p1 = softmax(s)
    ce = -np.mean(np.log(p1[lab, y[lab]])) if lab.any() else 0.0
    return alpha * T ** 2 * kl + (1 - alpha) * ce


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (2.0, 0.5), (4.0, 0.9), (3.0, 0.0), (2.0, 1.0)])
def test_distillation_loss_matches_direct_formula(T, alpha):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 3, generator=g) * 3, torch.randn(6, 3, generator=g) * 3
    y = torch.tensor([0, 2, -100, 1, -100, 2])
    out = compress.distillation_loss(s, t, y, temperature=T, alpha=alpha)
    expected = direct_loss(s.numpy().astype(np.float64), t.numpy().astype(np.float64), y.numpy(), T, alpha)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_temperature_one_and_weight_zero_is_plain_cross_entropy():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    y = torch.tensor([0, 1, 1, 0, 1])
    out = compress.distillation_loss(s, t, y, temperature=1.0, alpha=0.0)
    assert torch.allclose(out["loss"], F.cross_entropy(s, y))


def test_unlabelled_rows_get_only_the_soft_term():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    out = compress.distillation_loss(s, t, torch.full((4,), -100), temperature=2.0, alpha=0.3)
    assert float(out["ce"]) == 0.0
    assert torch.allclose(out["loss"], 0.3 * out["kl"])
    # a student equal to the teacher has nothing left to learn from it
    same = compress.distillation_loss(t, t, None, temperature=2.0, alpha=1.0)
    assert float(same["loss"]) == pytest.approx(0.0, abs=1e-6)


def test_distillation_loss_rejects_bad_arguments():
    s = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="temperature"):
        compress.distillation_loss(s, s, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        compress.distillation_loss(s, s, alpha=1.5)
    with pytest.raises(ValueError, match="same shape"):
        compress.distillation_loss(s, torch.zeros(2, 3))


def test_distill_step_through_fit_moves_the_student_towards_the_teacher():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    teacher = nn.Linear(8, 2)
    with torch.no_grad():
        t_logits = teacher(x) * 3
    y = np.full(64, compress.IGNORE)
    y[:4] = t_logits[:4].argmax(1).numpy()          # 4 labels, 60 unlabelled rows
    base = torch.utils.data.TensorDataset(x, torch.zeros(64, dtype=torch.long))
    ds = compress.TeacherDataset(base, t_logits, y)
    assert ds.n_labelled == 4
    collate = lambda items: (torch.stack([a for a, _ in items]), torch.tensor([b for _, b in items]))  # noqa: E731
    dl = compress.teacher_loader(ds, 16, collate=collate, seed=0)
    inputs, labels, tl = next(iter(dl))
    assert inputs.shape == (16, 8) and labels.shape == (16,) and tl.shape == (16, 2)
    student = nn.Linear(8, 2)
    agree0 = float((student(x).argmax(1) == t_logits.argmax(1)).float().mean())
    state = train.fit(student, dl, None, TrainConfig(epochs=30, lr=0.05, optimizer="adam", seed=0),
                      groups=[surgery.LayerGroup("head", [student])], step=compress.distill_step(2.0, 0.5))
    assert state.status == "finished"
    agree = float((student(x).argmax(1) == t_logits.argmax(1)).float().mean())
    assert agree >= 0.85 and agree > agree0 + 0.3, (agree0, agree)   # 60 of 64 rows had no label
    assert {"train_kl", "train_ce", "train_agree"} <= set(state.history[-1]), state.history[-1]


def test_distill_step_with_a_live_teacher_equals_cached_logits():
    torch.manual_seed(0)
    teacher, student = nn.Linear(4, 2), nn.Linear(4, 2)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, -100, -100, 1])
    ctx = None
    live = compress.distill_step(3.0, 0.7, teacher=teacher)(student, (x, y), ctx)
    with torch.no_grad():
        t = teacher(x)
    cached = compress.distill_step(3.0, 0.7)(student, (x, y, t), ctx)
    assert torch.allclose(live["loss"], cached["loss"])
    with pytest.raises(train.DataError, match="teacher"):
        compress.distill_step(2.0, 0.5)(student, (x, y), ctx)


def test_teacher_dataset_checks_lengths():
    base = torch.utils.data.TensorDataset(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="one teacher output"):
        compress.TeacherDataset(base, torch.zeros(2, 2), [0, 1, 0])


def test_soften_flattens_with_temperature():
    p1, p4 = compress.soften(np.array([[2.0, 0.0]]), 1), compress.soften(np.array([[2.0, 0.0]]), 4)
    assert p1[0, 0] > p4[0, 0] > 0.5 and np.allclose(p4.sum(), 1.0)


# --------------------------------------------------------------------------- students
def test_every_other_is_distilberts_one_out_of_two():
    assert compress.every_other(6, 3) == [0, 2, 4]
    assert compress.every_other(12, 6) == [0, 2, 4, 6, 8, 10]
    assert compress.every_other(6, 6) == list(range(6))
    with pytest.raises(ValueError, match="depth"):
        compress.every_other(6, 0)


def test_shallow_student_copies_exactly_the_layers_it_says():
    teacher = tiny_bert(layers=4)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = compress.shallow_copy(teacher, [0, 3])
    assert student.kept_layers == (0, 3) and student.num_layers == 2
    t_layers, s_layers = compress.encoder_layers(teacher), compress.encoder_layers(student)
    for i, k in enumerate([0, 3]):
        ts, ss = t_layers[k].state_dict(), s_layers[i].state_dict()
        assert ts.keys() == ss.keys()
        for name in ts:
            assert torch.equal(ts[name], ss[name]), (i, k, name)
            assert ts[name].data_ptr() != ss[name].data_ptr()    # copies, not shared tensors
    # embeddings and head copied too; the teacher is unchanged
    assert torch.equal(student.hf.classifier.weight, teacher.hf.classifier.weight)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert compress.encoder_params(student) * 2 == compress.encoder_params(teacher)
    assert student(**batch()).shape == (3, 2)
    with pytest.raises(ValueError, match="keep"):
        compress.shallow_copy(teacher, [0, 4])


def test_student_groups_have_the_same_names_at_any_depth():
    teacher = tiny_bert(layers=4)
    names = [surgery.group_names(compress.student_groups(compress.shallow_copy(teacher, compress.every_other(4, d))))
             for d in (1, 2, 4)]
    assert names[0] == names[1] == names[2] == ["word_embeddings", "embeddings", "encoder", "head"]
    groups = compress.student_groups(teacher)
    covered = {id(p) for g in groups for p in g.parameters()}
    assert covered == {id(p) for p in teacher.parameters()}


# --------------------------------------------------------------------------- size, latency, int8
def test_size_counts_serialized_bytes():
    small, big = nn.Linear(10, 10), nn.Linear(100, 100)
    assert compress.size_bytes(big) > 100 * 100 * 4 > compress.size_bytes(small)


def test_size_is_the_length_of_the_saved_file(tmp_path):
    """size_bytes counts what torch.save writes without keeping it: exactly the bytes of a save into memory,
    and the file on disk (named archive.pt: torch names the zip's folder after the file, a buffer's "archive")."""
    import io

    model = tiny_bert()
    for m in (model, compress.quantize_int8(model)):
        buf = io.BytesIO()
        torch.save(m.state_dict(), buf)
        assert compress.size_bytes(m) == buf.tell()
        torch.save(m.state_dict(), tmp_path / "archive.pt")
        assert compress.size_bytes(m) == (tmp_path / "archive.pt").stat().st_size


def test_quantized_model_is_smaller_runs_and_warns_nothing():
    model = tiny_bert(hidden=128, inter=256)   # rows wide enough that the 16-byte row scales are small beside them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q = compress.quantize_int8(model)
        out = q(**batch())
    assert not [w for w in caught if "deprecat" in str(w.message).lower()], [str(w.message)[:80] for w in caught]
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    assert compress.linear_weight_bytes(model) / compress.linear_weight_bytes(q) > 3
    assert compress.linear_weight_bytes(model) / compress.linear_weight_bytes(compress.quantize_int8(model, per_channel=False)) > 3
    assert compress.size_bytes(q) < compress.size_bytes(model)
    assert compress.n_params(q) == compress.n_params(model)        # same numbers, fewer bits each
    assert isinstance(model.hf.classifier, nn.Linear)              # the original is untouched
    with torch.no_grad():
        ref = model(**batch())
    assert (out - ref).abs().max() < 0.1


def test_int8_scales_each_weight_row_by_default_and_that_helps_outlier_rows():
    """One row 40x larger than the others (as in MiniLM's feed-forward output layers): with one scale per
    matrix the typical rows get a handful of int8 levels; with one scale per row (the default) their
    quantized weights stay close."""
    torch.manual_seed(0)
    lin = nn.Linear(64, 16)
    with torch.no_grad():
        lin.weight[3] *= 40
    model = nn.Sequential(lin)

    def weight(q):
        return q[0]._packed_params._weight_bias()[0]

    row, matrix = compress.quantize_int8(model), compress.quantize_int8(model, per_channel=False)
    assert weight(row).qscheme() == torch.per_channel_affine and weight(matrix).qscheme() == torch.per_tensor_affine
    typical = [i for i in range(16) if i != 3]
    err = lambda q: (weight(q).dequantize() - lin.weight.detach())[typical].abs().max()  # noqa: E731
    assert err(row) < err(matrix) / 10
    x = torch.randn(8, 64)
    with torch.no_grad():
        ref = lin(x)[:, typical]
        assert (row(x)[:, typical] - ref).abs().max() < (matrix(x)[:, typical] - ref).abs().max()


def test_weight_row_spread_finds_the_outlier_row():
    model = tiny_bert(layers=2)
    lin = model.encoder.encoder.layer[1].output.dense
    with torch.no_grad():
        lin.weight.copy_(torch.ones_like(lin.weight))
        lin.weight[5] *= 30
    spread = compress.weight_row_spread(model)
    assert set(spread) == {n for n, _ in compress.prunable_linears(model)}
    assert spread["1.output.dense"] == pytest.approx(30.0)
    assert max(v for n, v in spread.items() if n != "1.output.dense") < 30


def test_torchao_backend_says_what_to_install_or_works():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    with pytest.raises(ValueError, match="backend"):
        compress.quantize_int8(model, backend="fbgemm")
    with pytest.raises(ValueError, match="per_channel=True"):
        compress.quantize_int8(model, backend="torchao", per_channel=False)
    if not compress.torchao_available():
        with pytest.raises(RuntimeError, match="pip install torchao"):
            compress.quantize_int8(model, backend="torchao")
        return
    q = compress.quantize_int8(model, backend="torchao")
    x = torch.randn(4, 64)
    assert (q(x) - model(x)).abs().max() < 0.1
    assert compress.linear_weight_bytes(q) < compress.linear_weight_bytes(model)


def test_latency_restores_the_thread_count_and_mode():
    model = nn.Linear(8, 2).train()
    threads = torch.get_num_threads()
    ms = compress.latency_ms(model, torch.randn(4, 8), threads=1, repeats=3, warmup=1)
    assert ms > 0 and torch.get_num_threads() == threads and model.training


def test_compare_latency_times_the_models_in_turn():
    """Head to head: warm-up calls first, then each round calls every model once, in turn; the thread count
    is restored and every model gets one median per batch."""
    calls = []

    class Tag(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            calls.append((self.name, x.shape[0]))
            return x

    threads = torch.get_num_threads()
    out = compress.compare_latency({"a": Tag("a"), "b": Tag("b")}, {"b1": torch.zeros(1, 3), "b4": torch.zeros(4, 3)},
                                   threads=1, repeats=3, warmup=2)
    assert torch.get_num_threads() == threads
    assert set(out) == {"a", "b"} and all(set(v) == {"b1", "b4"} and min(v.values()) > 0 for v in out.values())
    b1 = [name for name, n in calls if n == 1]
    assert b1 == ["a", "a", "b", "b"] + ["a", "b"] * 3          # 2 warm-up calls each, then 3 rounds in turn
    assert len(calls) == 2 * len(b1)
    with pytest.raises(ValueError, match="repeats"):
        compress.compare_latency({"a": Tag("a")}, {"b1": torch.zeros(1, 3)}, repeats=0)


def test_fixed_batch_gathers_rows_and_pads():
    ds = [(torch.ones(n, dtype=torch.long), 0) for n in (2, 5, 3)]
    dl = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=lambda b: (
        nn.utils.rnn.pad_sequence([x for x, _ in b], batch_first=True), torch.zeros(len(b))))
    x = compress.fixed_batch(dl, 3)
    assert x.shape == (3, 5)
    with pytest.raises(ValueError, match="only 3 rows"):
        compress.fixed_batch(dl, 4)


# --------------------------------------------------------------------------- pruning
def test_unstructured_pruning_zeros_weights_but_not_bytes():
    model = tiny_bert()
    size = compress.size_bytes(model)
    s = compress.magnitude_prune(model, 0.6)
    assert s == pytest.approx(0.6, abs=0.01)
    assert compress.size_bytes(model) == size                   # zeros are stored like any number
    assert not any("mask" in k or "orig" in k for k in model.state_dict())   # pruning made permanent
    assert model(**batch()).shape == (3, 2)


def test_unstructured_pruning_zeros_the_globally_smallest_weights():
    """One global threshold over every encoder Linear: the zeros are exactly the weights whose magnitude is
    at most the k-th smallest, compared with torch.kthvalue over all of them (the reference)."""
    model = tiny_bert(seed=3)
    weights = [m.weight.detach().clone() for _, m in compress.prunable_linears(model)]
    flat = torch.cat([w.abs().flatten() for w in weights])
    k = int(round(0.37 * flat.numel()))
    threshold = flat.kthvalue(k).values
    compress.magnitude_prune(model, 0.37)
    for w, (_, m) in zip(weights, compress.prunable_linears(model)):
        assert torch.equal(m.weight.detach() == 0, w.abs() <= threshold)
        kept = w.abs() > threshold
        assert torch.equal(m.weight.detach()[kept], w[kept])    # the others keep their values


def test_head_pruning_removes_exactly_the_parameters_it_claims_and_keeps_the_function():
    hidden, heads, hs = 32, 4, 8
    model = tiny_bert(layers=2, heads=heads, hidden=hidden)
    # make head 1 of every layer dead: no output and tiny weights, so it is the least important
    for layer in compress.encoder_layers(model):
        with torch.no_grad():
            for lin in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
                lin.weight[hs:2 * hs] *= 1e-3
            layer.attention.output.dense.weight[:, hs:2 * hs] = 0
    x = batch()
    with torch.no_grad():
        ref = model(**x)
    n0 = sum(p.numel() for p in model.parameters())
    info = compress.prune_heads(model, heads - 1)
    n1 = sum(p.numel() for p in model.parameters())
    per_layer = hs * (3 * (hidden + 1) + hidden)                # q, k, v rows (+bias) and output columns
    assert info["removed"] == n0 - n1 == 2 * per_layer
    assert (info["heads_before"], info["heads_after"]) == (8, 6)
    with torch.no_grad():
        assert torch.allclose(model(**x), ref, atol=1e-5)       # the dead head was the one removed
    model.train()
    model(**x).sum().backward()                                 # still trains


def test_ffn_pruning_removes_exactly_the_parameters_it_claims():
    hidden, inter = 32, 64
    model = tiny_bert(layers=2, hidden=hidden, inter=inter)
    for layer in compress.encoder_layers(model):                # 16 dead channels per layer
        with torch.no_grad():
            layer.intermediate.dense.weight[:16] = 0
            layer.output.dense.weight[:, :16] = 0
    x = batch()
    with torch.no_grad():
        ref = model(**x)
    size = compress.size_bytes(model)
    info = compress.prune_ffn(model, 0.75)
    assert info["removed"] == 2 * 16 * (hidden + 1 + hidden)    # up rows + their biases, down columns
    assert (info["channels_before"], info["channels_after"]) == (128, 96)
    with torch.no_grad():
        assert torch.allclose(model(**x), ref, atol=1e-5)
    assert compress.size_bytes(model) < size
    with pytest.raises(ValueError, match="keep"):
        compress.prune_ffn(model, 0.0)


# --------------------------------------------------------------------------- comparing, caching
def test_pareto_front():
    acc = [0.9, 0.8, 0.85, 0.7, 0.9]
    cost = [10, 2, 5, 3, 12]
    assert compress.pareto_front(acc, cost).tolist() == [True, True, True, False, False]


def test_cached_computes_once_and_recomputes_when_the_key_changes(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"w": torch.arange(3.0)}

    v1, hit1 = compress.cached("m", {"a": 1}, compute, directory=tmp_path)
    v2, hit2 = compress.cached("m", {"a": 1}, compute, directory=tmp_path)
    _, hit3 = compress.cached("m", {"a": 2}, compute, directory=tmp_path)
    assert (hit1, hit2, hit3) == (False, True, False) and len(calls) == 2
    assert torch.equal(v1["w"], v2["w"])
    assert not list(tmp_path.glob("*.tmp*"))
