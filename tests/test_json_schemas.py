"""Every command's --json output, validated against the JSON Schema shipped in the package.

The commands are found by walking the CLI: a command that takes --json (or --format json)
without a schema here fails `test_every_json_command_has_a_schema_and_a_run`, so a new
command cannot ship an undocumented shape.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest

from syncd import schemas
from syncd.cli import cli
from syncd.sandbox.github import DEFAULT_TOKEN, GitHubEmulator
from tests.syncdproc import syncd
from tests.test_cli import Story, story

__all__ = ["story"]


def json_commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator[str]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from json_commands(command, (*path, name))
        elif any(
            p.name == "as_json" or (isinstance(p.type, click.Choice) and "json" in p.type.choices)
            for p in command.params
        ):
            yield " ".join((*path, name))


@pytest.fixture
def config(tmp_path: Path, github_emulator: GitHubEmulator) -> Path:
    github_emulator.add_repo("acme/api", collaborators=["alice-m"])
    github_emulator.create_issue("acme/api", "Checkout fails", "", assignees=["alice-m"])
    path = tmp_path / "syncd.toml"
    path.write_text(
        'ledger = "ledger.db"\n'
        '[[sources]]\nname = "api"\ntype = "github"\nrepo = "acme/api"\n'
        f'base_url = "{github_emulator.base_url}"\nwrite_spacing = 0\n'
        'token = { env = "SYNCD_TEST_TOKEN" }\n'
        '[[people]]\nid = "alice"\nhandles = { github = "alice-m" }\n'
    )
    return path


ENV = {"SYNCD_TEST_TOKEN": DEFAULT_TOKEN}
Run = Callable[[Story, Path], list[list[str | Path]]]

# For each command: the runs whose output is validated (several where the shape varies).
RUNS: dict[str, Run] = {
    "ls": lambda s, c: [["--ledger", s.path, "ls", "--all"], ["--ledger", s.path, "ls"]],
    "show": lambda s, c: [["--ledger", s.path, "show", "REQ-1"], ["--ledger", s.path, "show", "3"]],
    "history": lambda s, c: [
        ["--ledger", s.path, "history"],
        ["--ledger", s.path, "history", "--all"],
    ],
    "status": lambda s, c: [["--ledger", s.path, "status"], ["--config", c, "status"]],
    "people": lambda s, c: [["--ledger", s.path, "people"]],
    "assign": lambda s, c: [
        ["--ledger", s.path, "assign", "REQ-3", "carol"],
        ["--ledger", s.path, "assign", "REQ-3", "carol"],  # unchanged
        ["--ledger", s.path, "assign", "REQ-1", "--unassign"],
    ],
    "sync": lambda s, c: [["--config", c, "sync", "--once"]],
    "config check": lambda s, c: [["--config", c, "config", "check"]],
    "quarantine": lambda s, c: [
        ["--ledger", s.path, "quarantine"],
        ["--ledger", s.path, "quarantine", "--all"],
    ],
    "route": lambda s, c: [["--config", routing_config(s, c), "route", "--dry-run"]],
    "link": lambda s, c: [
        ["--ledger", s.path, "link", "REQ-1", "acme/api#13", "--dry-run"],
        ["--ledger", s.path, "link", "REQ-1", "acme/api#13"],  # a merge
        ["--ledger", s.path, "link", "REQ-1", "acme/api#13"],  # already there
        ["--ledger", s.path, "link", "REQ-3", "acme/api#12"],  # moves one item
    ],
    "unlink": lambda s, c: [
        ["--ledger", s.path, "unlink", "acme/api#12", "--dry-run"],
        ["--ledger", s.path, "unlink", "acme/api#12"],
    ],
    "split": lambda s, c: merged(s, [["--ledger", s.path, "split", "REQ-2", "--dry-run"]]),
    "relink": lambda s, c: old_rule(s, [["--ledger", s.path, "relink", "--dry-run"]]),
}


def old_rule(story: Story, runs: list[list[str | Path]]) -> list[list[str | Path]]:
    """The story's ledger as if REQ-1's two items had been linked by a mention: no
    declaration recorded, as in a ledger built under the old rule."""
    con = sqlite3.connect(story.path)
    with con:
        con.execute("DELETE FROM link_keys WHERE role = 'declared'")
    con.close()
    return runs


def merged(story: Story, runs: list[list[str | Path]]) -> list[list[str | Path]]:
    """The story's ledger with REQ-2 merged into REQ-1 by an operator, for `split`."""
    syncd("--ledger", story.path, "link", "REQ-1", "REQ-2")
    return runs


def routing_config(story: Story, beside: Path) -> Path:
    """The story's ledger with a rule that routes unowned web requests (REQ-3) to carol."""
    path = beside.with_name("routing.toml")
    path.write_text(
        f'ledger = "{story.path}"\n'
        '[[sources]]\nname = "web"\ntype = "github"\nrepo = "acme/web"\n'
        'token = { env = "SYNCD_TEST_TOKEN" }\n'
        '[[people]]\nid = "carol"\nhandles = { jira = "acc-carol" }\n'
        '[[routing]]\nname = "web to carol"\nwhen = { source = "web" }\n'
        'assign = { person = "carol" }\n'
    )
    return path


def test_every_json_command_has_a_schema_and_a_run() -> None:
    commands = set(json_commands())
    assert commands, "no command takes --json?"
    missing_schema = sorted(c for c in commands if c.replace(" ", "-") not in schemas.names())
    assert not missing_schema, (
        f"commands with --json but no schema in syncd/schemas: {missing_schema}"
    )
    missing_run = sorted(commands - set(RUNS))
    assert not missing_run, f"commands with --json not validated here: {missing_run}"


def test_every_schema_is_valid_and_versioned() -> None:
    for name in schemas.names():
        schema = schemas.load(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["schema_version"] == schemas.SCHEMA_VERSION
        printed = syncd("schema", *name.split("-"))
        assert json.loads(printed.stdout) == schema


@pytest.mark.parametrize("command", sorted(RUNS))
def test_json_output_matches_its_schema(command: str, story: Story, config: Path) -> None:
    schema = schemas.load(command)
    validator = jsonschema.Draft202012Validator(schema)
    for args in RUNS[command](story, config):
        json_args = [*args, "--json"]
        result = syncd(*json_args, env=ENV)
        assert result.returncode == 0, (json_args, result.stderr)
        value: Any = json.loads(result.stdout)
        assert value or command not in ("route", "quarantine", "relink"), (
            json_args,
            "nothing to check",
        )
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]
        assert not errors, (json_args, errors)


def test_a_schema_catches_a_wrong_shape(story: Story) -> None:
    validator = jsonschema.Draft202012Validator(schemas.load("ls"))
    rows = json.loads(syncd("--ledger", story.path, "ls", "--json").stdout)
    rows[0]["state"] = "closed"
    del rows[1]["owner"]
    assert len(list(validator.iter_errors(rows))) == 2


def test_config_check_json_lists_the_problems(tmp_path: Path) -> None:
    bad = tmp_path / "syncd.toml"
    bad.write_text('[daemon]\njitter = "2h1h"\n')
    result = syncd("--config", bad, "config", "check", "--json")
    assert result.returncode == 1
    value = json.loads(result.stdout)
    jsonschema.validate(value, schemas.load("config check"))
    assert value["ok"] is False
    assert value["problems"][0].startswith("daemon.jitter: '2h1h': 'h' appears twice")
