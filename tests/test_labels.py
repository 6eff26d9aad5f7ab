"""Labels reach the ledger's observations: GitHub labels, Jira labels and components, Trello
card labels, each read by the real adapter from its emulator over loopback HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.adapters import adapter_class
from syncd.config import SourceConfig
from syncd.models import Observation
from syncd.sandbox.github import DEFAULT_TOKEN as GITHUB_TOKEN
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import DEFAULT_EMAIL, JiraEmulator
from syncd.sandbox.jira import DEFAULT_TOKEN as JIRA_TOKEN
from syncd.sandbox.trello import DEFAULT_KEY, TrelloEmulator
from syncd.sandbox.trello import DEFAULT_TOKEN as TRELLO_TOKEN


def observe(monkeypatch: pytest.MonkeyPatch, doc: dict[str, Any]) -> list[Observation]:
    for var, value in (
        ("T_GITHUB", GITHUB_TOKEN),
        ("T_JIRA", JIRA_TOKEN),
        ("T_TRELLO_KEY", DEFAULT_KEY),
        ("T_TRELLO", TRELLO_TOKEN),
    ):
        monkeypatch.setenv(var, value)
    cls = adapter_class(doc["type"])
    config: SourceConfig = cls.Config.model_validate({"name": "src", **doc})
    config.resolve_secrets()
    adapter = cls(config)
    try:
        return [o for page in adapter.pull(None) for o in page.observations]
    finally:
        adapter.close()


def test_github_labels_in_the_tools_order(
    monkeypatch: pytest.MonkeyPatch, github_emulator: GitHubEmulator
) -> None:
    github_emulator.add_repo("acme/api")
    github_emulator.create_issue("acme/api", "Printer down", labels=["billing", "P1"])
    github_emulator.create_issue("acme/api", "No labels")
    doc = {
        "type": "github",
        "repo": "acme/api",
        "base_url": github_emulator.base_url,
        "token": {"env": "T_GITHUB"},
    }
    by_title = {o.title: o.labels for o in observe(monkeypatch, doc)}
    assert by_title == {"Printer down": ("billing", "P1"), "No labels": ()}


def test_jira_labels_then_components(
    monkeypatch: pytest.MonkeyPatch, jira_emulator: JiraEmulator
) -> None:
    jira_emulator.add_project("OPS", "Operations")
    key = jira_emulator.create_issue("OPS", "Warehouse printer")
    jira_emulator.set_labels(key, ["hardware"], components=["Warehouse", "hardware"])
    jira_emulator.create_issue("OPS", "Plain")
    doc = {
        "type": "jira",
        "base_url": jira_emulator.base_url,
        "email": DEFAULT_EMAIL,
        "token": {"env": "T_JIRA"},
        "jql": "project = OPS",
    }
    by_title = {o.title: o.labels for o in observe(monkeypatch, doc)}
    assert by_title == {"Warehouse printer": ("hardware", "Warehouse"), "Plain": ()}


def test_trello_card_labels(
    monkeypatch: pytest.MonkeyPatch, trello_emulator: TrelloEmulator
) -> None:
    board = trello_emulator.add_board("Escalations")
    trello_emulator.add_list(board, "Inbox")
    trello_emulator.create_card(board, "Inbox", "Refund stuck", labels=["billing"])
    trello_emulator.create_card(board, "Inbox", "Other")
    doc = {
        "type": "trello",
        "boards": [board],
        "base_url": trello_emulator.base_url,
        "key": {"env": "T_TRELLO_KEY"},
        "token": {"env": "T_TRELLO"},
    }
    by_title = {o.title: o.labels for o in observe(monkeypatch, doc)}
    assert by_title == {"Refund stuck": ("billing",), "Other": ()}
