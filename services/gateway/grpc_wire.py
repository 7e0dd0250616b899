"""The protobuf wire format, as far as the gateway reads and writes it: a few fields by number.

The gateway forwards gRPC messages as bytes. To route one it needs the model's name and the
version asked for, and to split a canary it re-encodes just that version; TF Serving's generated
modules import TensorFlow's protos, and the gateway never imports TensorFlow, so it reads those
fields from the wire itself (https://protobuf.dev/programming-guides/encoding/). Every other
field is carried over byte for byte, unknown ones included.

Protobuf's own rules apply: a scalar field seen twice takes its last value, and an embedded
message seen twice is the merge of both, which is what parsing their concatenation gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

VARINT, I64, LEN, I32 = 0, 1, 2, 5  # the wire types still in use (3 and 4, groups, are not)
_SIZES = {I64: 8, I32: 4}
_MAX_FIELD = (1 << 29) - 1


class WireError(ValueError):
    """The bytes are not a protobuf message."""


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    wire_type: int
    value: int | bytes  # a varint's value; the payload of every other wire type
    start: int  # where its tag begins in the message
    end: int  # just past its value


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def varint(value: int) -> bytes:
    """``value``'s varint; a negative one as its 64-bit two's complement, as int64 has it."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def int64(value: int) -> int:
    """A varint read as protobuf's int64 (negative numbers are ten-byte varints)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def fields(data: bytes) -> Iterator[Field]:
    """Every field of a message, in wire order; raises :class:`WireError` on malformed bytes."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if not 0 < number <= _MAX_FIELD:
            raise WireError(f"field number {number} out of range")
        if wire_type == VARINT:
            value, pos = read_varint(data, pos)
            yield Field(number, wire_type, value, start, pos)
        elif wire_type == LEN:
            size, pos = read_varint(data, pos)
            if pos + size > len(data):
                raise WireError(f"field {number} runs past the end of the message")
            yield Field(number, wire_type, data[pos:pos + size], start, pos + size)
            pos += size
        elif wire_type in _SIZES:
            size = _SIZES[wire_type]
            if pos + size > len(data):
                raise WireError(f"field {number} runs past the end of the message")
            yield Field(number, wire_type, data[pos:pos + size], start, pos + size)
            pos += size
        else:
            raise WireError(f"field {number} has wire type {wire_type}, which no message here uses")


def _of(data: bytes, number: int, wire_type: int) -> list[Field]:
    found = [f for f in fields(data) if f.number == number]
    for f in found:
        if f.wire_type != wire_type:
            raise WireError(f"field {number} has wire type {f.wire_type}, expected {wire_type}")
    return found


def message(data: bytes, number: int) -> bytes | None:
    """Embedded message ``number`` (every occurrence merged), or None when absent."""
    found = _of(data, number, LEN)
    return b"".join(f.value for f in found) if found else None  # type: ignore[misc]


def string(data: bytes, number: int) -> str | None:
    """String field ``number`` (its last occurrence), or None when absent."""
    found = _of(data, number, LEN)
    if not found:
        return None
    try:
        return found[-1].value.decode()  # type: ignore[union-attr]
    except UnicodeDecodeError:
        raise WireError(f"field {number} is not UTF-8") from None


def integer(data: bytes, number: int) -> int | None:
    """Varint field ``number`` as an int64 (its last occurrence), or None when absent."""
    found = _of(data, number, VARINT)
    return int64(found[-1].value) if found else None  # type: ignore[arg-type]


def encode_len(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | LEN) + varint(len(payload)) + payload


def encode_varint(number: int, value: int) -> bytes:
    return varint(number << 3 | VARINT) + varint(value)


def replace(data: bytes, number: int, encoded: bytes) -> bytes:
    """``data`` without any occurrence of field ``number``, and ``encoded`` (that field anew,
    or b"" to drop it) at the end; every other field's bytes stay as they were."""
    out = bytearray()
    pos = 0
    for f in fields(data):
        if f.number == number:
            out += data[pos:f.start]
            pos = f.end
    out += data[pos:]
    return bytes(out) + encoded
