import numpy as np
import pytest

from services.common.errors import ClientError
from services.inference.tensors import (
    TensorSpec,
    from_bytes,
    from_json,
    from_typed_json,
    parse_shape,
)

PIXELS = TensorSpec("pixels", np.dtype("float32"), (None, 2, 2))
IDS = TensorSpec("ids", np.dtype("int64"), (None, 3))
FLAGS = TensorSpec("flags", np.dtype("bool"), (None, 2))


def json_ok(data, spec=PIXELS, **kw):
    return from_json(data, spec, "instances", allow_nonfinite=kw.get("allow_nonfinite", False))


def rejects(fn, *args, match: str, **kwargs):
    with pytest.raises(ClientError, match=match):
        fn(*args, **kwargs)


def test_floats_and_ints_become_the_model_dtype():
    array = json_ok([[[1, 2], [3, 4.5]]])
    assert array.dtype == np.float32 and array.shape == (1, 2, 2)
    assert array[0, 1, 1] == pytest.approx(4.5)


@pytest.mark.parametrize(
    "data, match",
    [
        ([[[1, 2], [3]]], "ragged"),
        ([[["a", "b"], ["c", "d"]]], "got strings"),
        ([[[None, 1], [1, 1]]], "nulls"),
        ([[[True, False], [True, True]]], "takes numbers .FP32., got booleans"),
        ([[1, 2, 3, 4]], r"expects shape \[-1, 2, 2\].*got \[1, 4\]"),
        ([], "empty batch"),
        ([[[{"b64": "AA=="}, 1], [1, 1]]], "objects"),
    ],
)
def test_bad_json_tensors_say_what_was_expected(data, match):
    rejects(json_ok, data, match=match)


def test_nonfinite_values_are_refused_unless_allowed():
    rejects(json_ok, [[[float("nan"), 1], [1, 1]]], match="NaN or Infinity")
    assert np.isinf(json_ok([[[float("inf"), 1], [1, 1]]], allow_nonfinite=True)).any()


def test_finite_values_beyond_the_model_dtype_are_out_of_range_not_infinity():
    # float64 1e300 has no FP32 value; the cast would make it Infinity, allowed or not.
    for allow in (False, True):
        rejects(from_json, [[[1e300, 0], [0, 0]]], PIXELS, "x", allow_nonfinite=allow, match="out of range")
    assert np.isinf(json_ok([[[float("inf"), 0], [0, 0]]], allow_nonfinite=True)).any()


def test_an_empty_integer_tensor_is_a_client_error():
    # numpy reads [] and [[]] as float64; the exact-integer path once took min() of nothing (500).
    for data in ([], [[]], [[], []]):
        rejects(from_json, data, IDS, "instances", allow_nonfinite=False, match="empty batch|expects shape")


def test_integer_inputs_take_integers_only_and_check_range():
    assert from_json([[1, 2, 3]], IDS, "x", allow_nonfinite=False).dtype == np.int64
    rejects(from_json, [[1.5, 2, 3]], IDS, "x", allow_nonfinite=False, match="takes integers")
    small = TensorSpec("s", np.dtype("int8"), (None, 1))
    rejects(from_json, [[300]], small, "x", allow_nonfinite=False, match="out of range")


def test_typed_json_flat_data_is_reshaped():
    array = from_typed_json([1, 2, 3, 4, 5, 6, 7, 8], "FP64", [2, 2, 2], PIXELS, "in", allow_nonfinite=False)
    assert array.shape == (2, 2, 2) and array.dtype == np.float32


@pytest.mark.parametrize(
    "data, datatype, shape, match",
    [
        ([1, 2, 3], "FP32", [1, 2, 2], "holds 4 elements, data has 3"),
        ([1.5, 2, 3, 4], "INT32", [1, 2, 2], "INT32 needs integers"),
        ([1, 0, 1, 1], "BOOL", [1, 2, 2], "BOOL needs booleans"),
        ([1, 2, 3, 4], "FP8", [1, 2, 2], "unknown datatype"),
        ([1], "FP32", [1_000_000_000, 1_000_000_000, 4], "holds 4000000000000000000 elements"),
        ([1, 2, 3, 4], "FP32", [1, -2, 2], "non-negative integers"),
        ([True, False, True, True], "BOOL", [1, 2, 2], "takes numbers .FP32., got booleans"),
    ],
)
def test_typed_json_errors(data, datatype, shape, match):
    rejects(from_typed_json, data, datatype, shape, PIXELS, "in", allow_nonfinite=False, match=match)


def test_typed_json_casts_between_integer_widths_and_to_bool_only_from_bool():
    ids = from_typed_json([1, 2, 3], "INT32", [1, 3], IDS, "in", allow_nonfinite=False)
    assert ids.dtype == np.int64 and ids.tolist() == [[1, 2, 3]]
    flags = from_typed_json([True, False], "BOOL", [1, 2], FLAGS, "in", allow_nonfinite=False)
    assert flags.dtype == np.bool_
    rejects(from_typed_json, [1.0, 2.0, 3.0], "FP32", [1, 3], IDS, "in", allow_nonfinite=False,
            match="takes integers")


def test_binary_tensors():
    raw = np.arange(8, dtype="<f4").tobytes()
    array = from_bytes(raw, "FP32", [2, 2, 2], PIXELS, "in", allow_nonfinite=False)
    assert array.tolist() == np.arange(8, dtype=np.float32).reshape(2, 2, 2).tolist()
    rejects(from_bytes, raw[:-1], "FP32", [2, 2, 2], PIXELS, "in", allow_nonfinite=False, match="needs 32 bytes")
    rejects(from_bytes, bytes([0, 2]), "BOOL", [1, 2], FLAGS, "in", allow_nonfinite=False, match="0 or 1")


def test_shapes_must_be_lists_of_naturals():
    assert parse_shape([1, 2], "x") == [1, 2]
    for bad in ([1, True], "12", [1.0], None):
        rejects(parse_shape, bad, "x", match="non-negative integers")


def test_uint64_values_beyond_int64_mixed_with_small_ones_stay_exact():
    # Was refused as "numbers": numpy reads [2**63, 1] as float64.
    spec = TensorSpec("x", np.dtype("<u8"), (None, 2))
    values = [[2**63, 1], [2**64 - 1, 0]]
    typed = from_typed_json(values, "UINT64", [2, 2], spec, "x", allow_nonfinite=False)
    assert typed.tolist() == values and typed.dtype == np.uint64
    assert from_json(values, spec, "x", allow_nonfinite=False).tolist() == values
    with pytest.raises(ClientError, match="64-bit range"):
        from_typed_json([[2**63, -1]], "UINT64", [1, 2], spec, "x", allow_nonfinite=False)
    with pytest.raises(ClientError, match="integers"):
        from_typed_json([[2**63, 1.5]], "UINT64", [1, 2], spec, "x", allow_nonfinite=False)
