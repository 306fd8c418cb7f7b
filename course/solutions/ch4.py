"""Reference solutions, chapter 4 (instructor only: not shipped in the wheel or the student notebooks)."""
import math

import torch

# %% ch4_grl
def grad_reverse(x, coeff):
    """Identity forward; the backward pass multiplies the gradient by -coeff."""
    ### BEGIN SOLUTION
    class _Reverse(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, coeff):
            ctx.coeff = coeff
            return x.view_as(x)

        @staticmethod
        def backward(ctx, grad):
            return -ctx.coeff * grad, None

    return _Reverse.apply(x, coeff)
    ### END SOLUTION

# %% ch4_coral
def coral(f_s, f_t):
    """||C_s - C_t||_F^2 / (4 d^2) with unbiased feature covariances."""
    ### BEGIN SOLUTION
    def cov(x):
        x = x - x.mean(0, keepdim=True)
        return x.T @ x / (len(x) - 1)
    d = f_s.shape[1]
    return ((cov(f_s) - cov(f_t)) ** 2).sum() / (4 * d * d)
    ### END SOLUTION

# %% ch4_lambda
def dann_weight(p, lambda_max, gamma):
    """lambda_max * (2 / (1 + exp(-gamma p)) - 1)."""
    ### BEGIN SOLUTION
    return lambda_max * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)
    ### END SOLUTION
