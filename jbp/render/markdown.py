"""Markdown with maths that GitHub renders: ``$...$`` inline, ``$$...$$`` blocks."""

from __future__ import annotations

from jbp.render.document import Math, Prose, Writer
from jbp.render.notation import LatexNotation


def _markdown(prose: Prose) -> str:
    return "".join(
        f"${piece.latex}$" if isinstance(piece, Math) else piece for piece in prose
    )


def _cell(text: str) -> str:
    # Underscores in names such as b_h1 would start emphasis, and a bar a new cell.
    return text.replace("\\", "\\\\").replace("_", "\\_").replace("|", "\\|")


class MarkdownWriter(Writer):
    """GitHub-flavoured Markdown; every equation is a ``$$`` display block."""

    notation = LatexNotation()
    uses_latex = True

    def heading(self, level: int, title: Prose) -> None:
        """Add an ATX heading."""
        self.lines.extend([f"{'#' * level} {_markdown(title)}", ""])

    def paragraph(self, prose: Prose) -> None:
        """Add a paragraph."""
        self.lines.extend([_markdown(prose), ""])

    def equation(self, parts: list[str], note: Prose | None = None) -> None:
        """Add a display equation between ``$$`` lines."""
        lines = ["$$", " = ".join(parts), "$$"]
        if note:
            lines.append(f"({_markdown(note)})")
        self.lines.extend([*lines, ""])

    def table(self, headers: list[Prose], rows: list[list[str]]) -> None:
        """Add a pipe table."""
        self.lines.append("| " + " | ".join(_markdown(h) for h in headers) + " |")
        self.lines.append("|" + "---|" * len(headers))
        for row in rows:
            self.lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
        self.lines.append("")
