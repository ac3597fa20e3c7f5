"""Every program's help describes each positional argument, subcommands included."""

from __future__ import annotations

import argparse

import pytest

from caterva2 import cli
from caterva2.broker import cli as broker_cli
from caterva2.publisher import server as publisher_server
from caterva2.subscriber import adduser
from caterva2.subscriber import server as subscriber_server

PARSERS = {
    "cat2cli": cli.build_parser,
    "cat2bro": broker_cli.build_parser,
    "cat2pub": publisher_server.build_parser,
    "cat2sub": subscriber_server.build_parser,
    "cat2adduser": adduser.build_parser,
}


def walk(parser: argparse.ArgumentParser, where: str):
    """(where, action) for every argument of `parser` and of its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if name in helped:  # aliases share the parser of their command
                    assert helped[name], f"{where} {name}: the command has no help"
                    yield from walk(sub, f"{where} {name}")
        else:
            yield where, action


@pytest.mark.parametrize("program", sorted(PARSERS))
def test_every_positional_argument_has_a_description(program):
    positionals = [
        (where, action)
        for where, action in walk(PARSERS[program](), program)
        if not action.option_strings
    ]
    assert positionals or program == "cat2sub"
    for where, action in positionals:
        assert action.help and action.help != argparse.SUPPRESS, f"{where} {action.dest}"
        assert action.help.strip() == action.help and len(action.help) > 5


@pytest.mark.parametrize("program", sorted(PARSERS))
def test_every_option_has_a_description(program):
    for where, action in walk(PARSERS[program](), program):
        if action.option_strings and action.help != argparse.SUPPRESS:
            assert action.help, f"{where} {action.option_strings[0]}"


def test_subcommand_help_shows_the_descriptions(capsys):
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args(["upload", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "local file to upload" in out and "where to store it" in out
