"""Reading XLA's optimised HLO text: what runs inside a compiled while loop."""

from __future__ import annotations

import re
from typing import Any

# Instructions that move no data at run time: they name or regroup buffers.
_BOOKKEEPING = ("parameter", "get-tuple-element", "tuple", "constant", "bitcast")


def _computation(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith((f"%{name} ", f"{name} ")):
            body = []
            for inner in lines[i + 1 :]:
                if inner.startswith("}"):
                    return body
                body.append(inner)
    return []


def _opcode(instruction: str) -> str | None:
    """Return the opcode of ``%name = TYPE opcode(operands), ...``, or None."""
    _, equals, rest = instruction.partition(" = ")
    if not equals:
        return None
    rest = rest.strip()
    if rest.startswith("("):
        # A tuple type: skip to its closing bracket.
        depth = 0
        for i, char in enumerate(rest):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                rest = rest[i + 1 :]
                break
    else:
        rest = rest.split(" ", 1)[1] if " " in rest else ""
    match = re.match(r"\s*([\w-]+)\(", rest)
    return match.group(1) if match else None


def inspect_while_loop(text: str) -> dict[str, Any] | None:
    """Summarise the body of the first while loop in optimised HLO ``text``.

    Returns:
        None if the text has no while loop. Otherwise ``small_call`` tells whether
        XLA:CPU marked the loop to be compiled into one function (the
        ``xla_cpu_small_call`` attribute) rather than run as a sequence of
        separately dispatched kernels. ``operations`` counts the body's
        instructions that compute or copy (fusions, copies, dots), by opcode.
    """
    match = re.search(r"\swhile\(.*?body=%?([\w.\-]+)", text)
    if match is None:
        return None
    operations: dict[str, int] = {}
    for instruction in _computation(text, match.group(1)):
        opcode = _opcode(instruction)
        if opcode is None or opcode in _BOOKKEEPING:
            continue
        operations[opcode] = operations.get(opcode, 0) + 1
    return {
        "small_call": 'xla_cpu_small_call="true"' in text,
        "operations": operations,
        "operation_count": sum(operations.values()),
    }
