"""A small, safe expression language over named arrays (never Python ``eval``).

Grammar (Python's syntax and precedence, a whitelist of nodes): numbers, the bound names,
``nan``, ``inf``, ``+ - * /``, unary ``-``/``+``, ``abs(...)``, ``isnan(...)``, comparisons
``< <= > >= == !=`` (chained too), ``&``, ``|``, ``~`` and parentheses. As in numpy, ``&`` and
``|`` bind tighter than comparisons: write ``(x > 0) & (x < 1)``.

The ``where`` kernel's expressions (:func:`compile_expression`) know one name, ``x``.
Formulas of derived datasets (:func:`compile_formula`) bind any names and add ``**``,
``pi`` and the functions of :data:`FORMULA_FUNCTIONS` (``sqrt``, ``where(c, a, b)``...).
Every operation is numpy's, so a formula evaluated block by block gives the values it
gives on the whole arrays.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from h5par.errors import UsageError

__all__ = [
    "FORMULA_FUNCTIONS",
    "MAX_DEPTH",
    "Expression",
    "Formula",
    "compile_expression",
    "compile_formula",
    "names_in",
    "uses_x",
]

Expression = Callable[[np.ndarray], Any]
#: A compiled formula: the named arrays in, numpy's result out.
Formula = Callable[[Mapping[str, Any]], Any]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
#: Functions of formulas, with how many arguments each takes.
FORMULA_FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "sqrt": (np.sqrt, 1),
    "exp": (np.exp, 1),
    "log": (np.log, 1),
    "log10": (np.log10, 1),
    "sin": (np.sin, 1),
    "cos": (np.cos, 1),
    "tan": (np.tan, 1),
    "arcsin": (np.arcsin, 1),
    "arccos": (np.arccos, 1),
    "arctan": (np.arctan, 1),
    "arctan2": (np.arctan2, 2),
    "abs": (np.abs, 1),
    "minimum": (np.minimum, 2),
    "maximum": (np.maximum, 2),
    "where": (np.where, 3),
    "isnan": (np.isnan, 1),
    "isfinite": (np.isfinite, 1),
    "floor": (np.floor, 1),
    "ceil": (np.ceil, 1),
}


@dataclasses.dataclass(frozen=True)
class _Language:
    """What an expression may use: names, functions, constants, ``**``; ``valid`` says it."""

    names: tuple[str, ...]
    functions: Mapping[str, tuple[Callable[..., Any], int]]
    constants: Mapping[str, float]
    power: bool
    valid: str


_WHERE = _Language(
    names=("x",),
    functions={"abs": (np.abs, 1), "isnan": (np.isnan, 1)},
    constants={"nan": float("nan"), "inf": float("inf")},
    power=False,
    valid="numbers, x, nan, inf, + - * /, abs(), isnan(), < <= > >= == !=, &, |, ~, ( )",
)
#: Deepest nesting of operations an expression may have (evaluation recurses once per level).
MAX_DEPTH = 100
#: Characters of an expression quoted in an error message.
_SHOWN = 80


def compile_expression(text: str) -> Expression:
    """Compile ``text`` into a function of the array ``x``.

    Examples
    --------
    >>> f = compile_expression("(x < 0) | isnan(x)")
    >>> f(np.array([-1.0, 2.0, np.nan])).tolist()
    [True, False, True]
    >>> compile_expression("-2 * abs(x) + 1")(np.array([3, -4])).tolist()
    [-5, -7]
    >>> compile_expression("__import__('os')")
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: expression "__import__('os')": function calls other than abs() and isnan() are not allowed (valid: numbers, x, nan, inf, + - * /, abs(), isnan(), < <= > >= == !=, &, |, ~, ( ))
    """
    formula = _compile_text(text, _WHERE)
    return lambda x: formula({"x": x})


def compile_formula(text: str, names: tuple[str, ...]) -> Formula:
    """Compile a derived dataset's formula over the arrays bound to ``names``.

    Examples
    --------
    >>> f = compile_formula("sqrt(u**2 + v**2)", ("u", "v"))
    >>> f({"u": np.array([3.0, 0.0]), "v": np.array([4.0, 2.0])}).tolist()
    [5.0, 2.0]
    >>> compile_formula("where(t > 0, t, nan) * pi", ("t",))({"t": np.array([-1.0, 1.0])})[1]
    np.float64(3.141592653589793)
    >>> compile_formula("sqrt(u, v)", ("u", "v"))
    Traceback (most recent call last):
    ...
    h5par.errors.UsageError: expression 'sqrt(u, v)': sqrt() takes 1 argument(s) (valid: numbers, u, v, nan, inf, pi, + - * / **, < <= > >= == !=, &, |, ~, ( ), sqrt exp log log10 sin cos tan arcsin arccos arctan arctan2 abs minimum maximum where isnan isfinite floor ceil)
    """
    bound = ", ".join(names)
    language = _Language(
        names=names,
        functions=FORMULA_FUNCTIONS,
        constants={"nan": float("nan"), "inf": float("inf"), "pi": math.pi},
        power=True,
        valid=f"numbers, {bound}, nan, inf, pi, + - * / **, < <= > >= == !=, &, |, ~, ( ), "
        + " ".join(FORMULA_FUNCTIONS),
    )
    return _compile_text(text, language)


def names_in(text: str) -> set[str]:
    """The names an expression (compiled once already) uses, constants and functions aside.

    >>> sorted(names_in("sqrt(u**2 + v**2) + pi"))
    ['pi', 'u', 'v']
    """
    tree = ast.parse(text.strip(), mode="eval")
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def _compile_text(text: str, language: _Language) -> Formula:
    if not isinstance(text, str):
        raise UsageError(f"expression {text!r} is not a string (valid: {language.valid})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise _fail(text, f"syntax error ({exc.msg})", language) from exc
    except (RecursionError, MemoryError) as exc:  # Python's parser gives up on deep nesting
        raise _fail(text, f"nested deeper than {MAX_DEPTH} levels", language) from exc
    if _depth(tree.body) > MAX_DEPTH:
        raise _fail(text, f"nested deeper than {MAX_DEPTH} levels", language)
    return _compile(tree.body, text, language)


def uses_x(text: str) -> bool:
    """True when the expression ``text`` (already compiled once) refers to ``x``.

    >>> uses_x("-1 * x"), uses_x("nan")
    (True, False)
    """
    tree = ast.parse(text.strip(), mode="eval")
    return any(isinstance(n, ast.Name) and n.id == "x" for n in ast.walk(tree))


def _depth(root: ast.AST) -> int:
    """How deeply ``root``'s operations nest (without recursion: the tree may be very deep).

    >>> _depth(ast.parse("-(x + 1) * 2", mode="eval").body)
    4
    """
    deepest, todo = 0, [(root, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        children = ast.iter_child_nodes(node)
        todo.extend((c, depth + 1) for c in children if isinstance(c, ast.expr))
    return deepest


def _fail(text: str, what: str, language: _Language = _WHERE) -> UsageError:
    shown = text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"
    return UsageError(f"expression {shown!r}: {what} (valid: {language.valid})")


def _compile(node: ast.AST, text: str, language: _Language) -> Formula:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(text, f"constant {value!r} is not a number", language)
        return lambda env: value
    if isinstance(node, ast.Name):
        return _name(node.id, text, language)
    power = language.power and isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)
    if isinstance(node, ast.BinOp) and (type(node.op) in _BINARY or power):
        op2 = _power if power else _BINARY[type(node.op)]
        left, right = _compile(node.left, text, language), _compile(node.right, text, language)
        return lambda env: op2(left(env), right(env))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        op1, operand = _UNARY[type(node.op)], _compile(node.operand, text, language)
        return lambda env: op1(operand(env))
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        return _comparison(node, text, language)
    if isinstance(node, ast.Call):
        return _call(node, text, language)
    raise _fail(text, f"{type(node).__name__} is not allowed", language)


def _power(base: Any, exponent: Any) -> Any:
    """``base ** exponent``, refusing Python integers beyond 64 bits.

    ``9**9**9`` would run for hours: Python's integers have no bound, numpy's have 64 bits.

    >>> _power(2, 10), _power(np.array([2.0]), 2).tolist()
    (1024, [4.0])
    >>> _power(9, 9**9)
    Traceback (most recent call last):
    ...
    OverflowError: 9**387420489 does not fit in 64 bits
    """
    whole = isinstance(base, int) and isinstance(exponent, int)
    if whole and abs(base) > 1 and exponent > 0 and exponent * math.log2(abs(base)) > 64:
        raise OverflowError(f"{base}**{exponent} does not fit in 64 bits")
    return operator.pow(base, exponent)


def _name(name: str, text: str, language: _Language) -> Formula:
    if name in language.names:
        return lambda env: env[name]
    if name in language.constants:
        value = language.constants[name]
        return lambda env: value
    raise _fail(text, f"unknown name {name!r}", language)


def _comparison(node: ast.Compare, text: str, language: _Language) -> Formula:
    operands = [_compile(n, text, language) for n in (node.left, *node.comparators)]
    ops = [_COMPARE[type(op)] for op in node.ops]

    def compare(env: Mapping[str, Any]) -> Any:
        values = [f(env) for f in operands]
        result = ops[0](values[0], values[1])
        for op, a, b in zip(ops[1:], values[1:-1], values[2:], strict=True):
            result = result & op(a, b)
        return result

    return compare


def _call(node: ast.Call, text: str, language: _Language) -> Formula:
    name = node.func.id if isinstance(node.func, ast.Name) else ""
    if name not in language.functions:
        allowed = " and ".join(f"{f}()" for f in language.functions)
        if len(language.functions) > 2:
            allowed = ", ".join(f"{f}()" for f in language.functions)
        raise _fail(text, f"function calls other than {allowed} are not allowed", language)
    func, count = language.functions[name]
    if len(node.args) != count or node.keywords:
        what = "exactly one argument" if language is _WHERE else f"{count} argument(s)"
        raise _fail(text, f"{name}() takes {what}", language)
    args = [_compile(a, text, language) for a in node.args]
    return lambda env: func(*(arg(env) for arg in args))
