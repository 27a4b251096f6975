"""How a QLAM's memory is read on a quantum computer: the readout protocols of ``QLAMConfig``.

Every QLAM feature is the expectation of a ±1-valued observable of the memory: a qubit's Pauli
along a query direction ``m·σ``, its ``X``, ``Y`` or ``Z``, or a neighbour ``Z_i Z_{i+1}``. The
simulation reads them exactly and for free at every token; a quantum computer estimates each
from repeated runs, and a measurement changes the state it reads. The protocols
(``QLAMConfig.readout_protocol``)::

    exact     today's expectations, read from the simulated state (no shots, no back-action)
    restart   each read from S shots of the circuit re-run from |0…0> over tokens 0..t:
              the exact features plus binomial shot noise (S·K·T(T+1)/2 token-circuits when
              the model reads at every token; S·K·T when it reads only after the last)
    end       one read after the last token (readout_at="last" sequence outputs only)
    window τ  the read at t from the last τ tokens run from a fresh memory (S·K·τ·T)
    collapse  S copies of the memory, each measured projectively at every read and carried on
              from its collapsed state (S·T with back-action); a read is the mean of the copies'
              ±1 outcomes
    weak g    as collapse, each qubit measured weakly (strength g) along its setting's direction
              (rotated onto Z, a weak Z measurement, rotated back); outcome / g estimates <P>

``K`` is the number of measurement settings a read needs (``measurement_settings``): one per
query head (every qubit along its own token-chosen direction), and ``X``, (``Y``), ``Z`` for the
local Bloch parts (``zz`` from the ``Z`` setting's shots). Under ``restart``/``end``/``window``
each feature gets ``S`` shots of its setting: its estimate is ``(2k - S)/S`` with
``k ~ Binomial(S, (1 + <P>)/2)``, the exact distribution of ``S`` independent ±1 outcomes, so
unbiased with variance ``(1 - <P>²)/S``. Features of one setting would share shots on hardware
(correlated errors); here each is drawn on its own (the marginals are exact). Under ``collapse``
and ``weak`` copy ``c`` measures setting ``c mod K`` at every read, so each feature is the mean
of about ``S/K`` copies' outcomes (``S >= K`` is required), and each copy's memory is the post-measurement state
(projective: a product state of the measured directions).

Noise (``QLAMConfig.noise``): a channel after every gate of the token circuit (the encoding
rotations, each two-qubit gate, each rotation after a layer), unravelled as quantum
trajectories by ``qlam_tn.noise.NoiseModel``: each copy of the memory is one trajectory. With
``shots=S`` there are ``S`` trajectories, each giving one ±1 outcome per feature (one shot per
run, as on hardware); without shots, the features are the mean over ``trajectories`` runs of
each run's exact expectations (a Monte Carlo estimate of the noisy circuit's expectation). One
trajectory serves every read of a sequence (hardware would re-run one per read): each read's
distribution is the hardware's, reads at different tokens are correlated here.

Gradients: ``restart``/``end``/``window`` shot noise is straight-through (the gradient of the
exact expectation), so a model can train through it; ``collapse``, ``weak`` and noisy runs
carry no gradient (evaluation only).
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch

from qlam_tn.memory import rotation_layer, token_layers
from qlam_tn.state import check_probability, shot_mean

PROTOCOLS = ("exact", "restart", "end", "window", "collapse", "weak")
NOISE_KINDS = ("depolarizing", "amplitude_damping", "dephasing")
# Rows (samples x copies) simulated at once; bigger batches are cut into chunks of samples.
MAX_COPY_ROWS = 65536


def parse_noise(spec) -> Optional[Tuple[str, float]]:
    """``None`` -> ``None``; ``p`` (a number) -> ``("depolarizing", p)``; ``"kind:p"`` or
    ``"kind"`` ... -> ``(kind, p)`` with ``kind`` one of ``NOISE_KINDS`` and ``p`` in ``[0, 1]``.
    ``ValueError`` otherwise."""
    if spec is None:
        return None
    if isinstance(spec, bool):
        raise ValueError(f"noise must be None, a rate p in [0, 1] or 'kind:p', got {spec!r}")
    if isinstance(spec, (int, float)):
        kind, raw = "depolarizing", spec
    elif isinstance(spec, str):
        kind, sep, raw = spec.partition(":")
        kind = kind.strip().lower()
        if not sep:
            raise ValueError(f"noise {spec!r}: write 'kind:p', e.g. 'depolarizing:1e-3' "
                             f"(kinds: {', '.join(NOISE_KINDS)})")
        if kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise kind {kind!r}; choose one of {NOISE_KINDS}")
    else:
        raise ValueError(f"noise must be None, a rate p in [0, 1] or 'kind:p', got {spec!r}")
    return kind, check_probability(raw, "noise rate")


def _positive_int(cfg, name: str) -> None:
    v = getattr(cfg, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def check_protocol(cfg) -> None:
    """Validate the readout fields of a ``QLAMConfig`` (``readout_protocol``, ``shots``,
    ``window``, ``weak_strength``, ``noise``, ``trajectories``); ``ValueError`` naming the
    problem."""
    p = cfg.readout_protocol
    if p not in PROTOCOLS:
        raise ValueError(f"unknown readout_protocol {p!r}; choose one of {PROTOCOLS}")
    if cfg.shots is not None:
        _positive_int(cfg, "shots")
    _positive_int(cfg, "trajectories")
    if p == "exact" and cfg.shots is not None and cfg.noise is None:
        raise ValueError("readout_protocol='exact' reads expectations without shots; for shot noise "
                         "use 'restart' (the same reads from S shots each)")
    if p in ("collapse", "weak") and cfg.shots is None:
        raise ValueError(f"readout_protocol={p!r} measures S copies of the memory: set shots=S")
    if p in ("collapse", "weak"):
        # copy c measures setting c mod K: with fewer copies some features are never measured
        # (their mean over no copies would be 0/0)
        k = len(measurement_settings(cfg))
        if cfg.shots < k:
            raise ValueError(f"readout_protocol={p!r} measures one setting per copy and this readout "
                             f"needs K={k} settings ({', '.join(measurement_settings(cfg))}): "
                             f"shots must be >= {k}, got {cfg.shots}")
    if (p == "window") != (cfg.window is not None):
        raise ValueError(f"window=tau goes with readout_protocol='window' and only with it "
                         f"(got readout_protocol={p!r}, window={cfg.window!r})")
    if cfg.window is not None:
        _positive_int(cfg, "window")
    if (p == "weak") != (cfg.weak_strength is not None):
        raise ValueError(f"weak_strength=g goes with readout_protocol='weak' and only with it "
                         f"(got readout_protocol={p!r}, weak_strength={cfg.weak_strength!r})")
    if cfg.weak_strength is not None:
        g = cfg.weak_strength
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0.0 < g <= 1.0:
            raise ValueError(f"weak_strength must be in (0, 1] (1: projective), got {g!r}")
    if p == "end" and cfg.readout_at != "last":
        raise ValueError(f"readout_protocol='end' reads the memory once, after the last token; this "
                         f"model pools reads from every token (readout_at={cfg.readout_at!r}): use "
                         f"'restart', 'window' or 'collapse'")
    parse_noise(cfg.noise)


def measurement_settings(cfg) -> List[str]:
    """The measurement settings one read needs: ``query0 .. query{h-1}`` (each qubit along its
    head-``j`` direction), then ``X``, ``Y`` (complex mode), ``Z`` for ``xyz``; ``Z`` alone when
    only ``zz`` needs it. ``len`` is the ``K`` of the cost model."""
    parts = cfg.readout.split("+")
    out = [f"query{j}" for j in range(cfg.query_heads)] if "query" in parts else []
    if "xyz" in parts:
        out += ["X"] + ([] if cfg.real else ["Y"]) + ["Z"]
    elif "zz" in parts:
        out.append("Z")
    return out


def reads_every_token(cfg, per_position: bool) -> bool:
    """Whether the model reads its memory after every token (pooled readouts, per-position
    outputs) rather than only after the last (``readout_at="last"`` sequence outputs)."""
    return per_position or cfg.readout_at != "last"


def shot_estimate(expectation: torch.Tensor, shots: int, generator=None) -> torch.Tensor:
    """Mean of ``shots`` simulated ±1 outcomes of observables with these ``expectation`` values
    (any shape): the engine's ``qlam_tn.state.shot_mean`` (``(2k - S)/S``,
    ``k ~ Binomial(S, (1 + e)/2)``, straight-through gradient), drawn in float64 and returned in
    the expectations' dtype."""
    return shot_mean(expectation.double(), shots, generator).to(expectation.dtype)


