"""Write a derivation as plain text, Markdown (GitHub maths) or a LaTeX document."""

from __future__ import annotations

from jbp.derivation import Derivation
from jbp.errors import ValidationError
from jbp.render.document import Writer, write_document
from jbp.render.latex import LatexWriter
from jbp.render.markdown import MarkdownWriter
from jbp.render.text import TextWriter

WRITERS: dict[str, type[Writer]] = {
    "text": TextWriter,
    "markdown": MarkdownWriter,
    "latex": LatexWriter,
}
"""Every output format, by name."""


def render(derivation: Derivation, format: str = "text") -> str:
    """Write ``derivation`` in ``format``: ``text``, ``markdown`` or ``latex``.

    Raises:
        ValidationError: for an unknown format.
    """
    if format not in WRITERS:
        raise ValidationError(
            f"unknown format {format!r}; expected one of: {', '.join(WRITERS)}"
        )
    return write_document(derivation, WRITERS[format]())


__all__ = ["WRITERS", "render"]
