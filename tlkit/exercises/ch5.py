"""Chapter 5 (compression): checked exercises and quiz."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from tlkit.exercises import Exercise, Mistake, close, need_loss, need_tensor
from tlkit.quiz import Option, Question, find


# --------------------------------------------------------------------------- ch5_distill
def _kl(p_logits: Any, q_logits: Any, reduction: str = "batchmean") -> Any:
    """KL(softmax(p) || softmax(q)) with the given reduction (p the target distribution)."""
    import torch.nn.functional as F

    # "mean" by hand: torch warns on kl_div(reduction="mean") and the warning would reach the student
    per = F.kl_div(F.log_softmax(q_logits, -1), F.log_softmax(p_logits, -1), reduction="none", log_target=True)
    return {"batchmean": per.sum() / len(per), "sum": per.sum(), "mean": per.mean()}[reduction]


def _test_distill(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch
    import torch.nn.functional as F

    from tlkit.compress import distillation_loss

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    n, c = int(rng.integers(4, 11)), int(rng.integers(3, 7))
    s = (torch.randn(n, c, generator=g) * 2).requires_grad_(True)
    t = torch.randn(n, c, generator=g) * 3
    y = torch.randint(0, c, (n,), generator=g)
    T = float(rng.choice([2.0, 3.0, 4.0]))
    # away from 0.5, where swapped weights would give the same loss
    alpha = float(rng.uniform(0.2, 0.4) if rng.random() < 0.5 else rng.uniform(0.6, 0.8))
    got = answer(s, t, y, T, alpha)
    need_loss(got, "the student")
    want = distillation_loss(s, t, y, temperature=T, alpha=alpha)["loss"]
    if close(got, want):
        return
    ce = F.cross_entropy(s, y)
    kl = _kl(t / T, s / T)
    wrong = [
        (alpha * kl + (1 - alpha) * ce,
         "the T^2 factor is missing: the soft term's gradients shrink as 1/T^2, so multiply the KL by T^2 to keep "
         "them the same size whatever the temperature."),
        ((1 - alpha) * T * T * kl + alpha * ce,
         "the weights are swapped: alpha weighs the teacher's soft targets (alpha = 1 ignores the labels), "
         "1 - alpha the cross-entropy with the labels."),
        (alpha * T * T * _kl(s / T, t / T) + (1 - alpha) * ce,
         "the KL runs the wrong way: it is KL(teacher || student), i.e. F.kl_div(log_softmax(student / T), "
         "teacher's (log-)probabilities at T); kl_div takes the STUDENT's log-probabilities as its first argument."),
        (alpha * T * T * _kl(t, s / T) + (1 - alpha) * ce,
         "only the student is softened: divide the teacher's logits by T too (both sides at the same temperature)."),
        (alpha * T * T * _kl(t / T, s) + (1 - alpha) * ce,
         "only the teacher is softened: divide the student's logits by T too (both sides at the same "
         "temperature; the cross-entropy with the labels uses the plain logits)."),
        (alpha * T * T * _kl(t / T, s / T, "sum") + (1 - alpha) * ce,
         "the KL is summed over the batch: use reduction=\"batchmean\" (sum over classes, mean over rows), the "
         "true KL per example."),
        (alpha * T * T * _kl(t / T, s / T, "mean") + (1 - alpha) * ce,
         "the KL is averaged over every element (reduction=\"mean\" also divides by the number of classes): use "
         "reduction=\"batchmean\"."),
        (alpha * T * T * kl + (1 - alpha) * F.cross_entropy(s / T, y),
         "the cross-entropy with the labels uses the softened logits: it uses the student's plain logits (T = 1)."),
    ]
    for value, hint in wrong:
        if close(got, value):
            raise Mistake(hint)
    raise Mistake(f"got {float(got):.5g}: expected alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) "
                  "(batchmean) + (1 - alpha) * cross_entropy(student, labels).")


# --------------------------------------------------------------------------- ch5_prune
def _test_prune(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch

    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    shape = (int(rng.integers(6, 20)), int(rng.integers(6, 20)))
    w = torch.randn(shape, generator=g)
    s = float(rng.uniform(0.15, 0.85))
    n, k = w.numel(), int(round(s * w.numel()))
    got = answer(w.clone(), s)
    need_tensor(got, "the pruned weight", shape)
    zero = (got == 0)
    n_zero = int(zero.sum())
    a = w.abs()
    if n_zero == 0 or n_zero == int(round(s / 100 * n)):
        raise Mistake(f"sparsity {s:.2f} is a FRACTION of the weights (0.3 = 30%), not a percent: expect "
                      f"round(s * n) = {k} zeros of {n}, got {n_zero}.")
    if n_zero == n:
        raise Mistake("every weight is zero: sparsity is the fraction of weights to zero (round(s * n) of them), "
                      "not a percent or a threshold on the values.")
    if not close(got[~zero], w[~zero]):
        raise Mistake("the weights you keep must keep their values: only set the pruned ones to 0 (no rescaling).")
    if n_zero != k:
        raise Mistake(f"expected exactly round(s * n) = {k} zeros of {n} at sparsity {s:.3f}, got {n_zero} "
                      "(an off-by-one in the threshold: > versus >=, or k-th value versus k-th index?).")
    if a[~zero].min() >= a[zero].max():
        return
    if a[zero].min() >= a[~zero].max():
        raise Mistake("you zeroed the LARGEST weights: magnitude pruning removes the smallest |w|, which change "
                      "the output least.")
    if w[zero].max() <= w[~zero].min():
        raise Mistake("you zeroed the most negative values: rank the weights by their magnitude |w| "
                      "(w.abs()), not their signed value; a large negative weight matters as much as a large "
                      "positive one.")
    raise Mistake("the zeros must be the round(s * n) weights of smallest magnitude |w| (over the whole tensor).")


# --------------------------------------------------------------------------- ch5_shallow
def _test_shallow(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch
    from transformers import BertConfig, BertModel

    n = int(rng.choice([4, 6]))
    depth = n // 2
    keep = list(range(0, n, 2))
    torch.manual_seed(int(rng.integers(1 << 30)))
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=n, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=24)
    teacher = BertModel(cfg).eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = answer(teacher, depth)
    if not isinstance(student, BertModel):
        raise Mistake(f"return a transformers BertModel (the student), got {type(student).__name__}.")
    if len(teacher.encoder.layer) != n or any(not torch.equal(v, teacher.state_dict()[k]) for k, v in before.items()):
        raise Mistake("the teacher changed: build the student from a copy (copy.deepcopy(teacher)), then keep its "
                      "layers; the teacher is still needed to distil.")
    layers = student.encoder.layer
    if len(layers) != depth:
        raise Mistake(f"the student should have {depth} encoder layers (student.encoder.layer), got {len(layers)}.")
    if student.config.num_hidden_layers != depth:
        raise Mistake(f"student.config.num_hidden_layers is {student.config.num_hidden_layers}, the student has "
                      f"{depth} layers: update the config too (it is saved with the model and read when loading).")
    t_ptrs = {p.data_ptr() for p in teacher.parameters()}
    if any(p.data_ptr() in t_ptrs for p in student.parameters()):
        raise Mistake("the student SHARES tensors with the teacher: training it would change the teacher too. "
                      "Copy the teacher (copy.deepcopy) instead of reusing its modules.")

    def same(a: Any, b: Any) -> bool:
        sa, sb = a.state_dict(), b.state_dict()
        return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    if not same(student.embeddings, teacher.embeddings):
        raise Mistake("the student's embeddings are not the teacher's: copy them too (a fresh BertModel starts "
                      "from random embeddings, which the copied layers do not understand).")
    if all(same(layers[i], teacher.encoder.layer[keep[i]]) for i in range(depth)):
        x = torch.randint(0, cfg.vocab_size, (2, 7))
        with torch.no_grad():
            out = student(input_ids=x).last_hidden_state
        if tuple(out.shape) != (2, 7, cfg.hidden_size):
            raise Mistake(f"the student's output has shape {tuple(out.shape)}, expected (2, 7, {cfg.hidden_size}).")
        return
    if all(same(layers[i], teacher.encoder.layer[i]) for i in range(depth)):
        raise Mistake(f"you kept the first {depth} layers: keep every other one ({keep}), so the student spans the "
                      "teacher's whole depth, low-level and high-level layers alike (DistilBERT's initialisation).")
    raise Mistake(f"student layer i must be a copy of teacher layer 2 i (layers {keep} of {n}), tensor for tensor.")


EXERCISES = [
    Exercise("ch5_distill", 5, "Distil with temperature T", "distillation_loss",
             "Write `distillation_loss(student_logits, teacher_logits, labels, T, alpha)`: logits `(N, C)`, labels "
             "`(N,)` class indices -> the scalar `alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + "
             "(1 - alpha) * cross_entropy(student, labels)`, the KL averaged over the rows (`reduction=\"batchmean\"`). "
             "`alpha` weighs the teacher, as in `compress.distillation_loss`. It must stay differentiable.",
             _test_distill),
    Exercise("ch5_prune", 5, "Magnitude pruning", "prune_by_magnitude",
             "Write `prune_by_magnitude(w, s)`: a weight tensor `w` and a sparsity `s` in [0, 1) -> a tensor of the "
             "same shape where the `round(s * w.numel())` entries of smallest magnitude `|w|` are 0 and every other "
             "entry keeps its value.", _test_prune),
    Exercise("ch5_shallow", 5, "A shallow student from every other layer", "shallow_bert",
             "Write `shallow_bert(teacher, depth)`: a transformers `BertModel` with `n = 2 * depth` encoder layers "
             "-> a new `BertModel` whose layer `i` is a copy of teacher layer `2 i` (layers 0, 2, 4, ...), with the "
             "teacher's embeddings, and `config.num_hidden_layers == depth`. The teacher must stay unchanged and "
             "share no tensor with the student.", _test_shallow),
]


# --------------------------------------------------------------------------- quiz
QUIZ_TITLE = "Chapter 5 quiz: compression"


def _q_int8_ratio(r: dict) -> Question:
    """How much smaller int8 made the teacher's Linear weights"""
    ratio = find(r, "teacher_int8", "linear_ratio")
    return Question("By what factor did dynamic int8 quantization shrink the teacher's Linear weights in this run?", (
        Option("Less than 1.5x", ratio < 1.5, f"The measured factor was {ratio:.2f}x."),
        Option("Between 1.5x and 3x", 1.5 <= ratio < 3.0, f"The measured factor was {ratio:.2f}x."),
        Option("3x or more (close to 4x: 1 byte per weight instead of 4, plus scales)", ratio >= 3.0,
               f"The measured factor was {ratio:.2f}x."),
    ), from_run=True)


