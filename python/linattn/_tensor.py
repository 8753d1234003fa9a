"""numpy arrays <-> linattn_tensor descriptors."""

from __future__ import annotations

import ctypes
import struct

import ml_dtypes
import numpy as np

from . import _lib

FLOAT32 = np.dtype(np.float32)
FLOAT16 = np.dtype(np.float16)
BFLOAT16 = np.dtype(ml_dtypes.bfloat16)

DTYPE_CODES = {FLOAT32: _lib.DTYPE_F32, FLOAT16: _lib.DTYPE_F16, BFLOAT16: _lib.DTYPE_BF16}


def resolve_dtype(dtype) -> np.dtype:
    """np.dtype for float32/float16/bfloat16 (names like "bfloat16" accepted), else TypeError."""
    if isinstance(dtype, str) and dtype.lower() in ("bfloat16", "bf16"):
        return BFLOAT16
    dt = np.dtype(dtype)
    if dt not in DTYPE_CODES:
        raise TypeError(f"unsupported dtype {dt}: linattn takes float32, float16 or bfloat16")
    return dt


# linattn_tensor (data, dtype, rank, dims[MAX_RANK], strides[MAX_RANK]) as struct layouts per
# rank, unused dims and strides as zero pad bytes: one pack_into a Tensor costs a fraction of
# setting its ctypes fields one by one. _PACKED_LAYOUT leaves all strides 0 (packed).
_PACKED_LAYOUT = [
    struct.Struct("@Pii%dq%dx" % (r, 8 * (2 * _lib.MAX_RANK - r))) for r in range(_lib.MAX_RANK + 1)
]
_STRIDED_LAYOUT = [
    struct.Struct("@Pii%dq%dx%dq%dx" % (r, 8 * (_lib.MAX_RANK - r), r, 8 * (_lib.MAX_RANK - r)))
    for r in range(_lib.MAX_RANK + 1)
]
assert all(layout.size == ctypes.sizeof(_lib.Tensor) for layout in _PACKED_LAYOUT + _STRIDED_LAYOUT)
assert (_lib.Tensor.dims.offset, _lib.Tensor.strides.offset) == (16, 16 + 8 * _lib.MAX_RANK)
_char_from_buffer = ctypes.c_char.from_buffer
_addressof = ctypes.addressof


def data_address(a: np.ndarray) -> int:
    """Address of a's first element (a non-empty). Through the buffer protocol when a exports a
    writable contiguous buffer: a.ctypes.data builds a helper object and costs ~1 us, as much as
    the whole C call of a decode step."""
    return _address(a, DTYPE_CODES.get(a.dtype))


_UINT16 = np.dtype(np.uint16)


def _address(a: np.ndarray, code: int | None) -> int:
    """data_address(a) for an array of linattn dtype code `code`."""
    try:
        # numpy exports no buffer of an ml_dtypes bfloat16 array (no format char): a uint16 view does
        return _addressof(_char_from_buffer(a.view(_UINT16) if code == _lib.DTYPE_BF16 else a))
    except (TypeError, ValueError, BufferError):  # read-only, not contiguous, no buffer export
        return a.ctypes.data


# The per-call fast paths of ops.py read an ndarray's data address and flags without building a
# helper object: they are fields of numpy's array struct (PyArrayObject_fields, part of numpy's
# ABI), which starts right after the object header, read through id() (CPython: the object's
# address). Both in ~0.1 us, against ~0.3 us for the address through the buffer protocol, ~1 us
# through a.ctypes.data, and ~0.05 us for a.flags.num. Used only if they give a.ctypes.data and
# a.flags for every probe below (views, offsets, read-only, misaligned, bfloat16).
DATA_FIELD_OFFSET = object.__basicsize__
# ndarray.flags.num bits (numpy's NPY_ARRAY_* values), checked by the probe too
FLAG_C_CONTIGUOUS = 0x0001
FLAG_ALIGNED = 0x0100
FLAG_WRITEABLE = 0x0400


class ArrayHead(ctypes.Structure):
    """The start of numpy's array struct (PyArrayObject_fields), up to the flags."""

    _fields_ = [
        ("object_header", ctypes.c_char * DATA_FIELD_OFFSET),
        ("data", ctypes.c_void_p),
        ("nd", ctypes.c_int),
        ("dimensions", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("base", ctypes.c_void_p),
        ("descr", ctypes.c_void_p),
        ("flags", ctypes.c_int),
    ]


array_head = ArrayHead.from_address  # array_head(id(a)): only where FIELD_ADDRESS_WORKS, a an exact ndarray


def field_address(a: np.ndarray) -> int:
    """a.ctypes.data read from the array struct (only where FIELD_ADDRESS_WORKS; a an exact ndarray)."""
    return array_head(id(a)).data


def _field_address_works() -> bool:
    import sys

    if sys.implementation.name != "cpython":  # id() is an address on CPython only
        return False
    base = np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5)
    read_only = base[1].copy()
    read_only.flags.writeable = False
    probes = [base, base[1], base[:, 1:], base[1, 2, 1:], base[..., ::2], read_only, base.astype(BFLOAT16)[1, 1:],
              np.frombuffer(bytes(18), np.float16)[3:], np.frombuffer(bytes(19), np.uint8)[3:].view(np.float32)]
    for a in probes:
        head = array_head(id(a))
        flags = a.flags
        expected = ((FLAG_C_CONTIGUOUS if flags.c_contiguous else 0) | (FLAG_ALIGNED if flags.aligned else 0)
                    | (FLAG_WRITEABLE if flags.writeable else 0))
        if (type(a) is not np.ndarray or head.data != a.ctypes.data or head.nd != a.ndim
                or head.descr != id(a.dtype) or head.flags != flags.num
                or head.flags & (FLAG_C_CONTIGUOUS | FLAG_ALIGNED | FLAG_WRITEABLE) != expected):
            return False
    return True


