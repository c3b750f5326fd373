"""A small, safe expression language over one array ``x`` (never Python ``eval``).

Grammar (Python's syntax and precedence, a whitelist of nodes): numbers, ``x``, ``nan``,
``inf``, ``+ - * /``, unary ``-``/``+``, ``abs(...)``, ``isnan(...)``, comparisons
``< <= > >= == !=`` (chained too), ``&``, ``|``, ``~`` and parentheses. As in numpy, ``&`` and
``|`` bind tighter than comparisons: write ``(x > 0) & (x < 1)``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from h5par.errors import UsageError

__all__ = ["MAX_DEPTH", "Expression", "compile_expression", "uses_x"]

Expression = Callable[[np.ndarray], Any]

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
_FUNCTIONS: dict[str, Callable[[Any], Any]] = {"abs": np.abs, "isnan": np.isnan}
_CONSTANTS = {"nan": float("nan"), "inf": float("inf")}
_VALID = "numbers, x, nan, inf, + - * /, abs(), isnan(), < <= > >= == !=, &, |, ~, ( )"
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
    if not isinstance(text, str):
        raise UsageError(f"expression {text!r} is not a string (valid: {_VALID})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise _fail(text, f"syntax error ({exc.msg})") from exc
    except (RecursionError, MemoryError) as exc:  # Python's parser gives up on deep nesting
        raise _fail(text, f"nested deeper than {MAX_DEPTH} levels") from exc
    if _depth(tree.body) > MAX_DEPTH:
        raise _fail(text, f"nested deeper than {MAX_DEPTH} levels")
    return _compile(tree.body, text)


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


def _fail(text: str, what: str) -> UsageError:
    shown = text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"
    return UsageError(f"expression {shown!r}: {what} (valid: {_VALID})")


def _compile(node: ast.AST, text: str) -> Expression:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(text, f"constant {value!r} is not a number")
        return lambda x: value
    if isinstance(node, ast.Name):
        return _name(node.id, text)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op2, left, right = (
            _BINARY[type(node.op)],
            _compile(node.left, text),
            _compile(node.right, text),
        )
        return lambda x: op2(left(x), right(x))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        op1, operand = _UNARY[type(node.op)], _compile(node.operand, text)
        return lambda x: op1(operand(x))
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        return _comparison(node, text)
    if isinstance(node, ast.Call):
        return _call(node, text)
    raise _fail(text, f"{type(node).__name__} is not allowed")


def _name(name: str, text: str) -> Expression:
    if name == "x":
        return lambda x: x
    if name in _CONSTANTS:
        value = _CONSTANTS[name]
        return lambda x: value
    raise _fail(text, f"unknown name {name!r}")


def _comparison(node: ast.Compare, text: str) -> Expression:
    operands = [_compile(n, text) for n in (node.left, *node.comparators)]
    ops = [_COMPARE[type(op)] for op in node.ops]

    def compare(x: np.ndarray) -> Any:
        values = [f(x) for f in operands]
        result = ops[0](values[0], values[1])
        for op, a, b in zip(ops[1:], values[1:-1], values[2:], strict=True):
            result = result & op(a, b)
        return result

    return compare


def _call(node: ast.Call, text: str) -> Expression:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name not in _FUNCTIONS:
        raise _fail(text, "function calls other than abs() and isnan() are not allowed")
    if len(node.args) != 1 or node.keywords:
        raise _fail(text, f"{name}() takes exactly one argument")
    func, arg = _FUNCTIONS[name], _compile(node.args[0], text)
    return lambda x: func(arg(x))
