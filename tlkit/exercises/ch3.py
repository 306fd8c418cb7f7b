"""Chapter 3 (CNN features and fine-tuning): checked exercises and quiz."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from tlkit.exercises import Exercise, Mistake, close, need_tensor
from tlkit.quiz import Option, Question, find, latest, which_best


# --------------------------------------------------------------------------- ch3_freeze
def _test_freeze(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(int(rng.integers(1 << 30)))
    n_classes = int(rng.integers(3, 12))
    lr = float(rng.choice([1e-4, 3e-4, 1e-3]))
    model = resnet18(weights=None, num_classes=n_classes)
    groups = answer(model, lr)
    if not isinstance(groups, (list, tuple)) or not all(isinstance(d, dict) and "params" in d for d in groups):
        raise Mistake("return optimizer parameter groups: a list of dicts like {'params': [...], 'lr': ...}.")
    head = list(model.fc.parameters())
    block = list(model.layer4.parameters())
    body = [p for n, p in model.named_parameters() if not n.startswith(("fc.", "layer4."))]
    if all(not p.requires_grad for p in head):
        raise Mistake("the head (model.fc) is frozen too: it is new and random, it must train. Freeze the body, "
                      "then make sure the head's parameters keep requires_grad=True.")
    if all(not p.requires_grad for p in block):
        raise Mistake("the last block (model.layer4) is frozen: the exercise trains it together with the head.")
    if any(p.requires_grad for p in body):
        raise Mistake("parts of the body still train: everything before layer4 (conv1, bn1, layer1-3) needs "
                      "requires_grad=False.")
    if not all(p.requires_grad for p in head + block):
        raise Mistake("some parameters of layer4 or fc are frozen; all of them should train.")
    lr_of: dict[int, float] = {}
    for d in groups:
        for p in d["params"]:
            lr_of[id(p)] = float(d.get("lr", float("nan")))
    if any(id(p) not in lr_of for p in head):
        raise Mistake("the head's parameters are not in any optimizer group: the optimizer would never update them.")
    if any(id(p) not in lr_of for p in block):
        raise Mistake("layer4's parameters are not in any optimizer group.")
    lr_head, lr_block = lr_of[id(head[0])], lr_of[id(block[0])]
    if any(lr_of[id(p)] != lr_head for p in head) or any(lr_of[id(p)] != lr_block for p in block):
        raise Mistake("all parameters of the head should share one LR, and all of layer4 another.")
    if abs(lr_block - 10 * lr) < 1e-12 and abs(lr_head - lr) < 1e-12:
        raise Mistake("the LRs are swapped: the head (random) gets 10x the LR; the pretrained block gets lr.")
    if abs(lr_block - lr) > 1e-12 * max(1, lr):
        raise Mistake(f"layer4 should train at lr ({lr:g}), got {lr_block:g}.")
    if abs(lr_head - 10 * lr) > 1e-9 * lr:
        raise Mistake(f"the head should get 10 x lr = {10 * lr:g}, got {lr_head:g}.")
    torch.optim.SGD(groups, lr=lr)  # must be accepted as is


# --------------------------------------------------------------------------- ch3_bn
def _bn_net(rng: np.random.Generator) -> Any:
    from torch import nn

    blocks = [nn.Sequential(nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
              for i in range(4)]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, 2))


def _test_bn(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch
    from torch import nn

    torch.manual_seed(int(rng.integers(1 << 30)))
    net = _bn_net(rng)
    n_frozen = int(rng.integers(1, 4))             # which blocks are frozen changes with the seed
    for block in list(net)[:n_frozen]:
        for p in block.parameters():
            p.requires_grad_(False)
    net.train()
    ret = answer(net)
    if ret is not None and ret is not net:
        raise Mistake("change the model in place (return nothing, or the same model).")
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    frozen_bn, train_bn = bns[:n_frozen], bns[n_frozen:]
    before = [bn.running_mean.clone() for bn in bns]
    with torch.no_grad():
        net(torch.randn(16, 3, 8, 8) * 2 + 1)
    moved = [not torch.equal(b, bn.running_mean) for b, bn in zip(before, bns)]
    if not net.training or not net[-2].training:
        raise Mistake("you switched the whole model to eval mode: the trainable BatchNorm layers stop adapting and "
                      "dropout turns off. Only the BatchNorm layers whose weights are frozen go to eval mode.")
    if any(moved[:n_frozen]):
        raise Mistake("the frozen BatchNorm layers' running statistics still move: a BatchNorm in train mode "
                      "updates running_mean/var on every forward pass even when its weights are frozen. Put those "
                      "layers in eval mode (bn.eval()).")
    if not all(moved[n_frozen:]):
        raise Mistake("trainable BatchNorm layers were put in eval mode too: only those whose parameters are all "
                      "frozen (requires_grad=False) should be.")
    if any(p.requires_grad for bn in frozen_bn for p in bn.parameters()) or \
            not all(p.requires_grad for bn in train_bn for p in bn.parameters()):
        raise Mistake("change only the modes; leave requires_grad as it was.")


# --------------------------------------------------------------------------- ch3_norm
def _test_norm(answer: Callable[..., Any], rng: np.random.Generator) -> None:
    import torch

    from tlkit.vision import IMAGENET_MEAN, IMAGENET_STD

    b, h, w = int(rng.integers(2, 5)), int(rng.integers(8, 17)), int(rng.integers(8, 17))
    gray = torch.as_tensor(rng.integers(0, 256, size=(b, h, w)), dtype=torch.uint8)
    out = answer(gray.clone())
    if not isinstance(out, torch.Tensor):
        raise Mistake(f"return a torch.Tensor, got {type(out).__name__}.")
    if tuple(out.shape) == (b, 1, h, w) or tuple(out.shape) == (b, h, w):
        raise Mistake("the network was trained on RGB images: it expects 3 channels. Repeat the gray channel 3 "
                      "times, giving (B, 3, H, W).")
    need_tensor(out, "the output", (b, 3, h, w))
    if not out.is_floating_point():
        raise Mistake(f"return floats (torch.float32), got {out.dtype}.")
    x = gray.float()[:, None].expand(b, 3, h, w)
    mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    want = (x / 255 - mean) / std
    if close(out, want):
        return
    if close(out, x / 255):
        raise Mistake("scaled to [0, 1] but not normalised: the pretrained weights expect each channel minus the "
                      "ImageNet mean, divided by the ImageNet std (skipping it cost several points in the chapter).")
    if close(out, (x - mean) / std):
        raise Mistake("the ImageNet mean and std are for pixel values in [0, 1]: divide by 255 first.")
    if close(out, (x / 255 - 0.5) / 0.5):
        raise Mistake("(x - 0.5) / 0.5 is not what these weights were trained with: use the ImageNet per-channel "
                      "mean and std (tlkit.vision.IMAGENET_MEAN, IMAGENET_STD).")
    raise Mistake("the values differ from (x / 255 - mean) / std per channel with ImageNet's mean and std.")


EXERCISES = [
    Exercise("ch3_freeze", 3, "Freeze all but the last block; 10x LR for the head", "freeze_all_but_last",
             "Write `freeze_all_but_last(model, lr)` for a torchvision ResNet: freeze everything except the last "
             "block (`model.layer4`) and the head (`model.fc`), and return optimizer parameter groups in which "
             "layer4 trains at `lr` and the head at 10 x `lr`.", _test_freeze),
    Exercise("ch3_bn", 3, "Frozen BatchNorm stays frozen", "freeze_bn_stats",
             "Write `freeze_bn_stats(model)`, called after `model.train()`: put every BatchNorm layer whose "
             "parameters are all frozen into eval mode, and leave the rest of the model in training mode.", _test_bn),
    Exercise("ch3_norm", 3, "Feed the network what it was trained on", "imagenet_input",
             "Write `imagenet_input(gray)`: `gray` is a uint8 tensor `(B, H, W)` of gray images (0-255). Return "
             "the float tensor `(B, 3, H, W)` that an ImageNet-pretrained CNN expects: values scaled to [0, 1], "
             "the gray channel repeated 3 times, each channel normalised with ImageNet's mean and std.", _test_norm),
]


# --------------------------------------------------------------------------- quiz
QUIZ_TITLE = "Chapter 3 quiz: pretrained CNN features"


def _q_norm(r: dict) -> Question:
    """Whether ImageNet normalisation helped the linear probe"""
    with_n = find(r, "features+logreg (ImageNet normalisation)", "test_acc")
    without = find(r, "features+logreg (no normalisation)", "test_acc")
    helped = with_n > without
    return Question(
        "In this run, did ImageNet normalisation help the linear probe on MobileNetV2 features?", (
            Option("Yes", helped, f"With normalisation {with_n:.3f}, without {without:.3f}"
                   + (": the weights expect normalised inputs." if helped else ": not in this run (few seeds?).")),
            Option("No", not helped, f"With normalisation {with_n:.3f}, without {without:.3f}"
                   + (" — it did help here." if helped else ": no gain in this run.")),
        ), from_run=True)


def _q_gain(r: dict) -> Question:
    """Which transfer method gained most over training from scratch"""
    gains = latest(r, "gain_vs_scratch_at_smallest_budget")
    if not gains:
        raise KeyError("<method> / gain_vs_scratch_at_smallest_budget")
    return which_best("At the smallest label budget, which method gained most over training the same network "
                      "from scratch, in this run?", gains, fmt="{:+.3f} over scratch")


QUIZ = [
    Question("Which layers of an ImageNet CNN hold the most generic features?", (
        Option("The first layers (edges, colours, textures)", True,
               "Right: early layers transfer to almost any image task; late ones are ImageNet-specific."),
        Option("The last layers", False, "The last layers specialise in ImageNet's classes."),
        Option("The classifier head", False, "The head maps features to ImageNet's 1000 classes; it is replaced."),
    )),
    Question("Why can feature extraction (frozen body + linear head) be so cheap to iterate on?", (
        Option("The frozen body's features are computed once, cached, and heads train on them in seconds", True,
               "Right: the chapter caches features keyed by everything they depend on."),
        Option("Because a frozen body runs faster per image", False,
               "The forward pass costs the same; what is saved is recomputing it every epoch."),
        Option("Because it needs no labels", False, "The linear head still needs labels."),
    )),
    Question("You freeze a block containing BatchNorm and call model.train(). What happens to that BatchNorm?", (
        Option("Its running statistics keep updating unless you put it in eval mode", True,
               "Right: freezing weights (requires_grad=False) does not stop the statistics from moving."),
        Option("Nothing: frozen means frozen", False, "requires_grad only stops gradient updates of weight/bias."),
        Option("It raises an error", False, "PyTorch happily updates the statistics."),
    )),
    Question("Why give the pretrained body a smaller learning rate than the new head?", (
        Option("The body is already good; large steps would wipe out what ImageNet taught it", True,
               "Right: the head is random and needs large steps, the body only small adjustments."),
        Option("To save memory", False, "The LR does not change memory use."),
        Option("Because smaller LRs always train faster", False, "They train slower; the point is to protect the body."),
    )),
    Question("With 10 labelled images per class, MobileNetV2 trained from scratch lost to logistic regression on "
             "raw pixels. What does this teach?", (
        Option("Compare transfer against fair baselines: a big network from scratch is a weak straw man", True,
               "Right: the chapter shows raw-pixel logistic regression and a small CNN beside it."),
        Option("MobileNetV2 is a bad architecture", False, "Pretrained, the same network wins clearly."),
        Option("Transfer learning does not work on Fashion-MNIST", False,
               "Fine-tuned from ImageNet, the same network beats raw-pixel logistic regression at every budget "
               "(one of the chapter's checked claims)."),
    )),
    _q_norm,
    _q_gain,
]