# ---------------------------------------------------------------------------------------------
# The measured readout: S copies, each measured in one setting per read
# ---------------------------------------------------------------------------------------------

def _feature_slots(cfg, token_feature_dim: int):
    """Per setting: ``(qubit feature indices (n,), zz indices (n-1,) or None)`` in the layout
    of ``QLAM.read``: query ``i·h + j``, then xyz ``i·c + axis``, then zz ``i``."""
    n, h = cfg.n_qubits, cfg.query_heads
    parts = cfg.readout.split("+")
    qubits = torch.arange(n)
    off = n * h if "query" in parts else 0
    c = 2 if cfg.real else 3
    zz_off = off + (c * n if "xyz" in parts else 0)
    slots = {}
    for name in measurement_settings(cfg):
        zz = torch.arange(zz_off, zz_off + n - 1) if (name == "Z" and "zz" in parts) else None
        if name.startswith("query"):
            slots[name] = (qubits * h + int(name[5:]), None)
        elif "xyz" in parts:
            axis = {"X": 0, "Y": 1, "Z": c - 1}[name]
            slots[name] = (off + qubits * c + axis, zz)
        else:  # zz alone
            slots[name] = (None, zz)
    assert zz_off + (n - 1 if "zz" in parts else 0) == token_feature_dim
    return slots


