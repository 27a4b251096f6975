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


def _schedule(protocol, t_len, shots, settings, every, window=None):
    """Brute force: list every circuit execution a protocol runs for one sequence as the number
    of tokens it applies, and count the memory reads; ``(executions, token circuits, reads)``."""
    runs, reads = [], 0
    read_at = range(1, t_len + 1) if every else [t_len]
    if protocol in ("collapse", "weak"):
        for _ in range(shots):  # one copy per shot, carried through every token, read at each
            runs.append(t_len)
            reads += len(read_at)
        return len(runs), sum(runs), reads
    for _ in range(shots):
        for _ in range(settings):
            for t in read_at:  # a fresh run per read: the prefix (restart/end) or the window
                runs.append(min(t, window) if protocol == "window" else t)
                reads += 1
    return len(runs), sum(runs), reads


@pytest.mark.parametrize("protocol", ["restart", "end", "window", "collapse", "weak"])
def test_protocol_counts_against_an_enumerated_schedule(protocol):
    for t_len in range(1, 7):
        for shots in (3, 4):
            for k in (1, 2, 3):
                for every in (False, True):
                    if protocol == "end" and every:
                        continue
                    for tau in ((1, 2, 3, 8) if protocol == "window" else (None,)):
                        got = protocol_counts(protocol, t_len, shots, k, every, window=tau)
                        want = _schedule(protocol, t_len, shots, k, every, tau)
                        assert (got["executions"], got["token_circuits"], got["reads"]) == want


def test_circuit_counts_follow_the_models_own_layers():
    """Two-qubit gates and depth from the pairs of each layer QLAM.layer_gates builds ((P, 4, 4)
    per layer), times the native gates per pair (1 for cz/cnot, 2 for SO(4), 3 for U(4))."""
    from qlam_tn.models.qlam import QLAM
    for n in (2, 3, 5):
        for depth in (1, 2, 3):
            for entangler, real, per in (("cz", True, 1), ("cnot", False, 1), ("su4", True, 2), ("su4", False, 3)):
                cfg = QLAMConfig(n_qubits=n, depth=depth, entangler=entangler, real=real,
                                 encoding="ry" if real else "ry_rz", backend="mps")
                pairs = [g.shape[0] for g, _ in QLAM(2, cfg).layer_gates()]
                got = circuit_counts(cfg)
                assert got["two_qubit_gates"] == per * sum(pairs)
                assert got["two_qubit_depth"] == per * sum(1 for p in pairs if p)


def test_collapse_needs_a_copy_per_setting():
    with pytest.raises(ValueError, match="needs shots >= 10"):
        protocol_counts("collapse", 28, 9, 10, every=True)
    assert protocol_counts("weak", 28, 10, 10, every=True)["executions"] == 10


@pytest.mark.parametrize("extra, match", [
    (["--protocol", "end"], "reads once after the last token"),       # the model pools every token
    (["--protocol", "collapse", "--shots", "2"], "needs shots >= 3"),  # K = 3: query, X, Z
    (["--json", "NODIR/c.json"], "does not exist"),
    (["--seq-len", "12"], "longer than pool_positions=10"),            # the timed forward refuses
    (["--shots", "0"], "--shots must be >= 1"),
])
def test_cli_refuses_bad_input(tmp_path, capsys, extra, match):
    argv = ["--model-cfg", "n_qubits=3", "readout_at=attn", "pool_positions=10", "--input-dim", "2",
            "--seq-len", "5", "--threads", "1"]
    argv += [a.replace("NODIR", str(tmp_path / "missing")) for a in extra]
    with pytest.raises(SystemExit):
        hwcost.main(argv)
    assert match in capsys.readouterr().err


def test_default_protocols_leave_end_out_quietly(capsys):
    assert hwcost.main(["--model-cfg", "n_qubits=3", "--input-dim", "2", "--seq-len", "5", "--no-sim",
                        "--profile", "superconducting"]) == 0
    out = capsys.readouterr().out
    assert "| restart |" in out and "| collapse |" in out and "| end |" not in out


def test_a_checkpoint_that_is_not_a_qlam_is_refused(tmp_path, capsys):
    import torch
    from qlam_tn.experiments import train
    threads = torch.get_num_threads()
    try:
        train.main(["--model", "gru", "--embed-dim", "4", "--batch-size", "16", "--threads", "1",
                    "--no-progress", "--dataset", "mqar", "--data-cfg", "seq_len=8", "num_pairs=1",
                    "vocab_size=12", "--n-train", "16", "--n-val", "8", "--n-test", "8", "--epochs", "1",
                    "--out", str(tmp_path), "--name", "gru"])
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        hwcost.main(["--checkpoint", str(tmp_path / "gru"), "--seq-len", "8", "--no-sim"])
    assert "QLAM checkpoints only" in capsys.readouterr().err