FIELD_ADDRESS_WORKS = _field_address_works()


def as_input_array(value, name: str) -> np.ndarray:
    """The argument as a native-endian float32/float16/bfloat16 ndarray (no copy when it is one)."""
    if type(value) is np.ndarray and value.dtype in DTYPE_CODES and value.ndim <= _lib.MAX_RANK:
        return value  # the usual case, settled by three cheap tests
    a = value if isinstance(value, np.ndarray) else np.asarray(value)
    if a.dtype.byteorder not in ("=", "|") and a.dtype.newbyteorder("=") in DTYPE_CODES:
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype not in DTYPE_CODES:
        raise TypeError(f"{name}: unsupported dtype {a.dtype}; linattn takes float32, float16 or bfloat16")
    if a.ndim > _lib.MAX_RANK:
        raise _lib.LinattnError(
            _lib.ERROR_INVALID_ARGUMENT, f"{name}: rank {a.ndim} exceeds {_lib.MAX_RANK}, got shape {a.shape}"
        )
    return a


def element_strides(a: np.ndarray) -> list[int] | None:
    """Strides of `a` in elements if linattn accepts its layout as is, else None.

    Accepted (mirrors the library's check): aligned, innermost stride 1 (or extent <= 1),
    non-negative strides, and, axes of extent > 1 sorted by stride, each stride steps over the
    whole extent of the axes inside it (so distinct elements never share memory)."""
    item = a.itemsize
    if not a.flags.aligned or a.ctypes.data % item:
        return None
    if any(s % item for s in a.strides):
        return None
    strides = [s // item for s in a.strides]
    if a.ndim and a.shape[-1] > 1 and strides[-1] != 1:
        return None
    if any(s < 0 for s in strides):
        return None
    axes = sorted((i for i in range(a.ndim) if a.shape[i] > 1), key=lambda i: strides[i], reverse=True)
    for outer, inner in zip(axes, axes[1:]):
        if strides[outer] < strides[inner] * a.shape[inner]:
            return None
    return strides


def describe(a: np.ndarray, strided: bool) -> _lib.Tensor:
    """Descriptor of `a`; packed (all-zero strides) unless `strided` and `a` is not C-contiguous.
    The caller keeps `a` alive and must have made it acceptable (see prepare_input)."""
    t = _lib.Tensor()
    rank = a.ndim
    code = DTYPE_CODES[a.dtype]
    address = _address(a, code) if a.size else 0
    if strided and not a.flags.c_contiguous:
        _STRIDED_LAYOUT[rank].pack_into(t, 0, address, code, rank, *a.shape, *element_strides(a))
    else:
        _PACKED_LAYOUT[rank].pack_into(t, 0, address, code, rank, *a.shape)
    return t


def prepare_input(value, name: str, strided: bool) -> np.ndarray | None:
    """Array to pass for input `name` (None stays None): strided views kept when the library
    accepts them and `strided`, else a packed copy."""
    if value is None:
        return None
    a = as_input_array(value, name)
    flags = a.flags
    if flags.c_contiguous and flags.aligned:
        return a
    if strided and element_strides(a) is not None:
        return a
    return np.ascontiguousarray(a)


def input_tensor(value, name: str, strided: bool) -> tuple[np.ndarray | None, _lib.Tensor | None]:
    """(prepare_input(value, name, strided), its descriptor); (None, None) for None. The usual
    case, a packed native array, is settled here without the general checks."""
    if type(value) is np.ndarray:
        code = DTYPE_CODES.get(value.dtype)
        rank = value.ndim
        if code is not None and rank <= _lib.MAX_RANK:
            flags = value.flags
            if flags.c_contiguous and flags.aligned:
                t = _lib.Tensor()
                _PACKED_LAYOUT[rank].pack_into(t, 0, _address(value, code) if value.size else 0, code, rank, *value.shape)
                return value, t
    a = prepare_input(value, name, strided)
    return a, (describe(a, strided) if a is not None else None)


class OutputSlot:
    """An output: either the caller's array (written directly when its layout allows, else through
    a packed temporary copied back afterwards) or a fresh array."""

    __slots__ = ("name", "given", "array")

    def __init__(self, name: str, shape, dtype: np.dtype, given: np.ndarray | None, strided: bool):
        self.name = name
        self.given = given
        if given is None:
            self.array = np.empty(tuple(shape), dtype=dtype)
            return
        if not isinstance(given, np.ndarray):
            raise TypeError(f"{name}: out must be a numpy array, got {type(given).__name__}")
        if given.dtype != dtype:
            raise _lib.LinattnError(
                _lib.ERROR_INVALID_ARGUMENT, f"{name}: out has dtype {given.dtype}, expected {dtype}"
            )
        if tuple(given.shape) != tuple(shape):
            raise _lib.LinattnError(
                _lib.ERROR_INVALID_ARGUMENT, f"{name}: out has shape {given.shape}, expected {tuple(shape)}"
            )
        flags = given.flags
        if not flags.writeable:
            raise ValueError(f"{name}: out array is read-only")
        direct = flags.c_contiguous and flags.aligned
        if not direct and strided:
            direct = element_strides(given) is not None
        self.array = given if direct else np.empty(given.shape, dtype=dtype)

    def describe(self) -> _lib.Tensor:
        return describe(self.array, strided=True)

    def finish(self) -> np.ndarray:
        if self.given is not None and self.array is not self.given:
            np.copyto(self.given, self.array)
            return self.given
        return self.array