def _q_unstructured_size(r: dict) -> Question:
    """Whether unstructured pruning made the saved model smaller"""
    ratio = find(r, "unstructured", "size_ratio_at_max_sparsity")
    return Question("At the highest sparsity of the unstructured pruning curve, how big was the saved teacher "
                    "compared with the dense one in this run?", (
        Option("Less than 70% of the dense size", ratio < 0.7,
               f"Measured: {ratio:.3f} of the dense size."),
        Option("Between 70% and 95%", 0.7 <= ratio < 0.95, f"Measured: {ratio:.3f} of the dense size."),
        Option("95% or more: practically the same size", ratio >= 0.95,
               f"Measured: {ratio:.3f} of the dense size" + (" — the zeros are still stored as dense float32."
                                                              if ratio >= 0.95 else ".")),
    ), from_run=True)


QUIZ = [
    Question("Why does the distillation loss multiply the KL term by T^2?", (
        Option("To make the teacher more confident", False, "T^2 scales the loss, not the teacher's outputs."),
        Option("The soft term's gradients scale as 1/T^2; T^2 keeps them the same size whatever T", True,
               "Right (Hinton et al. 2015): you can change T without re-tuning alpha."),
        Option("To turn the KL into a cross-entropy", False, "KL and cross-entropy differ by the teacher's entropy, "
               "a constant; T^2 has nothing to do with it."),
    )),
    Question("What does a temperature T > 1 do to the teacher's outputs?", (
        Option("Softens them: the small probabilities of the wrong classes grow and carry information", True,
               "Right: which wrong class looks likely ('dark knowledge') is what the student learns beyond "
               "the label."),
        Option("Sharpens them towards a one-hot label", False, "T < 1 sharpens; T > 1 flattens."),
        Option("Changes which class the teacher predicts", False, "Dividing logits by T keeps their order: the "
               "argmax is the same."),
    )),
    Question("Why can distillation use unlabelled in-domain text?", (
        Option("The teacher labels it by hand", False, "No person labels anything: the teacher's outputs are "
               "computed."),
        Option("It cannot: every snippet needs a label", False, "The soft term needs only the teacher's output."),
        Option("The soft-target term needs only the teacher's output, not a label", True,
               "Right: with few labels, unlabelled text through the teacher is where a student gains most."),
    )),
    Question("50% unstructured magnitude pruning sets half of the weights to zero. What happens to the model "
             "file and the speed with ordinary dense PyTorch kernels?", (
        Option("Half the size, twice as fast", False, "The zeros are still stored and still multiplied."),
        Option("Neither changes: the zeros are stored as dense float32 and still multiplied", True,
               "Right: it pays off only with sparse storage or kernels; structured pruning removes whole rows."),
        Option("Smaller but slower", False, "The dense tensors keep their shape, so the file does not shrink."),
    )),
    Question("Why initialise a 3-layer student from layers 0, 2, 4 of a 6-layer teacher rather than layers 0, 1, 2?", (
        Option("Layers 0, 1, 2 are larger", False, "Every layer of a BERT encoder has the same size."),
        Option("Layers 3-5 are random", False, "All of the teacher's layers are trained."),
        Option("Spread-out layers span the teacher's whole depth, low- and high-level features alike", True,
               "Right: DistilBERT takes one layer out of two; the first three alone never reach the top-level "
               "features the head expects."),
    )),
    _q_int8_ratio,
    _q_unstructured_size,
]
