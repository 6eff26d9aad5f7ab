"""`syncd link`, `unlink`, `split` and `relink --dry-run`, through click, on real ledger
files built the way the daemon builds them (Ledger.apply_page)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from syncd.cli import cli
from syncd.config import Person
from syncd.ledger import Ledger, now_utc
from syncd.models import Observation, Page
from syncd.people import Directory
from syncd.schema import MIGRATIONS
from tests.syncdproc import syncd

PEOPLE = [
    Person(id="alice", handles={"github": "alice-m", "jira": "acc-alice"}),
    Person(id="bob", handles={"github": "bob-ok", "jira": "acc-bob"}),
]
DIRECTORY = Directory.build(PEOPLE)
KIND = {"ops": "jira", "api": "github"}


def observe(
    source: str,
    ref: str,
    owners: tuple[str, ...],
    at: datetime,
    declared: tuple[str, ...] = (),
    mentions: tuple[str, ...] = (),
) -> Observation:
    kind = KIND[source]
    return Observation(
        source=source,
        ref=ref,
        url=f"https://{kind}.example/{ref}",
        title=f"Title of {ref}",
        state="open",
        owners=owners,
        updated_at=at,
        keys=(f"{kind}:{ref}",),
        declared=declared,
        mentions=mentions,
    )


class World:
    """A ledger file and a clock; `see` applies one observation as a poll would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t = now_utc() - timedelta(days=1)
        with Ledger(path) as ledger:
            ledger.sync_people(PEOPLE)

    def see(self, source: str, ref: str, owners: tuple[str, ...], **kw: Any) -> None:
        self.t += timedelta(minutes=1)
        obs = observe(source, ref, owners, self.t, **kw)
        with Ledger(self.path) as ledger:
            ledger.apply_page(source, KIND[source], Page([obs]), DIRECTORY, now=self.t)

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with Ledger(self.path, readonly=True) as ledger:
            return ledger.rows(sql, args)

    def request_of(self, ref: str) -> str:
        return str(
            self.rows(
                "SELECT r.key FROM links l JOIN requests r ON r.id = l.request_id WHERE l.ref = ?",
                ref,
            )[0]["key"]
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "ledger.db")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for var in ("SYNCD_CONFIG", "SUDO_USER", "STATE_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("USER", "opsuser")
    return CliRunner()


def run(runner: CliRunner, world: World, *args: str) -> Result:
    return runner.invoke(cli, ["--ledger", str(world.path), *args], catch_exceptions=False)


def ok(runner: CliRunner, world: World, *args: str) -> str:
    result = run(runner, world, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def pending(world: World) -> list[tuple[str, str | None]]:
    return [
        (r["ref"], r["value"])
        for r in world.rows(
            "SELECT l.ref, o.value FROM outbox o JOIN links l ON l.id = o.link_id "
            "WHERE o.status = 'pending' ORDER BY o.id"
        )
    ]


def two_requests(world: World) -> None:
    """REQ-1: OPS-7 (alice). REQ-2: acme/api#12 (bob), which only *mentions* OPS-7."""
    world.see("ops", "OPS-7", ("acc-alice",))
    world.see("api", "acme/api#12", ("bob-ok",), mentions=("jira:OPS-7",))
    assert world.request_of("acme/api#12") == "REQ-2"


def test_link_dry_run_changes_nothing_and_says_what_would(runner, world) -> None:
    two_requests(world)
    before = world.rows("SELECT count(*) AS n FROM events")
    out = json.loads(ok(runner, world, "link", "REQ-1", "acme/api#12", "--dry-run", "--json"))
    assert out["dry_run"] is True
    assert (out["action"], out["item"], out["request"], out["from"]) == (
        "merged",
        "api:acme/api#12",
        "REQ-1",
        "REQ-2",
    )
    assert out["writes"] == [{"source": "api", "ref": "acme/api#12", "value": "alice"}]
    assert world.request_of("acme/api#12") == "REQ-2"
    assert world.rows("SELECT count(*) AS n FROM events") == before
    assert pending(world) == []
    text = ok(runner, world, "link", "REQ-1", "acme/api#12", "--dry-run")
    assert "would merge into REQ-1" in text
    assert "Dry run: nothing was changed." in text


def test_link_merges_visibly_and_split_undoes_it(runner, world) -> None:
    two_requests(world)
    out = json.loads(
        ok(runner, world, "link", "REQ-1", "acme/api#12", "--note", "same outage", "--json")
    )
    assert (out["action"], out["actor"], out["note"]) == ("merged", "opsuser", "same outage")
    assert world.request_of("acme/api#12") == "REQ-1"
    # REQ-1's owner stands and is owed to the item that joined
    assert pending(world) == [("acme/api#12", "alice")]
    history = json.loads(ok(runner, world, "history", "--json"))
    merged = [h for h in history if h["kind"] == "merged"]
    assert [(h["request"], h["from_value"], h["actor"], h["note"]) for h in merged] == [
        ("REQ-1", "REQ-2", "opsuser", "same outage")
    ]
    assert "syncd split REQ-2" in merged[0]["detail"]
    show = ok(runner, world, "show", "REQ-1")
    assert "REQ-2 merged into REQ-1 via operator by opsuser" in show
    gone = run(runner, world, "show", "REQ-2")
    assert gone.exit_code == 1
    assert "merged into REQ-1" in gone.output

    out = json.loads(ok(runner, world, "split", "REQ-2", "--note", "not the same", "--json"))
    assert (out["request"], out["from"], out["items"]) == ("REQ-2", "REQ-1", ["api:acme/api#12"])
    assert world.request_of("acme/api#12") == "REQ-2"
    # nothing is written: the write owed for the merge is off, the owner is what the tool shows
    assert pending(world) == []
    assert world.rows("SELECT key, owner FROM requests ORDER BY id") == [
        {"key": "REQ-1", "owner": "alice"},
        {"key": "REQ-2", "owner": "bob"},
    ]
    # REQ-2's own timeline came back with it
    kinds = [e["kind"] for e in json.loads(ok(runner, world, "show", "REQ-2", "--json"))["events"]]
    assert kinds[:2] == ["created", "owner_changed"]
    assert kinds[-1] == "split"
    splits = [h for h in json.loads(ok(runner, world, "history", "--json")) if h["kind"] == "split"]
    assert {h["request"] for h in splits} == {"REQ-1", "REQ-2"}
    # a new request never takes a merged request's number
    world.see("ops", "OPS-8", ())
    assert world.request_of("OPS-8") == "REQ-3"


def test_a_new_request_does_not_reuse_a_merged_number(runner, world) -> None:
    two_requests(world)
    ok(runner, world, "link", "REQ-1", "REQ-2")
    world.see("ops", "OPS-8", ())
    assert world.request_of("OPS-8") == "REQ-3"
    assert run(runner, world, "show", "REQ-2").exit_code == 1


def test_unlink_makes_its_own_request_and_sticks_across_polls(runner, world) -> None:
    world.see("ops", "OPS-7", ("acc-alice",))
    world.see("ops", "OPS-9", ("acc-bob",))
    world.see("api", "acme/api#12", (), declared=("jira:OPS-7",))
    assert world.request_of("acme/api#12") == "REQ-1"
    assert pending(world) == [("acme/api#12", "alice")]  # the write of the link, not yet made

    dry = json.loads(ok(runner, world, "unlink", "acme/api#12", "--dry-run", "--json"))
    assert (dry["action"], dry["request"], dry["dry_run"]) == ("unlinked", "REQ-3", True)
    assert world.request_of("acme/api#12") == "REQ-1"

    text = ok(
        runner, world, "unlink", "https://github.com/acme/api/issues/12", "--note", "other bug"
    )
    assert "api:acme/api#12 left REQ-1 and is now REQ-3, unowned (by opsuser)" in text
    assert "Nothing is written to any tool." in text
    # the request it left is named as operators write it, never as the ledger's "req:1"
    assert "Declarations of jira:OPS-7, REQ-1 no longer link it." in text
    assert world.request_of("acme/api#12") == "REQ-3"
    assert pending(world) == []  # the owed write is off: nothing is written to anyone
    events = world.rows("SELECT request_id, kind, actor, note FROM events WHERE kind = 'unlinked'")
    assert events == [
        {"request_id": 1, "kind": "unlinked", "actor": "opsuser", "note": "other bug"},
        {"request_id": 3, "kind": "unlinked", "actor": "opsuser", "note": "other bug"},
    ]

    # polls read the item again: the same declaration, a removed one, one naming REQ-1
    for declared in (("jira:OPS-7",), (), ("jira:OPS-7", "req:1")):
        world.see("api", "acme/api#12", ("bob-ok",), declared=declared)
        assert world.request_of("acme/api#12") == "REQ-3", declared
    assert pending(world) == []
    # its text names a different item: that declaration links it
    world.see("api", "acme/api#12", ("bob-ok",), declared=("jira:OPS-7", "jira:OPS-9"))
    assert world.request_of("acme/api#12") == "REQ-2"


def test_link_of_an_item_sharing_its_request_moves_only_it(runner, world) -> None:
    world.see("ops", "OPS-7", ("acc-alice",))
    world.see("ops", "OPS-9", ())
    world.see("api", "acme/api#12", (), declared=("jira:OPS-9",))
    out = json.loads(ok(runner, world, "link", "REQ-1", "acme/api#12", "--json"))
    assert out["action"] == "linked"
    assert world.request_of("acme/api#12") == "REQ-1"
    assert world.request_of("OPS-9") == "REQ-2"
    kinds = world.rows("SELECT request_id, kind FROM events WHERE kind IN ('relinked', 'unlinked')")
    assert kinds == [{"request_id": 2, "kind": "unlinked"}, {"request_id": 1, "kind": "relinked"}]
    # held: a later declaration elsewhere does not move it; it is recorded instead
    world.see("api", "acme/api#12", (), declared=("jira:OPS-9", "jira:OPS-7", "jira:OPS-10"))
    world.see("ops", "OPS-10", ())
    assert world.request_of("acme/api#12") == "REQ-1"


def test_errors_are_one_line_and_exit_1(runner, world) -> None:
    world.see("ops", "OPS-7", ())
    for args, message in (
        (("link", "REQ-1", "OPS-99"), "'OPS-99': no such item in the ledger"),
        (("link", "REQ-9", "OPS-7"), "REQ-9"),
        (("unlink", "OPS-7"), "ops:OPS-7 is alone in REQ-1"),
        (("split", "REQ-1"), "no merge of REQ-1 to undo"),
    ):
        result = run(runner, world, *args)
        assert result.exit_code == 1, args
        assert result.output.startswith("syncd: error: "), result.output
        assert message in result.output
    assert run(runner, world, "relink").exit_code == 2  # --dry-run is required


def old_rule_ledger(path: Path) -> None:
    """A ledger as syncd built it before declarations: schema 0001 only, and acme/api#12
    linked to OPS-7 because its text mentioned OPS-7."""
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for statement in MIGRATIONS[0][1].split(";"):
        if statement.strip():
            c.execute(statement)
    c.execute("INSERT INTO migrations VALUES ('0001_initial', '2026-01-01T00:00:00.000000Z')")
    t = "2026-01-01T00:00:00.000000Z"
    c.execute(
        "INSERT INTO requests (id, key, title, state, owner, created_at, updated_at) "
        "VALUES (1, 'REQ-1', 'Checkout fails', 'open', 'alice', ?, ?)",
        (t, t),
    )
    for lid, source, kind, ref in (
        (1, "ops", "jira", "OPS-7"),
        (2, "api", "github", "acme/api#12"),
    ):
        c.execute(
            "INSERT INTO links (id, request_id, source, kind, ref, snap_owner, first_seen_at, "
            "last_seen_at) VALUES (?, 1, ?, ?, ?, 'alice', ?, ?)",
            (lid, source, kind, ref, t, t),
        )
        c.execute("INSERT INTO link_keys VALUES (?, ?, 'self')", (lid, f"{kind}:{ref}"))
    c.execute("INSERT INTO link_keys VALUES (2, 'jira:OPS-7', 'mention')")
    c.commit()
    c.close()


def test_an_old_rule_ledger_keeps_its_links_and_relink_lists_them(runner, world, tmp_path) -> None:
    old = World.__new__(World)
    old.path = tmp_path / "old.db"
    old_rule_ledger(old.path)
    result = run(runner, old, "relink", "--dry-run")  # reads never migrate; they say so
    assert result.exit_code == 1
    assert "written by an older syncd" in result.output
    assert "0002_identity" in result.output
    with Ledger(old.path) as ledger:  # as the daemon opens it: migrated, every link kept
        assert ledger.rows("SELECT ref, request_id, via FROM links ORDER BY id") == [
            {"ref": "OPS-7", "request_id": 1, "via": "created"},
            {"ref": "acme/api#12", "request_id": 1, "via": "mention"},
        ]
    out = ok(runner, old, "relink", "--dry-run")
    assert "1 link the rule would not have made" in out
    assert "api:acme/api#12" in out
    assert "no declaration connects it to ops:OPS-7" in out
    rows = json.loads(ok(runner, old, "relink", "--dry-run", "--json"))
    assert rows == [
        {
            "action": "drop",
            "item": "api:acme/api#12",
            "request": "REQ-1",
            "via": "mention",
            "reason": "no declaration connects it to ops:OPS-7",
        }
    ]
    # under any-mention (the old rule) the same ledger is as it should be
    config = tmp_path / "syncd.toml"
    config.write_text(f'ledger = "{old.path}"\n[matching]\nlink_on = "any-mention"\n')
    result = runner.invoke(cli, ["--config", str(config), "relink", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "agrees with the current rule" in result.stdout


def test_relink_finds_declarations_meeting_another_request(runner, world) -> None:
    world.see("ops", "OPS-7", ("acc-alice",))
    world.see("ops", "OPS-9", ())
    world.see("api", "acme/api#12", (), declared=("jira:OPS-9",))
    ok(runner, world, "link", "REQ-1", "acme/api#12")  # held in REQ-1 by the operator
    assert json.loads(ok(runner, world, "relink", "--dry-run", "--json")) == []
    # an item that declares two requests' items stays apart, with the evidence shown
    world.see("api", "acme/api#13", (), declared=("jira:OPS-7", "jira:OPS-9"))
    assert world.request_of("acme/api#13") == "REQ-3"
    conflicts = world.rows(
        "SELECT request_id, detail FROM events WHERE kind = 'conflict' AND field = 'link'"
    )
    assert [c["request_id"] for c in conflicts] == [1, 2, 3]
    assert conflicts[0]["detail"].startswith("not merged (")
    history = json.loads(ok(runner, world, "history", "--json"))  # shown with the handoffs
    assert [h["request"] for h in history if h["kind"] == "conflict"] == ["REQ-1", "REQ-2", "REQ-3"]
    rows = json.loads(ok(runner, world, "relink", "--dry-run", "--json"))
    assert {(r["action"], r["item"]) for r in rows} == {("link", "api:acme/api#13")}


def test_any_message_of_a_mail_thread_names_the_thread(runner, world) -> None:
    world.see("ops", "OPS-7", ("acc-alice",))
    t = world.t + timedelta(minutes=1)
    thread = Observation(
        source="support",
        ref="root-1@customer.example",
        url="mid:root-1@customer.example",
        title="Checkout fails",
        state="open",
        owners=(),
        updated_at=t,
        keys=("email:root-1@customer.example",),
    )
    with Ledger(world.path) as ledger:
        ledger.apply_page("support", "email", Page([thread]), DIRECTORY, now=t)
        # as the mailbox adapter records the thread a reply belongs to
        ledger.conn.execute(
            "INSERT INTO adapter_state (source, key, value) VALUES ('support', ?, ?)",
            ("m:reply-2@customer.example", json.dumps({"root": "root-1@customer.example"})),
        )
    out = json.loads(
        ok(runner, world, "link", "REQ-1", "<reply-2@customer.example>", "--dry-run", "--json")
    )
    assert out["item"] == "support:root-1@customer.example"
    out = json.loads(ok(runner, world, "link", "REQ-1", "root-1@customer.example", "--json"))
    assert (out["action"], out["request"]) == ("merged", "REQ-1")


def test_link_lists_only_owner_write_backs_not_the_handoff_comments_queued(
    world: World,
) -> None:
    """An operator's handoff queues an owner write and a handoff comment per item; link's
    "Write-backs owed" names owner writes only, each once, as the value the item will get."""
    two_requests(world)
    for person in ("alice", "bob"):  # two handoffs of REQ-1: comments queued for each
        assert syncd("--ledger", world.path, "assign", "REQ-1", person).returncode == 0
    out = syncd("--ledger", world.path, "link", "REQ-1", "acme/api#12", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    writes = json.loads(out.stdout)["writes"]
    assert sorted((w["ref"], w["value"]) for w in writes) == [("OPS-7", "bob")]


def test_linking_a_whole_request_says_so_once(world: World) -> None:
    two_requests(world)
    args = ("--ledger", world.path, "link", "REQ-1", "REQ-2", "--dry-run")
    out = syncd(*args, env={"USER": "opsuser"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "REQ-2 would merge into REQ-1, owned by alice (by opsuser)"
