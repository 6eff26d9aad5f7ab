"""The handoff record across GitHub, Jira and Trello, against the emulators and a real ledger:
who made each handoff and when, handoff notes posted as comments where each team works
(once, even after a lost answer), and /assign commands read from comments."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syncd.cli import cli
from syncd.config import parse_config
from syncd.cycle import Engine
from syncd.ledger import Ledger
from syncd.outbox import drain_comments
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import JiraEmulator
from syncd.sandbox.server import Fault
from syncd.sandbox.trello import TrelloEmulator
from tests.toolworld import set_tool_secrets, source_tables

REPO = "acme/web"
NOTE = "covering while Alice is out"


@dataclass
class World:
    engine: Engine
    ledger: Ledger
    github: GitHubEmulator
    jira: JiraEmulator
    trello: TrelloEmulator
    issue: int
    key: str  # the Jira issue
    card: str
    acc: dict[str, str]  # person -> Jira accountId
    path: Path

    def sync(self, times: int = 2) -> None:
        for _ in range(times):
            results = self.engine.sync_once()
            assert all(r.ok for r in results), [r.error for r in results]

    def request(self) -> str:
        (row,) = self.ledger.rows(
            "SELECT r.key FROM requests r JOIN links l ON l.request_id = r.id WHERE l.ref = ?",
            (self.key,),
        )
        return str(row["key"])

    def owner(self) -> str | None:
        (row,) = self.ledger.rows(
            "SELECT r.owner FROM requests r JOIN links l ON l.request_id = r.id WHERE l.ref = ?",
            (self.key,),
        )
        return row["owner"]  # type: ignore[no-any-return]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self.ledger.rows("SELECT * FROM events WHERE kind = ? ORDER BY id", (kind,))

    def comments(self) -> dict[str, list[str]]:
        """The text of every comment in each tool, GitHub's and Jira's with syncd's marker."""
        jira_texts = []
        for c in self.jira.comments(self.key):
            jira_texts.append(json.dumps(c["body"]))
        return {
            "github": [c["body"] for c in self.github.comments(REPO, self.issue)],
            "jira": jira_texts,
            "trello": self.trello.comments(self.card),
        }

    def notes(self) -> dict[str, int]:
        """How many handoff notes (comments carrying syncd's marker) each tool holds."""
        return {
            tool: sum("syncd:handoff:" in t for t in texts)
            for tool, texts in self.comments().items()
        }

    def adapter(self, name: str) -> Any:
        return self.engine.adapters[name]


def build(
    github: GitHubEmulator,
    jira: JiraEmulator,
    trello: TrelloEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    **options: dict[str, Any],
) -> World:
    github.add_repo(REPO, collaborators=["alice-m", "bob-s"])
    # The titles declare the Jira issue, which is what links items; the Jira issue also
    # names the other two, which is how ledgers that link by mention join them.
    issue = github.create_issue(
        REPO, "[OPS-1] Printer offline", assignees=["alice-m"], user="alice-m"
    )
    board = trello.add_board("Support", members=["alicemoreau", "bobstone", "mallory"])
    card = trello.create_card(board, "Doing", "[OPS-1] Printer offline", members=["alicemoreau"])
    acc = {"alice": jira.add_user("Alice Moreau"), "bob": jira.add_user("Bob Stone")}
    jira.add_project("OPS")
    key = jira.create_issue(
        "OPS",
        "Printer offline",
        f"See {REPO}#{issue} and {trello.short_url(card)}",
        assignee=acc["alice"],
    )
    set_tool_secrets(monkeypatch, "HR")
    sources = source_tables(
        "HR", github, jira, trello, [board], names=("web", "ops", "board"), repo=REPO
    )
    for table in sources:
        table.update(options.get(table["name"], {}))
    doc = {
        "ledger": str(tmp_path / "ledger.db"),
        "sources": sources,
        "people": [
            {
                "id": "alice",
                "name": "Alice Moreau",
                "handles": {"github": "alice-m", "jira": acc["alice"], "trello": "alicemoreau"},
            },
            {
                "id": "bob",
                "name": "Bob Stone",
                "handles": {"github": "bob-s", "jira": acc["bob"], "trello": "bobstone"},
            },
        ],
    }
    config = parse_config(doc)
    ledger = Ledger(config.ledger)
    engine = Engine(config, ledger)
    world = World(engine, ledger, github, jira, trello, issue, key, card, acc, config.ledger)
    world.sync()
    assert world.owner() == "alice"
    (links,) = ledger.rows("SELECT count(*) AS n FROM links")
    assert links["n"] == 3
    (requests,) = ledger.rows("SELECT count(*) AS n FROM requests")
    assert requests["n"] == 1, "the three items must be one request"
    return world


