"""Values a kernel cannot store in the output dtype are errors naming kernel, value and dtype.

Constants are checked when the dtype is known (``Chain.check``: the job's validation, so
``h5par plan`` finds them, exit status 2); values computed from the data are checked block
by block (:class:`KernelError`, exit status 1). Every case that passes is compared with a
plain numpy reference on the whole array.
"""

from __future__ import annotations

import errno
import re

import h5py
import numpy as np
import pytest

from h5par.core.layout import OutputOptions, SourceLayout, dataset_options
from h5par.errors import UsageError
from h5par.hdf5.io import full_storage, write_block
from h5par.kernels import Chain, KernelError, make_kernel
from h5par.kernels.expr import MAX_DEPTH, compile_expression


def check(spec: dict[str, object], dtype: str, shape: tuple[int, ...] = (4,)) -> np.dtype:
    return Chain.from_specs([spec]).check(np.dtype(dtype), shape)[0]


def apply(spec: dict[str, object], x: np.ndarray, start: int = 0) -> np.ndarray:
    """The chain on ``x`` as one block found at ``start`` of a 1-d dataset."""
    chain = Chain.from_specs([spec])
    chain.check(x.dtype, x.shape)
    return chain.apply(x, (slice(start, start + len(x)),))[0]


# Item 4: where writes INT_MIN for NaN into integers (numpy's fancy assignment casts silently).


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e10", "2.5", "2147483648"])
def test_where_constant_the_integer_dtype_cannot_hold_is_a_usage_error(value) -> None:
    spec = {"name": "where", "condition": "x < 0", "value": value}
    with pytest.raises(
        UsageError, match=r"kernel 'where': value = .* cannot be represented in int32"
    ):
        check(spec, "int32")


def test_where_constant_the_dtype_holds_is_applied_as_numpy() -> None:
    x = np.array([-3, 4, -1, 7], np.int32)
    expected = x.copy()
    expected[x < 0] = -1
    got = apply({"name": "where", "condition": "x < 0", "value": "-1"}, x)
    assert got.dtype == np.int32 and got.tobytes() == expected.tobytes()


def test_where_value_computed_from_the_data_the_dtype_cannot_hold_is_a_kernel_error() -> None:
    x = np.array([5, 0, -2, 3], np.int32)
    spec = {"name": "where", "condition": "x == 0", "value": "1 / x"}
    check(spec, "int32")  # depends on the data: not refused up front
    with (
        np.errstate(divide="ignore"),
        pytest.raises(
            KernelError,
            match=r"where: value inf .* at index \(11,\) cannot be represented in int32",
        ),
    ):
        apply(spec, x, start=10)


def test_where_value_computed_from_the_data_truncates_fractions_as_numpy() -> None:
    x = np.array([5, -3, 0, -7], np.int32)
    expected = x.copy()
    expected[x < 0] = (x / 2)[x < 0]  # numpy truncates toward zero
    got = apply({"name": "where", "condition": "x < 0", "value": "x / 2"}, x)
    assert got.tobytes() == expected.tobytes()


def test_where_on_floats_keeps_nan_and_ieee_values() -> None:
    x = np.array([-1.5, 2.0, -0.0, 3.0], np.float32)
    expected = x.copy()
    expected[x < 0] = np.nan
    got = apply({"name": "where", "condition": "x < 0", "value": "nan"}, x)
    assert got.tobytes() == expected.tobytes()
    with pytest.raises(UsageError, match=r"value = 1e\+300 cannot be represented in float32"):
        check({"name": "where", "condition": "x < 0", "value": "1e300"}, "float32")


def test_where_on_booleans_holds_only_zero_and_one() -> None:
    with pytest.raises(UsageError, match="value = 2 cannot be represented in bool"):
        check({"name": "where", "condition": "x", "value": "2"}, "bool")
    x = np.array([True, False, True])
    with pytest.raises(KernelError, match=r"where: value 2 .* cannot be represented in bool"):
        apply({"name": "where", "condition": "x", "value": "x + 1"}, x)


# Item 13: expressions numpy refuses on the dtype, and deep nesting.


@pytest.mark.parametrize(
    ("key", "text", "dtype", "why"),
    [
        ("condition", "(x < 0) & 1.5", "int32", "bitwise_and"),
        ("value", "~x", "float64", "invert"),
        ("value", "x + 300", "int8", "300 out of bounds for int8"),
    ],
)
def test_where_expression_numpy_refuses_is_one_usage_error_line(key, text, dtype, why) -> None:
    spec = {"name": "where", "condition": "x < 0", "value": "0", key: text}
    with pytest.raises(UsageError) as caught:
        check(spec, dtype)
    message = str(caught.value)
    assert "\n" not in message and f"{key} {text!r} cannot be computed on {dtype} data" in message
    assert why in message and "valid:" in message
    cause = caught.value.__cause__
    while isinstance(cause, UsageError):  # numpy's exception stays reachable (--debug)
        cause = cause.__cause__
    assert isinstance(cause, TypeError | OverflowError)


