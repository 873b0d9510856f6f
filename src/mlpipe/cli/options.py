"""The helpers every command module declares its subcommands with."""

from __future__ import annotations

import argparse
from typing import Any


def command(commands: Any, name: str, help: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` opens with its one-line help and any details."""
    description = f"{help[0].upper()}{help[1:]}." + (f" {details}" if details else "")
    return commands.add_parser(name, help=help, description=description)


def repo_command(commands: Any, name: str, help: str, pipeline: bool = True) -> argparse.ArgumentParser:
    """A subcommand that runs in the project's repository (and, by default, on one pipeline)."""
    parsed = command(commands, name, help)
    parsed.add_argument("--repo", default=".", help="the project's git repository (default: %(default)s)")
    if pipeline:
        parsed.add_argument(
            "--pipeline",
            default=".",
            help="folder of the pipeline (its dvc.yaml and params.yaml), e.g. pipelines/dropout",
        )
    return parsed
