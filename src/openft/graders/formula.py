"""`multi.calculate_output`: arithmetic over the sub-graders' rewards (GRADERS-GUIDE): numbers,
the grader keys, `+ - * / ^` and `min max abs floor ceil exp sqrt log`. Never `eval`.

Python's own parser reads it, after `^` is written `**` (so it binds tighter than `*` and to
the right, as in mathematics: `2 ^ 3 ^ 2` is 512, `-2 ^ 2` is -4); every node of the tree must
be one of the few listed here, so no attribute, subscript, comparison or name outside the keys
and functions can run."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

FUNCTIONS: dict[str, tuple[Callable[..., float], int | None]] = {
    # name: (function, its number of arguments; None: one or more)
    "min": (lambda *values: min(values), None),
    "max": (lambda *values: max(values), None),
    "abs": (abs, 1),
    # floats, not ints: an int raised to a power is exact, and unbounded in time
    "floor": (lambda x: float(math.floor(x)), 1),
    "ceil": (lambda x: float(math.ceil(x)), 1),
    "exp": (math.exp, 1),
    "sqrt": (math.sqrt, 1),
    "log": (math.log, 1),
}
OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
MAX_LENGTH = 2000


class FormulaError(ValueError):
    """A formula that cannot be parsed (a 400), or cannot be computed for these rewards."""


@dataclass(frozen=True)
class Formula:
    text: str
    tree: ast.expr

    def evaluate(self, values: Mapping[str, float]) -> float:
        """The formula's value; FormulaError for division by zero, a logarithm or square root
        out of its domain, an overflow or a result that is not a finite number."""
        try:
            result = float(_evaluate(self.tree, values))
        except ZeroDivisionError:
            raise FormulaError(
                f"calculate_output `{self.text}` divides by zero for these rewards: {dict(values)}"
            ) from None
        except (ValueError, OverflowError, TypeError) as error:  # sqrt(-1), log(0), exp(1000), (-1) ^ 0.5
            raise FormulaError(
                f"calculate_output `{self.text}` cannot be computed for {dict(values)}: {error}"
            ) from None
        if not math.isfinite(result):
            raise FormulaError(f"calculate_output `{self.text}` is {result} for {dict(values)}")
        return result


def parse(text: str, names: Iterable[str]) -> Formula:
    """The formula, checked against the grader keys `names`; FormulaError says what is wrong."""
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"calculate_output is longer than {MAX_LENGTH} characters.")
    if "**" in text:
        raise FormulaError("calculate_output writes powers as `^`, not `**`.")
    try:
        tree = ast.parse(text.replace("^", "**").strip(), mode="eval").body
    except SyntaxError as error:
        raise FormulaError(
            f"calculate_output `{text}` is not a formula: {error.msg} at character {error.offset}."
        ) from None
    except (RecursionError, MemoryError):
        raise FormulaError(f"calculate_output `{text}` nests too deeply.") from None
    _check(tree, text, set(names))
    return Formula(text, tree)


def _check(node: ast.AST, text: str, names: set[str]) -> None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return
    if isinstance(node, ast.Name):
        if node.id not in names:
            known = ", ".join(f"`{name}`" for name in sorted(names))
            raise FormulaError(f"calculate_output refers to `{node.id}`, which is not a grader key ({known}).")
        return
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        _check(node.left, text, names)
        _check(node.right, text, names)
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        _check(node.operand, text, names)
        return
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in FUNCTIONS:
            allowed = ", ".join(FUNCTIONS)
            raise FormulaError(f"calculate_output calls `{node.func.id}`, which is not one of {allowed}.")
        arity = FUNCTIONS[node.func.id][1]
        if (arity is None and not node.args) or (arity is not None and len(node.args) != arity):
            wanted = "one or more arguments" if arity is None else f"{arity} argument"
            raise FormulaError(f"calculate_output: `{node.func.id}` takes {wanted}, not {len(node.args)}.")
        for argument in node.args:
            if isinstance(argument, ast.Starred):
                raise FormulaError(f"calculate_output `{text}`: `*` is not an argument.")
            _check(argument, text, names)
        return
    piece = ast.get_source_segment(text.replace("^", "**"), node) or type(node).__name__
    raise FormulaError(
        f"calculate_output `{text}` has `{piece}`, which is not allowed: only numbers, grader keys, "
        "+ - * / ^, parentheses and min, max, abs, floor, ceil, exp, sqrt, log."
    )


def _evaluate(node: ast.expr, values: Mapping[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return OPERATORS[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        return -operand if isinstance(node.op, ast.USub) else operand
    assert isinstance(node, ast.Call)
    return FUNCTIONS[node.func.id][0](*(_evaluate(argument, values) for argument in node.args))
