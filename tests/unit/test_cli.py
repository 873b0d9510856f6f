"""The command line's own texts: every subcommand says what it does, and the version is printed."""

from __future__ import annotations

from importlib import metadata

import pytest

from mlpipe.cli import main as cli

COMMANDS = ("predict", "serve", "register", "promote", "rollback", "compare", "fetch", "gc", "sweep")


def run(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv))
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_version_and_top_level_help(capsys):
    assert run(capsys, "--version").strip() == f"mlpipe {metadata.version('mlpipe')}"
    top = run(capsys, "--help")
    assert "The ``mlpipe`` command" not in top and "``" not in top
    for name in COMMANDS:
        assert f"\n    {name}" in top, name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_subcommand_has_a_description(capsys, name: str):
    text = run(capsys, name, "--help")
    description = text.split("\n\n")[1]
    assert not description.startswith(("positional", "options")), text
    assert description[0].isupper() and description.rstrip().endswith("."), description