@pytest.fixture
def make_world(
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(**options: dict[str, Any]) -> World:
        world = build(
            github_emulator, jira_emulator, trello_emulator, tmp_path, monkeypatch, **options
        )
        made.append(world)
        return world

    yield make
    for world in made:
        world.engine.close()
        world.ledger.close()


ALL_COMMANDS = {"web": {"commands": True}, "ops": {"commands": True}, "board": {"commands": True}}


# -- who made each handoff ---------------------------------------------------------------


def history_json(world: World, *args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--ledger", str(world.path), "history", "--json", *args])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_history_names_who_made_a_handoff_in_each_tool(make_world: Callable[..., World]) -> None:
    world = make_world()
    world.github.set_assignees(REPO, world.issue, ["bob-s"], by="alice-m")
    world.sync()
    world.jira.set_assignee(world.key, world.acc["alice"], by=world.acc["bob"])
    world.sync()
    world.trello.set_members(world.card, ["bobstone"], by="alicemoreau")
    world.sync()
    made = [
        (h["where"]["source"], h["from"], h["to"], h["who"])
        for h in history_json(world)
        if h["where"]["source"] in ("web", "ops", "board") and h["from"] is not None
    ]
    assert made == [
        ("web", "alice", "bob", "alice"),
        ("ops", "bob", "alice", "bob"),
        ("board", "alice", "bob", "alice"),
    ]


def test_an_unrelated_edit_after_an_owner_change_does_not_make_it_win(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    clock = {"now": start}
    world.github.clock = world.jira.clock = lambda: clock["now"]
    # In GitHub, Alice hands the issue to Bob; a minute later, in Jira, Bob takes it off
    # Alice's plate there (unassigns it); a minute after that someone only retitles the
    # GitHub issue, which moves its updated_at.
    world.github.set_assignees(REPO, world.issue, ["bob-s"], by="alice-m")
    clock["now"] = start + timedelta(minutes=1)
    world.jira.set_assignee(world.key, None, by=world.acc["bob"])
    clock["now"] = start + timedelta(minutes=2)
    world.github.edit_issue(REPO, world.issue, title="[OPS-1] Printer offline (2nd floor)")
    world.sync()
    # Jira's change is the later owner change: it wins, though GitHub's issue changed last.
    assert world.owner() is None
    (conflict,) = world.events("conflict")
    assert (conflict["from_value"], conflict["to_value"]) == ("bob", None)
    assert world.github.issue(REPO, world.issue)["assignees"] == []


# -- handoff notes as comments -----------------------------------------------------------


def test_a_handoff_note_is_one_comment_in_each_tool_and_never_comes_back(
    make_world: Callable[..., World],
) -> None:
    world = make_world(**ALL_COMMANDS)
    world.ledger.assign(world.request(), "bob", actor="morgan", note=NOTE)
    world.sync()
    assert world.notes() == {"github": 1, "jira": 1, "trello": 1}
    for tool, texts in world.comments().items():
        assert any(NOTE in t and "Bob Stone" in t for t in texts), (tool, texts)
    (github_note,) = world.comments()["github"]
    assert github_note.startswith(
        f"{world.request()} ([OPS-1] Printer offline) is now owned by Bob Stone, handed over "
        "from Alice Moreau in the syncd CLI at "
    )
    assert "<!-- syncd:handoff:" in github_note  # hidden from people, there for retries
    handoffs = len(world.events("owner_changed"))
    rows = world.ledger.counts()["outbox"]
    world.sync(3)
    # syncd's own comments are no change and no command, and are not posted again.
    assert world.notes() == {"github": 1, "jira": 1, "trello": 1}
    assert len(world.events("owner_changed")) == handoffs
    assert world.events("command_refused") == []
    assert world.ledger.counts()["outbox"] == rows
    posted = world.events("comment_posted")
    assert sorted(e["source"] for e in posted) == ["board", "ops", "web"]


def test_a_handoff_without_a_note_gets_no_comment_unless_always(
    make_world: Callable[..., World],
) -> None:
    world = make_world(web={"handoff_comment": "always"})
    world.ledger.assign(world.request(), "bob", actor="morgan", note=None)
    world.sync()
    assert world.notes() == {"github": 1, "jira": 0, "trello": 0}


def test_never_posts_no_comment(make_world: Callable[..., World]) -> None:
    never = {"handoff_comment": "never"}
    world = make_world(web=never, ops=never, board=never)
    world.ledger.assign(world.request(), "bob", actor="morgan", note=NOTE)
    world.sync()
    assert world.notes() == {"github": 0, "jira": 0, "trello": 0}
    assert world.github.issue(REPO, world.issue)["assignees"][0]["login"] == "bob-s"


def test_the_handoff_where_it_was_made_gets_no_comment_and_links_follow_the_audience(
    make_world: Callable[..., World],
) -> None:
    world = make_world(ops={"comment_links": ["web"]})
    world.github.add_comment(REPO, world.issue, "/assign @bob-s " + NOTE, user="alice-m")
    world.sync()
    # GitHub commands are off here: nothing happened.
    assert world.owner() == "alice"
    world.github.set_assignees(REPO, world.issue, ["bob-s"], by="alice-m")
    world.sync()
    assert world.owner() == "bob"
    assert world.notes() == {"github": 0, "jira": 0, "trello": 0}  # no note: with_note posts none
    world.ledger.assign(world.request(), "alice", actor="morgan", note=NOTE)
    world.sync()
    texts = world.comments()
    (jira_note,) = [t for t in texts["jira"] if "syncd:handoff:" in t]
    (trello_note,) = [t for t in texts["trello"] if "syncd:handoff:" in t]
    # Jira may show GitHub's item (comment_links = ["web"]); Trello may show none.
    assert f"{REPO}#{world.issue}" in jira_note
    assert "/issues/" in jira_note
    assert "/issues/" not in trello_note
    assert "/browse/" not in trello_note
    assert "Also tracked in" not in trello_note


@pytest.mark.parametrize(
    ("tool", "source", "path"),
    [
        ("github", "web", r"/issues/\d+/comments$"),
        ("jira", "ops", r"/comment$"),
        ("trello", "board", r"/actions/comments$"),
    ],
)
def test_a_lost_answer_and_a_retry_post_one_comment(
    make_world: Callable[..., World], tool: str, source: str, path: str
) -> None:
    world = make_world()
    emulator = {"github": world.github, "jira": world.jira, "trello": world.trello}[tool]
    emulator.faults.add(Fault(lose_answer=True, method="POST", path=path))
    world.ledger.assign(world.request(), "bob", actor="morgan", note=NOTE)
    world.sync()
    assert world.notes()[tool] == 1  # posted, but syncd never heard back
    (row,) = world.ledger.rows(
        "SELECT o.status, o.attempts FROM outbox o JOIN links l ON l.id = o.link_id "
        "WHERE o.field = 'comment' AND l.source = ?",
        (source,),
    )
    assert (row["status"], row["attempts"]) == ("pending", 1)
    later = datetime.now(UTC) + timedelta(hours=2)
    adapter = world.adapter(source)
    stats = drain_comments(world.ledger, adapter, world.engine.directory, now=later)
    assert (stats.written, stats.already) == (0, 1)
    assert world.notes()[tool] == 1
    (row,) = world.ledger.rows(
        "SELECT o.status, o.posted_id FROM outbox o JOIN links l ON l.id = o.link_id "
        "WHERE o.field = 'comment' AND l.source = ?",
        (source,),
    )
    assert row["status"] == "done"
    assert row["posted_id"]


# -- commands in comments ------------------------------------------------------------------


def _comment(world: World, tool: str, text: str, who: str) -> None:
    if tool == "github":
        login = {"alice": "alice-m", "bob": "bob-s"}.get(who, who)
        world.github.add_comment(REPO, world.issue, text, user=login)
    elif tool == "jira":
        world.jira.add_comment(world.key, text, by=world.acc.get(who) or world.jira.add_user(who))
    else:
        world.trello.comment(world.card, text, by={"alice": "alicemoreau"}.get(who, who))


TARGET = {"github": "@bob-s", "jira": "bob", "trello": "@bobstone"}


@pytest.mark.parametrize("tool", ["github", "jira", "trello"])
def test_a_mapped_member_hands_off_with_assign_in_a_comment(
    make_world: Callable[..., World], tool: str
) -> None:
    world = make_world(**ALL_COMMANDS)
    source = {"github": "web", "jira": "ops", "trello": "board"}[tool]
    _comment(world, tool, f"Thanks!\n/assign {TARGET[tool]} {NOTE}", "alice")
    world.sync(3)
    assert world.owner() == "bob"
    handoff = world.events("owner_changed")[-1]
    assert (handoff["source"], handoff["actor"], handoff["to_value"], handoff["note"]) == (
        source,
        "alice",
        "bob",
        NOTE,
    )
    assert world.github.issue(REPO, world.issue)["assignees"][0]["login"] == "bob-s"
    assert world.jira.assignee(world.key) == world.acc["bob"]
    assert world.trello.members_of(world.card) == ["bobstone"]
    # The other tools get the note; the tool where it was written already shows it.
    notes = world.notes()
    assert notes[tool] == 0
    assert sum(notes.values()) == 2


@pytest.mark.parametrize("tool", ["github", "jira", "trello"])
@pytest.mark.parametrize(
    ("text", "who", "reason"),
    [
        ("/assign {target} let me", "mallory", "not a person in syncd's config"),
        ("> /assign {target} as Alice said", "alice", "quote"),
        ("```\n/assign {target}\n```", "alice", "code"),
        ("/assign @nobody-known please", "alice", "is not a person"),
    ],
)
def test_an_outsider_a_quote_or_code_hand_nothing_off_and_say_why(
    make_world: Callable[..., World], tool: str, text: str, who: str, reason: str
) -> None:
    world = make_world(**ALL_COMMANDS)
    if tool == "github" and who == "mallory":
        world.github.add_user("mallory")
    _comment(world, tool, text.format(target=TARGET[tool]), who)
    world.sync(3)
    assert world.owner() == "alice"
    (refused,) = world.events("command_refused")
    assert reason in refused["detail"]
    shown = CliRunner().invoke(cli, ["--ledger", str(world.path), "history", "--all"])
    assert reason in shown.stdout


# -- activity for acceptance ---------------------------------------------------------------


def test_each_tool_reports_who_commented_and_who_moved_the_item(
    make_world: Callable[..., World],
) -> None:
    world = make_world(web={"read_comments": True}, board={"read_comments": True})
    world.github.add_comment(REPO, world.issue, "Looking into it", user="bob-s")
    world.jira.add_comment(world.key, "On it", by=world.acc["bob"])
    world.jira.transition(world.key, "In Progress", by=world.acc["bob"])
    world.trello.comment(world.card, "Mine now", by="bobstone")
    world.trello.move_card(world.card, "Done", by="bobstone")

    def seen(source: str) -> set[tuple[str, str, str | None, bool]]:
        adapter = world.adapter(source)
        pages = list(adapter.pull(world.ledger.cursor(source)))
        return {
            (a.kind, a.actor, a.text, a.trusted)
            for p in pages
            for o in p.observations
            for a in o.activity
        }

    assert seen("web") == {("comment", "bob-s", "Looking into it", True)}
    assert seen("ops") == {
        ("comment", world.acc["bob"], "On it", True),
        ("state", world.acc["bob"], None, False),
    }
    assert seen("board") == {
        ("comment", "bobstone", "Mine now", True),
        ("state", "bobstone", None, False),
    }


def test_a_jira_note_can_be_internal_and_is_a_document(make_world: Callable[..., World]) -> None:
    world = make_world(ops={"comment_visibility": {"type": "role", "value": "Developers"}})
    world.ledger.assign(world.request(), "bob", actor="morgan", note=NOTE)
    world.sync()
    (comment,) = world.jira.comments(world.key)
    assert comment["visibility"] == {"type": "role", "value": "Developers"}
    body = comment["body"]
    assert body["type"] == "doc"
    assert [p["type"] for p in body["content"]] == ["paragraph", "paragraph", "paragraph"]
    assert body["content"][1]["content"][0]["text"] == f"Note: {NOTE}"
