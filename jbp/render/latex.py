"""A complete LaTeX document for pdflatex, with the amsmath and geometry packages."""

from __future__ import annotations

from jbp.render.document import Math, Prose, Writer
from jbp.render.notation import LatexNotation

SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def escape(text: str) -> str:
    """Escape the characters that LaTeX treats specially in running text."""
    return "".join(SPECIAL.get(char, char) for char in text)


def _latex(prose: Prose) -> str:
    return "".join(
        f"${piece.latex}$" if isinstance(piece, Math) else escape(piece)
        for piece in prose
    )


class LatexWriter(Writer):
    """LaTeX: unnumbered sections, one display equation each, tabular tables."""

    notation = LatexNotation()
    uses_latex = True

    def heading(self, level: int, title: Prose) -> None:
        """Add a section; the level-1 heading becomes the title."""
        if level == 1:
            self.title = _latex(title)
            return
        self.lines.extend([rf"\section*{{{_latex(title)}}}", ""])

    def paragraph(self, prose: Prose) -> None:
        """Add a paragraph."""
        self.lines.extend([_latex(prose), ""])

    def equation(self, parts: list[str], note: Prose | None = None) -> None:
        """Add a display equation, breaking the line after each ``=``."""
        self.lines.append(r"\begin{align*}")
        if len(parts) == 1:
            self.lines.append(f"  {parts[0]}")
        else:
            body = " \\\\\n  &= ".join(parts[1:])
            self.lines.append(f"  {parts[0]} &= {body}")
        if note:
            self.lines[-1] += rf" && \text{{({_latex(note)})}}"
        self.lines.extend([r"\end{align*}", ""])

    def table(self, headers: list[Prose], rows: list[list[str]]) -> None:
        """Add a centred tabular with a rule under the headers."""
        self.lines.append(r"\begin{center}")
        self.lines.append(rf"\begin{{tabular}}{{{'l' * len(headers)}}}")
        self.lines.append(" & ".join(_latex(h) for h in headers) + r" \\ \hline")
        for row in rows:
            self.lines.append(" & ".join(escape(c) for c in row) + r" \\")
        self.lines.extend([r"\end{tabular}", r"\end{center}", ""])

    def finish(self, title: str) -> str:
        """Wrap the body in a complete document."""
        preamble = [
            r"\documentclass[10pt]{article}",
            r"\usepackage[T1]{fontenc}",
            r"\usepackage[margin=2cm]{geometry}",
            r"\usepackage{amsmath}",
            r"\allowdisplaybreaks",
            rf"\title{{{getattr(self, 'title', escape(title))}}}",
            r"\date{}",
            r"\begin{document}",
            r"\maketitle",
            "",
        ]
        return "\n".join([*preamble, *self.lines, r"\end{document}"]) + "\n"
