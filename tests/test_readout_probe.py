"""The readout probe's dense stepping against the model's own scan and against itself."""
import json

import numpy as np
import pytest
import torch
from qlam_tn.experiments.readout_probe import FEATURE_SETS, pooled_features, probe
from qlam_tn.models.qlam import QLAM


def _model(**kw):
    torch.manual_seed(4)
    model = QLAM(1, n_qubits=5, depth=1, entangler="cz", readout="query+xyz", query_heads=2,
                 encoding_scale=1.0, **kw).double()
    if model.pool is not None:
        with torch.no_grad():
            model.pool.weight.normal_()
            model.pool.bias.normal_()
    return model


def test_pooled_sets_agree_with_the_model_and_each_other():
    model = _model(readout_at="attn")
    x = torch.rand(3, 12, 1, dtype=torch.float64)
    f = pooled_features(model, x, segments=4)
    assert set(f) == set(FEATURE_SETS)
    n = 5
    # Bloch vectors stepped here equal the xyz part of the model's fast-path features
    torch.testing.assert_close(f["bloch"], f["model"][:, -2 * n:], atol=1e-12, rtol=0)
    # segment means equal the last-token readout of every prefix, averaged by hand
    ref = QLAM(1, model.config, readout="xyz", readout_at="last").double()
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(("pool", "query"))})
    per_token = torch.stack([ref(x[:, : t + 1]) for t in range(12)], 1)  # (B, T, 2n)
    torch.testing.assert_close(f["bloch_segments"], per_token.view(3, 4, 3, 2 * n).mean(2).flatten(1),
                               atol=1e-12, rtol=0)
    # the diagonal of the pooled ρ_A (first 3 qubits) is the pooled marginal of the probabilities
    iu = torch.triu_indices(8, 8)
    rho_a = torch.zeros(3, 8, 8, dtype=torch.float64)
    rho_a[:, iu[0], iu[1]] = f["rho_halves"][:, : iu.shape[1]]
    torch.testing.assert_close(torch.diagonal(rho_a, dim1=1, dim2=2), f["probs"].view(3, 8, 4).sum(2),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(f["probs"].sum(1), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(f["tokens"], x.flatten(1))


def test_refuses_what_it_cannot_probe():
    with pytest.raises(ValueError, match="equal segments"):
        pooled_features(_model(readout_at="every"), torch.rand(2, 10, 1, dtype=torch.float64), segments=4)
    with pytest.raises(ValueError, match="pooled statevector QLAM"):
        pooled_features(_model(readout_at="last"), torch.rand(2, 8, 1, dtype=torch.float64), segments=4)


def test_probe_separates_separable_sets():
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    feats = {k: rng.normal(size=(200, 3)) + 4.0 * y[:, None] for k in FEATURE_SETS}
    out = probe((feats, y), (feats, y), c=1.0)
    assert all(v["val_acc"] == 1.0 and v["dim"] == 3 for v in out.values())


def test_cli_probes_a_trained_run_and_a_random_memory(tmp_path):
    pytest.importorskip("sklearn")
    from qlam_tn.experiments import readout_probe, train

    threads = torch.get_num_threads()
    try:
        assert train.main(["--model", "qlam", "--dataset", "digits", "--tokens", "row", "--limit-train", "120",
                           "--batch-size", "40", "--epochs", "1", "--threads", "1", "--no-progress",
                           "--dtype", "float64", "--out", str(tmp_path), "--name", "run", "--model-cfg",
                           "n_qubits=4", "backend=statevector", "head_hidden=8"]) == 0
        out = tmp_path / "probe.json"
        assert readout_probe.main([str(tmp_path / "run"), "--train", "100", "--val", "60", "--segments", "4",
                                   "--memories", "trained", "random", "--out", str(out),
                                   "--plot", str(tmp_path / "probe.png"), "--no-progress"]) == 0
        sweep = tmp_path / "sweep.json"
        assert readout_probe.main([str(tmp_path / "run"), "--train", "100", "--val", "60", "--segments", "4",
                                   "--memories", "random", "--encoding-scales", "0", "0.1", "--out", str(sweep),
                                   "--sets", "bloch", "rho_halves", "probs", "bloch_segments", "tokens",
                                   "--plot", str(tmp_path / "sweep.png"), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())
    assert set(result["trained"]) == set(result["random"]) == set(FEATURE_SETS)
    dims = {k: v["dim"] for k, v in result["trained"].items()}
    # digits rows: T = 8 tokens of F = 8 pixels; n = 4 qubits, halves of 2 qubits (d = 4: 10 entries each)
    assert dims == {"model": 4 + 8, "bloch": 8, "rho_halves": 20, "probs": 16, "bloch_segments": 4 * 8, "tokens": 64}
    assert (tmp_path / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the raw-token probe does not depend on the memory
    assert result["trained"]["tokens"] == result["random"]["tokens"]
    assert result["memories"] == ["trained", "random"]

    swept = json.loads(sweep.read_text())
    zero, tenth = "random, encoding_scale=0", "random, encoding_scale=0.1"
    assert swept["memories"] == [zero, tenth]
    assert set(swept[zero]) == set(swept[tenth]) == set(FEATURE_SETS) - {"model"}  # --sets: only these
    # the run was built with QLAMConfig's default encoding_scale 0.1: the same seed draws the same memory
    assert swept[tenth] == {k: v for k, v in result["random"].items() if k != "model"}
    # at scale 0 the encoding ignores the tokens: every image leaves the same memory, so every memory
    # readout predicts one class for all, and all score alike (the tokens' own probe does not)
    memory_sets = ("bloch", "rho_halves", "probs", "bloch_segments")
    assert len({swept[zero][k]["val_acc"] for k in memory_sets}) == 1
    assert swept[zero]["bloch"]["val_acc"] < 0.3 < swept[zero]["tokens"]["val_acc"]
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_encoding_scales_need_a_random_memory(capsys):
    from qlam_tn.experiments import readout_probe

    with pytest.raises(SystemExit):
        readout_probe.main(["nowhere", "--memories", "trained", "--encoding-scales", "0.1"])
    assert "add 'random' to --memories" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        readout_probe.main(["nowhere", "--memories", "random", "--encoding-scales", "-1"])
    assert "finite and >= 0" in capsys.readouterr().err


def test_cli_refuses_bad_counts(capsys):
    from qlam_tn.experiments import readout_probe

    with pytest.raises(SystemExit):
        readout_probe.main(["nowhere", "--train", "0"])
    assert "--train: must be an int >= 2" in capsys.readouterr().err
