"""QLAM-TN: a batched matrix-product-state engine for quantum long-attention memory models.

Public API::

    import qlam_tn as qt
    psi = qt.MPS.zeros(16, batch=8, max_bond=32)
    psi.apply(qt.gates.H(), 0).apply(qt.gates.CNOT(), (0, 5))
    psi.expect("Z0 Z5"), psi.entropy(), psi.discarded_weight
"""
from . import environments, gates, noise, routes
from .circuit import Circuit, simulate
from .environments import MPSEnvironment
from .linalg import CUTOFF_MODES, TruncationError, TruncationPolicy, svd, truncated_svd
from .measure import entropy_from_schmidt, parse_pauli, renyi_from_schmidt
from .mps import MPS
from .noise import NoiseModel
from .state import QuantumState
from .statevector import StateVector
from . import trajectories  # noqa: E402 - after circuit, which it builds on

__version__ = "0.1.0"

__all__ = [
    "MPS", "StateVector", "QuantumState", "Circuit", "simulate", "TruncationPolicy", "TruncationError", "CUTOFF_MODES",
    "MPSEnvironment", "environments", "routes", "gates", "noise", "NoiseModel", "trajectories", "svd", "truncated_svd", "parse_pauli", "entropy_from_schmidt", "renyi_from_schmidt",
]
