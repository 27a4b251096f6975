"""Maintainer benchmarks, one module per bench, run as ``qlam bench <name>``.

``anchors`` (the MPS against quimb and Qiskit Aer), ``engine`` (one gate, one brickwork layer,
the split's decompositions), ``models`` (QLAM and the baselines per token), ``contraction``
(planned vs plain einsum), ``pennylane`` (``qlam.mps`` vs ``default.tensor``), ``oracle`` (exact
oracle vs n; token-update GFLOP/s), ``memory`` (peak memory of a training step), ``profile``
(where a token's time goes). Each takes ``--markdown`` (tables as GitHub markdown, under a
provenance line) and times through ``qlam_tn.experiments.timing``. Run them alone: two CPU-heavy
jobs on a small machine slow each other down many-fold.
"""
