"""One request across GitHub, Jira and Trello, with the real daemon process.

Each test starts the three emulators in this process, writes a config that polls all three
every second, runs `syncd run` as a subprocess, and drives the story through the emulators'
control APIs and the operator CLI (`syncd assign`, `syncd show --json`, `syncd status
--json`, run as subprocesses against the same ledger). Every test begins from the same
linked request: acme/api#12 on GitHub, OPS-7 in Jira (whose description links #12) and a
Trello card that mentions OPS-7, all owned by Alice.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.github import DEFAULT_TOKEN as GITHUB_TOKEN
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import DEFAULT_EMAIL, JiraEmulator, adf, link, text
from syncd.sandbox.jira import DEFAULT_TOKEN as JIRA_TOKEN
from syncd.sandbox.trello import DEFAULT_KEY, TrelloEmulator
from syncd.sandbox.trello import DEFAULT_TOKEN as TRELLO_TOKEN

pytestmark = pytest.mark.slow

SYNCD = str(Path(sys.executable).with_name("syncd"))
REPO = "acme/api"
INTERVAL = 1.0  # every source polls this often
# How long one change may take to reach every tool: a poll of the source it was made in,
# then a poll (and write) of each other source, plus room for a machine shared with others.
PROPAGATION = 2 * INTERVAL + 3.0

# Handles per person and tool; carol's Trello handle is left out where a test says so.
PEOPLE = {
    "alice": ("Alice Moreau", "alice-m", "alicemoreau"),
    "bob": ("Bob Okafor", "bob-ok", "bobokafor"),
    "carol": ("Carol Diaz", "carol-d", "carold"),
    "dave": ("Dave Kim", "dave-k", "davek"),
}

CONFIG = """\
ledger = "{ledger}"

[daemon]
jitter = "0s"

[[sources]]
name = "github"
type = "github"
repo = "{repo}"
base_url = "{github}"
token = {{ env = "E2E_GITHUB_TOKEN" }}
interval = "1s"
write_spacing = 0

[[sources]]
name = "jira"
type = "jira"
base_url = "{jira}"
email = "{email}"
token = {{ env = "E2E_JIRA_TOKEN" }}
jql = "project = OPS"
interval = "1s"