def _setting_angles(qlam, x_t: torch.Tensor, name: str):
    """``(theta, phi)`` each ``(R, n)``: the direction ``(sinθ cosφ, sinθ sinφ, cosθ)`` the
    setting measures every qubit along (RZ(φ)·RY(θ) maps Z onto it)."""
    cfg = qlam.config
    r, n = x_t.shape[0], cfg.n_qubits
    zeros = x_t.new_zeros(r, n)
    if name.startswith("query"):
        q = qlam.query(x_t).reshape(r, n, cfg.query_heads, -1)[:, :, int(name[5:])]
        return q[..., 0], (q[..., 1] if not cfg.real else zeros)
    theta = {"X": math.pi / 2, "Y": math.pi / 2, "Z": 0.0}[name]
    phi = math.pi / 2 if name == "Y" else 0.0
    return zeros + theta, zeros + phi


def _basis_rotations(qlam, x_t, setting_of_row, names):
    """``(U (R, n, 2, 2), U† (R, n, 2, 2))``: per row the rotation taking Z onto its setting."""
    cfg = qlam.config
    theta = x_t.new_zeros(x_t.shape[0], cfg.n_qubits)
    phi = torch.zeros_like(theta)
    for s, name in enumerate(names):
        rows = setting_of_row == s
        if bool(rows.any()):
            th, ph = _setting_angles(qlam, x_t[rows], name)
            theta[rows], phi[rows] = th, ph
    if cfg.real:
        u = rotation_layer(theta.unsqueeze(-1), "y")
    else:
        u = rotation_layer(torch.stack([theta, phi], -1), "yz")
    return u, u.conj().transpose(-2, -1)


