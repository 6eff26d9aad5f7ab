"""Naming requests and people the way operators do: tool refs, URLs, handles, any case, "me".

Driven through the installed `syncd` script against a real ledger file (tests.test_cli's
story: REQ-1 is Jira OPS-7 + acme/api#12, owned by bob; REQ-2 acme/api#13 owned by the
unmapped github:zed; REQ-3 acme/web#1 unowned and blocked; REQ-4 acme/api#14 done)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from syncd.config import Person
from syncd.ledger import Ledger
from tests.syncdproc import errors, syncd
from tests.test_cli import PEOPLE, Story, story

__all__ = ["story"]  # the fixture, shared with tests.test_cli


def owner(story: Story, key: str) -> str | None:
    with sqlite3.connect(story.path) as con:
        row = con.execute("SELECT owner FROM requests WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


@pytest.mark.parametrize(
    "name",
    [
        "REQ-1",
        "req-1",
        "1",
        "OPS-7",
        "acme/api#12",
        "https://jira.example/OPS-7",
        "https://github.com/acme/api/issues/12",
    ],
)
def test_show_takes_a_tool_ref_or_url(story: Story, name: str) -> None:
    result = syncd("--ledger", story.path, "show", name, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["key"] == "REQ-1"


def test_history_takes_a_tool_ref(story: Story) -> None:
    result = syncd("--ledger", story.path, "history", "acme/api#12", "--json")
    assert result.returncode == 0, result.stderr
    assert {r["request"] for r in json.loads(result.stdout)} == {"REQ-1"}


def test_a_ref_the_ledger_does_not_hold_is_an_error(story: Story) -> None:
    result = syncd("--ledger", story.path, "show", "OPS-999")
    assert result.returncode == 1
    assert errors(result) == [
        "'OPS-999': no linked item in the ledger (give REQ-42, a tool ref such as OPS-7 or "
        "acme/api#1, or an item's URL; see `syncd ls`)"
    ]


def test_assign_resolves_a_configured_handle_to_the_person(story: Story) -> None:
    # bob-ok is Bob's GitHub handle: the owner is bob, not an unmapped github:bob-ok.
    result = syncd("--ledger", story.path, "assign", "acme/api#13", "github:bob-ok")
    assert result.returncode == 0, result.stderr
    assert owner(story, "REQ-2") == "bob"
    assert result.stdout.startswith("REQ-2: github:zed -> bob (Bob Okafor)")
    ls = syncd("--ledger", story.path, "ls", "--owner", "bob", "--json")
    assert "REQ-2" in [r["key"] for r in json.loads(ls.stdout)]


@pytest.mark.parametrize("person", ["ALICE", "Alice", "alice-m", "jira:ACC-ALICE"])
def test_assign_takes_any_case_and_bare_handles(story: Story, person: str) -> None:
    result = syncd("--ledger", story.path, "assign", "REQ-3", person)
    assert result.returncode == 0, result.stderr
    assert owner(story, "REQ-3") == "alice"


def test_assign_refuses_a_handle_nobody_claims_unless_unmapped(story: Story) -> None:
    result = syncd("--ledger", story.path, "assign", "REQ-3", "github:bobb-ok")
    assert result.returncode == 1
    assert errors(result) == [
        "'github:bobb-ok' is claimed by no person; add it to someone's handles in [[people]], "
        "or give --unmapped to hand the request to that identity as it is (see `syncd people`)"
    ]
    assert owner(story, "REQ-3") is None
    result = syncd("--ledger", story.path, "assign", "REQ-3", "github:ZED", "--unmapped")
    assert result.returncode == 0, result.stderr
    # The spelling the tool uses, as the ledger saw it.
    assert owner(story, "REQ-3") == "github:zed"


def test_me_is_the_person_with_my_unix_handle(story: Story) -> None:
    with Ledger(story.path) as ledger:
        ledger.sync_people(
            [*PEOPLE[:2], Person(id="carol", handles={"jira": "acc-carol", "unix": "cdiaz"})]
        )
    result = syncd("--ledger", story.path, "assign", "OPS-7", "me", env={"USER": "cdiaz"})
    assert result.returncode == 0, result.stderr
    assert owner(story, "REQ-1") == "carol"
    mine = syncd("--ledger", story.path, "ls", "--owner", "me", "--json", env={"USER": "cdiaz"})
    assert [r["key"] for r in json.loads(mine.stdout)] == ["REQ-1"]
    nobody = syncd("--ledger", story.path, "assign", "REQ-3", "me", env={"USER": "zz"})
    assert nobody.returncode == 1
    assert "no person has the unix handle 'zz'" in nobody.stderr


def test_away_and_back_take_me_and_handles(story: Story) -> None:
    with Ledger(story.path) as ledger:
        ledger.sync_people(
            [
                PEOPLE[0],
                Person(id="bob", handles={"github": "bob-ok", "unix": "bokafor"}),
                PEOPLE[2],
            ]
        )
    away = syncd("--ledger", story.path, "away", "me", "--until", "2d", env={"USER": "bokafor"})
    assert away.returncode == 0, away.stderr
    assert away.stdout.startswith("bob is away until ")
    back = syncd("--ledger", story.path, "back", "github:BOB-OK")
    assert back.returncode == 0, back.stderr
    assert back.stdout == "bob is back\n"


def test_an_unknown_tool_is_refused_even_with_unmapped(story: Story) -> None:
    result = syncd("--ledger", story.path, "assign", "REQ-3", "githb:zed", "--unmapped")
    assert result.returncode == 1
    assert errors(result) == [
        "'githb:zed': unknown tool 'githb' (known: email, github, jira, trello)"
    ]
    assert owner(story, "REQ-3") is None
