"""``qlam hwcost``: gate counts, protocol counts and device times against hand calculations."""
import json

import pytest

from qlam_tn.experiments import hwcost
from qlam_tn.experiments.hwcost import PROFILES, Profile, circuit_counts, device_seconds, protocol_counts
from qlam_tn.models.qlam import QLAMConfig


def test_circuit_counts_by_hand():
    # n = 8, two layers: pairs (0,1),(2,3),(4,5),(6,7) then (1,2),(3,4),(5,6): 4 + 3 = 7
    cz = circuit_counts(QLAMConfig(n_qubits=8, depth=2, entangler="cz", readout="query+xyz", query_heads=1))
    assert cz == {"n_qubits": 8, "two_qubit_gates": 7, "two_qubit_depth": 2,
                  "one_qubit_depth": 1 + 2, "settings": 1 + 2}  # query, X, Z
    # real su4 = SO(4): 2 CNOTs a pair; one-qubit layers around each CNOT (3 per layer) + encoding
    so4 = circuit_counts(QLAMConfig(n_qubits=8, depth=2, entangler="su4", query_heads=8))
    assert (so4["two_qubit_gates"], so4["two_qubit_depth"], so4["one_qubit_depth"], so4["settings"]) == \
        (14, 4, 1 + 3 * 2, 8 + 2)
    # complex su4 = U(4): 3 CNOTs a pair; n = 5, 3 layers: 2 + 2 + 2 pairs; settings X, Y, Z
    u4 = circuit_counts(QLAMConfig(n_qubits=5, depth=3, entangler="su4", real=False, encoding="ry_rz",
                                   readout="xyz+zz"))
    assert (u4["two_qubit_gates"], u4["two_qubit_depth"], u4["settings"]) == (18, 9, 3)
    # re-uploading: an encoding layer before every entangling layer
    re = circuit_counts(QLAMConfig(n_qubits=4, depth=3, entangler="cnot", reupload=True, readout="zz"))
    assert (re["one_qubit_depth"], re["settings"]) == (3 + 3, 1)


def test_protocol_counts_by_hand():
    t, s, k = 28, 1000, 10
    assert protocol_counts("restart", t, s, k, every=True) == {
        "executions": 280_000, "token_circuits": 1000 * 10 * 28 * 29 // 2, "reads": 280_000, "growth": "quadratic"}
    assert protocol_counts("exact", t, s, k, every=True) == protocol_counts("restart", t, s, k, every=True)
    # window: Σ_{t=1..T} min(t, τ) token circuits per shot and setting
    tau = 4
    brute = sum(min(i, tau) for i in range(1, t + 1))
    assert brute == 106
    assert protocol_counts("window", t, s, k, every=True, window=tau)["token_circuits"] == s * k * brute
    assert protocol_counts("collapse", t, s, k, every=True) == {
        "executions": 1000, "token_circuits": 28_000, "reads": 28_000, "growth": "linear"}
    # a model that reads only after the last token: S·K circuits of T tokens
    assert protocol_counts("end", t, s, k, every=False) == {
        "executions": 10_000, "token_circuits": 280_000, "reads": 10_000, "growth": "linear"}
    assert protocol_counts("window", t, s, k, every=False, window=tau)["token_circuits"] == s * k * tau
    with pytest.raises(ValueError, match="reads once after the last token"):
        protocol_counts("end", t, s, k, every=True)
    with pytest.raises(ValueError, match="needs window"):
        protocol_counts("window", t, s, k, every=True)


def test_growth_in_T():
    """Doubling T: restart's token circuits x ~4 (quadratic), window's and collapse's x 2."""
    def tc(p, t, **kw):
        return protocol_counts(p, t, 10, 3, every=True, **kw)["token_circuits"]
    assert tc("restart", 2000) / tc("restart", 1000) == pytest.approx(4, rel=1e-3)
    assert tc("window", 2000, window=8) / tc("window", 1000, window=8) == pytest.approx(2, rel=1e-2)
    assert tc("collapse", 2000) / tc("collapse", 1000) == 2


def test_device_seconds_by_hand():
    prof = Profile("toy", t_1q=1.0, t_2q=10.0, t_readout=100.0, t_reset=1000.0, t_overhead=10000.0, source="")
    circuit = {"n_qubits": 2, "two_qubit_gates": 1, "two_qubit_depth": 1, "one_qubit_depth": 2, "settings": 1}
    counts = {"executions": 3, "token_circuits": 6, "reads": 3}
    # 3 x (10000 + 1000) + 6 x (10 + 2) + 3 x (1 + 100)
    assert device_seconds(counts, circuit, prof, "restart") == 33000 + 72 + 303
    # a weak read also couples (10) and resets (1000) an ancilla
    assert device_seconds(counts, circuit, prof, "weak") == 33000 + 72 + 3 * 1111


def test_cost_rows_and_cli_json(tmp_path, capsys):
    out = tmp_path / "cost.json"
    assert hwcost.main(["--model-cfg", "n_qubits=4", "depth=1", "entangler=cz", "readout=xyz",
                        "readout_at=last", "--input-dim", "3", "--seq-len", "10", "--shots", "100",
                        "--protocol", "restart", "end", "collapse", "--profile", "superconducting",
                        "--dataset-size", "50", "--no-sim", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {r["protocol"]: r for r in data["rows"]}
    # reads only after the last token: restart and end both S·K = 100·2 circuits of 10 tokens
    assert rows["restart"]["executions"] == rows["end"]["executions"] == 200
    assert rows["end"]["two_qubit_gates"] == 200 * 10 * 2  # pairs (0,1), (2,3)
    assert rows["collapse"]["executions"] == 100 and rows["collapse"]["reads"] == 100
    sc = PROFILES["superconducting"]
    token = 1 * sc.t_2q + 2 * sc.t_1q
    want = 200 * (sc.t_overhead + sc.t_reset) + 2000 * token + 200 * (sc.t_1q + sc.t_readout)
    assert rows["end"]["device_seconds_per_sequence"] == pytest.approx(want, rel=1e-12)
    assert rows["end"]["device_seconds_per_epoch"] == pytest.approx(50 * want, rel=1e-12)
    assert "| end | superconducting | 10 | 100 | 200 |" in capsys.readouterr().out


def test_end_is_left_out_for_a_model_reading_every_token():
    rows = hwcost.cost_rows(QLAMConfig(n_qubits=3, readout_at="every"), 5, 10, ["restart", "end"],
                            ["neutral-atom"])
    assert [r["protocol"] for r in rows] == ["restart"]
