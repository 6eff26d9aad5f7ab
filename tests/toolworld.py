"""Three emulated tools, two items in each, and an Engine on a real ledger, in this process.

For tests that need to act at an exact moment of syncd's exchanges with a tool (a field left
out of one answer, a person's edit landing between syncd's read and its write): the
emulators' `Fault(before=..., rewrite=...)` hooks do that, and the engine runs in the test's
own thread so the order of events is the test's.

People: alice, bob, carol and dave, with a handle in every tool. Items, all owned by alice:
GitHub acme/api#1 and #2, Jira OPS-1 and OPS-2, Trello cards 1 and 2 on one board.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncd.config import parse_config
from syncd.cycle import Engine
from syncd.ledger import Ledger
from syncd.sandbox.github import DEFAULT_TOKEN as GITHUB_TOKEN
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import DEFAULT_EMAIL, JiraEmulator
from syncd.sandbox.jira import DEFAULT_TOKEN as JIRA_TOKEN
from syncd.sandbox.trello import DEFAULT_KEY, TrelloEmulator
from syncd.sandbox.trello import DEFAULT_TOKEN as TRELLO_TOKEN

REPO = "acme/api"
PEOPLE = ("alice", "bob", "carol", "dave")


@dataclass
class ToolWorld:
    github: GitHubEmulator
    jira: JiraEmulator
    trello: TrelloEmulator
    path: Path
    accounts: dict[str, str] = field(default_factory=dict)  # person -> Jira accountId
    board: str = ""
    cards: list[str] = field(default_factory=list)
    engine: Engine | None = None

    # -- handles -------------------------------------------------------------------------
    @staticmethod
    def login(person: str) -> str:
        return f"{person}-gh"

    @staticmethod
    def username(person: str) -> str:
        return f"{person}trello"

    def ref(self, source: str, n: int) -> str:
        return {"github": f"{REPO}#{n}", "jira": f"OPS-{n}", "trello": self.cards[n - 1]}[source]

    # -- the tools, as people use them ---------------------------------------------------
    def set_owner(self, source: str, n: int, people: list[str]) -> None:
        if source == "github":
            self.github.set_assignees(REPO, n, [self.login(p) for p in people])
        elif source == "jira":
            self.jira.set_assignee(f"OPS-{n}", self.accounts[people[0]] if people else None)
        else:
            self.trello.set_members(
                self.cards[n - 1], [self.username(p) for p in people], by="bobtrello"
            )

    def owners(self, source: str, n: int) -> list[str]:
        """The people who own item n in the tool now."""
        if source == "github":
            return [a["login"][: -len("-gh")] for a in self.github.issue(REPO, n)["assignees"]]
        if source == "jira":
            account = self.jira.assignee(f"OPS-{n}")
            return [p for p, a in self.accounts.items() if a == account]
        names = self.trello.members_of(self.cards[n - 1])
        return [u[: -len("trello")] for u in names]

    def emulator(self, source: str) -> Any:
        return {"github": self.github, "jira": self.jira, "trello": self.trello}[source]

    def writes(self) -> int:
        """Requests that change something, in any tool."""
        return sum(
            e.count(method)
            for e in (self.github, self.jira, self.trello)
            for method in ("POST", "PUT", "DELETE", "PATCH")
            # Jira's search and bulk changelog read with POST.
        ) - self.jira.count("POST", "/rest/api/3/changelog/bulkfetch")

    # -- syncd -----------------------------------------------------------------------------
    @property
    def ledger(self) -> Ledger:
        assert self.engine is not None
        return self.engine.ledger

    def request_owner(self, source: str, n: int) -> str | None:
        rows = self.ledger.rows(
            "SELECT r.owner FROM requests r JOIN links l ON l.request_id = r.id "
            "WHERE l.source = ? AND l.ref = ?",
            (source, self.ref(source, n)),
        )
        assert rows, f"{source} item {n} is not in the ledger"
        owner: str | None = rows[0]["owner"]
        return owner

    def sync(self, *sources: str) -> None:
        assert self.engine is not None
        results = self.engine.sync_once(list(sources) or None)
        assert all(r.ok for r in results), [r.error for r in results]


def source_tables(
    prefix: str,
    github: GitHubEmulator,
    jira: JiraEmulator,
    trello: TrelloEmulator,
    boards: list[str],
    names: tuple[str, str, str] = ("github", "jira", "trello"),
    repo: str = REPO,
) -> list[dict[str, Any]]:
    """[[sources]] tables for the three emulators: GitHub `repo`, Jira project OPS and the
    Trello `boards`, named `names`, their secrets read from the variables set_tool_secrets
    sets for `prefix`."""
    hub, ops, board = names
    return [
        {
            "name": hub,
            "type": "github",
            "repo": repo,
            "write_spacing": 0,
            "base_url": github.base_url,
            "token": {"env": f"{prefix}_GITHUB"},
        },
        {
            "name": ops,
            "type": "jira",
            "base_url": jira.base_url,
            "email": DEFAULT_EMAIL,
            "token": {"env": f"{prefix}_JIRA"},
            "jql": "project = OPS",
        },
        {
            "name": board,
            "type": "trello",
            "boards": boards,
            "base_url": trello.base_url,
            "key": {"env": f"{prefix}_TRELLO_KEY"},
            "token": {"env": f"{prefix}_TRELLO_TOKEN"},
        },
    ]


def set_tool_secrets(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    """The emulators' default secrets in PREFIX_GITHUB, PREFIX_JIRA, PREFIX_TRELLO_KEY and
    PREFIX_TRELLO_TOKEN, where source_tables reads them."""
    for name, value in {
        "GITHUB": GITHUB_TOKEN,
        "JIRA": JIRA_TOKEN,
        "TRELLO_KEY": DEFAULT_KEY,
        "TRELLO_TOKEN": TRELLO_TOKEN,
    }.items():
        monkeypatch.setenv(f"{prefix}_{name}", value)


def config_doc(world: ToolWorld) -> dict[str, Any]:
    return {
        "ledger": str(world.path / "ledger.db"),
        "daemon": {"jitter": "0s"},
        "sources": source_tables("WORLD", world.github, world.jira, world.trello, [world.board]),
        "people": [
            {
                "id": p,
                "handles": {
                    "github": world.login(p),
                    "jira": world.accounts[p],
                    "trello": world.username(p),
                },
            }
            for p in PEOPLE
        ],
    }


@pytest.fixture
def tool_world(
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[ToolWorld]:
    world = ToolWorld(github_emulator, jira_emulator, trello_emulator, tmp_path)
    github_emulator.add_repo(REPO, collaborators=[world.login(p) for p in PEOPLE])
    jira_emulator.add_project("OPS")
    for p in PEOPLE:
        world.accounts[p] = jira_emulator.add_user(p.title())
    world.board = trello_emulator.add_board("Work", members=[world.username(p) for p in PEOPLE])
    for title in ("First", "Second"):
        github_emulator.create_issue(REPO, title, assignees=[world.login("alice")])
        jira_emulator.create_issue("OPS", title, assignee=world.accounts["alice"])
        world.cards.append(
            trello_emulator.create_card(
                world.board, "Doing", title, members=[world.username("alice")], by="alicetrello"
            )
        )
    set_tool_secrets(monkeypatch, "WORLD")
    config = parse_config(config_doc(world))
    ledger = Ledger(config.ledger)
    world.engine = Engine(config, ledger)
    try:
        yield world
    finally:
        world.engine.close()
        ledger.close()
