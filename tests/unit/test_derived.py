"""Derived datasets, the pure parts (issue 19): formulas block by block equal numpy on the
whole arrays, broadcasting boxes, missing values, and every way a [[derived]] table can be
wrong (one line naming the value and what is valid).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h5par import UsageError
from h5par.core.broadcast import broadcast_shape, source_box
from h5par.core.decomposition import steps
from h5par.engine.derived import derived_spec, derived_specs
from h5par.engine.jobs import job_from_dict
from h5par.kernels import KernelError
from h5par.kernels.derive import Derivation
from h5par.kernels.expr import names_in

RNG = np.random.default_rng(19)
U = RNG.normal(size=(7, 13)).astype("f4")
V = RNG.normal(size=(7, 13)).astype("f4")
P = np.linspace(0.5, 2.0, 7).reshape(7, 1)  # a profile: float64, broadcast along axis 1

FORMULAS = {
    "sqrt(u**2 + v**2)": lambda u, v, p: np.sqrt(u**2 + v**2),
    "exp(u) - log(abs(v)) + log10(abs(u) + 1)": lambda u, v, p: (
        np.exp(u) - np.log(np.abs(v)) + np.log10(np.abs(u) + 1)
    ),
    "sin(u) * cos(v) + tan(u / 4)": lambda u, v, p: np.sin(u) * np.cos(v) + np.tan(u / 4),
    "arcsin(u / 8) + arccos(v / 8) + arctan(u)": lambda u, v, p: (
        np.arcsin(u / 8) + np.arccos(v / 8) + np.arctan(u)
    ),
    "arctan2(v, u) * 180 / pi": lambda u, v, p: np.arctan2(v, u) * 180 / np.pi,
    "minimum(u, v) + maximum(u, p)": lambda u, v, p: np.minimum(u, v) + np.maximum(u, p),
    "where(u > 0, u, v) * p": lambda u, v, p: np.where(u > 0, u, v) * p,
    "where(isnan(sqrt(u)), -1, floor(u)) + ceil(v)": lambda u, v, p: (
        np.where(np.isnan(np.sqrt(u)), -1, np.floor(u)) + np.ceil(v)
    ),
    "where(isfinite(log(u)), 1.5, 0) - u ** 3 + -v": lambda u, v, p: (
        np.where(np.isfinite(np.log(u)), 1.5, 0) - u**3 + -v
    ),
    "((u < 0) | (v > 1)) * 2 + ~(u > 0) * 1 - (u == v) + (u != p) * inf": lambda u, v, p: (
        ((u < 0) | (v > 1)) * 2 + ~(u > 0) * 1 - (u == v) + (u != p) * np.inf
    ),
}


def blockwise(derivation: Derivation, arrays: dict[str, np.ndarray], shape, **kwargs):
    """Evaluate block by block, each input cut by source_box, as the engine does."""
    out = np.empty(
        shape, derivation.result_dtype({k: (a.dtype, a.ndim) for k, a in arrays.items()})
    )
    whole = tuple(slice(0, n) for n in shape)
    for box in steps(whole, 8, 8 * 10, None):  # small, uneven blocks: 10 elements each
        parts = {k: a[source_box(box, a.shape)] for k, a in arrays.items()}
        out[box] = derivation.evaluate(parts, tuple(s.stop - s.start for s in box), **kwargs)
    return out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's own, on the whole arrays
@pytest.mark.parametrize("text", FORMULAS)
def test_every_function_blockwise_equals_numpy_on_the_whole_arrays(text) -> None:
    names = tuple(sorted(names_in(text) & {"u", "v", "p"}))
    arrays = {"u": U, "v": V, "p": P}
    used = {n: arrays[n] for n in names}
    derivation = Derivation(text, names)
    want = np.asarray(FORMULAS[text](U, V, P))
    got = blockwise(derivation, used, (7, 13))
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_missing_values_of_any_input_are_the_results_fill_value() -> None:
    u, v = U.copy(), V.copy()
    u[2, 3], v[4, :] = -999.0, np.nan
    derivation = Derivation("u + v * p", ("u", "v", "p"))
    arrays = {"u": u, "v": v, "p": P}
    got = blockwise(derivation, arrays, (7, 13), fills={"u": -999.0, "v": np.nan}, fill=-999.0)
    want = u + v * P
    want[(u == -999.0) | np.isnan(v)] = -999.0
    assert got.tobytes() == want.tobytes()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=3).flatmap(
        lambda shape: st.tuples(
            st.just(tuple(shape)),
            st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)),
            st.integers(0, len(shape)),
        )
    )
)
def test_source_boxes_read_what_broadcasting_maps(case) -> None:
    shape, ones, drop = case
    source = tuple(1 if one else n for n, one in zip(shape, ones, strict=True))[drop:]
    assert broadcast_shape({"a": shape, "b": source}) == shape
    array = np.arange(int(np.prod(source)), dtype="f8").reshape(source)
    whole = np.broadcast_to(array, shape)
    for box in itertools.product(
        *[[slice(a, b) for a in range(n) for b in range(a + 1, n + 1)] for n in shape]
    ):
        part = array[source_box(box, source)]
        assert np.array_equal(np.broadcast_to(part, whole[box].shape), whole[box])


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"path": "speed"}, r"derived: path = 'speed' \(valid: the new dataset's path"),
        ({"path": "/s", "inputs": {}}, r"derived /s: inputs = \{\} \(valid: a table"),
        ({"path": "/s", "inputs": {"u": "u"}}, r"inputs.u = 'u' \(valid: a table"),
        ({"path": "/s", "inputs": {"pi": "/u"}}, r"input name 'pi' \(valid: a Python identifier"),
        ({"path": "/s", "inputs": {"sqrt": "/u"}}, r"input name 'sqrt'"),
        ({"path": "/s", "inputs": {"if": "/u"}}, r"input name 'if'"),
        ({"path": "/s", "inputs": {"r": "nofile.h5:/T"}}, r"inputs.r: no such file '.*nofile.h5'"),
        (
            {"path": "/s", "expression": "u", "inputs": {"u": "/u", "v": "/v"}},
            r"input v is not used by the expression 'u' \(valid: bind only",
        ),
        (
            {"path": "/s", "expression": "u + w", "inputs": {"u": "/u"}},
            r"expression 'u \+ w': unknown name 'w' \(valid: numbers, u, nan",
        ),
        (
            {"path": "/s", "expression": "__import__('os')", "inputs": {"u": "/u"}},
            r"function calls other than sqrt\(\), exp\(\)",
        ),
        (
            {"path": "/s", "expression": "u", "inputs": {"u": "/u"}, "dtype": 4},
            r"dtype = 4 \(valid: a numpy dtype name",
        ),
        (
            {"path": "/s", "expression": "u", "inputs": {"u": "/u"}, "dtype": "float33"},
            r"derived /s: kernel #1: dtype 'float33' is not a numpy dtype name",
        ),
        (
            {
                "path": "/s",
                "expression": "u",
                "inputs": {"u": "/u"},
                "kernels": [{"name": "smooth", "size": 3}],
            },
            r"kernel 'smooth' with these parameters cannot follow a formula yet",
        ),
        (
            {
                "path": "/s",
                "expression": "u",
                "inputs": {"u": "/u"},
                "kernels": [{"name": "reduce", "op": "mean", "axis": 0}],
            },
            r"kernel 'reduce' with these parameters cannot follow a formula",
        ),
        (
            {"path": "/s", "expression": "u", "inputs": {"u": "/u"}, "unit": "K"},
            r"unknown key 'unit' \(valid: path, expression, function, inputs, dtype, overflow, attrs, kernels\)",
        ),
    ],
)
def test_bad_derived_tables_are_one_line(table, message) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        derived_spec(table, Path("."))
    assert "\n" not in str(caught.value)


def test_shapes_that_do_not_broadcast_name_both_inputs() -> None:
    with pytest.raises(UsageError, match=r"inputs u \(shape \(7, 13\)\) and v \(shape \(13, 7\)\)"):
        broadcast_shape({"u": (7, 13), "p": (7, 1), "v": (13, 7)})


def test_boolean_results_ask_for_a_dtype() -> None:
    with pytest.raises(UsageError, match=r"gives booleans \(valid: set dtype = 'int8'"):
        Derivation("u > 0", ("u",)).result_dtype({"u": (np.dtype("f4"), 1)})


def test_jobs_take_derived_tables_each_path_once(tmp_path) -> None:
    (tmp_path / "in.h5").write_bytes(b"")
    (tmp_path / "clim.h5").write_bytes(b"")
    table = {"path": "/a", "expression": "t - ref", "inputs": {"t": "/T", "ref": "clim.h5:/T"}}
    job = job_from_dict(
        {
            "input": {"path": "in.h5", "datasets": []},
            "output": {"path": "o.h5"},
            "derived": [table],
        },
        base=tmp_path,
    )
    assert job.derived[0].inputs == (("t", None, "/T"), ("ref", tmp_path / "clim.h5", "/T"))
    with pytest.raises(UsageError, match=r"derived: /a is given twice"):
        derived_specs([table, table], tmp_path)
    with pytest.raises(UsageError, match=r"derived datasets need an output file"):
        from h5par.engine.config import work_for

        in_place = job_from_dict(
            {"input": {"path": "in.h5"}, "output": {"in_place": True}, "derived": [table]},
            base=tmp_path,
        )
        work_for(in_place, in_place.files[0])


def test_functions_from_python_or_by_name() -> None:
    def ratio(a, b):
        return a / b

    spec = derived_spec(
        {"path": "/r", "function": ratio, "inputs": {"a": "/a", "b": "/b"}}, Path(".")
    )
    assert spec.derivation.text.endswith("test_functions_from_python_or_by_name.<locals>.ratio")
    by_name = derived_spec(
        {"path": "/r", "function": "numpy:add", "inputs": {"x1": "/a"}}, Path(".")
    )
    assert by_name.derivation.function is np.add
    cases = [
        ({"expression": "a", "function": ratio}, r"give either expression or function"),
        ({"function": "numpy.add"}, r"function: function = 'numpy.add' \(valid: 'package.module:function'\)"),
        ({"function": 3}, r"function = 3 \(valid: a callable, or 'package.module:function'\)"),
    ]  # fmt: skip
    for extra, message in cases:
        with pytest.raises(UsageError, match=message):
            derived_spec({"path": "/r", "inputs": {"a": "/a", "b": "/b"}, **extra}, Path("."))


def test_a_function_is_probed_and_its_failures_name_it() -> None:
    def broken(a):
        raise ValueError("no")

    with pytest.raises(
        UsageError, match=r"function .*broken fails on a probe of ones: ValueError: no"
    ):
        Derivation(None, ("a",), broken).result_dtype({"a": (np.dtype("f8"), 2)})
    wrong = Derivation(None, ("a",), lambda a: a[:1])
    with pytest.raises(
        KernelError, match=r"<lambda> returned shape \(1, 2\) for a block of shape \(3, 2\)"
    ):
        wrong.evaluate({"a": np.zeros((3, 2))}, (3, 2))
    strings = Derivation(None, ("a",), lambda a: a.astype(str))
    with pytest.raises(UsageError, match=r"gives <U32 \(valid: integers or floats\)"):
        strings.result_dtype({"a": (np.dtype("f8"), 1)})


def test_callables_fingerprint_by_name() -> None:
    from h5par.engine.journal import canonical

    def f(x):
        return x

    assert canonical([np.negative, f]) == [
        {"callable": "numpy:negative"},
        {"callable": f"{__name__}:test_callables_fingerprint_by_name.<locals>.f"},
    ]


def test_constant_powers_beyond_64_bits_are_refused_at_once() -> None:
    with pytest.raises(UsageError, match=r"OverflowError: 9\*\*387420489 does not fit in 64 bits"):
        Derivation("a + 9**9**9", ("a",)).result_dtype({"a": (np.dtype("f8"), 1)})


def test_booleans_are_stored_when_a_dtype_converts_them() -> None:
    d = Derivation("a > 0", ("a",))
    assert d.result_dtype({"a": (np.dtype("f4"), 1)}, booleans=True) == np.bool_
    spec = derived_spec(
        {"path": "/m", "expression": "a > 0", "inputs": {"a": "/a"}, "dtype": "int8"}, Path(".")
    )
    assert spec.chain.check(np.dtype("?"), (3,)) == (np.dtype("i1"), (3,))


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["/a", "/a/b"], r"derived: /a/b lies inside /a, another derived dataset"),
        (["/a//b"], r"path = '/a//b' \(valid: the new dataset's path, '/a/b', without empty"),
        (["/a/./b"], r"without empty, '.' or '..' parts"),
        (["/a/"], r"path = '/a/'"),
    ],
)
def test_derived_paths_that_would_collide_are_refused(paths, message) -> None:
    tables = [{"path": p, "expression": "u", "inputs": {"u": "/u"}} for p in paths]
    with pytest.raises(UsageError, match=message):
        derived_specs(tables, Path("."))


def test_a_derived_input_cannot_read_an_output_of_the_job(tmp_path) -> None:
    (tmp_path / "in.h5").write_bytes(b"")
    (tmp_path / "out.h5").write_bytes(b"")  # an earlier run's output, to be replaced
    job = {
        "input": {"path": "in.h5", "datasets": []},
        "output": {"path": "out.h5", "overwrite": True},
        "derived": [{"path": "/r", "expression": "a - b", "inputs": {"a": "/u", "b": "out.h5:/r"}}],
    }
    with pytest.raises(
        UsageError, match=r"derived /r: inputs.b reads '.*out.h5', an output of this job"
    ):
        job_from_dict(job, base=tmp_path)


def test_input_names_are_read_as_python_reads_them() -> None:
    spec = derived_spec(
        {"path": "/s", "expression": "\u00b5 * 2", "inputs": {"\u00b5": "/u"}}, Path(".")
    )
    assert spec.derivation.names == ("\u03bc",)  # MICRO SIGN is GREEK SMALL LETTER MU (NFKC)
