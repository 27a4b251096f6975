"""``qlam bench floor``'s machinery (not its timings): the decompositions it records are the ones
the Gram forward performs, and its profile finds them under the aten names it classifies."""
import torch

from qlam_tn.experiments.bench import floor


def test_recorded_decompositions_count_the_forwards_splits_and_moves():
    # n=4, chi=2, depth 2: 3 two-site updates per token (pairs (0,1), (2,3), then (1,2)); every
    # update splits once (eigh, or an SVD where the isometry is the larger side)
    q, memory = floor.saturated_qlam(4, 2, 2, 3, "gram")
    x = torch.randn(3, 2, floor.FEATURES)
    calls = []
    with torch.no_grad(), floor.recorded_decompositions(calls):
        q(x, memory=memory.copy())
    names = [name for name, _ in calls]
    assert names.count("eigh") + names.count("svd") == 3 * 2
    assert set(names) <= set(floor.DECOMPOSITIONS) and "eigh" in names
    assert all(m.shape[0] == 3 for _, m in calls)  # batched over the samples


def test_profile_classes_find_the_decompositions_and_matmuls():
    ms = floor.profile_step(4, 2, 2, 3, 2, steps=1)
    assert set(ms) == {*floor.OP_CLASSES, "other"}
    assert ms["decompositions (eigh, svd, qr, triangular solve)"] > 0 and ms["batched matmuls"] > 0
    assert all(v >= 0 for v in ms.values())
