"""A trained QLAM at another bond dimension: ``qlam entangle --checkpoint`` (trained versus random
memory) and ``qlam eval --bond-dim``.

One tiny statevector-trained checkpoint (digits, row tokens, n=4, su4, float64, ~1 s) serves
every test: its weights rebuilt on the exact MPS must give the statevector's logits, so
"trained exact, evaluated truncated" starts from the same model.
"""
import json

import pytest
import torch

from qlam_tn.experiments import entangle as E
from qlam_tn.experiments import evaluate as V
from qlam_tn.experiments import train
from qlam_tn.experiments.data import load_dataset
from qlam_tn.experiments.train import make_dataset

pytest.importorskip("sklearn")

N = 4
TRAIN = ["--model", "qlam", "--dataset", "digits", "--tokens", "row", "--limit-train", "160",
         "--batch-size", "32", "--lr", "0.05", "--epochs", "2", "--threads", "1", "--no-progress",
         "--dtype", "float64", "--model-cfg", f"n_qubits={N}", "backend=statevector", "entangler=su4",
         "depth=2", "head_hidden=16", "encoding_scale=0.5"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    try:
        assert train.main(TRAIN + ["--out", str(out), "--name", "sv"]) == 0
    finally:
        torch.set_num_threads(threads)
    return out / "sv"


def _tokens(run_dir, count=16):
    """``(count, T, F)`` test tokens as the run's model sees them (its normalisation)."""
    config = json.loads((run_dir / "config.json").read_text())
    part = load_dataset("digits", None, split="test")
    ds = make_dataset(part, config["data"])
    return torch.stack([ds[i][0] for i in range(count)]).double()


def test_exact_mps_equals_statevector_for_the_loaded_weights(run_dir):
    sv, ckpt = V.load_model(run_dir)  # a run folder resolves to its best.pt
    assert ckpt["config"]["model"]["backend"] == "statevector" and sv.qlam.uses_fast_path
    mps, _ = V.load_model(run_dir / "best.pt", bond_dim="exact")
    assert mps.config.resolved_backend == "mps" and mps.config.bond_dim is None
    x = _tokens(run_dir)
    with torch.no_grad():
        want = sv(x)
        # "exact" keeps the 1e-12 cutoff on the summed squares cut, i.e. amplitudes up to 1e-6
        torch.testing.assert_close(mps(x), want, atol=1e-6, rtol=0)
        assert float(mps.qlam.last_discarded_weight.max()) < 1e-11
        # with no cutoff at all the two engines agree to rounding
        model_cfg = V.qlam_model_config(json.loads((run_dir / "config.json").read_text()), None)
        model_cfg["resolved"]["cutoff"] = 0.0
        no_cut = train.model_from_config(model_cfg, "float64")
        no_cut.load_state_dict(ckpt["model"])
        torch.testing.assert_close(no_cut(x), want, atol=1e-10, rtol=0)
    capped, _ = V.load_model(run_dir, bond_dim=1)  # a product state: must cut
    with torch.no_grad():
        capped(x)
    assert float(capped.qlam.last_discarded_weight.min()) > 0


def test_entangle_checkpoint_trained_beside_random(run_dir, tmp_path):
    out = tmp_path / "ent"
    T = 24
    assert E.main(["--checkpoint", str(run_dir), "--chi", "2", "exact", "--T", str(T),
                   "--out", str(out)]) == 0
    for name in ("config.json", "env.json", "trace.csv", "summary.json", "centre_entropy.png",
                 "heatmap.png", "discarded.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["memory"], s["n"], s["chi"]) for s in summary] == [
        ("trained", N, 2), ("random", N, 2), ("trained", N, None), ("random", N, None)]
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["model"]["resolved"]["entangler"] == "su4" and config["tokens"] == "row"
    lines = (out / "trace.csv").read_text().strip().splitlines()
    assert lines[0].startswith("token,memory,n,chi,bond")
    assert len(lines) == 1 + 4 * T * (N - 1)

    trained, random, _ = E.trained_and_random(run_dir, None, seed=0)
    assert trained.config == random.config and trained.config.resolved_backend == "mps"
    x = E.run_context(json.loads((run_dir / "config.json").read_text())["data"], "digits", None, T)
    s_t, _, _ = E.trace_memory(trained, x)
    s_r, _, _ = E.trace_memory(random, x)
    assert (s_t - s_r).abs().max() > 1e-3  # training changed how the memory entangles
    assert torch.all(s_t <= 2 + 1e-9)  # min(k, n-k) at the centre of 4 qubits


def test_entangle_context_uses_the_runs_normalisation(run_dir):
    data_cfg = json.loads((run_dir / "config.json").read_text())["data"]
    x = E.run_context(data_cfg, "digits", None, 20, seed=3)  # 2.5 images of 8 row tokens
    assert x.shape == (1, 20, 8)
    ds = make_dataset(load_dataset("digits", None, split="train", seed=3), data_cfg)
    first = int(torch.randperm(len(ds), generator=torch.Generator().manual_seed(3))[0])
    torch.testing.assert_close(x[0, :8], ds[first][0])


def test_entangle_checkpoint_refuses_other_tokens_and_n(run_dir, tmp_path):
    for extra in (["--tokens", "pixel"], ["--n", "8"]):
        with pytest.raises(SystemExit) as exc:
            E.main(["--checkpoint", str(run_dir), "--T", "8", "--out", str(tmp_path / "x")] + extra)
        assert exc.value.code == 2


def test_eval_bond_dim_reports_accuracy_and_discarded_weight(run_dir, capsys):
    ckpt = str(run_dir / "best.pt")
    val = ["--split", "val"]  # 144 images: the smaller split keeps this test short
    assert V.main(["--checkpoint", ckpt, "--json"] + val) == 0
    plain = json.loads(capsys.readouterr().out)
    assert set(plain) == {"accuracy", "n"}
    assert V.main(["--checkpoint", ckpt, "--bond-dim", "exact", "--json"] + val) == 0
    exact = json.loads(capsys.readouterr().out)
    assert set(exact) == {"accuracy", "n", "bond_dim", "backend", "trained_backend",
                          "trained_bond_dim", "discarded_weight_mean", "discarded_weight_max",
                          "centre_entropy_mean"}
    assert exact["accuracy"] == plain["accuracy"] and exact["n"] == plain["n"]
    assert exact["bond_dim"] is None and exact["backend"] == "mps"
    assert exact["trained_backend"] == "statevector" and exact["discarded_weight_max"] < 1e-9
    assert V.main(["--checkpoint", ckpt, "--bond-dim", "1", "--json"] + val) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["bond_dim"] == 1 and one["discarded_weight_mean"] > 0
    assert one["discarded_weight_max"] >= one["discarded_weight_mean"]


def test_bond_dim_errors(capsys):
    assert V.parse_bond_dim("exact") is None and V.parse_bond_dim("8") == 8
    for bad in ("0", "-2", "two", "2.5", True):
        with pytest.raises(ValueError):
            V.parse_bond_dim(bad)
    with pytest.raises(ValueError, match="QLAM checkpoints only"):
        V.qlam_model_config({"model": {"name": "gru", "resolved": {}}}, 4)
    with pytest.raises(SystemExit) as exc:
        V.main(["--checkpoint", "nowhere.pt", "--bond-dim", "zero"])
    assert exc.value.code == 2 and "--bond-dim" in capsys.readouterr().err


def test_eval_bond_dim_centre_entropy_matches_the_dense_state(run_dir):
    """``centre_entropy_mean`` (bits) equals the entanglement entropy across qubits (0,1 | 2,3)
    of each test image's final memory, from an SVD of its dense amplitudes, averaged."""
    out = V.score(run_dir / "best.pt", split="test", bond_dim="exact", limit=16, device="cpu")
    mps, _ = V.load_model(run_dir / "best.pt", bond_dim="exact")
    with torch.no_grad():
        mps(_tokens(run_dir, 16))
    amps = mps.qlam.last_memory.to_dense().reshape(16, 2 ** (N // 2), -1)
    s = torch.linalg.svdvals(amps)
    p = s ** 2 / (s ** 2).sum(-1, keepdim=True)
    bits = -(p * torch.log2(p.clamp_min(1e-300))).sum(-1)
    assert bits.min() > 0.01  # su4 entanglers at depth 2: an entangled memory, not a product
    assert out["n"] == 16
    assert out["centre_entropy_mean"] == pytest.approx(float(bits.mean()), abs=1e-9)
