"""Reference solutions, chapter 2 (instructor only: not shipped in the wheel or the student notebooks)."""
import torch

# %% ch2_pool
def masked_mean(hidden, attention_mask):
    """(B, L, H), (B, L) -> (B, H): mean of the hidden states over real tokens."""
    ### BEGIN SOLUTION
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    ### END SOLUTION

# %% ch2_pad
def pad_batch(seqs, pad_id):
    """Token-id lists -> (ids, attention_mask), both (B, longest) torch.long, padding on the right."""
    ### BEGIN SOLUTION
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask
    ### END SOLUTION

# %% ch2_llrd
def llrd_param_groups(groups, lr, decay):
    """One optimizer group per layer group; the head gets lr, d groups below it lr * decay**d."""
    ### BEGIN SOLUTION
    n = len(groups)
    return [{"params": g.parameters(), "lr": lr * decay ** (n - 1 - i)} for i, g in enumerate(groups)]
    ### END SOLUTION

# %% ch2_warmup
def warmup_linear(step, total_steps, warmup_steps):
    """LR multiplier at 0-based step: linear warmup to 1, then linear decay to 0."""
    ### BEGIN SOLUTION
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, 1.0 - (step - warmup_steps) / max(1, total_steps - warmup_steps))
    ### END SOLUTION