@pytest.mark.parametrize(
    "text",
    [
        "-" * 100_000 + "x",  # Python's parser recursed out
        "x" + " + x" * 50_000,  # parsed, but compiling recursed out
        "abs(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1),
    ],
)
def test_deeply_nested_expression_is_a_short_usage_error(text) -> None:
    with pytest.raises(UsageError, match=f"nested deeper than {MAX_DEPTH} levels") as caught:
        compile_expression(text)
    assert len(str(caught.value)) < 300  # the expression is shortened in the message


def test_expression_at_the_depth_limit_still_computes() -> None:
    text = "-" * (MAX_DEPTH - 1) + "x"
    assert compile_expression(text)(np.array([2.0])).tolist() == [
        -2.0 if MAX_DEPTH % 2 == 0 else 2.0
    ]


# Item 13: scale constants, clip bounds.


@pytest.mark.parametrize(
    ("spec", "dtype", "text"),
    [
        (
            {"factor": 300},
            "int8",
            "factor = 300 cannot be represented in int8 (valid: whole numbers -128..127",
        ),
        ({"factor": 3_000_000_000}, "int32", "factor = 3000000000 cannot be represented in int32"),
        (
            {"offset": -1},
            "uint8",
            "offset = -1 cannot be represented in uint8 (valid: whole numbers 0..255",
        ),
        ({"factor": 1e300}, "float32", "factor = 1e+300 cannot be represented in float32"),
    ],
)
def test_scale_constant_outside_the_dtype_is_a_usage_error(spec, dtype, text) -> None:
    with pytest.raises(UsageError, match="kernel 'scale'") as caught:
        check({"name": "scale", **spec}, dtype)
    assert text in str(caught.value)


def test_scale_float_factor_on_integers_gives_float64_as_numpy() -> None:
    x = np.array([1, 100, -128], np.int8)
    got = apply({"name": "scale", "factor": 300.0}, x)
    assert got.dtype == np.float64 and got.tobytes() == (x * 300.0).tobytes()


def test_scale_result_that_overflows_the_integer_dtype_is_a_kernel_error() -> None:
    x = np.array([1, 63, 64, -64, -65], np.int8)
    with pytest.raises(
        KernelError, match=r"scale: value 64 at index \(12,\) gives 128, which does not fit int8"
    ):
        apply({"name": "scale", "factor": 2}, x, start=10)
    with pytest.raises(KernelError, match=r"value -128 .* gives 128"):
        apply({"name": "scale", "factor": -1}, np.array([3, -128], np.int8))
    fits = np.array([-63, 0, 64], np.int8)  # 64 * 2 - 1 = 127: the exact result fits
    got = apply({"name": "scale", "factor": 2, "offset": -1}, fits)
    assert got.tobytes() == (fits.astype(np.int64) * 2 - 1).astype(np.int8).tobytes()
    big = np.array([0, 2**61, -(2**61)], np.int64)
    assert apply({"name": "scale", "factor": 3}, big).tolist() == [0, 3 * 2**61, -3 * 2**61]


def test_scale_integer_product_that_overflows_before_a_float_offset_is_a_kernel_error() -> None:
    with pytest.raises(
        KernelError, match=r"value 100 at index \(1,\) gives 200, which does not fit int8"
    ):
        apply({"name": "scale", "factor": 2, "offset": 0.5}, np.array([3, 100], np.int8))
    x = np.array([3, -60], np.int8)
    got = apply({"name": "scale", "factor": 2, "offset": 0.5}, x)
    assert got.dtype == np.float64 and got.tobytes() == (x * 2 + 0.5).tobytes()
    spec = {"name": "scale", "factor": 2.5, "offset": 300}  # offset added in float64: fits
    assert check(spec, "int8") == np.float64


def test_abs_of_the_signed_minimum_is_a_kernel_error() -> None:
    with pytest.raises(
        KernelError, match=r"abs: value -128 at index \(1, 0\) has no absolute value in int8"
    ):
        make_kernel({"name": "abs"})(
            np.array([[1, 2], [-128, 3]], np.int8), (slice(0, 2), slice(0, 2))
        )
    x = np.array([-127, 5, 0], np.int8)
    assert apply({"name": "abs"}, x).tobytes() == np.abs(x).tobytes()


@pytest.mark.parametrize("bound", [float("nan"), float("inf"), 1.5, 2**31])
def test_clip_bound_integers_cannot_hold_is_a_usage_error(bound) -> None:
    with pytest.raises(
        UsageError,
        match=r"kernel 'clip': min = \S+ (cannot be represented in int32|is not a bound)",
    ):
        check({"name": "clip", "min": bound}, "int32")


