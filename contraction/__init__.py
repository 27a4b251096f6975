"""Contraction planning for qlam_tn (installed as ``qlam_tn.contraction``).

- ``planner.py``: ``contract(equation, *operands)``, the single entry point the engine uses for
  its fixed-shape hot-path contractions, planned once per signature and cached; ``plan`` for
  the path and costs of one contraction.
- ``oracle.py``: exact amplitudes, local expectations and small statevectors of a circuit,
  contracted as a whole tensor network with cotengra (the reference beyond statevector range).
- ``cost.py``: FLOP conventions, the FLOPs of one token update and one readout, and the
  measured matmul peak.
- ``equation.py``: einsum equation parsing and validation.

``oracle`` imports quimb and cotengra (a slow import), so it is not imported here; use
``from qlam_tn.contraction import oracle``.
"""
from .cost import (
    MatmulPeak,
    StepCost,
    bond_dims,
    brickwork_pairs,
    flops_per_multiply_add,
    measure_matmul_peak,
    qr_flops,
    readout_cost,
    svd_flops,
    token_update_cost,
)
from .planner import CacheInfo, Plan, cache_info, clear_cache, contract, plan, set_cache_maxsize

__all__ = [
    "contract",
    "plan",
    "Plan",
    "CacheInfo",
    "cache_info",
    "clear_cache",
    "set_cache_maxsize",
    "StepCost",
    "MatmulPeak",
    "token_update_cost",
    "readout_cost",
    "measure_matmul_peak",
    "flops_per_multiply_add",
    "qr_flops",
    "svd_flops",
    "bond_dims",
    "brickwork_pairs",
]
