"""``jbp reproduce``: the table, the JSON rows and clean errors."""

import json
import subprocess
import sys

import pytest

from jbp.cli import main


def test_json_rows_have_documented_keys(capsys):
    assert main(["reproduce", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 21
    for row in rows:
        assert set(row) == {
            "quantity",
            "document",
            "jbp",
            "agrees",
            "note",
            "printed",
            "verdict",
        }
        assert row["document"] is None or isinstance(row["document"], float)
        assert isinstance(row["jbp"], float)
        assert isinstance(row["agrees"], bool)
    by_name = {row["quantity"]: row for row in rows}
    assert by_name["E before training"]["document"] == 0.298371109
    assert by_name["E before training"]["agrees"] is True
    assert by_name["w6 after one step"]["document"] == 408666186.0
    assert by_name["w6 after one step"]["agrees"] is False


def test_table_has_columns_and_notes(capsys):
    assert main(["reproduce", "--rule", "layerwise"]) == 0
    out = capsys.readouterr().out
    assert "quantity" in out
    assert "document" in out
    assert "verdict" in out
    assert "E after one step" in out
    assert "[1] " in out


def test_steps_changes_the_long_run(capsys):
    assert main(["reproduce", "--steps", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(row["quantity"] == "E after 3 steps" for row in rows)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--steps", "-5"], "argument --steps: must be 0 or more, got -5"),
        (["--steps", "ten"], "argument --steps: invalid whole number 'ten'"),
        (["--rule", "sideways"], "argument --rule: invalid choice: 'sideways'"),
    ],
    ids=["negative-steps", "text-steps", "unknown-rule"],
)
def test_bad_options_exit_2_in_one_line(arguments, message):
    process = subprocess.run(
        [sys.executable, "-m", "jbp", "reproduce", *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 2
    assert process.stdout == ""
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]
    assert "Traceback" not in process.stderr


def test_unexpected_error_keeps_traceback(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr("jbp.cli.reproduce.compare", broken)
    with pytest.raises(RuntimeError, match="a bug, not a user error"):
        main(["reproduce"])


def test_ctrl_c_exits_130(monkeypatch, capsys):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("jbp.cli.reproduce.compare", interrupted)
    assert main(["reproduce"]) == 130
    assert "interrupted" in capsys.readouterr().err
