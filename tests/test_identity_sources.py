"""What each tool's adapter reads for identity, end to end over the emulators: GitHub authors'
trust, Jira remote links, Trello attachments, and the Jira project keys shared through the
engine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.config import parse_config
from syncd.cycle import Engine
from syncd.ledger import Ledger
from syncd.models import Observation
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import JiraEmulator
from syncd.sandbox.trello import TrelloEmulator
from tests.toolworld import set_tool_secrets, source_tables


@pytest.fixture
def world(
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Engine, str]]:
    github_emulator.add_repo("acme/api", collaborators=["alice-m"], members=["bob-m"])
    jira_emulator.add_project("OPS")
    board = trello_emulator.add_board("Desk", members=["alicemoreau"])
    set_tool_secrets(monkeypatch, "ID")
    doc: dict[str, Any] = {
        "ledger": str(tmp_path / "ledger.db"),
        "matching": {"declare_labels": ["Ticket"]},
        "sources": source_tables("ID", github_emulator, jira_emulator, trello_emulator, [board]),
    }
    ledger = Ledger(tmp_path / "ledger.db")
    engine = Engine(parse_config(doc), ledger)
    yield engine, board
    engine.close()
    ledger.close()


def seen(engine: Engine, source: str) -> dict[str, Observation]:
    """What the source shows now, read from scratch."""
    return {o.title: o for p in engine.adapters[source].pull(None) for o in p.observations}


def test_github_declarations_count_only_from_trusted_authors(
    world: tuple[Engine, str], github_emulator: GitHubEmulator
) -> None:
    engine, _ = world
    body = "Ticket: OPS-2\nblocked by OPS-3"
    github_emulator.create_issue("acme/api", "[OPS-1] by a collaborator", body, user="alice-m")
    github_emulator.create_issue("acme/api", "[OPS-1] by a member", body, user="bob-m")
    github_emulator.create_issue("acme/api", "[OPS-1] by the owner", body, user="acme")
    github_emulator.create_issue("acme/api", "[OPS-1] quick question", body, user="mallory")
    found = seen(engine, "github")
    for title in ("[OPS-1] by a collaborator", "[OPS-1] by a member", "[OPS-1] by the owner"):
        assert found[title].author_trusted
        assert found[title].declared == ("jira:OPS-1", "jira:OPS-2")
        assert found[title].relation_kinds == (("jira:OPS-3", "blocked_by"),)
    outsider = found["[OPS-1] quick question"]
    assert not outsider.author_trusted
    assert outsider.declared == ()
    assert outsider.mentions == ("jira:OPS-1", "jira:OPS-2", "jira:OPS-3")


def test_jira_remote_links_declare_and_a_new_link_is_read(
    world: tuple[Engine, str], github_emulator: GitHubEmulator, jira_emulator: JiraEmulator
) -> None:
    engine, _ = world
    github_emulator.create_issue("acme/api", "Login fails", user="alice-m")
    key = jira_emulator.create_issue("OPS", "Login fails")
    engine.sync_once()
    assert seen(engine, "jira")["Login fails"].declared == ()
    # Linking moves the issue's `updated`, so the next cycle reads it and its links again.
    jira_emulator.add_remote_link(key, "https://github.com/acme/api/issues/1", "acme/api#1")
    jira_emulator.add_remote_link(
        key, "https://github.com/acme/api/issues/9", "acme/api#9", relationship="is blocked by"
    )
    jira_emulator.reset_counts()
    [result] = [r for r in engine.sync_once() if r.source == "jira"]
    assert result.ok
    assert jira_emulator.count("GET", "/rest/api/3/issue/{key}/remotelink") == 1
    obs = seen(engine, "jira")["Login fails"]
    assert obs.declared == ("github:acme/api#1",)
    assert obs.relation_kinds == (("github:acme/api#9", "blocked_by"),)


def test_trello_attachments_declare_and_a_new_one_is_read(
    world: tuple[Engine, str], trello_emulator: TrelloEmulator
) -> None:
    engine, board = world
    card = trello_emulator.create_card(board, "Doing", "Login fails", members=["alicemoreau"])
    engine.sync_once()
    trello_emulator.reset_counts()
    engine.sync_once()
    assert trello_emulator.count("GET", "/cards/{id}/attachments") == 0  # none to read
    trello_emulator.attach(card, "https://acme.atlassian.net/browse/OPS-1", "OPS-1")
    trello_emulator.attach(card, "https://example.com/design.pdf", "design")
    [result] = [r for r in engine.sync_once() if r.source == "trello"]
    assert result.ok
    assert trello_emulator.count("GET", "/cards/{id}/attachments") == 1
    assert seen(engine, "trello")["Login fails"].declared == ("jira:OPS-1",)


def test_jira_projects_reach_every_adapter(
    world: tuple[Engine, str], github_emulator: GitHubEmulator, jira_emulator: JiraEmulator
) -> None:
    engine, _ = world
    github_emulator.create_issue(
        "acme/api", "OPS-1: Login fails", "see ZZZ-4 and UTF-8", user="alice-m"
    )
    # Before any Jira issue is read, only the look-alike list applies.
    before = seen(engine, "github")["OPS-1: Login fails"]
    assert before.declared == ()
    assert before.mentions == ("jira:OPS-1", "jira:ZZZ-4")
    jira_emulator.create_issue("OPS", "Login fails")
    engine.sync_once()
    assert engine.adapters["github"].rules.jira_projects == {"OPS"}
    after = seen(engine, "github")["OPS-1: Login fails"]
    assert after.declared == ("jira:OPS-1",)  # the colon form, for a project Jira holds
    assert after.mentions == ()
    assert "Ticket" in engine.adapters["trello"].rules.labels


def test_a_restarted_engine_knows_the_projects_from_the_ledger(
    world: tuple[Engine, str], jira_emulator: JiraEmulator
) -> None:
    engine, _ = world
    jira_emulator.create_issue("OPS", "Login fails")
    engine.sync_once()
    again = Engine(engine.config, engine.ledger)
    try:
        assert again.jira_projects == {"OPS"}
        assert again.adapters["github"].rules.jira_projects == {"OPS"}
    finally:
        again.close()


def test_jira_issue_links_are_relations(
    world: tuple[Engine, str], jira_emulator: JiraEmulator
) -> None:
    engine, _ = world
    first = jira_emulator.create_issue("OPS", "Database migration")
    second = jira_emulator.create_issue("OPS", "Login fails")
    third = jira_emulator.create_issue("OPS", "Login fails again")
    jira_emulator.link_issues(first, second, "Blocks")
    jira_emulator.link_issues(third, second, "Duplicate")
    obs = seen(engine, "jira")["Login fails"]
    assert obs.declared == ()
    assert dict(obs.relation_kinds) == {f"jira:{first}": "blocked_by", f"jira:{third}": "related"}
    assert dict(seen(engine, "jira")["Login fails again"].relation_kinds) == {
        f"jira:{second}": "duplicate_of"
    }


def test_attachments_read_are_kept_across_a_restart(
    world: tuple[Engine, str], trello_emulator: TrelloEmulator
) -> None:
    engine, board = world
    card = trello_emulator.create_card(board, "Doing", "Login fails", members=["alicemoreau"])
    trello_emulator.attach(card, "https://github.com/acme/api/issues/1", "acme/api#1")
    engine.sync_once()  # the first pull sweeps the board and reads the attachments
    assert trello_emulator.count("GET", "/cards/{id}/attachments") == 1
    again = Engine(engine.config, engine.ledger)
    try:
        trello = again.adapters["trello"]
        later = datetime.now(UTC) + timedelta(hours=2)
        trello.clock = lambda: later  # type: ignore[attr-defined]  # a sweep is due
        trello_emulator.reset_counts()
        again.sync_once()
        assert trello_emulator.count("GET", "/boards/{id}/cards/{filter}") == 1  # swept
        assert trello_emulator.count("GET", "/cards/{id}/attachments") == 0
        # What the sweep saw, from the stored cursor: the declaration, from the stored read.
        latest = later + timedelta(hours=2)
        trello.clock = lambda: latest  # type: ignore[attr-defined]
        pages = list(trello.pull(again.ledger.cursor("trello")))
        [obs] = [o for p in pages for o in p.observations]
        assert obs.declared == ("github:acme/api#1",)
        assert trello_emulator.count("GET", "/cards/{id}/attachments") == 0
    finally:
        again.close()


def test_declarations_link_in_the_ledger_and_an_outsiders_do_not(
    world: tuple[Engine, str],
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
) -> None:
    engine, board = world
    key = jira_emulator.create_issue("OPS", "Login fails", "Blocked by OPS-9")
    github_emulator.create_issue("acme/api", f"[{key}] Login fails", user="alice-m")
    github_emulator.create_issue("acme/api", f"[{key}] quick question", user="mallory")
    github_emulator.create_issue("acme/api", "Checkout slow", user="alice-m")
    other = jira_emulator.create_issue("OPS", "Checkout slow")
    jira_emulator.add_remote_link(other, "https://github.com/acme/api/issues/3", "acme/api#3")
    card = trello_emulator.create_card(board, "Doing", "Account: login", members=["alicemoreau"])
    trello_emulator.attach(card, f"https://acme.atlassian.net/browse/{key}", key)
    for _ in range(2):
        assert all(r.ok for r in engine.sync_once())
    request = {
        (r["source"], r["ref"]): r["request_id"]
        for r in engine.ledger.rows("SELECT source, ref, request_id FROM links")
    }
    login = request[("jira", key)]
    # A collaborator's "[OPS-1] ..." title and a Trello attachment declare OPS-1.
    assert request[("github", "acme/api#1")] == login
    assert request[("trello", card)] == login
    # An outsider's "[OPS-1] quick question" on the public repository is its own request.
    outsider = request[("github", "acme/api#2")]
    assert outsider != login
    # A Jira remote link declares the GitHub issue it points at.
    assert request[("github", "acme/api#3")] == request[("jira", other)]
    assert len({login, outsider, request[("jira", other)]}) == 3
