"""Expressions of a derivation written as plain text or as LaTeX maths.

A :class:`Notation` writes the leaves (symbols, partial derivatives, numbers) and the
operations. :func:`write` walks an expression tree with one, in its symbolic form
(``dE/dout_o1``) or its numeric form (``0.74136507``), and adds the brackets that
precedence and negative numbers need.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from jbp.derivation import Const, Equation, Expr, Partial, Symbol, Var

DIGITS = 9
"""Significant digits of every printed number."""

# Binding strength of each kind of expression, weakest first.
SUM, PRODUCT, UNARY, ATOM = 1, 2, 3, 4


def number_text(value: float) -> str:
    """Write ``value`` with :data:`DIGITS` significant digits: ``0.0821670406``."""
    text = f"{value:.{DIGITS}g}"
    return "0" if text == "-0" else text


class Written(NamedTuple):
    """A written sub-expression, its precedence and whether it starts with a minus."""

    text: str
    precedence: int
    negative: bool


class Notation:
    """Plain-text notation: ``dE/dw5 = dE/dout_o1 * dout_o1/dnet_o1 * ...``."""

    times = " * "

    def symbol(self, symbol: Symbol) -> str:
        """Write a symbol: ``out_h1``, ``w5+``, ``E^(2)``."""
        if symbol.kind == "E":
            text = "E"
        elif symbol.kind == "E_term":
            text = f"E_{symbol.name}"
        elif symbol.kind in ("x", "w", "b"):
            text = symbol.name
        elif symbol.kind in ("eta", "N"):
            text = symbol.kind
        else:
            text = f"{symbol.kind}_{symbol.name}"
        if symbol.kind in ("E", "E_term") and symbol.example is not None:
            text += f"^({symbol.example})"
        if symbol.updated:
            text += "+"
        return text

    def partial(self, partial: Partial) -> str:
        """Write a partial derivative: ``dE/dw5``."""
        return f"d{self.symbol(partial.of)}/d{self.symbol(partial.wrt)}"

    def number(self, value: float) -> str:
        """Write a number to :data:`DIGITS` significant digits."""
        return number_text(value)

    def bracket(self, text: str) -> str:
        """Put brackets around ``text``."""
        return f"({text})"

    def call(self, op: str, argument: str) -> Written:
        """Write a function of one argument."""
        names = {"exp": "exp", "log": "log", "tanh": "tanh", "Phi": "Phi", "phi": "phi"}
        if op == "max0":
            return Written(f"max(0, {argument})", ATOM, False)
        if op == "positive":
            return Written(f"[{argument} > 0]", ATOM, False)
        return Written(f"{names[op]}({argument})", ATOM, False)

    def divide(self, top: Written, bottom: Written) -> Written:
        """Write ``top / bottom``."""
        left = top.text if top.precedence >= PRODUCT else self.bracket(top.text)
        right = bottom.text
        if bottom.precedence <= PRODUCT or bottom.negative:
            right = self.bracket(right)
        return Written(f"{left} / {right}", PRODUCT, top.negative)

    def square(self, base: Written) -> Written:
        """Write ``base^2``."""
        text = base.text
        if base.precedence < ATOM or base.negative:
            text = self.bracket(text)
        return Written(f"{text}^2", ATOM, False)

    def mean(self, terms: list[Written]) -> Written:
        """Write the mean of ``terms``: ``(a + b) / 2``."""
        total = _join_sum(self, terms)
        return Written(f"({total}) / {len(terms)}", PRODUCT, False)

    def equals(self, parts: list[str]) -> str:
        """Join the sides of an equation."""
        return " = ".join(parts)


class LatexNotation(Notation):
    r"""LaTeX maths: ``\frac{\partial E}{\partial w_{5}}``, readable by mathtext too."""

    times = r" \cdot "

    def symbol(self, symbol: Symbol) -> str:
        """Write a symbol: ``\\mathrm{out}_{h_{1}}``, ``w_{5}^{+}``, ``E^{(2)}``."""
        superscripts = []
        if symbol.kind in ("E", "E_term") and symbol.example is not None:
            superscripts.append(f"({symbol.example})")
        if symbol.updated:
            superscripts.append("+")
        if symbol.kind == "E":
            text = "E"
        elif symbol.kind == "E_term":
            text = f"E_{{{latex_name(symbol.name)}}}"
        elif symbol.kind in ("x", "w", "b"):
            text = latex_name(symbol.name)
        elif symbol.kind == "eta":
            text = r"\eta"
        elif symbol.kind == "N":
            text = "N"
        else:
            text = rf"\mathrm{{{symbol.kind}}}_{{{latex_name(symbol.name)}}}"
        if superscripts:
            text = f"{{{text}}}^{{{','.join(superscripts)}}}"
        return text

    def partial(self, partial: Partial) -> str:
        """Write ``\\frac{\\partial E}{\\partial w_{5}}``."""
        of, wrt = self.symbol(partial.of), self.symbol(partial.wrt)
        return rf"\frac{{\partial {of}}}{{\partial {wrt}}}"

    def number(self, value: float) -> str:
        """Write a number, with ``\\times 10^{k}`` in place of ``e``."""
        text = number_text(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            return rf"{mantissa} \times 10^{{{int(exponent)}}}"
        return text

    def bracket(self, text: str) -> str:
        """Put sized brackets around ``text``."""
        return rf"\left({text}\right)"

    def call(self, op: str, argument: str) -> Written:
        """Write a function of one argument."""
        if op == "exp":
            return Written(f"e^{{{argument}}}", ATOM, False)
        if op == "max0":
            return Written(rf"\max\left(0, {argument}\right)", ATOM, False)
        if op == "positive":
            return Written(rf"\left[{argument} > 0\right]", ATOM, False)
        names = {"log": r"\log", "tanh": r"\tanh", "Phi": r"\Phi", "phi": r"\phi"}
        return Written(rf"{names[op]}\left({argument}\right)", ATOM, False)

    def divide(self, top: Written, bottom: Written) -> Written:
        """Write ``\\frac{top}{bottom}``."""
        return Written(rf"\frac{{{top.text}}}{{{bottom.text}}}", ATOM, False)

    def square(self, base: Written) -> Written:
        """Write ``base^{2}``."""
        text = base.text
        if base.precedence < ATOM or base.negative:
            text = self.bracket(text)
        return Written(f"{{{text}}}^{{2}}", ATOM, False)

    def mean(self, terms: list[Written]) -> Written:
        """Write ``\\frac{1}{N}\\left(a + b\\right)``."""
        total = _join_sum(self, terms)
        return Written(
            rf"\frac{{1}}{{{len(terms)}}}{self.bracket(total)}", PRODUCT, False
        )


_NAME = re.compile(r"([A-Za-z]+)([0-9]*)((?:_[A-Za-z0-9]+)*)")


def latex_name(name: str) -> str:
    """Write a file name as LaTeX: ``w5`` as ``w_{5}``, ``b_h1`` as ``b_{h_{1}}``.

    Trailing digits and every ``_`` part become a comma-separated subscript, and a
    head of several letters is set upright.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        return rf"\mathrm{{{name}}}"
    letters, digits, rest = match.groups()
    head = letters if len(letters) == 1 else rf"\mathrm{{{letters}}}"
    parts = [digits] if digits else []
    for part in filter(None, rest.split("_")):
        parts.append(part if part.isdigit() else latex_name(part))
    if not parts:
        return head
    return f"{head}_{{{','.join(parts)}}}"


