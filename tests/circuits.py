"""Random circuits drawn from every gate the engine names, for the cross-backend tests."""
import random

import torch

import qlam_tn.gates as G

FIXED_1Q = {"H": G.H, "X": G.X, "Y": G.Y, "Z": G.Z, "S": G.S, "T": G.T, "SX": G.SX}
PARAM_1Q = {"RX": G.RX, "RY": G.RY, "RZ": G.RZ, "PHASE": G.PHASE}
FIXED_2Q = {"CNOT": G.CNOT, "CZ": G.CZ, "SWAP": G.SWAP, "ISWAP": G.ISWAP}
PARAM_2Q = {"RXX": G.RXX, "RYY": G.RYY, "RZZ": G.RZZ, "CRX": G.CRX, "CRY": G.CRY, "CRZ": G.CRZ}
REAL_1Q = {"H": G.H, "X": G.X, "Z": G.Z, "RY": G.RY}
REAL_2Q = {"CNOT": G.CNOT, "CZ": G.CZ, "SWAP": G.SWAP, "CRY": G.CRY}


def _angle(rng: random.Random, batch: int, per_sample: bool):
    if per_sample:
        return torch.tensor([rng.uniform(-3.2, 3.2) for _ in range(batch)], dtype=torch.float64)
    return rng.uniform(-3.2, 3.2)


def random_circuit(n: int, n_gates: int, seed: int, batch: int = 1, real: bool = False,
                   per_sample: bool = True, two_qubit_fraction: float = 0.5):
    """A list of ``(name, gate tensor, qubits)``; qubit pairs any distance, any order."""
    rng = random.Random(seed)
    one_f, one_p = ({}, REAL_1Q) if real else (FIXED_1Q, PARAM_1Q)
    two_f, two_p = ({}, REAL_2Q) if real else (FIXED_2Q, PARAM_2Q)
    ops = []
    for _ in range(n_gates):
        if n >= 2 and rng.random() < two_qubit_fraction:
            q = tuple(rng.sample(range(n), 2))
            table = {**two_f, **two_p}
        else:
            q = rng.randrange(n)
            table = {**one_f, **one_p}
        if not real and rng.random() < 0.1 and n >= 1:
            q1 = rng.randrange(n)
            ops.append(("U3", G.U3(_angle(rng, batch, per_sample), _angle(rng, batch, per_sample),
                                   _angle(rng, batch, per_sample)), q1))
            continue
        name = rng.choice(sorted(table))
        if name in FIXED_1Q or name in FIXED_2Q:
            gate = table[name]()
        elif real and name in ("CNOT", "CZ", "SWAP"):
            gate = table[name]()
        else:
            gate = table[name](_angle(rng, batch, per_sample))
        ops.append((name, gate, q))
    return ops


def run(state, ops):
    for _, gate, q in ops:
        state.apply(gate, q)
    return state