[[sources]]
name = "trello"
type = "trello"
boards = ["{board}"]
base_url = "{trello}"
key = {{ env = "E2E_TRELLO_KEY" }}
token = {{ env = "E2E_TRELLO_TOKEN" }}
interval = "1s"
"""


def wait_for(check: Callable[[], bool], what: str, timeout: float = PROPAGATION) -> float:
    """Poll `check` until it holds; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class World:
    github: GitHubEmulator
    jira: JiraEmulator
    trello: TrelloEmulator
    tmp: Path
    accounts: dict[str, str] = field(default_factory=dict)  # person -> Jira accountId
    board: str = ""
    card: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def ledger(self) -> Path:
        return self.tmp / "ledger.db"

    @property
    def log(self) -> Path:
        return self.tmp / "syncd.log"

    # -- the three tools, as people see them --------------------------------------------
    def github_owners(self) -> list[str]:
        return [a["login"] for a in self.github.issue(REPO, 12)["assignees"]]

    def jira_owner(self) -> str | None:
        return self.jira.assignee("OPS-7")

    def trello_owners(self) -> list[str]:
        return self.trello.members_of(self.card)

    def owned_everywhere_by(self, person: str) -> bool:
        _, login, username = PEOPLE[person]
        return (
            self.github_owners() == [login]
            and self.jira_owner() == self.accounts[person]
            and self.trello_owners() == [username]
        )

    # -- the daemon and the operator CLI ----------------------------------------------
    def write_config(self, *, carol_on_trello: bool) -> Path:
        text_ = CONFIG.format(
            ledger=self.ledger,
            repo=REPO,
            github=self.github.base_url,
            jira=self.jira.base_url,
            email=DEFAULT_EMAIL,
            board=self.board,
            trello=self.trello.base_url,
        )
        for person, (name, login, username) in PEOPLE.items():
            handles = f'github = "{login}", jira = "{self.accounts[person]}"'
            if person != "carol" or carol_on_trello:
                handles += f', trello = "{username}"'
            text_ += f'\n[[people]]\nid = "{person}"\nname = "{name}"\nhandles = {{ {handles} }}\n'
        path = self.tmp / "syncd.toml"
        path.write_text(text_)
        return path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "E2E_GITHUB_TOKEN": GITHUB_TOKEN,
            "E2E_JIRA_TOKEN": JIRA_TOKEN,
            "E2E_TRELLO_KEY": DEFAULT_KEY,
            "E2E_TRELLO_TOKEN": TRELLO_TOKEN,
        }

    def start(self, config: Path) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [SYNCD, "run", "--config", str(config)],
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)

    def cli(self, *args: str) -> Any:
        result = subprocess.run(
            [SYNCD, "--ledger", str(self.ledger), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, f"syncd {' '.join(args)}: {result.stderr}\n{self.logs()}"
        return json.loads(result.stdout) if "--json" in args else result.stdout

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        """Read the ledger directly: cheap enough to poll, unlike starting the CLI."""
        if not self.ledger.exists():
            return []
        conn = sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []  # the daemon has not created the schema yet
        finally:
            conn.close()

    def sources_by_request(self) -> dict[str, list[str]]:
        rows = self.query(
            "SELECT r.key, group_concat(l.source) FROM requests r "
            "JOIN (SELECT * FROM links ORDER BY source) l ON l.request_id = r.id GROUP BY r.id"
        )
        return {key: sorted(sources.split(",")) for key, sources in rows}

    def linked_request(self) -> str | None:
        for key, sources in self.sources_by_request().items():
            if sources == ["github", "jira", "trello"]:
                return key
        return None

    def writeback_status(self, source: str) -> str | None:
        rows = self.query(
            "SELECT o.status FROM outbox o JOIN links l ON l.id = o.link_id "
            "WHERE l.source = ? AND o.field = 'owner' ORDER BY o.id DESC LIMIT 1",
            source,
        )
        return rows[0][0] if rows else None

    def show(self, key: str) -> dict[str, Any]:
        detail: dict[str, Any] = self.cli("show", key, "--json")
        return detail

    def logs(self) -> str:
        return "daemon log (tail):\n" + "\n".join(self.log.read_text().splitlines()[-30:])


@pytest.fixture
def world(
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
    tmp_path: Path,
) -> Iterator[World]:
    w = World(github_emulator, jira_emulator, trello_emulator, tmp_path)
    logins = [login for _, login, _ in PEOPLE.values()]
    github_emulator.add_repo(REPO, collaborators=logins)
    for n in range(1, 12):  # acme/api has history: the issue in question is #12
        github_emulator.create_issue(REPO, f"Older issue {n}", state="closed")
    github_emulator.create_issue(
        REPO, "Label printer service returns 500", "Stack trace attached.", assignees=["alice-m"]
    )
    for person, (name, _, _) in PEOPLE.items():
        w.accounts[person] = jira_emulator.add_user(name)
    jira_emulator.add_project("OPS", "Operations", next_number=7)
    # The ops team files OPS-7 and declares the GitHub issue in its description.
    jira_emulator.create_issue(
        "OPS",
        "Warehouse label printer down",
        adf(
            [text("Printing fails since the deploy.")],
            [text("GitHub issue: "), link("acme/api#12", "https://github.com/acme/api/issues/12")],
        ),
        assignee=w.accounts["alice"],
        status="In Progress",
    )
    w.board = trello_emulator.add_board(
        "Customer escalations", members=[u for _, _, u in PEOPLE.values()]
    )
    yield w
    if w.process is not None and w.process.poll() is None:
        w.process.kill()
        w.process.wait()
    if w.log.exists():
        log = w.log.read_text()
        for secret in (GITHUB_TOKEN, JIRA_TOKEN, DEFAULT_KEY, TRELLO_TOKEN):
            assert secret not in log, "a secret reached the daemon's log"


def start_linked(world: World, *, carol_on_trello: bool = True) -> str:
    """Run the daemon until the three items form one request owned by Alice; its key."""
    world.start(world.write_config(carol_on_trello=carol_on_trello))
    wait_for(
        lambda: ["github", "jira"] in world.sources_by_request().values(),
        "OPS-7 to link to acme/api#12",
        timeout=15,
    )
    # The business team's card declares the Jira issue in a "Jira:" line (after Jira was
    # read, as in life: OPS-7 existed before anyone could name it).
    world.card = world.trello.create_card(
        world.board,
        "Doing",
        "Acme Corp: shipping labels not printing",
        "Escalated to ops.\nJira: OPS-7",
        members=["alicemoreau"],
        by="alicemoreau",
    )
    wait_for(lambda: world.linked_request() is not None, "the Trello card to link")
    key = world.linked_request()
    assert key is not None
    assert world.owned_everywhere_by("alice"), world.logs()
    return key


def owner_changes(detail: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in detail["events"] if e["kind"] == "owner_changed"]


def test_linking_three_tools_makes_one_request_with_three_links(world: World) -> None:
    key = start_linked(world)
    requests = world.cli("ls", "--all", "--json")
    linked = [r for r in requests if "jira" in r["sources"] or "trello" in r["sources"]]
    assert [(r["key"], r["sources"]) for r in linked] == [(key, ["github", "jira", "trello"])]
    assert len(requests) == 12  # the eleven older GitHub issues, and this one
    detail = world.show(key)
    refs = {link["kind"]: link["ref"] for link in detail["links"]}
    assert refs == {"github": "acme/api#12", "jira": "OPS-7", "trello": world.card}
    assert detail["owner"] == "alice"
    assert all(link["writeback"] is None for link in detail["links"])  # all in step
    # Created from GitHub or Jira (whichever was read first), then the other two linked.
    linked_events = [e["to_value"] for e in detail["events"] if e["kind"] == "linked"]
    assert len(linked_events) == 2
    assert linked_events[0] in ("jira:OPS-7", "github:acme/api#12")
    assert linked_events[1] == f"trello:{world.card}"
    assert world.stop() == 0


def test_a_handoff_in_trello_reaches_jira_and_github(world: World) -> None:
    key = start_linked(world)
    started = time.monotonic()
    world.trello.set_members(world.card, ["bobokafor"], by="alicemoreau")
    took = wait_for(lambda: world.owned_everywhere_by("bob"), "bob to own it everywhere")
    assert took <= PROPAGATION
    assert world.github_owners() == ["bob-ok"]
    assert world.jira_owner() == world.accounts["bob"]  # his accountId
    time.sleep(1.5 * INTERVAL)  # another poll of every source: the writes must not echo
    detail = world.show(key)
    handoffs = [(e["from_value"], e["to_value"], e["source"]) for e in owner_changes(detail)]
    assert handoffs[0][:2] == (None, "alice")  # the request began owned by Alice
    assert handoffs[1:] == [("alice", "bob", "trello")], handoffs
    assert detail["owner"] == "bob"
    assert not [e for e in detail["events"] if e["kind"] == "conflict"]
    assert time.monotonic() - started < 10
    assert world.stop() == 0


def test_concurrent_changes_in_jira_and_github_the_later_wins(world: World) -> None:
    key = start_linked(world)
    assert world.process is not None
    # Both changes land while the daemon is paused, so it sees them in the same cycle.
    world.process.send_signal(signal.SIGSTOP)
    try:
        world.jira.set_assignee("OPS-7", world.accounts["bob"], by=world.accounts["alice"])
        time.sleep(1.1)  # GitHub times have whole seconds: the later change is clearly later
        world.github.set_assignees(REPO, 12, ["dave-k"])
    finally:
        world.process.send_signal(signal.SIGCONT)
    wait_for(lambda: world.owned_everywhere_by("dave"), "the later change (dave) everywhere")
    time.sleep(1.5 * INTERVAL)
    assert world.owned_everywhere_by("dave"), "the earlier change came back"
    detail = world.show(key)
    assert detail["owner"] == "dave"
    conflicts = [e for e in detail["events"] if e["kind"] == "conflict"]
    assert len(conflicts) == 1, detail["events"]
    assert (conflicts[0]["field"], conflicts[0]["from_value"], conflicts[0]["to_value"]) == (
        "owner",
        "bob",
        "dave",
    )
    assert world.stop() == 0


def test_operator_handoff_reaches_all_three_with_the_note(world: World) -> None:
    key = start_linked(world)
    note = "covering while Alice is out"
    world.cli("assign", key, "carol", "--note", note)
    wait_for(lambda: world.owned_everywhere_by("carol"), "carol to own it everywhere")
    assert world.trello_owners() == ["carold"]
    detail = world.show(key)
    (operator,) = [e for e in owner_changes(detail) if e["source"] == "operator"]
    assert (operator["from_value"], operator["to_value"], operator["note"]) == (
        "alice",
        "carol",
        note,
    )
    assert all(link["writeback"] is None for link in detail["links"])
    assert world.stop() == 0


def test_an_owner_unmapped_in_one_tool_is_skipped_there_visibly(world: World) -> None:
    key = start_linked(world, carol_on_trello=False)
    world.jira.set_assignee("OPS-7", world.accounts["carol"], by=world.accounts["alice"])
    wait_for(lambda: world.github_owners() == ["carol-d"], "carol to reach GitHub")

    wait_for(lambda: world.writeback_status("trello") == "skipped", "the Trello skip")
    assert world.trello_owners() == ["alicemoreau"]  # untouched, not unassigned
    links = {link["source"]: link for link in world.show(key)["links"]}
    reason = links["trello"]["writeback"]["reason"]
    assert "carol has no trello handle" in reason
    status = {s["source"]: s for s in world.cli("status", "--json")["sources"]}
    assert status["trello"]["outbox_skipped"] == 1
    assert status["trello"]["health"] == "ok"
    assert status["github"]["outbox_skipped"] == status["jira"]["outbox_skipped"] == 0
    events = world.show(key)["events"]
    assert any(
        e["kind"] == "writeback" and e["source"] == "trello" and "skipped" in e["detail"]
        for e in events
    )
    assert world.process is not None
    assert world.process.poll() is None  # no crash
    # The daemon goes on: a later handoff to someone Trello knows is written there again.
    world.github.set_assignees(REPO, 12, ["bob-ok"])
    wait_for(lambda: world.owned_everywhere_by("bob"), "bob to own it everywhere")
    status = {s["source"]: s for s in world.cli("status", "--json")["sources"]}
    assert status["trello"]["outbox_skipped"] == 0
    assert world.stop() == 0


def test_an_unlinked_card_stays_apart_across_polls_and_a_restart(world: World) -> None:
    key = start_linked(world)
    config = world.tmp / "syncd.toml"

    def card_request() -> str:
        rows = world.query(
            "SELECT r.key FROM links l JOIN requests r ON r.id = l.request_id WHERE l.ref = ?",
            world.card,
        )
        return str(rows[0][0]) if rows else ""

    def card_read_again(after: str) -> bool:
        rows = world.query("SELECT last_seen_at FROM links WHERE ref = ?", world.card)
        return bool(rows) and rows[0][0] > after

    def last_seen() -> str:
        return str(world.query("SELECT last_seen_at FROM links WHERE ref = ?", world.card)[0][0])

    out = world.cli("unlink", world.card, "--note", "a different escalation", "--json")
    own = out["request"]
    assert (out["from"], out["owner"], out["writes"]) == (key, "alice", [])
    assert card_request() == own
    # The card is read again, its "Jira: OPS-7" line unchanged: it stays apart.
    seen = last_seen()
    world.trello.edit_card(
        world.card, desc="Escalated to ops.\nJira: OPS-7\nStill failing.", by="alicemoreau"
    )
    wait_for(lambda: card_read_again(seen), "the edited card to be read")
    assert card_request() == own
    # A handoff of the request reaches Jira and GitHub, not the card.
    world.github.set_assignees(REPO, 12, ["bob-ok"])
    wait_for(lambda: world.jira_owner() == world.accounts["bob"], "bob on OPS-7")
    time.sleep(1.5 * INTERVAL)
    assert world.trello_owners() == ["alicemoreau"]
    # Across a restart, and another read naming only what it left: still apart.
    assert world.stop() == 0
    world.start(config)
    seen = last_seen()
    world.trello.edit_card(
        world.card, desc=f"Jira: OPS-7\nGitHub: acme/api#12\nRequest: {key}", by="alicemoreau"
    )
    wait_for(lambda: card_read_again(seen), "the card to be read after the restart")
    assert card_request() == own
    assert world.trello_owners() == ["alicemoreau"]
    # Its text names a different item: that declaration links it.
    world.jira.create_issue("OPS", "Acme Corp account review", assignee=world.accounts["carol"])
    wait_for(lambda: bool(world.query("SELECT 1 FROM links WHERE ref = 'OPS-8'")), "OPS-8")
    world.trello.edit_card(world.card, desc="Jira: OPS-8", by="alicemoreau")
    wait_for(
        lambda: card_request() not in ("", own, key),
        "the card to join OPS-8's request",
    )
    history = world.cli("history", "--all", "--json")
    kinds = {(h["kind"], h["request"]) for h in history}
    assert ("unlinked", key) in kinds
    # its own request folded into OPS-8's, visibly (and `syncd split` would undo it)
    assert ("merged", card_request()) in kinds
    assert world.stop() == 0