def _join_sum(notation: Notation, terms: list[Written]) -> str:
    texts = [terms[0].text]
    for term in terms[1:]:
        texts.append(notation.bracket(term.text) if term.negative else term.text)
    return " + ".join(texts)


def write(notation: Notation, expr: Expr, numeric: bool) -> Written:
    """Write ``expr`` in its symbolic form, or with every leaf as its value."""
    if isinstance(expr, Const):
        text = notation.number(expr.value)
        return Written(text, ATOM if expr.value >= 0 else UNARY, expr.value < 0)
    if isinstance(expr, (Var, Partial)):
        if numeric:
            text = notation.number(expr.value)
            negative = text.startswith("-")
            return Written(text, UNARY if negative else ATOM, negative)
        if isinstance(expr, Var):
            return Written(notation.symbol(expr.symbol), ATOM, False)
        return Written(notation.partial(expr), ATOM, False)

    args = [write(notation, arg, numeric) for arg in expr.args]
    op = expr.op
    if op == "add":
        return Written(_join_sum(notation, args), SUM, args[0].negative)
    if op == "sub":
        left, right = args
        right_text = right.text
        if right.precedence <= SUM or right.negative:
            right_text = notation.bracket(right_text)
        return Written(f"{left.text} - {right_text}", SUM, left.negative)
    if op == "mul":
        # Every negative factor is bracketed, so a product never starts with a
        # minus sign and reads the same inside a sum: 0.5 + (-0.4) * 0.2.
        texts = []
        for arg in args:
            needs = arg.precedence < PRODUCT or arg.negative
            texts.append(notation.bracket(arg.text) if needs else arg.text)
        return Written(notation.times.join(texts), PRODUCT, False)
    if op == "div":
        return notation.divide(*args)
    if op == "neg":
        (arg,) = args
        text = arg.text
        if arg.precedence < UNARY or arg.negative:
            text = notation.bracket(text)
        return Written(f"-{text}", UNARY, True)
    if op == "square":
        return notation.square(args[0])
    if op == "mean":
        return notation.mean(args)
    return notation.call(op, args[0].text)


def equation_parts(notation: Notation, equation: Equation) -> list[str]:
    """Write ``lhs = symbolic rhs = numeric rhs = value``, leaving out repeats."""
    lhs = equation.lhs
    left = (
        notation.symbol(lhs.symbol) if isinstance(lhs, Var) else notation.partial(lhs)
    )
    parts = [left]
    value = notation.number(equation.value)
    rhs = equation.rhs
    if rhs is not None and not isinstance(rhs, Const):
        parts.append(write(notation, rhs, numeric=False).text)
        numeric = write(notation, rhs, numeric=True).text
        if numeric != value:
            parts.append(numeric)
    parts.append(value)
    return parts
