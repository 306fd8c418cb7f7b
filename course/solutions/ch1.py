"""Reference solutions, chapter 1 (instructor only: not shipped in the wheel or the student notebooks).

Each ``# %% <exercise id>`` block is the instructor version of that exercise's
answer cell; ``### BEGIN/END SOLUTION`` mark what nbgrader replaces by the stub.
"""
import numpy as np
import torch

from tlkit import embeddings

# %% ch1_vocab
def build_vocabulary(labelled, unlabelled):
    """A Vocab in which no training snippet (labelled or unlabelled) has an unknown word."""
    ### BEGIN SOLUTION
    return embeddings.build_vocab(list(labelled) + list(unlabelled))
    ### END SOLUTION

# %% ch1_init
def embedding_matrix(itos, vectors):
    """(len(itos), dim) float tensor: row i = vector of itos[i]; <pad> zeros; unknown words random."""
    ### BEGIN SOLUTION
    table = np.stack(list(vectors.values()))
    out = torch.randn(len(itos), table.shape[1]) * float(table.std())
    out[0] = 0.0
    for i, word in enumerate(itos):
        if word in vectors:
            out[i] = torch.as_tensor(vectors[word], dtype=torch.float32)
    return out
    ### END SOLUTION

# %% ch1_pool
def mean_of_words(vectors, ids, pad_id):
    """(B, L, D), (B, L) -> (B, D): mean over positions whose id is not pad_id (zeros if none)."""
    ### BEGIN SOLUTION
    mask = (ids != pad_id).unsqueeze(-1).to(vectors.dtype)
    return (vectors * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    ### END SOLUTION

# %% ch1_bacc
def balanced_accuracy(y_true, y_pred):
    """Mean over the true classes of the share predicted correctly (recall)."""
    ### BEGIN SOLUTION
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))
    ### END SOLUTION