def test_clip_nan_bound_is_refused_on_floats_and_infinite_bounds_work() -> None:
    with pytest.raises(UsageError, match="min = nan is not a bound"):
        check({"name": "clip", "min": float("nan")}, "float64")
    x = np.array([-np.inf, -1.0, 2.0, np.nan])
    got = apply({"name": "clip", "min": float("-inf"), "max": 1.0}, x)
    assert got.tobytes() == np.clip(x, -np.inf, 1.0).tobytes()


def test_fill_value_and_sentinel_must_fit_the_dtype() -> None:
    with pytest.raises(
        UsageError, match="kernel 'fill': value = 1e\\+300 cannot be represented in float32"
    ):
        check({"name": "fill", "value": 1e300}, "float32")
    with pytest.raises(
        UsageError, match="kernel 'fill': missing = 300 cannot be represented in int8"
    ):
        check({"name": "fill", "value": 0, "missing": 300}, "int8")
    with pytest.raises(
        UsageError, match=r"kernel 'fill': value = 2\.5 cannot be represented in int16"
    ):
        check({"name": "fill", "value": 2.5, "missing": -1}, "int16")


def test_smooth_constant_mode_cval_must_fit_the_result_dtype() -> None:
    spec = {"name": "smooth", "size": 3, "mode": "constant", "cval": 1e300}
    with pytest.raises(
        UsageError, match=r"kernel 'smooth': cval = 1e\+300 cannot be represented in float32"
    ):
        check(spec, "float32")
    assert check(spec, "int16") == np.float64  # integers are smoothed in float64: it fits
    assert check({**spec, "mode": "reflect"}, "float32") == np.float32  # cval unused


# Item 10: an output fill value the dtype cannot hold.


@pytest.mark.parametrize(
    ("fill", "dtype"), [(-9999.0, "u1"), (2.5, "i4"), (1e300, "f4"), (300, "i1")]
)
def test_output_fillvalue_the_dtype_cannot_hold_is_a_usage_error(fill, dtype) -> None:
    with pytest.raises(
        UsageError, match=re.escape(f"output fillvalue = {fill!r} cannot be represented in")
    ):
        dataset_options(
            SourceLayout(), (4,), (4,), np.dtype(dtype), OutputOptions(fillvalue=fill), False
        )


def test_output_fillvalue_the_dtype_holds_is_kept() -> None:
    for fill, dtype in [(-9999.0, "i2"), (0.1, "f4"), (float("nan"), "f8"), (255, "u1")]:
        kwargs = dataset_options(
            SourceLayout(), (4,), (4,), np.dtype(dtype), OutputOptions(fillvalue=fill), False
        )
        expected = np.asarray(fill).astype(dtype)
        assert kwargs["fillvalue"].dtype == np.dtype(dtype)
        assert kwargs["fillvalue"].tobytes() == expected.tobytes()


def test_input_fillvalue_an_astype_cannot_hold_is_dropped() -> None:
    kwargs = dataset_options(
        SourceLayout(fillvalue=np.float64("nan")), (4,), (4,), np.dtype("i2"), OutputOptions(), True
    )
    assert "fillvalue" not in kwargs


# Item 11: the python kernel and byte order.


@pytest.mark.parametrize("dtype", [">f8", ">i4", "<f4"])
def test_python_kernel_accepts_a_native_result_for_big_endian_input(dtype) -> None:
    x = (np.arange(12) - 5).astype(dtype).reshape(3, 4)
    out = make_kernel({"name": "python", "function": "numpy:negative"})(x, ())
    assert np.array_equal(out, np.negative(x.astype(x.dtype.newbyteorder("="))))


def test_python_kernel_still_refuses_another_kind_or_size() -> None:
    kernel = make_kernel({"name": "python", "function": "numpy:rint"})
    with pytest.raises(KernelError, match="returned dtype float32, expected >i2"):
        kernel(np.arange(4, dtype=">i2"), ())


# Item 8: the disk-full hint only when the error says so.


@pytest.mark.parametrize(
    ("code", "why"),
    [(errno.ENOSPC, "no space"), (errno.EDQUOT, "quota"), (errno.EFBIG, "too large")],
)
def test_full_storage_names_the_errno_of_a_full_disk_quota_or_size_limit(
    tmp_path, code, why
) -> None:
    assert why in str(full_storage(OSError(code, "Can't write data"), tmp_path / "o.h5", 8))
    text = f"Can't write data (file write failed: errno = {code}, error message = 'x')"
    assert why in str(full_storage(OSError(text), tmp_path / "o.h5", 8))  # HDF5's own text


def test_a_write_that_fails_for_another_reason_gets_no_disk_full_hint(tmp_path) -> None:
    path = tmp_path / "o.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", (4,), "f8")
    with h5py.File(path, "r") as f, pytest.raises(OSError) as caught:
        write_block(f["x"], [(slice(0, 4),)], np.zeros(4))
    assert full_storage(caught.value, path, 32, 32) is None  # plenty of room here
    assert full_storage(OSError(errno.EIO, "Can't write data"), path, 32) is None
