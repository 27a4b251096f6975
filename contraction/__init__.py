"""Contraction planning for qlam_tn (installed as ``qlam_tn.contraction``).

``contract(equation, *operands)`` is the single entry point the engine uses for its
fixed-shape hot-path contractions.
"""
import torch


def contract(equation, *operands):
    """Contract torch tensors by an einsum equation (placeholder: plain torch.einsum)."""
    return torch.einsum(equation, *operands)


__all__ = ["contract"]
