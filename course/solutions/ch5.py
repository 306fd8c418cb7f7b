"""Reference solutions, chapter 5 (instructor only: not shipped in the wheel or the student notebooks)."""
import copy

import torch
import torch.nn.functional as F

# %% ch5_distill
def distillation_loss(student_logits, teacher_logits, labels, T, alpha):
    """alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)."""
    ### BEGIN SOLUTION
    kl = F.kl_div(F.log_softmax(student_logits / T, dim=-1), F.softmax(teacher_logits / T, dim=-1),
                  reduction="batchmean")
    return alpha * T * T * kl + (1 - alpha) * F.cross_entropy(student_logits, labels)
    ### END SOLUTION

# %% ch5_prune
def prune_by_magnitude(w, s):
    """w with its round(s * w.numel()) smallest-magnitude entries set to 0."""
    ### BEGIN SOLUTION
    k = int(round(s * w.numel()))
    out = w.clone()
    if k > 0:
        smallest = w.abs().flatten().argsort()[:k]
        out.view(-1)[smallest] = 0
    return out
    ### END SOLUTION

# %% ch5_shallow
def shallow_bert(teacher, depth):
    """A copy of teacher keeping encoder layers 0, 2, 4, ... (depth of them)."""
    ### BEGIN SOLUTION
    student = copy.deepcopy(teacher)
    student.encoder.layer = torch.nn.ModuleList([student.encoder.layer[2 * i] for i in range(depth)])
    student.config.num_hidden_layers = depth
    return student
    ### END SOLUTION
