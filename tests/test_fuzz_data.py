"""Fuzzing the data readers: IDX files (raw and gzip) and CIFAR-10 batch pickles, cut short,
bit-flipped, overwritten, spliced and extended.

Each mutated file either loads what an independent reading of the same bytes gives, or raises
:class:`DataFormatError` naming the file: never another exception. IDX reads run under
``tracemalloc``, and their peak stays within a small multiple of what the file holds once
decompressed, whatever size its (possibly flipped) header claims.

The default run is bounded (a few seconds); a longer one by hand::

    QLAM_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz_data.py
"""
import codecs
import gzip
import io
import os
import pickle
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlam_tn.experiments import data as D
from test_data import CIFAR_WRITERS, cifar_batch, cifar_pickle

EXAMPLES = int(os.environ.get("QLAM_FUZZ_EXAMPLES", 150))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# ----------------------------------------------------------------------------------------------
# mutations
# ----------------------------------------------------------------------------------------------


def positions(n: int, head: int = 24, tail: int = 8):
    """A byte offset in ``[0, n)``, half the time in the first ``head`` or last ``tail`` bytes
    (headers, gzip trailers), where a change is most often meaningful."""
    return st.one_of(st.integers(0, n - 1), st.integers(0, min(head, n) - 1),
                     st.integers(max(0, n - tail), n - 1))


@st.composite
def mutate(draw, raw: bytes, where=None) -> bytes:
    """``raw`` cut short, with bits flipped, bytes overwritten, inserted or deleted, or bytes
    appended; ``where`` draws the offsets (default :func:`positions`)."""
    n = len(raw)
    where = positions(n) if where is None else where
    kind = draw(st.sampled_from(["cut", "flip", "overwrite", "insert", "delete", "append"]))
    out = bytearray(raw)
    if kind == "cut":
        return raw[:draw(st.integers(0, n - 1))]
    if kind == "flip":
        for pos in draw(st.lists(where, min_size=1, max_size=4)):
            out[pos] ^= 1 << draw(st.integers(0, 7))
    elif kind == "overwrite":
        for pos in draw(st.lists(where, min_size=1, max_size=4)):
            out[pos] = draw(st.integers(0, 255))
    elif kind == "insert":
        pos = draw(where)
        out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    elif kind == "delete":
        pos = draw(where)
        del out[pos:pos + draw(st.integers(1, 16))]
    else:
        out += draw(st.binary(min_size=1, max_size=16))
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# IDX
# ----------------------------------------------------------------------------------------------

ITEMSIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}
BIG_ENDIAN = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@st.composite
def idx_files(draw) -> bytes:
    """An IDX file of any type code, 1 to 3 dims of 0 to 6: header and random payload bytes."""
    code = draw(st.sampled_from(sorted(ITEMSIZE)))
    dims = draw(st.lists(st.integers(0, 6), min_size=1, max_size=3))
    size = ITEMSIZE[code] * int(np.prod(dims))
    payload = draw(st.binary(min_size=size, max_size=size))
    return (bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
            + payload)