def _measured_read(qlam, memory, x_t, copies: int, generator):
    """One read by measurement: ``(values (R, D), mask (R, D))``; row ``r`` measured the setting
    ``(r mod copies) mod K`` (projectively, or weakly with ``weak_strength``), ±1 outcomes
    (divided by the strength for a weak read) in that setting's features, mask 1 there. The
    memory is left in its post-measurement state."""
    cfg = qlam.config
    names = measurement_settings(cfg)
    rows = x_t.shape[0]
    setting_of_row = (torch.arange(rows, device=x_t.device) % copies) % len(names)
    u, u_dag = _basis_rotations(qlam, x_t, setting_of_row, names)
    token_layers(memory, [("1q", u_dag.to(memory.dtype))])
    n = cfg.n_qubits
    if cfg.readout_protocol == "weak":
        g = float(cfg.weak_strength)
        bits = torch.stack([memory.weak_measure(q, g, generator) for q in range(n)], -1)
        values = (1 - 2 * bits).to(x_t.dtype) / g
    else:
        values = (1 - 2 * memory.measure(list(range(n)), generator)).to(x_t.dtype)
    token_layers(memory, [("1q", u.to(memory.dtype))])
    d = qlam.token_feature_dim
    out, mask = x_t.new_zeros(rows, d), x_t.new_zeros(rows, d)
    slots = _feature_slots(cfg, d)
    for s, name in enumerate(names):
        sel = (setting_of_row == s).nonzero().squeeze(-1)
        one, zz = slots[name]
        if one is not None:
            out[sel[:, None], one[None]] = values[sel]
            mask[sel[:, None], one[None]] = 1
        if zz is not None:
            out[sel[:, None], zz[None]] = values[sel, :-1] * values[sel, 1:]
            mask[sel[:, None], zz[None]] = 1
    return out, mask


def _noise_model(cfg):
    parsed = parse_noise(cfg.noise)
    if parsed is None:
        return None
    from qlam_tn.noise import NoiseModel  # the engine's trajectory channels
    return NoiseModel(*parsed)


def _noisy_update(qlam, memory, x_t, layers, noise, generator) -> None:
    """``QLAM.update`` gate layer by gate layer, with the noise channel after every gate."""
    from qlam_tn.models.qlam import ENCODINGS
    cfg = qlam.config
    n = cfg.n_qubits
    angles = qlam.encoder(x_t).reshape(x_t.shape[0], n, -1)
    rot = rotation_layer(angles, ENCODINGS[cfg.encoding]).to(memory.dtype)

    def one_qubit_layer(gates):
        token_layers(memory, [("1q", gates.to(memory.dtype))])
        for q in range(n):
            noise.after_gate(memory, (q,), generator)

    for l, (two_qubit, after) in enumerate(layers):
        if l == 0 or cfg.reupload:
            one_qubit_layer(rot)
        token_layers(memory, [("2q", two_qubit.to(memory.dtype), l % 2)])
        for first in range(l % 2, n - 1, 2):
            noise.after_gate(memory, (first, first + 1), generator)
        if after is not None:
            one_qubit_layer(after)


def _copies_chunk(qlam, x, copies: int, every: bool, mode: str, generator) -> torch.Tensor:
    """``x (b, T, F)`` run as ``copies`` copies per sample -> ``(b, T', D)`` reads averaged over
    the copies. ``mode``: ``expect`` (each copy's exact expectations), ``shot`` (one ±1 outcome
    per feature and copy, no back-action), ``measure`` (``_measured_read``, with back-action)."""
    cfg = qlam.config
    b, t_len, _ = x.shape
    xc = x.repeat_interleave(copies, 0)
    memory = qlam.new_memory(b * copies, x.device)
    noise = _noise_model(cfg)
    layers = qlam.layer_gates() if noise is not None else None
    gates = qlam.token_gates() if noise is None else None
    reads, counts = [], []
    for t in range(t_len):
        if noise is None:
            qlam.update(memory, xc[:, t], gates)
        else:
            _noisy_update(qlam, memory, xc[:, t], layers, noise, generator)
        if not (every or t == t_len - 1):
            continue
        if mode == "measure":
            values, mask = _measured_read(qlam, memory, xc[:, t], copies, generator)
            reads.append(values.view(b, copies, -1).sum(1))
            counts.append(mask.view(b, copies, -1).sum(1))
            continue
        e = qlam.read(memory, xc[:, t])
        if mode == "shot":
            e = 2 * torch.bernoulli(((1 + e) / 2).clamp(0, 1), generator=generator) - 1
        reads.append(e.view(b, copies, -1).mean(1))
    f = torch.stack(reads, 1)
    return f / torch.stack(counts, 1) if mode == "measure" else f


