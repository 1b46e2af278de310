"""The docs stay true: every `python -m pipeline …` command in HOWTO.md parses as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import typer.main
from typer._click import exceptions as typer_click_exceptions

from pipeline.entrypoints.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
USAGE_ERRORS = (click.UsageError, typer_click_exceptions.UsageError)
COMMANDS = [
    line.split("#")[0].strip()
    for line in (ROOT / "HOWTO.md").read_text().splitlines()
    if line.startswith("python -m pipeline ")
]


def test_the_howto_documents_the_main_commands() -> None:
    documented = {shlex.split(c)[3] for c in COMMANDS}
    assert {
        "batch",
        "db",
        "topics",
        "stream",
        "produce",
        "redrive",
    } <= documented


@pytest.mark.parametrize("command", COMMANDS)
def test_documented_command_is_accepted_by_the_cli(command: str) -> None:
    parse(command)


def test_the_check_rejects_wrong_commands() -> None:
    for wrong in (
        "python -m pipeline nosuch",
        "python -m pipeline batch x.csv --bogus 1",
        "python -m pipeline produce",
        "python -m pipeline db sideways",
    ):
        with pytest.raises(USAGE_ERRORS):
            parse(wrong)


def parse(command: str) -> None:
    """Resolve the sub-commands and parse the options and arguments, without running anything."""
    args = shlex.split(command)[3:]
    command_object: Any = typer.main.get_command(app)  # typer vendors its own click
    context = click.Context(command_object, info_name="pipeline")
    while hasattr(command_object, "resolve_command"):  # a group (typer vendors its click)
        name, found, args = command_object.resolve_command(context, args)
        assert name is not None and found is not None
        command_object = found
        context = click.Context(command_object, info_name=name, parent=context)
    command_object.make_context(context.info_name, list(args), parent=context.parent)


def test_every_make_target_in_the_docs_exists() -> None:
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    documented = set(re.findall(r"make ([a-z-]+)", (ROOT / "HOWTO.md").read_text()))
    documented |= set(re.findall(r"make ([a-z-]+)", (ROOT / "README.md").read_text()))
    assert documented <= targets


def test_the_product_cli_has_no_development_commands() -> None:
    for dev_command in ("python -m pipeline dev kafka up", "python -m pipeline generate x.csv"):
        with pytest.raises(USAGE_ERRORS):
            parse(dev_command)
