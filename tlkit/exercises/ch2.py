"""Chapter 2 (fine-tuning a pretrained transformer): checked exercises and quiz."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from tlkit.exercises import Exercise, Mistake, close, need_tensor
from tlkit.quiz import Option, Question, find, latest, which_best


# --------------------------------------------------------------------------- ch2_pool
def _test_pool(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch

    b, length, h = int(rng.integers(3, 6)), int(rng.integers(6, 10)), int(rng.integers(4, 9))
    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    hidden = torch.randn(b, length, h, generator=g) + 3.0   # padding positions hold junk, as in a real encoder
    lengths = torch.as_tensor(rng.integers(1, length, size=b))
    lengths[0] = length                                   # one full row, the others padded
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    out = answer(hidden.clone(), mask.clone())
    need_tensor(out, "the pooled output", (b, h))
    want = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    if close(out, want):
        return
    if close(out, hidden.mean(1)):
        raise Mistake("you averaged over every position, padding included: the padded rows then depend on how much "
                      "padding the batch had. Weight each position by the attention mask and divide by its sum.")
    if close(out, hidden[:, 0]):
        raise Mistake("that is [CLS] pooling (the first token); the exercise asks for the mean of the real tokens.")
    if close(out, (hidden * mask[..., None]).sum(1)):
        raise Mistake("that is the sum over real tokens: it grows with the length of the text. Divide by the number "
                      "of real tokens (the mask's sum per row).")
    raise Mistake("not the mean of the hidden states over positions where attention_mask is 1.")


# --------------------------------------------------------------------------- ch2_pad
def _test_pad(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch

    pad_id = int(rng.integers(1, 50))       # not 0: BERT's pad id is 0, not every tokenizer's
    seqs = [list(map(int, rng.integers(100, 200, size=int(rng.integers(2, 9))))) for _ in range(int(rng.integers(3, 6)))]
    longest = max(len(s) for s in seqs)
    res = answer([list(s) for s in seqs], pad_id)
    if not (isinstance(res, tuple) and len(res) == 2):
        raise Mistake(f"return a tuple (ids, attention_mask), got {type(res).__name__}.")
    ids, mask = res
    need_tensor(ids, "ids")
    need_tensor(mask, "attention_mask")
    if ids.dim() != 2 or ids.shape[0] != len(seqs):
        raise Mistake(f"ids should be (batch, longest) = ({len(seqs)}, {longest}), got {tuple(ids.shape)}.")
    if ids.shape[1] > longest:
        raise Mistake(f"you padded to {ids.shape[1]} tokens but the longest text here has {longest}: pad each batch "
                      "only to its own longest sequence (dynamic padding); a fixed length wastes most of the compute "
                      "on padding.")
    if ids.shape[1] < longest:
        raise Mistake(f"ids has {ids.shape[1]} columns but the longest sequence has {longest}: nothing may be cut.")
    if ids.dtype != torch.long:
        raise Mistake(f"ids must be integer (torch.long) for an embedding lookup, got {ids.dtype}.")
    want = torch.full((len(seqs), longest), pad_id)
    for i, s in enumerate(seqs):
        want[i, :len(s)] = torch.tensor(s)
    want_mask = (torch.arange(longest)[None, :] < torch.tensor([len(s) for s in seqs])[:, None]).long()
    if mask.shape != want_mask.shape:
        raise Mistake(f"attention_mask should have the shape of ids, {tuple(want.shape)}, got {tuple(mask.shape)}.")
    if torch.equal(mask.long(), 1 - want_mask):
        raise Mistake("the mask is inverted: 1 marks a real token, 0 a pad.")
    if not torch.equal(ids, want):
        if torch.equal(ids[want_mask.bool()], want[want_mask.bool()]):
            raise Mistake(f"the real tokens are right but the padding is not pad_id ({pad_id}): use the pad_id you "
                          "are given, not 0.")
        raise Mistake("the tokens are not where they should be: keep each sequence at the left and put the padding "
                      "on the right.")
    if not torch.equal(mask.long(), want_mask):
        raise Mistake("attention_mask must be 1 exactly at the real tokens and 0 at the padding.")


# --------------------------------------------------------------------------- ch2_llrd
def _toy_groups(rng: np.random.Generator) -> list[Any]:
    import torch
    from torch import nn

    from tlkit.surgery import LayerGroup

    torch.manual_seed(int(rng.integers(1 << 30)))
    n_layers = int(rng.integers(3, 6))
    emb = nn.Embedding(20, 8)
    layers = [nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8)) for _ in range(n_layers)]
    head = nn.Linear(8, 2)
    groups = [LayerGroup("embeddings", [emb])] + [LayerGroup(f"layer{i}", [m]) for i, m in enumerate(layers)]
    groups.append(LayerGroup("head", [head]))
    for p in emb.parameters():          # frozen, as the chapter does on CPU
        p.requires_grad_(False)
    return groups


def _test_llrd(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch

    groups = _toy_groups(rng)
    lr, decay = float(rng.choice([1e-4, 2e-4, 3e-5])), float(rng.uniform(0.6, 0.9))
    res = answer(list(groups), lr, decay)
    if not isinstance(res, (list, tuple)) or not all(isinstance(d, dict) and "params" in d for d in res):
        raise Mistake("return a list of dicts like {'params': [...], 'lr': ...}, one per group (what torch.optim "
                      "takes).")
    lr_of: dict[int, float] = {}
    for d in res:
        if "lr" not in d:
            raise Mistake("every parameter group needs its own 'lr'.")
        for p in d["params"]:
            if id(p) in lr_of:
                raise Mistake("a parameter appears in two groups; torch.optim refuses that.")
            lr_of[id(p)] = float(d["lr"])
    want = {id(p): lr * decay ** depth for depth, g in enumerate(reversed(groups)) for p in g.parameters()}
    missing = [g.name for g in groups if any(id(p) not in lr_of for p in g.parameters())]
    if missing == ["embeddings"]:
        raise Mistake("the frozen embeddings group is missing: keep every group in the optimizer (frozen parameters "
                      "get no gradient and are skipped), so that unfreezing it later needs no new optimizer.")
    if missing:
        raise Mistake(f"groups {missing} are missing from the optimizer groups.")
    head = groups[-1].parameters()[0]
    emb = groups[0].parameters()[0]
    if abs(lr_of[id(emb)] - lr) < 1e-12 and lr_of[id(head)] < lr:
        raise Mistake("the decay runs the wrong way: the embeddings got the full LR and the head the smallest. The "
                      "head (new, random) gets lr; each group further from it gets one more factor of decay.")
    if abs(lr_of[id(head)] - lr * decay) < 1e-12:
        raise Mistake("the head got lr * decay: the head gets the base lr itself, the group below it lr * decay, "
                      "then lr * decay**2, ...")
    bad = [g.name for g in groups for p in g.parameters() if abs(lr_of[id(p)] - want[id(p)]) > 1e-9 * lr]
    if bad:
        raise Mistake(f"wrong LR for {sorted(set(bad))}: a group d steps below the head gets lr * decay**d.")
    torch.optim.AdamW(res)  # must be accepted as is


# --------------------------------------------------------------------------- ch2_warmup
def _test_warmup(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    total = int(rng.integers(20, 200))
    warm = int(rng.integers(2, total // 4))

    def ref(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, 1.0 - (step - warm) / max(1, total - warm))
    got = [float(answer(s, total, warm)) for s in range(total)]
    want = [ref(s) for s in range(total)]
    if np.allclose(got, want, atol=1e-9):
        return
    if got[0] == 0.0:
        raise Mistake("the factor is 0 at step 0, so the first optimizer step does nothing (the warmup starts one "
                      "step late). Steps count from 0: the first step gets 1/warmup_steps.")
    if np.allclose(got[warm:], 1.0):
        raise Mistake("after the warmup the factor stays at 1: it should fall linearly to 0 at the last step.")
    if np.allclose(got[:warm], want[:warm]):
        raise Mistake("the warmup is right; the decay is not: after warmup_steps it falls linearly from 1 to 0 over "
                      "the remaining total_steps - warmup_steps steps.")
    raise Mistake(f"at step {int(np.argmax(np.abs(np.subtract(got, want))))} the factor is off: it rises linearly "
                  "to 1 over the warmup, then falls linearly to 0.")


EXERCISES = [
    Exercise("ch2_pool", 2, "Mean pooling with an attention mask", "masked_mean",
             "Write `masked_mean(hidden, attention_mask)`: `hidden` is `(B, L, H)` (the encoder's last hidden "
             "states), `attention_mask` `(B, L)` with 1 for real tokens and 0 for padding; return `(B, H)`, the "
             "mean over the real tokens only.", _test_pool),
    Exercise("ch2_pad", 2, "Dynamic padding", "pad_batch",
             "Write `pad_batch(seqs, pad_id)`: `seqs` is a list of token-id lists of different lengths. Return "
             "`(ids, attention_mask)`, two `torch.long` tensors `(B, longest in this batch)`, sequences on the left, "
             "`pad_id` on the right, mask 1 at real tokens.", _test_pad),
    Exercise("ch2_llrd", 2, "Layer-wise learning-rate decay", "llrd_param_groups",
             "Write `llrd_param_groups(groups, lr, decay)`: `groups` is a list of `surgery.LayerGroup` ordered from "
             "the input (embeddings) to the head. Return optimizer parameter groups (dicts with 'params' and 'lr') "
             "in which the head gets `lr` and a group d steps below it `lr * decay**d`; keep frozen groups in.",
             _test_llrd),
    Exercise("ch2_warmup", 2, "Warmup, then linear decay", "warmup_linear",
             "Write `warmup_linear(step, total_steps, warmup_steps)` returning the LR multiplier for `step` "
             "(0-based): a linear ramp `(step + 1) / warmup_steps` during the warmup, then a linear fall from 1 to 0 "
             "at `total_steps`.", _test_warmup),
]


# --------------------------------------------------------------------------- quiz
QUIZ_TITLE = "Chapter 2 quiz: fine-tuning a pretrained transformer"


def _q_collapse(r: dict) -> Question:
    """What the too-high learning rate did"""
    share = find(r, "lr_too_high", "majority_class_share")
    acc = find(r, "lr_too_high", "movies_acc")
    collapsed = share >= 0.9
    return Question(
        "What happened in this run when full fine-tuning used LR 1e-3 without warmup or decay?", (
            Option("The model predicted (almost) only one class", collapsed,
                   f"{share:.0%} of its predictions were one class (accuracy {acc:.3f})"
                   + (": a collapse — too large steps destroyed the pretrained features." if collapsed
                      else ", so it did not fully collapse in this run.")),
            Option("It trained normally, just a bit worse", not collapsed,
                   f"Its majority-class share was {share:.0%} and accuracy {acc:.3f}"
                   + (", so it did not collapse this time." if not collapsed else ": that is a collapse, not a "
                      "small loss.")),
        ), from_run=True)


def _q_best_at(largest: bool) -> Callable[[dict], Question]:
    def build(r: dict) -> Question:
        budgets = sorted({int(k[1][7:]) for k in r if k[1].startswith("acc_at_") and k[1][7:].isdigit()})
        if not budgets:
            raise KeyError("<method> / acc_at_<budget>")
        b = budgets[-1] if largest else budgets[0]
        acc = latest(r, f"acc_at_{b}")
        return which_best(f"At {b} labels per class, which method had the highest mean movie test accuracy "
                          "in this run?", acc)
    build.__doc__ = f"Best method at the {'largest' if largest else 'smallest'} label budget"
    return build


QUIZ = [
    Question("Why pad each batch only to its own longest text?", (
        Option("Most of a fixed 128-token batch would be padding, and attention costs grow with length", True,
               "Right: on short snippets dynamic padding trained 4-8x faster here."),
        Option("Because BERT cannot read padded batches", False, "It can: the attention mask tells it to ignore pads."),
        Option("It changes the model's predictions for the better", False,
               "With a correct mask the predictions are the same; only the cost changes."),
    )),
    Question("Fine-tuning with a learning rate that is too high typically ...", (
        Option("collapses the model to one class: loss near ln 2, accuracy at chance", True,
               "Right: large steps wipe out the pretrained features."),
        Option("overfits quickly but reaches a higher validation accuracy", False,
               "The chapter's too-high LR run did worse, not better."),
        Option("makes no difference thanks to AdamW", False, "Adam normalises gradient scale, not the step size."),
    )),
    Question("In layer-wise LR decay, which group gets the smallest learning rate?", (
        Option("The embeddings and lowest layers", True,
               "Right: they hold the most general features, which need the least change."),
        Option("The new classification head", False, "The head is random at the start and gets the largest LR."),
        Option("All groups get the same", False, "That is decay = 1, i.e. no layer-wise decay."),
    )),
    Question("Why freeze BERT's word-embedding matrix when fine-tuning on a CPU?", (
        Option("AdamW's update of the large embedding matrix costs a lot each step and little accuracy is lost", True,
               "Right: the update touched 60-250 ms a step on this machine."),
        Option("Word embeddings cannot be trained", False, "They can; it is a cost-benefit choice."),
        Option("The tokenizer would stop working", False, "The tokenizer does not depend on the weights."),
    )),
    Question("Frozen features + a linear head, compared with fine-tuning, are ...", (
        Option("cheaper and stable, strong with very few labels; fine-tuning usually wins as labels grow", True,
               "Right: that is the chapter's budget sweep."),
        Option("always better", False, "With more labels fine-tuning adapts the features and wins."),
        Option("useless, because features of a frozen encoder are random", False,
               "The frozen encoder is the pretrained one; its features carry the transfer."),
    )),
    _q_collapse,
    _q_best_at(largest=False),
    _q_best_at(largest=True),
]
