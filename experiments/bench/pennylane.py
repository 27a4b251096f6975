"""``qlam.mps`` against ``default.tensor`` (quimb MPS): value and gradient of a variational circuit.

The circuit: ``depth`` layers of RY on every qubit (``n * depth`` parameters) followed by a CNOT
brickwork layer (even pairs on even layers, odd pairs on odd layers), measured as
``<Z_{n//2}>``. Both devices use the same ``max_bond_dim`` and numerical cutoff (qlam.mps:
``rsum2``, the relative discarded weight; default.tensor: quimb's default relative cutoff).

Reported, each the best of ``--repeats`` timed runs after one untimed warm-up:

* qlam.mps value (torch parameters without grad) and full gradient by backprop (forward +
  ``backward()``, torch interface);
* default.tensor value and its parameter-shift gradient. ``default.tensor`` offers no backprop
  or adjoint; its gradient is ``2 * n_params + 1`` circuit values. By default that time is an
  ESTIMATE, ``(2 * n_params + 1) x`` the value time; ``--full-shift`` measures it (one run);
* the value difference between the devices and qlam.mps's discarded weight; for ``n <= 20``
  also the exact value from ``default.qubit``.

    qlam bench pennylane                      # n 30, depth 10, chi 32
    qlam bench pennylane --full-shift         # measure the shift gradient
    qlam bench pennylane --n 8 --depth 2      # seconds
    qlam bench pennylane --threads 1          # torch on one thread
    qlam bench pennylane --markdown           # the figures as a markdown table

Needs the ``pennylane`` extra (PennyLane, with quimb for default.tensor). Run it alone.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from qlam_tn.experiments.bench.table import Table, provenance
from qlam_tn.experiments.timing import best_time


def circuit_fn(qml, n: int, depth: int) -> Callable:
    """The quantum function; ``weights`` is ``(depth, n)``."""

    def circuit(weights):
        for layer in range(depth):
            for q in range(n):
                qml.RY(weights[layer, q], wires=q)
            for q in range(layer % 2, n - 1, 2):
                qml.CNOT(wires=[q, q + 1])
        return qml.expval(qml.Z(n // 2))

    return circuit


def run(n: int = 30, depth: int = 10, chi: int = 32, cutoff: float = 1e-12, repeats: int = 3,
        full_shift: bool = False, seed: int = 0) -> Dict[str, object]:
    """Time both devices on one circuit; returns the numbers printed by ``main``."""
    import pennylane as qml
    from pennylane import numpy as pnp

    weights = np.random.default_rng(seed).uniform(0, 2 * np.pi, size=(depth, n))
    n_params = weights.size
    circuit = circuit_fn(qml, n, depth)
    out: Dict[str, object] = {"n": n, "depth": depth, "chi": chi, "cutoff": cutoff, "n_params": n_params,
                              "torch_threads": torch.get_num_threads()}

    dev = qml.device("qlam.mps", wires=n, max_bond_dim=chi, cutoff=cutoff)
    node = qml.QNode(circuit, dev, interface="torch", diff_method="backprop")
    w_value = torch.tensor(weights)
    w_grad = torch.tensor(weights, requires_grad=True)

    def qlam_gradient():
        w_grad.grad = None
        node(w_grad).backward()
        return w_grad.grad

    with qml.Tracker(dev) as tracker:
        value = float(node(w_value))
    out["qlam_value"] = value
    out["qlam_discarded_weight"] = tracker.history["discarded_weight"][-1]
    out["qlam_max_bond"] = tracker.history["max_bond"][-1]
    out["qlam_value_s"] = best_time(lambda: node(w_value), repeats)
    out["qlam_grad_s"] = best_time(qlam_gradient, repeats)
    grad = qlam_gradient().numpy()

    tn = qml.device("default.tensor", wires=n, method="mps", max_bond_dim=chi, cutoff=cutoff)
    tn_node = qml.QNode(circuit, tn, diff_method="parameter-shift")
    w_np = pnp.array(weights, requires_grad=True)
    tn_value = float(tn_node(w_np))
    out["tensor_value"] = tn_value
    out["value_abs_diff"] = abs(value - tn_value)
    out["tensor_value_s"] = best_time(lambda: tn_node(w_np), repeats)
    out["tensor_shift_estimate_s"] = (2 * n_params + 1) * out["tensor_value_s"]
    if full_shift:
        t0 = time.perf_counter()
        tn_grad = qml.grad(tn_node)(w_np)
        out["tensor_shift_measured_s"] = time.perf_counter() - t0
        out["grad_max_abs_diff"] = float(np.abs(np.asarray(tn_grad) - grad).max())
    if n <= 20:
        exact = qml.QNode(circuit, qml.device("default.qubit", wires=n))
        out["exact_value"] = float(exact(weights))
    return out


def report(r: Dict[str, object]) -> List[str]:
    """The printed lines for one result of ``run``."""
    shift_key = "tensor_shift_measured_s" if "tensor_shift_measured_s" in r else "tensor_shift_estimate_s"
    shift_label = "measured" if shift_key == "tensor_shift_measured_s" else \
        f"ESTIMATE = (2*{r['n_params']}+1) x value time"
    shift = r[shift_key]
    lines = [
        f"circuit: n={r['n']} depth={r['depth']} RY+CNOT brickwork, {r['n_params']} parameters, "
        f"<Z_{r['n'] // 2}>, max_bond_dim={r['chi']} cutoff={r['cutoff']:g}, torch threads {r['torch_threads']}",
        f"qlam.mps       value      {r['qlam_value_s']:9.4f} s   <Z>={r['qlam_value']:+.12f}  "
        f"discarded weight {r['qlam_discarded_weight']:.3e}, max bond {r['qlam_max_bond']}",
        f"qlam.mps       gradient   {r['qlam_grad_s']:9.4f} s   (backprop, all {r['n_params']} parameters)",
        f"default.tensor value      {r['tensor_value_s']:9.4f} s   <Z>={r['tensor_value']:+.12f}",
        f"default.tensor gradient   {shift:9.4f} s   (parameter-shift, {shift_label})",
        f"|value difference| {r['value_abs_diff']:.3e}"
        + (f"; exact (default.qubit) <Z>={r['exact_value']:+.12f}" if "exact_value" in r else ""),
        f"speed-up: value {r['tensor_value_s'] / r['qlam_value_s']:.2f}x; "
        f"gradient (qlam backprop vs tensor shift) {shift / r['qlam_grad_s']:.1f}x",
    ]
    if "grad_max_abs_diff" in r:
        lines.append(f"max |gradient difference| {r['grad_max_abs_diff']:.3e}")
    return lines


def markdown_table(r: Dict[str, object]) -> Table:
    """``report``'s figures as a table (device, what, seconds, value), printed as markdown."""
    shift_key = "tensor_shift_measured_s" if "tensor_shift_measured_s" in r else "tensor_shift_estimate_s"
    shift = "parameter-shift, measured" if shift_key == "tensor_shift_measured_s" else \
        f"parameter-shift, ESTIMATE = (2*{r['n_params']}+1) x value time"
    exact = f"; exact (default.qubit) {r['exact_value']:+.12f}" if "exact_value" in r else ""
    table = Table(["device", "what", "time (s)", "⟨Z⟩ / note"], markdown=True,
                  title=f"n={r['n']} depth={r['depth']} RY+CNOT brickwork, {r['n_params']} parameters, "
                        f"⟨Z_{r['n'] // 2}⟩, max_bond_dim={r['chi']} cutoff={r['cutoff']:g}, "
                        f"torch threads {r['torch_threads']}")
    table.row("qlam.mps", "value", f"{r['qlam_value_s']:.4f}",
              f"{r['qlam_value']:+.12f} (discarded weight {r['qlam_discarded_weight']:.3e}, "
              f"max bond {r['qlam_max_bond']}{exact})")
    table.row("qlam.mps", "gradient", f"{r['qlam_grad_s']:.4f}", f"backprop, all {r['n_params']} parameters")
    table.row("default.tensor", "value", f"{r['tensor_value_s']:.4f}",
              f"{r['tensor_value']:+.12f} (|difference| {r['value_abs_diff']:.3e})")
    table.row("default.tensor", "gradient", f"{r[shift_key]:.4f}", shift + (
        f" (max abs gradient difference {r['grad_max_abs_diff']:.3e})" if "grad_max_abs_diff" in r else ""))
    return table


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="qlam bench pennylane", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30, help="qubits (default 30)")
    parser.add_argument("--depth", type=int, default=10, help="RY + CNOT layers (default 10)")
    parser.add_argument("--chi", type=int, default=32, help="max_bond_dim of both devices (default 32)")
    parser.add_argument("--cutoff", type=float, default=1e-12, help="singular-value cutoff (default 1e-12)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement, best kept (default 3)")
    parser.add_argument("--full-shift", action="store_true",
                        help="measure default.tensor's parameter-shift gradient (2*params+1 runs) "
                             "instead of estimating it from the value time")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--markdown", action="store_true", help="print the figures as a GitHub markdown table")
    args = parser.parse_args(argv)
    if args.n < 2 or args.depth < 1 or args.chi < 1 or args.repeats < 1 or (args.threads or 1) < 1:
        parser.error("need --n >= 2, --depth >= 1, --chi >= 1, --repeats >= 1, --threads >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PennyLane deprecation notices
        result = run(args.n, args.depth, args.chi, args.cutoff, args.repeats, args.full_shift, args.seed)
    if args.markdown:
        print(provenance())
        markdown_table(result)
        print("\n" + report(result)[6])  # the speed-ups
    else:
        print("\n".join(report(result)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
