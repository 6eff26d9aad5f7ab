"""The operator CLI, run through click against real ledger files.

Each ledger is built the way the daemon builds one: observations applied through
Ledger.apply_page, handoffs through Ledger.assign, polls through Ledger.record_poll.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from syncd.cli import SyncdGroup, cli
from syncd.config import Person
from syncd.ledger import Ledger, iso, now_utc
from syncd.models import Observation, Page, Quarantined, State
from syncd.people import Directory
from syncd.sandbox.github import DEFAULT_TOKEN, GitHubEmulator
from tests.syncdproc import SYNCD, syncd

PEOPLE = [
    Person(id="alice", name="Alice Moreau", handles={"github": "alice-m", "jira": "acc-alice"}),
    Person(id="bob", name="Bob Okafor", handles={"github": "bob-ok", "jira": "acc-bob"}),
    Person(id="carol", handles={"jira": "acc-carol"}),
]
DIRECTORY = Directory.build(PEOPLE)
SOURCE_KIND = {"ops": "jira", "api": "github", "web": "github"}


def observe(
    source: str,
    ref: str,
    title: str,
    owners: tuple[str, ...],
    at: datetime,
    state: State = "open",
    mentions: tuple[str, ...] = (),
    declared: tuple[str, ...] = (),
) -> Observation:
    kind = SOURCE_KIND[source]
    return Observation(
        source=source,
        ref=ref,
        url=f"https://{kind}.example/{ref}",
        title=title,
        state=state,
        owners=owners,
        updated_at=at,
        keys=(f"{kind}:{ref}",),
        mentions=mentions,
        declared=declared,
    )


def apply(ledger: Ledger, obs: Observation, recorded: datetime) -> None:
    ledger.apply_page(obs.source, SOURCE_KIND[obs.source], Page([obs]), DIRECTORY, now=recorded)


@dataclass
class Story:
    """A ledger with a known history, and the time it was built around."""

    path: Path
    now: datetime


@pytest.fixture
def story(tmp_path: Path) -> Story:
    """REQ-1  Jira OPS-7 + GitHub acme/api#12, alice -> bob by an operator 2 days ago, then
              a GitHub change from before the handoff that lost (a conflict); the write
              to Jira is dead-lettered, the one to GitHub still pending.
    REQ-2  acme/api#13, owned by the unmapped github:zed, last change 5 days ago.
    REQ-3  acme/web#1, blocked and unowned, last change 5 days ago; plus a quarantined item.
    REQ-4  acme/api#14, done, owned by bob, last change 20 days ago.
    Polls: ops failing, api and web fine."""
    now = now_utc()
    d = timedelta(days=1)
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.sync_people(PEOPLE)
        apply(
            ledger,
            observe("ops", "OPS-7", "Checkout fails", ("acc-alice",), now - 10 * d, "in_progress"),
            now - 10 * d,
        )
        apply(
            ledger,
            observe(
                "api",
                "acme/api#12",
                "Checkout spinner never stops",
                ("alice-m",),
                now - 10 * d,
                declared=("jira:OPS-7",),
            ),
            now - 10 * d + timedelta(minutes=1),
        )
        apply(
            ledger,
            observe("api", "acme/api#13", "Dark mode unreadable", ("zed",), now - 5 * d),
            now - 5 * d,
        )
        apply(
            ledger,
            observe("web", "acme/web#1", "Typo on pricing page", (), now - 5 * d, "blocked"),
            now - 5 * d,
        )
        apply(
            ledger,
            observe("api", "acme/api#14", "Old export bug", ("bob-ok",), now - 20 * d, "done"),
            now - 20 * d,
        )
        ledger.assign(
            "REQ-1", "bob", actor="opsuser", note="covering while Alice is out", now=now - 2 * d
        )
        # Changed in GitHub before the handoff, seen after it: the handoff wins, a conflict.
        apply(
            ledger,
            observe(
                "api",
                "acme/api#12",
                "Checkout spinner never stops",
                ("dave-gh",),
                now - 3 * d,
                declared=("jira:OPS-7",),
            ),
            now - timedelta(hours=1),
        )
        jira_write = ledger.rows(
            "SELECT o.id FROM outbox o JOIN links l ON l.id = o.link_id "
            "WHERE l.source = 'ops' AND o.status = 'pending'"
        )[0]["id"]
        ledger.finish_write(
            jira_write, "dead", error="ops: HTTP 400: acc-bob cannot be assigned", now=now
        )
        ledger.apply_page(
            "web",
            "github",
            Page(quarantined=[Quarantined("web", "acme/web#9", "body is not valid UTF-8")]),
            DIRECTORY,
            now=now,
        )
        ledger.record_poll(
            "ops",
            "jira",
            ok=False,
            error="ops: HTTP 503 Service Unavailable",
            retry_at=now + timedelta(minutes=5),
            now=now - timedelta(minutes=1),
        )
        ledger.record_poll(
            "api",
            "github",
            ok=True,
            requests=2,
            rate=(4990, 5000, now + timedelta(minutes=40)),
            now=now - timedelta(minutes=1),
        )
        ledger.record_poll("web", "github", ok=True, requests=1, now=now - timedelta(hours=2))
    return Story(path, now)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    # The developer's own settings must not leak into what is tested.
    for var in ("SYNCD_CONFIG", "SUDO_USER", "STATE_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    return CliRunner()


def run(runner: CliRunner, *args: str | Path, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def read_json(runner: CliRunner, story: Story, *args: str) -> Any:
    result = run(runner, "--ledger", story.path, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def keys_of(rows: list[dict[str, Any]]) -> list[str]:
    return [r["key"] for r in rows]


def error_lines(result: Result) -> list[str]:
    return result.stderr.strip().splitlines()


# -- ls ------------------------------------------------------------------------------------


def test_ls_lists_every_request_in_id_order(runner: CliRunner, story: Story) -> None:
    result = run(runner, "--ledger", story.path, "ls", "--all")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["REQUEST", "STATE", "OWNER"]
    assert [line.split()[0] for line in lines[1:]] == ["REQ-1", "REQ-2", "REQ-3", "REQ-4"]
    assert "github:zed" in lines[2]
    assert "(unowned)" in lines[3]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--owner", "bob"], ["REQ-1"]),
        (["--owner", "bob", "--all"], ["REQ-1", "REQ-4"]),
        (["--owner", "github:zed"], ["REQ-2"]),
        (["--owner", "bob", "--state", "done"], ["REQ-4"]),
        (["--state", "blocked"], ["REQ-3"]),
        (["--state", "blocked", "--state", "in_progress"], ["REQ-1", "REQ-3"]),
        (["--source", "ops"], ["REQ-1"]),
        (["--source", "api"], ["REQ-1", "REQ-2"]),
        (["--source", "api", "--all"], ["REQ-1", "REQ-2", "REQ-4"]),
        (["--unowned"], ["REQ-3"]),
        (["--stale", "3d"], ["REQ-2", "REQ-3"]),
        (["--stale", "3d", "--all"], ["REQ-2", "REQ-3", "REQ-4"]),
        (["--stale", "1d"], ["REQ-1", "REQ-2", "REQ-3"]),
        (["--stale", "7d"], []),
        (["--stale", "7d", "--all"], ["REQ-4"]),
        (["--stale", "3d", "--source", "api", "--all"], ["REQ-2", "REQ-4"]),
        (["--owner", "carol"], []),
    ],
)
def test_ls_filters(runner: CliRunner, story: Story, args: list[str], expected: list[str]) -> None:
    assert keys_of(read_json(runner, story, "ls", *args)) == expected


def test_ls_text_says_when_nothing_matches(runner: CliRunner, story: Story) -> None:
    result = run(runner, "--ledger", story.path, "ls", "--owner", "carol")
    assert result.exit_code == 0
    assert result.stdout.strip() == "no matching requests (open work; --all for every state)"


def test_ls_json_shape(runner: CliRunner, story: Story) -> None:
    rows = read_json(runner, story, "ls")
    assert set(rows[0]) == {
        "key",
        "id",
        "title",
        "state",
        "owner",
        "owner_name",
        "sources",
        "created_at",
        "updated_at",
        "last_activity_at",
    }
    req1 = rows[0]
    assert req1["key"] == "REQ-1"
    assert req1["id"] == 1
    assert req1["owner"] == "bob"
    assert req1["owner_name"] == "Bob Okafor"
    assert req1["state"] == "in_progress"
    assert req1["sources"] == ["api", "ops"]
    # The handoff two days ago is the latest activity; ISO 8601 UTC.
    assert req1["last_activity_at"] == iso(story.now - timedelta(days=2))
    assert req1["last_activity_at"].endswith("Z")


def test_ls_rejects_contradictory_and_malformed_filters(runner: CliRunner, story: Story) -> None:
    both = run(runner, "--ledger", story.path, "ls", "--owner", "bob", "--unowned")
    assert both.exit_code == 2
    assert "exclude each other" in both.stderr
    bad_state = run(runner, "--ledger", story.path, "ls", "--state", "closed")
    assert bad_state.exit_code == 2
    bad_duration = run(runner, "--ledger", story.path, "ls", "--stale", "soon")
    assert bad_duration.exit_code == 2
    assert "is not a duration" in bad_duration.stderr


# -- show ----------------------------------------------------------------------------------


def test_show_lists_links_with_owed_writes_and_the_timeline(
    runner: CliRunner, story: Story
) -> None:
    result = run(runner, "--ledger", story.path, "show", "req-1")
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("REQ-1  Checkout fails")
    assert "owner    bob (Bob Okafor)" in out
    links = out[out.index("Linked items:") : out.index("Timeline:")]
    assert "OPS-7" in links
    assert "https://jira.example/OPS-7" in links
    assert "dead: bob (ops: HTTP 400: acc-bob cannot be assigned)" in links
    assert "acme/api#12" in links
    assert "pending: bob" in links
    timeline = out[out.index("Timeline:") :].splitlines()[1:]
    kinds = [line.split()[2] for line in timeline]
    assert kinds == [
        "created",
        "owner_changed",
        "linked",
        "owner_changed",
        "conflict",
        "writeback",
    ]
    assert (
        'owner: alice -> bob via operator by opsuser: "covering while Alice is out"'
        in (timeline[3])
    )
    assert "conflict on owner: kept bob, lost github:dave-gh via api" in timeline[4]
    assert "the ledger's later change wins" in timeline[4]
    assert "dead: ops: HTTP 400" in timeline[5]


def test_show_json_shape(runner: CliRunner, story: Story) -> None:
    r = read_json(runner, story, "show", "REQ-1")
    assert set(r) == {
        "key",
        "id",
        "title",
        "state",
        "owner",
        "owner_name",
        "owner_at",
        "state_at",
        "created_at",
        "updated_at",
        "links",
        "relations",
        "events",
    }
    assert (r["key"], r["owner"], r["state"]) == ("REQ-1", "bob", "in_progress")
    ops, api = r["links"]
    assert set(ops) == {
        "source",
        "kind",
        "ref",
        "url",
        "snapshot_owner",
        "snapshot_state",
        "source_updated_at",
        "first_seen_at",
        "last_seen_at",
        "via",
        "declares",
        "held",
        "writeback",
    }
    assert (ops["source"], ops["kind"], ops["ref"], ops["snapshot_owner"]) == (
        "ops",
        "jira",
        "OPS-7",
        "alice",
    )
    assert ops["writeback"] == {
        "status": "dead",
        "value": "bob",
        "attempts": 0,
        "next_attempt_at": iso(story.now - timedelta(days=2)),
        "reason": "ops: HTTP 400: acc-bob cannot be assigned",
        "origin": "operator",
        "actor": "opsuser",
        "updated_at": iso(story.now),
    }
    assert api["snapshot_owner"] == "github:dave-gh"
    assert api["writeback"]["status"] == "pending"
    assert api["writeback"]["value"] == "bob"
    handoff = r["events"][3]
    assert set(handoff) == {
        "id",
        "at",
        "source_at",
        "kind",
        "field",
        "source",
        "actor",
        "from_value",
        "to_value",
        "note",
        "detail",
    }
    assert (handoff["kind"], handoff["source"], handoff["actor"]) == (
        "owner_changed",
        "operator",
        "opsuser",
    )
    assert (handoff["from_value"], handoff["to_value"]) == ("alice", "bob")
    assert handoff["note"] == "covering while Alice is out"


def test_show_item_in_step_has_no_writeback(runner: CliRunner, story: Story) -> None:
    r = read_json(runner, story, "show", "REQ-4")
    assert [link["writeback"] for link in r["links"]] == [None]
    assert "in step" in run(runner, "--ledger", story.path, "show", "4").stdout


def test_show_unknown_request_is_one_error_line(runner: CliRunner, story: Story) -> None:
    result = run(runner, "--ledger", story.path, "show", "REQ-99")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert error_lines(result) == ["syncd: error: no request REQ-99 (see `syncd ls`)"]


def test_show_of_something_that_names_no_item_is_one_error_line(
    runner: CliRunner, story: Story
) -> None:
    result = run(runner, "--ledger", story.path, "show", "nonsense")
    assert result.exit_code == 1
    assert error_lines(result) == [
        "syncd: error: 'nonsense': not a request id or a linked item in the ledger (give "
        "REQ-42, a tool ref such as OPS-7 or acme/api#1, or an item's URL; see `syncd ls`)"
    ]


# -- assign ----------------------------------------------------------------------------------


def outbox(path: Path, key: str) -> list[tuple[str, str | None, str, str | None]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT l.source, o.value, o.status, o.actor FROM outbox o "
            "JOIN links l ON l.id = o.link_id JOIN requests r ON r.id = o.request_id "
            "WHERE r.key = ? AND o.field = 'owner' AND o.status = 'pending' ORDER BY l.source",
            (key,),
        ).fetchall()


def events(path: Path, key: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT e.kind, e.source, e.actor, e.from_value, e.to_value, e.note FROM events e "
            "JOIN requests r ON r.id = e.request_id WHERE r.key = ? ORDER BY e.id",
            (key,),
        ).fetchall()


def test_assign_records_the_handoff_and_queues_write_backs(runner: CliRunner, story: Story) -> None:
    result = run(
        runner,
        "--ledger",
        story.path,
        "assign",
        "REQ-2",
        "alice",
        "--note",
        "Alice knows the CSS",
        env={"USER": "morgan"},
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("REQ-2: github:zed -> alice (Alice Moreau) (by morgan)")
    assert "api (github)  acme/api#13  set owner to alice-m" in result.stdout
    assert events(story.path, "REQ-2")[-1] == (
        "owner_changed",
        "operator",
        "morgan",
        "github:zed",
        "alice",
        "Alice knows the CSS",
    )
    assert outbox(story.path, "REQ-2") == [("api", "alice", "pending", "morgan")]


def test_assign_prefers_the_sudo_user_as_actor(runner: CliRunner, story: Story) -> None:
    result = run(
        runner,
        "--ledger",
        story.path,
        "assign",
        "REQ-3",
        "bob",
        env={"SUDO_USER": "morgan", "USER": "root"},
    )
    assert result.exit_code == 0, result.output
    assert events(story.path, "REQ-3")[-1][2] == "morgan"


def test_assign_says_which_writes_will_be_skipped(runner: CliRunner, story: Story) -> None:
    result = run(runner, "--ledger", story.path, "assign", "REQ-1", "carol")
    assert result.exit_code == 0, result.output
    assert "ops (jira)    OPS-7        set owner to acc-carol" in result.stdout
    assert "will be skipped: carol has no github handle" in result.stdout
    assert [(s, v) for s, v, _, _ in outbox(story.path, "REQ-1")] == [
        ("api", "carol"),
        ("ops", "carol"),
    ]


def test_assign_to_an_unknown_person_fails_with_one_line(runner: CliRunner, story: Story) -> None:
    before = events(story.path, "REQ-2")
    result = run(runner, "--ledger", story.path, "assign", "REQ-2", "dave")
    assert result.exit_code == 1
    lines = error_lines(result)
    assert len(lines) == 1
    assert lines[0].startswith("syncd: error: no person 'dave' in the ledger")
    assert "Traceback" not in result.output
    assert events(story.path, "REQ-2") == before
    # An identity nobody has seen is just as unknown.
    typo = run(runner, "--ledger", story.path, "assign", "REQ-2", "github:zedd")
    assert typo.exit_code == 1
    assert events(story.path, "REQ-2") == before


def test_unassign(runner: CliRunner, story: Story) -> None:
    result = run(runner, "--ledger", story.path, "assign", "REQ-2", "--unassign")
    assert result.exit_code == 0, result.output
    assert "remove the owner" in result.stdout
    assert events(story.path, "REQ-2")[-1][3:5] == ("github:zed", None)
    assert outbox(story.path, "REQ-2")[0][1:3] == (None, "pending")


def test_assign_to_the_current_owner_changes_nothing(runner: CliRunner, story: Story) -> None:
    before = events(story.path, "REQ-1")
    result = run(runner, "--ledger", story.path, "assign", "REQ-1", "Bob")
    assert result.exit_code == 0
    assert result.stdout.strip() == "REQ-1 is already owned by bob; nothing to do"
    assert events(story.path, "REQ-1") == before


@pytest.mark.parametrize("args", [["REQ-2"], ["REQ-2", "bob", "--unassign"]])
def test_assign_needs_exactly_one_of_person_and_unassign(
    runner: CliRunner, story: Story, args: list[str]
) -> None:
    result = run(runner, "--ledger", story.path, "assign", *args)
    assert result.exit_code == 2


# -- history -------------------------------------------------------------------------------


def test_history_lists_handoffs_and_conflicts(runner: CliRunner, story: Story) -> None:
    rows = read_json(runner, story, "history", "--all")
    assert [(r["request"], r["kind"], r["from_value"], r["to_value"]) for r in rows] == [
        ("REQ-4", "created", None, "Old export bug"),
        ("REQ-4", "owner_changed", None, "bob"),
        ("REQ-1", "created", None, "Checkout fails"),
        ("REQ-1", "owner_changed", None, "alice"),
        ("REQ-1", "linked", None, "api:acme/api#12"),
        ("REQ-2", "created", None, "Dark mode unreadable"),
        ("REQ-2", "owner_changed", None, "github:zed"),
        ("REQ-3", "created", None, "Typo on pricing page"),
        ("REQ-1", "conflict", "github:dave-gh", "bob"),
        ("REQ-1", "owner_changed", "alice", "bob"),
        ("REQ-1", "writeback", None, "bob"),  # the handoff written back to a linked item
    ]
    assert {
        "id",
        "when",
        "at",
        "source_at",
        "request",
        "kind",
        "field",
        "from_value",
        "to_value",
        "source",
        "actor",
        "note",
        "detail",
        "from",
        "to",
        "who",
        "where",
        "why",
    } <= set(rows[0])
    handoff = rows[-2]
    assert (handoff["source"], handoff["who"], handoff["why"]) == (
        "operator",
        "opsuser",
        "covering while Alice is out",
    )
    assert (handoff["from"], handoff["to"], handoff["to_name"]) == ("alice", "bob", "Bob Okafor")
    writeback = rows[-1]
    assert writeback["where"]["item"] is not None
    assert writeback["why"].startswith("dead: ")
    assert writeback["where"]["item"] not in writeback["why"]  # WHERE names it already
    # A conflict is placed at the source-side time of the change that lost.
    assert rows[-3]["when"] == iso(story.now - timedelta(days=3))
    # By default, handoffs only.
    assert [r["kind"] for r in read_json(runner, story, "history")] == ["owner_changed"] * 4


def test_history_since_and_for_one_request(runner: CliRunner, story: Story) -> None:
    recent = read_json(runner, story, "history", "--since", "4d", "--all")
    assert [(r["request"], r["kind"]) for r in recent] == [
        ("REQ-1", "conflict"),
        ("REQ-1", "owner_changed"),
        ("REQ-1", "writeback"),
    ]
    assert [r["kind"] for r in read_json(runner, story, "history", "--since", "1d", "--all")] == [
        "writeback"
    ]
    one = read_json(runner, story, "history", "REQ-2")
    assert [r["request"] for r in one] == ["REQ-2"]


def test_history_text(runner: CliRunner, story: Story) -> None:
    result = run(runner, "--ledger", story.path, "history", "REQ-1", "--since", "7d", "--all")
    assert result.exit_code == 0
    header, conflict, handoff, writeback = result.stdout.splitlines()
    assert header.split() == ["WHEN", "REQUEST", "KIND", "HANDOFF", "WHO", "WHERE", "WHY"]
    assert "the ledger's later change wins" in conflict
    assert handoff.split()[3:] == [
        "owner",
        "changed",
        "Alice",
        "Moreau",
        "->",
        "Bob",
        "Okafor",
        "opsuser",
        "operator",
        "covering",
        "while",
        "Alice",
        "is",
        "out",
    ]
    assert "dead:" in writeback
    assert writeback.count("OPS-7") == 1  # each row says a thing once


# -- status --------------------------------------------------------------------------------


def test_status_shows_the_failing_source_and_why(runner: CliRunner, story: Story) -> None:
    st = read_json(runner, story, "status")
    by = {s["source"]: s for s in st["sources"]}
    assert list(by) == ["api", "ops", "web"]
    ops = by["ops"]
    assert ops["health"] == "failing"
    assert ops["last_error"] == "ops: HTTP 503 Service Unavailable"
    assert ops["last_success_at"] is None
    assert ops["retry_at"] == iso(story.now + timedelta(minutes=5))
    assert (ops["outbox_pending"], ops["outbox_dead"], ops["outbox_skipped"]) == (0, 1, 0)
    api = by["api"]
    assert api["health"] == "ok"
    assert 55 <= api["lag_seconds"] <= 120
    assert (api["rate_remaining"], api["rate_limit"]) == (4990, 5000)
    assert api["rate_reset_at"] == iso(story.now + timedelta(minutes=40))
    assert api["outbox_pending"] == 1
    assert api["items_seen"] == 3  # three api items in the ledger; one was seen twice
    assert by["web"]["quarantined"] == 1
    assert set(api) == {
        "source",
        "kind",
        "health",
        "last_poll_at",
        "last_success_at",
        "lag_seconds",
        "last_error",
        "last_error_at",
        "retry_at",
        "items_seen",
        "last_requests",
        "outbox_pending",
        "outbox_dead",
        "outbox_skipped",
        "rate_remaining",
        "rate_limit",
        "rate_reset_at",
        "quarantined",
    }
    assert st["totals"] == {
        "requests": 4,
        "open": 3,
        "unowned_open": 1,
        "outbox_pending": 1,
        "outbox_dead": 1,
        "outbox_skipped": 0,
        "quarantined": 1,
    }


def test_status_text(runner: CliRunner, story: Story) -> None:
    result = run(runner, "--ledger", story.path, "status")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    ops = next(line for line in lines if line.startswith("ops (jira)"))
    assert ops.split()[2] == "failing"
    assert any(
        line.startswith("ops: last poll failed") and "HTTP 503 Service Unavailable" in line
        for line in lines
    )
    assert lines[-1].startswith("totals: 4 requests (3 open, 1 of them unowned)")
    # Counts of one are singular, as the command prints them for a user.
    last = syncd("--ledger", story.path, "status").stdout.splitlines()[-1]
    assert last.endswith("; 1 item quarantined"), last


def test_status_a_dead_write_stops_counting_once_a_newer_one_replaces_it(
    runner: CliRunner, story: Story
) -> None:
    run(runner, "--ledger", story.path, "assign", "REQ-1", "alice")
    st = read_json(runner, story, "status")
    assert st["totals"]["outbox_dead"] == 0


def write_config(path: Path, ledger: Path, *sources: tuple[str, str]) -> Path:
    text = f'ledger = "{ledger}"\n'
    for name, interval in sources:
        text += (
            f'[[sources]]\nname = "{name}"\ntype = "github"\nrepo = "acme/{name}"\n'
            f'interval = "{interval}"\ntoken = {{ env = "SYNCD_TEST_TOKEN" }}\n'
        )
    path.write_text(text)
    return path


def test_status_with_config_calls_an_overdue_source_stale(
    runner: CliRunner, story: Story, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "syncd.toml", story.path, ("api", "1m"), ("web", "1m"))
    # The token is not set: reading needs no secrets.
    result = run(runner, "--config", config, "status", "--json")
    assert result.exit_code == 0, result.output
    by = {s["source"]: s["health"] for s in json.loads(result.stdout)["sources"]}
    assert by == {"api": "ok", "ops": "failing", "web": "stale"}


# -- people --------------------------------------------------------------------------------


def test_people_lists_handles_and_unmapped_identities(runner: CliRunner, story: Story) -> None:
    data = read_json(runner, story, "people")
    assert data["people"] == [
        {
            "id": "alice",
            "name": "Alice Moreau",
            "handles": {"github": ["alice-m"], "jira": ["acc-alice"]},
            "owned_open": 0,
            "away": None,
        },
        {
            "id": "bob",
            "name": "Bob Okafor",
            "handles": {"github": ["bob-ok"], "jira": ["acc-bob"]},
            "owned_open": 1,
            "away": None,
        },
        {
            "id": "carol",
            "name": None,
            "handles": {"jira": ["acc-carol"]},
            "owned_open": 0,
            "away": None,
        },
    ]
    unmapped = {u["owner"]: u for u in data["unmapped"]}
    assert set(unmapped) == {"github:dave-gh", "github:zed"}
    assert unmapped["github:zed"]["owned_open"] == 1
    assert unmapped["github:zed"]["kind"] == "github"
    assert unmapped["github:zed"]["handle"] == "zed"
    assert unmapped["github:zed"]["first_seen_at"] == iso(story.now - timedelta(days=5))

    text = run(runner, "--ledger", story.path, "people").stdout
    assert "github: bob-ok; jira: acc-bob" in text
    unmapped_text = text[text.index("Unmapped identities") :]
    assert "github:dave-gh" in unmapped_text
    assert "github:zed" in unmapped_text


# -- finding the ledger ------------------------------------------------------------------------


def test_read_commands_take_the_ledger_from_config_without_secrets(
    runner: CliRunner, story: Story, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "syncd.toml", story.path, ("api", "1m"))
    result = run(runner, "ls", "--all", "--json", env={"SYNCD_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert keys_of(json.loads(result.stdout)) == ["REQ-1", "REQ-2", "REQ-3", "REQ-4"]


@pytest.mark.timeout(20)
def test_reads_do_not_wait_for_a_writer(runner: CliRunner, story: Story) -> None:
    # The daemon holds the write lock while it applies a page. A read-only connection reads
    # past it (WAL); a writable open would queue behind it for busy_timeout (30 s) instead.
    daemon = sqlite3.connect(story.path, isolation_level=None)
    try:
        daemon.execute("BEGIN IMMEDIATE")
        daemon.execute("UPDATE requests SET title = 'half-applied' WHERE id = 1")
        rows = read_json(runner, story, "ls")
        assert rows[0]["title"] == "Checkout fails"
        assert read_json(runner, story, "status")["totals"]["requests"] == 4
    finally:
        daemon.execute("ROLLBACK")
        daemon.close()


@pytest.mark.parametrize("command", ["ls", "show REQ-1", "history", "status", "people"])
def test_a_missing_ledger_is_one_error_line(
    runner: CliRunner, tmp_path: Path, command: str
) -> None:
    result = run(runner, "--ledger", tmp_path / "none.db", *command.split())
    assert result.exit_code == 1
    assert error_lines(result) == [
        f"syncd: error: no ledger at {tmp_path / 'none.db'} "
        "(has `syncd run` or `syncd sync` run yet?)"
    ]
    assert not (tmp_path / "none.db").exists()


def test_a_file_that_is_not_a_ledger_is_one_error_line(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 100)
    result = run(runner, "--ledger", path, "ls")
    assert result.exit_code == 1
    assert error_lines(result) == [
        f"syncd: error: {path} is not a syncd ledger: file is not a database"
    ]


def test_a_missing_config_names_the_ways_to_fix_it(runner: CliRunner, tmp_path: Path) -> None:
    result = run(runner, "--config", tmp_path / "nope.toml", "ls")
    assert result.exit_code == 1
    [line] = error_lines(result)
    assert "file not found" in line
    assert "--ledger" in line


# -- errors and help -------------------------------------------------------------------------


def failing_group() -> click.Group:
    @click.group(cls=SyncdGroup)
    @click.option("--debug", is_flag=True)
    def group(debug: bool) -> None:
        """A group whose command has a bug."""

    @group.command()
    def boom() -> None:
        """Fails the way a bug does."""
        raise ZeroDivisionError("division by zero")

    return group


def test_an_internal_error_is_one_line_and_exit_70() -> None:
    result = CliRunner().invoke(failing_group(), ["boom"])
    assert result.exit_code == 70
    assert error_lines(result) == [
        "syncd: error: internal error: ZeroDivisionError: division by zero "
        "(rerun with --debug for the traceback)"
    ]


def test_debug_shows_the_traceback() -> None:
    result = CliRunner().invoke(failing_group(), ["--debug", "boom"])
    assert result.exit_code == 70
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.strip().splitlines()[-1] == (
        "syncd: error: internal error: ZeroDivisionError: division by zero"
    )


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(("syncd", *path)), command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from walk(sub, (*path, name))


ALL_COMMANDS = dict(walk(cli))


def test_every_expected_command_exists() -> None:
    assert set(ALL_COMMANDS) >= {
        "syncd",
        "syncd ls",
        "syncd show",
        "syncd assign",
        "syncd history",
        "syncd status",
        "syncd people",
        "syncd sync",
        "syncd config",
        "syncd config check",
        "syncd run",
        "syncd demo",
    }


@pytest.mark.parametrize("name", sorted(ALL_COMMANDS))
def test_every_command_and_option_has_help(name: str) -> None:
    command = ALL_COMMANDS[name]
    assert command.help, f"{name} has no help text"
    assert len(command.help.strip()) > 20, f"{name}'s help says too little"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts[0]} has no help text"
    result = CliRunner().invoke(cli, [*name.split()[1:], "--help"])
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: syncd")


@pytest.mark.parametrize(
    "name", sorted(n for n, c in ALL_COMMANDS.items() if not isinstance(c, click.Group))
)
def test_every_command_help_has_examples(name: str) -> None:
    assert "Examples:" in (ALL_COMMANDS[name].help or ""), f"{name} has no examples"


@pytest.mark.parametrize(
    "name", ["syncd ls", "syncd show", "syncd history", "syncd status", "syncd people"]
)
def test_every_read_command_takes_json(name: str) -> None:
    opts = [o for p in ALL_COMMANDS[name].params for o in getattr(p, "opts", [])]
    assert "--json" in opts


def test_group_help_has_examples_for_the_operator() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for example in (
        "syncd ls --unowned",
        "syncd ls --owner alice --state in_progress",
        "syncd show REQ-42",
        'syncd assign REQ-42 bob --note "covering while Alice is out"',
    ):
        assert example in result.stdout


def test_version(runner: CliRunner) -> None:
    from syncd import __version__

    result = run(runner, "--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"syncd, version {__version__}"


# -- sync --once against the GitHub emulator -------------------------------------------------


def test_sync_once_polls_and_reports_each_source(
    runner: CliRunner,
    tmp_path: Path,
    github_emulator: GitHubEmulator,
    contract_trace_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    github_emulator.add_repo("acme/api", collaborators=["alice-m"])
    github_emulator.create_issue("acme/api", "Checkout fails", "", assignees=["alice-m"])
    monkeypatch.setenv("SYNCD_TEST_TOKEN", DEFAULT_TOKEN)
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'ledger = "ledger.db"\n'
        f'[[sources]]\nname = "api"\ntype = "github"\nrepo = "acme/api"\n'
        f'base_url = "{github_emulator.base_url}"\nwrite_spacing = 0\n'
        f'token = {{ env = "SYNCD_TEST_TOKEN" }}\n'
        f'[[sources]]\nname = "gone"\ntype = "github"\nrepo = "acme/gone"\n'
        f'base_url = "{github_emulator.base_url}"\nwrite_spacing = 0\n'
        f'token = {{ env = "SYNCD_TEST_TOKEN" }}\n'
        '[[people]]\nid = "alice"\nhandles = { github = "alice-m" }\n'
    )
    trace = contract_trace_dir / "cli-sync.jsonl"

    ok = run(runner, "--config", config, "sync", "--once", "--source", "api", "--trace-http", trace)
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("api: ok, ")
    assert "1 items (1 new" in ok.stdout
    assert trace.read_text().count("\n") >= 1
    assert DEFAULT_TOKEN not in trace.read_text()
    assert keys_of(read_json(runner, Story(tmp_path / "ledger.db", now_utc()), "ls")) == ["REQ-1"]

    both = run(runner, "--config", config, "sync", "--once")
    assert both.exit_code == 1
    assert "api: ok" in both.stdout
    assert "gone: FAILED" in both.stdout
    # stderr also carries the poll's log lines; the error is the one "syncd:" line.
    assert [line for line in error_lines(both) if line.startswith("syncd:")] == [
        "syncd: error: 1 of 2 sources failed: gone"
    ]
    assert DEFAULT_TOKEN not in both.output


def test_sync_refuses_an_unknown_source_and_a_missing_once(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_TEST_TOKEN", "a-token-for-nothing")
    config = write_config(tmp_path / "syncd.toml", tmp_path / "ledger.db", ("api", "1m"))
    unknown = run(runner, "--config", config, "sync", "--once", "--source", "nope")
    assert unknown.exit_code == 1
    assert error_lines(unknown) == ["syncd: error: no enabled source 'nope' (enabled: api)"]
    assert run(runner, "--config", config, "sync").exit_code == 2


# -- the installed console script --------------------------------------------------------------


def test_installed_script(story: Story) -> None:
    script = Path(sys.executable).parent / "syncd"
    help_run = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert help_run.returncode == 0
    assert "Examples:" in help_run.stdout
    ls_run = subprocess.run(
        [str(script), "ls", "--all", "--json", "--ledger", str(story.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ls_run.returncode == 0, ls_run.stderr
    assert keys_of(json.loads(ls_run.stdout)) == ["REQ-1", "REQ-2", "REQ-3", "REQ-4"]


@pytest.mark.parametrize("args", [["status"], ["ls", "--all"], ["history", "--all"]])
def test_a_reader_that_goes_away_ends_syncd_quietly(story: Story, args: list[str]) -> None:
    """`syncd status | head -1`: no "syncd: error: Broken pipe", the shell's SIGPIPE status."""
    command = [str(SYNCD), "--ledger", str(story.path), *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()  # before syncd writes anything: its first write fails
        err = proc.stderr.read()
        assert (proc.wait(timeout=60), err) == (141, b"")


def test_status_on_a_narrow_terminal_cuts_the_table_and_wraps_the_error(story: Story) -> None:
    """The error is what an admin needs to read: it wraps; only the table's rows are cut."""
    error = json.loads(syncd("--ledger", story.path, "status", "--json").stdout)["sources"]
    error = next(s["last_error"] for s in error if s["source"] == "ops")
    out = syncd("--ledger", story.path, "status", env={"COLUMNS": "40"}).stdout.splitlines()
    assert all(len(line) <= 40 for line in out), out
    assert next(line for line in out if line.startswith("ops (jira)")).endswith("…")
    at = next(i for i, line in enumerate(out) if line.startswith("ops: last poll failed"))
    more = itertools.takewhile(lambda line: line.startswith("  "), out[at + 1 :])
    wrapped = " ".join(" ".join([out[at], *more]).split())
    assert " ".join(error.split()) in wrapped, out


def test_assign_plans_a_mailbox_write_as_the_owner_keyword_it_sets(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    bob = Person(id="bob", handles={"email": "bob@example.com"})
    with Ledger(path) as ledger:
        ledger.sync_people([bob])
        obs = Observation(
            source="support",
            ref="thread-1@example.com",
            url="mid:thread-1@example.com",
            title="Invoice wrong",
            state="open",
            owners=(),
            updated_at=now_utc(),
            keys=("email:thread-1@example.com",),
        )
        ledger.apply_page("support", "email", Page([obs]), Directory.build([bob]))
    result = syncd("--ledger", path, "assign", "REQ-1", "bob")
    assert result.returncode == 0, result.stderr
    plan = next(line for line in result.stdout.splitlines() if "support (email)" in line)
    assert plan.endswith("tag the thread with bob's owner keyword"), plan
