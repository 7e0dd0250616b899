"""Tensors at the edge: datatypes, signatures, and turning request data into checked arrays.

Pure numpy, no TensorFlow and no Flask, so both protocols and the tests share one validator.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.errors import ClientError
from services.protocol import facts

# Open Inference Protocol datatype -> (numpy dtype, TensorFlow DataType name).
DATATYPES: dict[str, tuple[np.dtype, str]] = {
    name: (np.dtype(layout), tf_name) for name, (layout, tf_name) in facts.DATATYPES.items()
}
_BY_NUMPY = {dtype: name for name, (dtype, _) in DATATYPES.items()}

BYTES = "BYTES"  # strings: object arrays of bytes, as TF hands DT_STRING tensors over
# Which kinds of source data a target dtype kind accepts without changing what the values mean.
_ACCEPTS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b", "O": "O"}
_KIND_WORDS = {"f": "numbers", "i": "integers", "u": "integers", "b": "booleans", "O": "strings"}
_LENGTH = struct.Struct("<I")  # the binary extension's BYTES element: 4-byte length, then bytes


def datatype_of(dtype: np.dtype) -> str:
    try:
        return _BY_NUMPY[np.dtype(dtype).newbyteorder("<") if dtype.byteorder == ">" else dtype]
    except KeyError:
        raise ValueError(f"no Open Inference Protocol datatype for {dtype}") from None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model; ``shape[0]`` is the batch dimension (None)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    @property
    def datatype(self) -> str:
        return datatype_of(self.dtype)

    @property
    def tf_dtype(self) -> str:
        return DATATYPES[self.datatype][1]

    @property
    def wire_shape(self) -> list[int]:
        return [-1 if dim is None else dim for dim in self.shape]

    @property
    def is_bytes(self) -> bool:
        return self.dtype.kind == "O"

    def compatible_with(self, other: TensorSpec) -> bool:
        return (self.name, self.dtype, self.shape) == (other.name, other.dtype, other.shape)

    def example(self, rows: int) -> np.ndarray:
        """A zero (or empty-string) batch of ``rows`` rows, 1 for every other free dimension."""
        shape = (rows, *(dim or 1 for dim in self.shape[1:]))
        if self.is_bytes:
            return np.full(shape, b"", dtype=object)
        return np.zeros(shape, dtype=self.dtype)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a SignatureDef as TF Serving's metadata shows it."""

    dtype: str  # TensorFlow's DataType name: DT_FLOAT, DT_STRING, DT_INVALID...
    dims: tuple[int, ...] | None  # -1: any size; None: unknown rank
    name: str  # the graph tensor: "serving_default_pixels:0"


@dataclass(frozen=True)
class SignatureDef:
    """A signature as a SavedModel records it (inputs and outputs sorted by key)."""

    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]
    method_name: str


def element_count(shape: Sequence[int]) -> int:
    # Python ints: a hostile shape like [1e9, 1e9] must not overflow into a plausible number.
    return math.prod(shape)


def parse_shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in value
    ):
        raise ClientError(f"{where}: 'shape' must be a list of non-negative integers, got {value!r}"[:300])
    return value


def _string_array(data: Any, where: str, leaf: Callable[[Any, str], bytes]) -> np.ndarray:
    """Nested JSON lists of strings -> an object array of bytes; ``leaf`` reads one element."""
    flat: list[bytes] = []

    def walk(node: Any) -> tuple[int, ...]:
        if not isinstance(node, list):
            flat.append(leaf(node, where))
            return ()
        shapes = {walk(child) for child in node}
        if len(shapes) > 1:
            raise ClientError(f"{where}: ragged nested lists; every row must have the same shape")
        return (len(node), *(shapes.pop() if shapes else ()))

    try:
        shape = walk(data)
    except RecursionError:
        raise ClientError(f"{where}: nested too deeply") from None
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def utf8_leaf(value: Any, where: str) -> bytes:
    """A JSON string as the bytes it encodes (UTF-8), for string tensors."""
    if not isinstance(value, str):
        raise ClientError(f"{where}: expected strings, got {_json_kind(value)}")
    return value.encode("utf-8", "surrogatepass")


def b64_leaf(value: Any, where: str) -> bytes:
    """TF Serving's string element: a JSON string (UTF-8) or ``{"b64": "<base64>"}``."""
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ClientError(f"{where}: 'b64' value is not valid base64") from None
    return utf8_leaf(value, where)


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "booleans"
    if isinstance(value, (int, float)):
        return "numbers"
    return "nulls, objects or mixed values"