def reference_idx(blob: bytes, limit: int):
    """The IDX format read by hand from the whole (decompressed) file: the array, or ``None``
    where the file is not a well-formed IDX file within ``limit`` payload bytes."""
    if blob[:2] == b"\x1f\x8b":
        try:
            blob = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error):
            return None
    if len(blob) < 4 or blob[0] or blob[1] or blob[2] not in ITEMSIZE or blob[3] == 0:
        return None
    ndim = blob[3]
    body = 4 + 4 * ndim
    if len(blob) < body:
        return None
    dims = [int.from_bytes(blob[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    size = ITEMSIZE[blob[2]]
    for d in dims:
        size *= d
    if size > limit or len(blob) - body != size:
        return None
    try:
        return np.frombuffer(blob[body:], dtype=BIG_ENDIAN[blob[2]]).reshape(dims)
    except ValueError:  # a shape numpy cannot hold, even empty: (2^31, 0, 2^31)
        return None


def expanded_size(blob: bytes) -> int:
    try:
        return len(gzip.decompress(blob)) if blob[:2] == b"\x1f\x8b" else len(blob)
    except (OSError, EOFError, zlib.error):
        return len(blob)


def check_idx_file(path, blob: bytes, limit):
    """``read_idx`` on ``blob`` written at ``path`` agrees with :func:`reference_idx`, and its
    traced peak memory is bounded by the file's contents, not by its header's claim."""
    path.write_bytes(blob)
    expected = reference_idx(blob, D.IDX_MAX_BYTES if limit is None else limit)
    tracemalloc.start()
    try:
        if expected is None:
            with pytest.raises(D.DataFormatError) as info:
                D.read_idx(path, limit)
            assert str(path) in str(info.value)
        else:
            got = D.read_idx(path, limit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * expanded_size(blob) + (4 << 20)
    if expected is not None:
        assert got.shape == expected.shape and got.dtype == expected.dtype.newbyteorder("=")
        assert got.dtype.isnative and got.tobytes() == expected.astype(got.dtype).tobytes()


LIMITS = st.sampled_from([None, 64, 4096])


@FUZZ
@given(data=st.data(), limit=LIMITS)
def test_fuzz_idx_raw(folder, data, limit):
    blob = data.draw(mutate(data.draw(idx_files())))
    check_idx_file(folder / "raw-idx", blob, limit)


@FUZZ
@given(data=st.data(), limit=LIMITS, before=st.booleans())
def test_fuzz_idx_gzip(folder, data, limit, before):
    """Mutations of the IDX bytes before compressing (a well-formed gzip of a bad IDX file) or of
    the gzip file itself (headers, deflate stream, CRC and length trailer)."""
    raw = data.draw(idx_files())
    blob = gzip.compress(data.draw(mutate(raw))) if before else data.draw(mutate(gzip.compress(raw)))
    check_idx_file(folder / "gz-idx.gz", blob, limit)


@FUZZ
@given(data=st.data(), gz=st.booleans())
def test_fuzz_idx_labels(folder, data, gz):
    """Label files: loaded as int64 in 0..9, or refused (wrong magic, bad value, bad layout)."""
    n = data.draw(st.integers(0, 12))
    labels = data.draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
    raw = b"\0\0\x08\x01" + n.to_bytes(4, "big") + bytes(labels)
    plain = data.draw(mutate(raw))
    blob = gzip.compress(plain) if gz else plain
    path = folder / "labels-idx1-ubyte"
    path.write_bytes(blob)
    expected = reference_idx(blob, D.IDX_MAX_BYTES)
    valid = expected is not None and plain[:4] == b"\0\0\x08\x01" and bool(np.all(expected < 10))
    if not valid:
        with pytest.raises(D.DataFormatError) as info:
            D.read_idx_labels(path)
        assert str(path) in str(info.value)
    else:
        got = D.read_idx_labels(path)
        assert got.dtype == np.int64 and got.tolist() == expected.tolist()


# ----------------------------------------------------------------------------------------------
# CIFAR-10 pickles
# ----------------------------------------------------------------------------------------------

RECONSTRUCT = np.ndarray(0).__reduce__()[0]
FROMBUFFER = np.ones(3).__reduce_ex__(5)[0]
BATCH = cifar_batch(2, 7)
BATCH[b"data"][0, :256] = np.arange(256)
PICKLES = {(w, p): cifar_pickle(BATCH, w, p) for w, p in CIFAR_WRITERS}
PIXELS = BATCH[b"data"].tobytes()
# the writers that hold the pixels verbatim (the others escape them as text)
VERBATIM = [key for key, raw in PICKLES.items() if PIXELS in raw]


class ReferenceUnpickler(pickle.Unpickler):
    """numpy's and the standard library's own functions for the globals genuine batches name.
    Run only on files :func:`read_cifar_batch` accepted: it trusts what it is given."""

    GLOBALS = {("numpy.core.multiarray", "_reconstruct"): RECONSTRUCT,
               ("numpy._core.multiarray", "_reconstruct"): RECONSTRUCT,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("numpy.core.numeric", "_frombuffer"): FROMBUFFER,
               ("numpy._core.numeric", "_frombuffer"): FROMBUFFER,
               ("_codecs", "encode"): codecs.encode,
               ("__builtin__", "bytes"): bytes, ("builtins", "bytes"): bytes}

    def find_class(self, module, name):
        return self.GLOBALS[(module, name)]


def reference_cifar(blob: bytes):
    batch = ReferenceUnpickler(io.BytesIO(blob), encoding="latin1").load()
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    images = np.asarray(batch["data"]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch["labels"]).astype(np.int64)


def read_or_refuse(path, blob: bytes):
    """The batch :func:`read_cifar_batch` reads, or ``None`` where it raised DataFormatError
    naming the file (any other exception fails the test). Its traced peak memory stays within
    a small multiple of the file's size, whatever lengths and memo indices the file declares."""
    path.write_bytes(blob)
    tracemalloc.start()
    try:
        return D.read_cifar_batch(path)
    except D.DataFormatError as exc:
        assert str(path) in str(exc)
        return None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 16 * len(blob) + (1 << 20)


@FUZZ
@given(data=st.data(), key=st.sampled_from(CIFAR_WRITERS))
def test_fuzz_cifar_structure(folder, data, key):
    """Mutations anywhere, half of them outside the pixel bytes (the pickle's structure)."""
    raw = PICKLES[key]
    start = raw.find(PIXELS)
    if start >= 0:
        outside = st.one_of(st.integers(0, start - 1),
                            st.integers(start + len(PIXELS), len(raw) - 1))
    else:
        outside = st.one_of(st.integers(0, 299), st.integers(len(raw) - 300, len(raw) - 1))
    blob = data.draw(mutate(raw, st.one_of(st.integers(0, len(raw) - 1), outside)))
    got = read_or_refuse(folder / "data_batch_1", blob)
    if got is not None:  # accepted: exactly what numpy's own unpickling gives
        images, labels = reference_cifar(blob)
        np.testing.assert_array_equal(got[0], images)
        np.testing.assert_array_equal(got[1], labels)
        assert got[0].dtype == np.uint8 and got[1].dtype == np.int64


@FUZZ
@given(data=st.data(), key=st.sampled_from(VERBATIM))
def test_fuzz_cifar_harmless_changes(folder, data, key):
    """Flipped pixel bytes load as those pixels; bytes after the pickle's STOP are never read."""
    raw = PICKLES[key]
    start = raw.find(PIXELS)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(PIXELS) - 1), st.integers(0, 7)),
                               max_size=6))
    blob = bytearray(raw)
    pixels = BATCH[b"data"].copy().reshape(-1)
    for pos, bit in flips:
        blob[start + pos] ^= 1 << bit
        pixels[pos] ^= 1 << bit
    blob += data.draw(st.binary(max_size=32))
    got = read_or_refuse(folder / "data_batch_2", bytes(blob))
    assert got is not None, "a harmless change was refused"
    images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(got[0], images)
    assert got[1].tolist() == BATCH[b"labels"]


def test_verbatim_writers_cover_both_pythons():
    assert {w for w, _ in VERBATIM} == {"py2", "py3"} and len(VERBATIM) == 5