def _copies_features(qlam, x, copies: int, every: bool, mode: str, generator) -> torch.Tensor:
    """``_copies_chunk`` over chunks of samples (at most ``MAX_COPY_ROWS`` rows at once)."""
    per = max(1, MAX_COPY_ROWS // copies)
    with torch.no_grad():
        return torch.cat([_copies_chunk(qlam, x[i:i + per], copies, every, mode, generator)
                          for i in range(0, x.shape[0], per)], 0)


def _fresh_reads(qlam, x, every: bool, generator) -> torch.Tensor:
    """Reads of ``x (B, T, F)`` from a fresh memory with ``S`` shots each and no back-action
    (``restart``/``end``/``window``): ``(B, T, D)`` (``every``) or ``(B, 1, D)``."""
    cfg = qlam.config
    if cfg.noise is not None:
        copies = cfg.shots if cfg.shots is not None else cfg.trajectories
        return _copies_features(qlam, x, copies, every, "shot" if cfg.shots is not None else "expect",
                                generator)
    f = qlam.exact_features(x, every=every)
    return f if cfg.shots is None else shot_estimate(f, cfg.shots, generator)


def protocol_features(qlam, x: torch.Tensor, every: bool, generator=None) -> torch.Tensor:
    """The reads of ``x (B, T, F)`` under ``qlam.config``'s protocol: ``(B, T, D_t)`` when the
    model reads after every token (``every``), else ``(B, 1, D_t)`` (the read after the last).
    ``generator``: a ``torch.Generator`` for the shots, measurements and noise (reproducible).
    ``collapse``, ``weak`` and noise carry no gradient: they are refused (``ValueError``) while
    autograd records and the model has trainable weights (run them under ``torch.no_grad()``)."""
    cfg = qlam.config
    p = cfg.readout_protocol
    if p == "end" and every:
        raise ValueError("readout_protocol='end' reads the memory once, after the last token; "
                         "per-position outputs need a read after every token: use 'restart', "
                         "'window' or 'collapse'")
    measured = p in ("collapse", "weak") or cfg.noise is not None
    if measured and torch.is_grad_enabled() and any(w.requires_grad for w in qlam.parameters()):
        # these reads are sampled without a gradient: a training step would leave the memory's
        # weights untouched and train only what comes after the reads
        raise ValueError(f"readout_protocol={p!r} (noise {cfg.noise!r}) samples measurements and noise "
                         "without a gradient (evaluation only): run it under torch.no_grad(); to train "
                         "through shot noise use 'restart' with shots (straight-through)")
    if p in ("collapse", "weak"):
        return _copies_features(qlam, x, cfg.shots, every, "measure", generator)
    if p != "window" or cfg.window >= x.shape[1]:
        return _fresh_reads(qlam, x, every, generator)
    tau, t_len = cfg.window, x.shape[1]
    if not every:
        return _fresh_reads(qlam, x[:, t_len - tau:], False, generator)
    # reads before token tau-1 see their whole prefix; the rest one window each, run as a batch
    head = _fresh_reads(qlam, x[:, :tau - 1], True, generator) if tau > 1 else None
    b = x.shape[0]
    windows = x.unfold(1, tau, 1).permute(0, 1, 3, 2).reshape(b * (t_len - tau + 1), tau, -1)
    tail = _fresh_reads(qlam, windows, False, generator).view(b, t_len - tau + 1, -1)
    return tail if head is None else torch.cat([head, tail], 1)