def strings_to_json(array: np.ndarray, *, b64: bool = False) -> Any:
    """A string tensor as nested JSON lists: UTF-8 text (bytes that are not UTF-8 replaced), or
    TF Serving's ``{"b64": ...}`` objects, which carry any bytes exactly."""
    if b64:
        encode = np.frompyfunc(lambda v: {"b64": base64.b64encode(v).decode("ascii")}, 1, 1)
    else:
        encode = np.frompyfunc(lambda v: v.decode("utf-8", "replace"), 1, 1)
    return encode(array).tolist() if array.size else array.tolist()


def strings_to_bytes(array: np.ndarray) -> bytes:
    """A string tensor in the binary extension's layout: each element length-prefixed."""
    return b"".join(_LENGTH.pack(len(v)) + v for v in array.reshape(-1))


def _strings_from_bytes(raw: memoryview | bytes, count: int, where: str) -> np.ndarray:
    elements, offset = [], 0
    for _ in range(count):
        if offset + _LENGTH.size > len(raw):
            raise ClientError(f"{where}: BYTES data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise ClientError(f"{where}: BYTES element of {length} bytes runs past the data")
        elements.append(bytes(raw[offset : offset + length]))
        offset += length
    if offset != len(raw):
        raise ClientError(f"{where}: {len(raw) - offset} bytes after the last BYTES element")
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array


def _check_kind(spec: TensorSpec, datatype: str, where: str) -> None:
    """String data only for string inputs and the other way round (no implicit conversion)."""
    if (datatype == BYTES) != spec.is_bytes:
        raise ClientError(
            f"{where}: model input '{spec.name}' takes {_KIND_WORDS[spec.dtype.kind]} "
            f"({spec.datatype}), got {datatype}"
        )


def _as_array(data: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(data)
    except (ValueError, OverflowError, TypeError) as error:
        text = str(error)
        if "inhomogeneous" in text or "sequence" in text:
            raise ClientError(f"{where}: ragged nested lists; every row must have the same shape") from None
        raise ClientError(f"{where}: not a numeric array ({text[:120]})") from None
    if array.dtype.kind not in "biuf":
        found = {"U": "strings", "S": "strings", "O": "nulls, objects or mixed values"}.get(
            array.dtype.kind, str(array.dtype)
        )
        raise ClientError(f"{where}: expected numbers or booleans, got {found}")
    return array


def _exact_integers(data: Any, array: np.ndarray, where: str) -> np.ndarray:
    """``array`` again, exactly, when numpy read a list of integers as floats.

    numpy turns ``[2**63, 1]`` into float64 (no signed or unsigned 64-bit type holds both
    "kinds"), so a valid UINT64 tensor was refused as "numbers" (found by a round-trip
    property test). Only integer inputs pay for this, and only when numpy chose floats.
    """
    if not array.size:  # numpy reads an empty list as float64; it holds no non-integer
        return array.astype(np.int64)
    values = np.array(data, dtype=object)
    if values.shape != array.shape or not all(type(v) is int for v in values.flat):
        return array  # real non-integers: refused by the caller as before
    low, high = min(values.flat), max(values.flat)
    if 0 <= low and high < 2**64:
        return values.astype(np.uint64)
    if -(2**63) <= low and high < 2**63:
        return values.astype(np.int64)
    raise ClientError(f"{where}: integers out of the 64-bit range")


def convert(
    array: np.ndarray, spec: TensorSpec, where: str, *, allow_nonfinite: bool
) -> np.ndarray:
    """Cast ``array`` to the model's dtype if that keeps its meaning, and check its shape."""
    target = spec.dtype
    if array.dtype.kind not in _ACCEPTS[target.kind]:
        raise ClientError(
            f"{where}: model input '{spec.name}' takes {_KIND_WORDS[target.kind]} "
            f"({spec.datatype}), got {_KIND_WORDS.get(array.dtype.kind, str(array.dtype))}"
        )
    if target.kind in "iu" and array.size:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise ClientError(f"{where}: values out of range for {spec.datatype}")
    cast = array
    if array.dtype != target:
        with np.errstate(over="ignore"):
            cast = array.astype(target)
    # One pass over the values on the common path; the rest only when something is not finite.
    if target.kind == "f" and not np.isfinite(cast).all():
        # 1e300 is a finite float64 but no FP32: say so instead of reading it as Infinity.
        if (np.isinf(cast) & ~np.isinf(array)).any():
            raise ClientError(f"{where}: values out of range for {spec.datatype}")
        if not allow_nonfinite:
            raise ClientError(f"{where}: NaN or Infinity in input '{spec.name}' is not allowed")
    check_shape(array.shape, spec, where)
    return cast


def check_shape(shape: Sequence[int], spec: TensorSpec, where: str) -> None:
    if len(shape) >= 1 and shape[0] == 0:
        raise ClientError(f"{where}: input '{spec.name}' has an empty batch")
    ok = len(shape) == len(spec.shape) and all(
        want is None or want == got for want, got in zip(spec.shape[1:], shape[1:], strict=False)
    )
    if not ok:
        raise ClientError(
            f"{where}: input '{spec.name}' expects shape {spec.wire_shape} "
            f"(first dimension = batch), got {list(shape)}"
        )


def from_json(data: Any, spec: TensorSpec, where: str, *, allow_nonfinite: bool) -> np.ndarray:
    """Nested JSON lists (batch first) -> a checked array for ``spec``; string inputs take
    TF Serving's forms (text, or ``{"b64": ...}``)."""
    if spec.is_bytes:
        array = _string_array(data, where, b64_leaf)
        check_shape(array.shape, spec, where)
        return array
    array = _as_array(data, where)
    if array.dtype.kind == "f" and spec.dtype.kind in "iu":
        array = _exact_integers(data, array, where)
    return convert(array, spec, where, allow_nonfinite=allow_nonfinite)


def from_typed_json(
    data: Any, datatype: str, shape: list[int], spec: TensorSpec, where: str, *, allow_nonfinite: bool
) -> np.ndarray:
    """V2 tensor data (flat or nested) declared with ``datatype`` and ``shape``."""
    shape = parse_shape(shape, where)
    if datatype not in DATATYPES:
        raise ClientError(f"{where}: unknown datatype {datatype!r}; expected one of {sorted(DATATYPES)}"[:300])
    if datatype == BYTES or spec.is_bytes:
        _check_kind(spec, datatype, where)
        array = _string_array(data, where, utf8_leaf).reshape(-1)
        if array.size != element_count(shape):
            raise ClientError(
                f"{where}: shape {shape} holds {element_count(shape)} elements, data has {array.size}"
            )
        array = array.reshape(shape)
        check_shape(array.shape, spec, where)
        return array
    array = _as_array(data, where)
    declared = DATATYPES[datatype][0]
    if array.dtype.kind == "f" and declared.kind in "iu":
        array = _exact_integers(data, array, where)
    if array.dtype.kind not in _ACCEPTS[declared.kind]:
        raise ClientError(
            f"{where}: datatype {datatype} needs {_KIND_WORDS[declared.kind]}, "
            f"got {_KIND_WORDS.get(array.dtype.kind, str(array.dtype))}"
        )
    if array.size != element_count(shape):
        raise ClientError(
            f"{where}: shape {shape} holds {element_count(shape)} elements, data has {array.size}"
        )
    if declared.kind in "iu" and array.size:
        info = np.iinfo(declared)
        if array.min() < info.min or array.max() > info.max:
            raise ClientError(f"{where}: values out of range for {datatype}")
    array = array.astype(declared, copy=False).reshape(shape)
    return convert(array, spec, where, allow_nonfinite=allow_nonfinite)


def from_bytes(
    raw: memoryview | bytes, datatype: str, shape: list[int], spec: TensorSpec, where: str,
    *, allow_nonfinite: bool,
) -> np.ndarray:
    """A binary-extension tensor: little-endian, row-major, ``BOOL`` one byte per element,
    ``BYTES`` each element a 4-byte little-endian length and then its bytes."""
    shape = parse_shape(shape, where)
    if datatype not in DATATYPES:
        raise ClientError(f"{where}: unknown datatype {datatype!r}; binary data supports {sorted(DATATYPES)}"[:300])
    if datatype == BYTES or spec.is_bytes:
        _check_kind(spec, datatype, where)
        array = _strings_from_bytes(raw, element_count(shape), where).reshape(shape)
        check_shape(array.shape, spec, where)
        return array
    declared = DATATYPES[datatype][0]
    expected = element_count(shape) * declared.itemsize
    if len(raw) != expected:
        raise ClientError(
            f"{where}: shape {shape} of {datatype} needs {expected} bytes, got {len(raw)}"
        )
    array = np.frombuffer(raw, dtype=declared).reshape(shape)
    if declared.kind == "b" and array.size and array.view(np.uint8).max() > 1:
        raise ClientError(f"{where}: BOOL bytes must be 0 or 1")
    return convert(array, spec, where, allow_nonfinite=allow_nonfinite)
