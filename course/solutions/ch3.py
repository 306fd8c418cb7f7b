"""Reference solutions, chapter 3 (instructor only: not shipped in the wheel or the student notebooks)."""
import torch
from torch import nn

from tlkit.vision import IMAGENET_MEAN, IMAGENET_STD

# %% ch3_freeze
def freeze_all_but_last(model, lr):
    """Freeze all of a ResNet but layer4 and fc; return groups with layer4 at lr and fc at 10 x lr."""
    ### BEGIN SOLUTION
    for p in model.parameters():
        p.requires_grad_(False)
    for p in list(model.layer4.parameters()) + list(model.fc.parameters()):
        p.requires_grad_(True)
    return [{"params": list(model.layer4.parameters()), "lr": lr},
            {"params": list(model.fc.parameters()), "lr": 10 * lr}]
    ### END SOLUTION

# %% ch3_bn
def freeze_bn_stats(model):
    """After model.train(): BatchNorm layers whose parameters are all frozen go to eval mode."""
    ### BEGIN SOLUTION
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if not any(p.requires_grad for p in m.parameters()):
                m.eval()
    ### END SOLUTION

# %% ch3_norm
def imagenet_input(gray):
    """uint8 (B, H, W) -> float (B, 3, H, W) in ImageNet's normalisation."""
    ### BEGIN SOLUTION
    x = gray.float().div(255).unsqueeze(1).repeat(1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std
    ### END SOLUTION
