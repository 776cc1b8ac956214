"""Plain text: underlined headings, one equation a line, aligned tables."""

from __future__ import annotations

from jbp.render.document import Math, Prose, Writer
from jbp.render.notation import Notation


def _plain(prose: Prose) -> str:
    return "".join(piece.text if isinstance(piece, Math) else piece for piece in prose)


class TextWriter(Writer):
    """Plain text for a terminal."""

    notation = Notation()

    def heading(self, level: int, title: Prose) -> None:
        """Add a heading underlined with ``=`` (title) or ``-``."""
        text = _plain(title)
        if self.lines and self.lines[-1]:
            self.lines.append("")
        self.lines.extend([text, ("=" if level == 1 else "-") * len(text)])

    def paragraph(self, prose: Prose) -> None:
        """Add a paragraph."""
        self.lines.extend([_plain(prose), ""])

    def equation(self, parts: list[str], note: Prose | None = None) -> None:
        """Add one equation on its own line."""
        suffix = f"   ({_plain(note)})" if note else ""
        self.lines.append(" = ".join(parts) + suffix)

    def table(self, headers: list[Prose], rows: list[list[str]]) -> None:
        """Add a table with aligned columns."""
        if self.lines and self.lines[-1]:
            self.lines.append("")
        cells = [[_plain(h) for h in headers], *rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        for i, row in enumerate(cells):
            line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            self.lines.append(line.rstrip())
            if i == 0:
                self.lines.append("  ".join("-" * w for w in widths))
        self.lines.append("")
