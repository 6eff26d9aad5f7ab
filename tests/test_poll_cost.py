"""What a sync cycle costs each source type, counted on the emulators' side of the wire.

A cycle that finds nothing new must cost one request per source for GitHub (a conditional
request answered 304) and Jira (one search), and one request per board for Trello (the
action feed), and must change nothing in the ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncd.config import parse_config
from syncd.cycle import Engine
from syncd.ledger import Ledger
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import JiraEmulator
from syncd.sandbox.trello import TrelloEmulator
from tests.toolworld import set_tool_secrets, source_tables


@pytest.fixture
def engine(
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    github_emulator.add_repo("acme/api", collaborators=["alice-m"])
    # A collaborator's issue declares the Jira one; the Jira issue only mentions it back.
    github_emulator.create_issue("acme/api", "[OPS-1] One", assignees=["alice-m"], user="alice-m")
    alice = jira_emulator.add_user("Alice Moreau")
    jira_emulator.add_project("OPS")
    jira_emulator.create_issue("OPS", "Two", "See acme/api#1", assignee=alice)
    boards = [trello_emulator.add_board(f"Board {n}", members=["alicemoreau"]) for n in (1, 2)]
    for board in boards:
        trello_emulator.create_card(board, "Doing", "Three", members=["alicemoreau"])
    set_tool_secrets(monkeypatch, "COST")
    doc = {
        "ledger": str(tmp_path / "ledger.db"),
        "sources": source_tables("COST", github_emulator, jira_emulator, trello_emulator, boards),
        "people": [
            {
                "id": "alice",
                "handles": {"github": "alice-m", "jira": alice, "trello": "alicemoreau"},
            }
        ],
    }
    config = parse_config(doc)
    ledger = Ledger(config.ledger)
    engine = Engine(config, ledger)
    yield engine
    engine.close()
    ledger.close()


def test_a_no_change_cycle_costs_one_request_per_source_and_per_board(
    engine: Engine,
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
) -> None:
    first = engine.sync_once()
    assert all(r.ok for r in first), [r.error for r in first]
    assert engine.ledger.counts()["requests"] == 3  # the GitHub issue declared the Jira one
    engine.sync_once()  # settles the GitHub etag, which the first listing could not keep
    before = engine.ledger.counts()
    for emulator in (github_emulator, jira_emulator, trello_emulator):
        emulator.reset_counts()
    results = {r.source: r for r in engine.sync_once()}
    assert {name: r.requests for name, r in results.items()} == {
        "github": 1,
        "jira": 1,
        "trello": 2,  # two boards
    }
    assert github_emulator.count() == github_emulator.count(status=304) == 1
    assert jira_emulator.count() == jira_emulator.count("GET", "/rest/api/3/search/jql") == 1
    assert trello_emulator.count() == trello_emulator.count("GET", "/boards/{boardId}/actions") == 2
    assert engine.ledger.counts() == before  # and nothing changed


def test_link_fields_are_read_once_and_a_quiet_cycle_costs_the_same(
    engine: Engine,
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
) -> None:
    # A Jira remote link and a Trello attachment that declare the GitHub issue: each is
    # read when its item changes, and never again while nothing changes.
    jira_emulator.add_remote_link("OPS-1", "https://github.com/acme/api/issues/1", "One")
    board = engine.config.source("trello").boards[0]  # type: ignore[attr-defined]
    card = trello_emulator.create_card(board, "Doing", "Four", members=["alicemoreau"])
    trello_emulator.attach(card, "https://github.com/acme/api/issues/1", "acme/api#1")
    first = engine.sync_once()
    assert all(r.ok for r in first), [r.error for r in first]
    links = ("GET", "/rest/api/3/issue/{key}/remotelink")
    attachments = ("GET", "/cards/{id}/attachments")
    assert jira_emulator.count(*links) == 1
    assert trello_emulator.count(*attachments) == 1
    engine.sync_once()
    before = engine.ledger.counts()
    for emulator in (github_emulator, jira_emulator, trello_emulator):
        emulator.reset_counts()
    results = {r.source: r.requests for r in engine.sync_once()}
    assert results == {"github": 1, "jira": 1, "trello": 2}
    assert jira_emulator.count(*links) == trello_emulator.count(*attachments) == 0
    assert engine.ledger.counts() == before


def test_routing_and_follow_through_add_no_source_request_to_a_quiet_cycle(
    engine: Engine,
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
) -> None:
    from syncd.config import AcceptanceConfig, EscalationConfig, RoutingRule, Team

    # Rules, a team, acceptance and escalation on; one unowned labelled issue to route.
    github_emulator.create_issue("acme/api", "Printer jams", labels=["printer"])
    config = engine.config.model_copy(
        update={
            "teams": [Team(id="ops", members=["alice"])],
            "routing": [
                RoutingRule.model_validate(
                    {"name": "printers", "when": {"labels": "printer"}, "assign": {"team": "ops"}}
                )
            ],
            "acceptance": AcceptanceConfig.model_validate({"accept_within": "1h"}),
            "escalation": EscalationConfig(action="comment"),
        }
    )
    routed = Engine(config, engine.ledger)
    try:
        for _ in range(3):  # route, write it back, settle the etags
            assert all(r.ok for r in routed.sync_once())
        owners = engine.ledger.rows("SELECT title, owner FROM requests ORDER BY id")
        assert {"title": "Printer jams", "owner": "alice"} in owners
        before = engine.ledger.counts()
        for emulator in (github_emulator, jira_emulator, trello_emulator):
            emulator.reset_counts()
        results = {r.source: r.requests for r in routed.sync_once()}
        assert results == {"github": 1, "jira": 1, "trello": 2}
        assert github_emulator.count() == github_emulator.count(status=304) == 1
        assert engine.ledger.counts() == before
    finally:
        routed.close()


def test_with_commands_on_a_quiet_cycle_costs_one_more_github_request_answered_304(
    engine: Engine,
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
) -> None:
    # Comments are read for commands: GitHub's repository comment feed is one more
    # conditional request; Jira's come with the search, Trello's with the action feed.
    sources = [s.model_copy(update={"commands": True}) for s in engine.config.sources]
    commanded = Engine(engine.config.model_copy(update={"sources": sources}), engine.ledger)
    try:
        for _ in range(3):  # the first pull, then the etags settle
            assert all(r.ok for r in commanded.sync_once())
        before = engine.ledger.counts()
        for emulator in (github_emulator, jira_emulator, trello_emulator):
            emulator.reset_counts()
        results = {r.source: r.requests for r in commanded.sync_once()}
        assert results == {"github": 2, "jira": 1, "trello": 2}
        assert github_emulator.count() == github_emulator.count(status=304) == 2
        assert github_emulator.count("GET", "/repos/{owner}/{repo}/issues/comments", 304) == 1
        assert engine.ledger.counts() == before
    finally:
        commanded.close()
