"""Developer sessions: ``nox -s lint tests`` is what CI runs.

Every session installs what it needs from pyproject.toml, so a fresh machine needs
only nox itself.
"""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.error_on_missing_interpreters = True


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite on the CPU, two workers at a time."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "-n",
        "2",
        *session.posargs,
        env={"JAX_PLATFORMS": "cpu"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and rewrite docs/benchmarks.md, .json and .png.

    Arguments after ``--`` replace the default ``--out docs``; for example
    ``nox -s bench -- --smoke --out /tmp/bench`` checks the script in a minute.
    """
    session.install("-e", ".[bench]")
    session.run(
        "python",
        "experiments/benchmark.py",
        *(session.posargs or ["--out", "docs"]),
    )
