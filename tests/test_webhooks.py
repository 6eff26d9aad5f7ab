"""Webhooks as wake-ups, /healthz and /metrics on the daemon's listener.

The signature checks are pure functions tested against known vectors; everything else runs
the real daemon as a process with a 10-minute poll interval against the loopback emulators,
so a change can only reach the ledger within the test's few seconds through a hook.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.config import parse_config
from syncd.errors import ConfigError
from syncd.sandbox.github import DEFAULT_TOKEN as GITHUB_TOKEN
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.jira import DEFAULT_EMAIL, JiraEmulator
from syncd.sandbox.jira import DEFAULT_TOKEN as JIRA_TOKEN
from syncd.sandbox.server import Fault
from syncd.sandbox.trello import DEFAULT_KEY, TrelloEmulator
from syncd.sandbox.trello import DEFAULT_TOKEN as TRELLO_TOKEN
from syncd.webhooks import HookTarget, Seen, delivery_keys, hub_signature, verify
from tests.daemonproc import wait_until

SYNCD = str(Path(sys.executable).with_name("syncd"))
SECRETS = {
    "github": "gh-hook-secret-4f1e",
    "jira": "jira-hook-secret-77a0",
    "trello": "trello-app-secret-9c",
}


# -- signatures (pure) -------------------------------------------------------------------


def test_github_signature_matches_githubs_documented_example():
    # From GitHub's "Validating webhook deliveries" page.
    target = HookTarget("api", "github", "It's a Secret to Everybody")
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert hub_signature(target.secret, b"Hello, World!") == expected
    assert verify(target, b"Hello, World!", {"x-hub-signature-256": expected}) == "accepted"
    assert verify(target, b"Hello, World?", {"x-hub-signature-256": expected}) == "bad_signature"
    assert verify(target, b"Hello, World!", {}) == "unsigned"
    # GitHub's older SHA-1 header alone is not enough.
    assert verify(target, b"Hello, World!", {"x-hub-signature": "sha1=00"}) == "unsigned"


def test_jira_signature_is_the_hub_header_with_sha256():
    target = HookTarget("ops", "jira", "s3cret")
    body = b'{"webhookEvent":"jira:issue_updated"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert verify(target, body, {"x-hub-signature": good}) == "accepted"
    assert verify(target, body, {"x-hub-signature": good.upper()}) == "bad_signature"
    assert verify(target, body, {"x-hub-signature-256": good}) == "unsigned"


def test_trello_signature_covers_body_and_callback_url():
    target = HookTarget("board", "trello", "app-secret", "https://syncd.example.com/hooks/board")
    body = '{"action":{"id":"1","type":"updateCard"},"model":{"name":"Café"}}'.encode()
    digest = hmac.new(b"app-secret", body + target.callback_url.encode(), hashlib.sha1).digest()
    good = base64.b64encode(digest).decode()
    assert verify(target, body, {"x-trello-webhook": good}) == "accepted"
    # Signed for another callback URL (another syncd, or another board's hook): refused.
    other = HookTarget("board", "trello", "app-secret", "https://evil.example.com/hooks/board")
    assert verify(other, body, {"x-trello-webhook": good}) == "bad_signature"
    assert verify(target, body, {"x-trello-webhook": "not base64 at all ☃"}) == "bad_signature"


def test_a_delivery_is_accepted_once():
    target = HookTarget("api", "github", "k")
    seen = Seen(size=3)
    headers = {"x-github-delivery": "d-1"}
    assert seen.first_time(delivery_keys(target, b"one", headers))
    assert not seen.first_time(delivery_keys(target, b"one", headers))  # replayed as is
    # The same body under a made-up delivery id is still the same signed body.
    assert not seen.first_time(delivery_keys(target, b"one", {"x-github-delivery": "d-2"}))
    # A retry of the delivery with a different body is known by its id.
    assert not seen.first_time(delivery_keys(target, b"two", headers))
    assert seen.first_time(delivery_keys(target, b"three", {"x-github-delivery": "d-3"}))


def test_trello_hooks_need_the_callback_url():
    doc = {
        "sources": [
            {
                "name": "board",
                "type": "trello",
                "boards": ["0123456789abcdef01234567"],
                "key": {"env": "X_KEY"},
                "token": {"env": "X_TOKEN"},
                "webhook_secret": {"env": "X_SECRET"},
            }
        ],
        "http": {"listen": "127.0.0.1:8787"},
    }
    with pytest.raises(ConfigError) as err:
        parse_config(doc, resolve=False)
    assert "webhook_url" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"http": {"listen": "localhost"}}, resolve=False)
    assert "host:port" in str(err.value)


# -- the real daemon ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    return wait_until(check, timeout=timeout, what=what)


@dataclass
class Daemon:
    github: GitHubEmulator
    jira: JiraEmulator
    trello: TrelloEmulator
    tmp: Path
    port: int
    board: str
    card: str
    accounts: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def callback(self) -> str:
        return f"{self.url}/hooks/trello"

    def config(self, hang_after: str = "10m", link_on: str = "declared") -> Path:
        path = self.tmp / "syncd.toml"
        path.write_text(
            f"""
ledger = "{self.tmp / "ledger.db"}"

[daemon]
jitter = "0s"
hang_after = "{hang_after}"
stop_timeout = "3s"

[http]
listen = "127.0.0.1:{self.port}"
max_body = 4096

[matching]
link_on = "{link_on}"

[[sources]]
name = "github"
type = "github"
repo = "acme/api"
base_url = "{self.github.base_url}"
token = {{ env = "T_GITHUB_TOKEN" }}
webhook_secret = {{ env = "T_GITHUB_HOOK" }}
interval = "10m"
write_spacing = 0

[[sources]]
name = "jira"
type = "jira"
base_url = "{self.jira.base_url}"
email = "{DEFAULT_EMAIL}"
token = {{ env = "T_JIRA_TOKEN" }}
webhook_secret = {{ env = "T_JIRA_HOOK" }}
jql = "project = OPS"
interval = "10m"
settle = "0s"

[[sources]]
name = "trello"
type = "trello"
boards = ["{self.board}"]
base_url = "{self.trello.base_url}"
key = {{ env = "T_TRELLO_KEY" }}
token = {{ env = "T_TRELLO_TOKEN" }}
webhook_secret = {{ env = "T_TRELLO_HOOK" }}
webhook_url = "{self.callback}"
interval = "10m"

[[people]]
id = "alice"
handles = {{ github = "alice-gh", jira = "{self.accounts["alice"]}", trello = "alicet" }}

[[people]]
id = "bob"
handles = {{ github = "bob-gh", jira = "{self.accounts["bob"]}", trello = "bobt" }}
"""
        )
        return path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "T_GITHUB_TOKEN": GITHUB_TOKEN,
            "T_JIRA_TOKEN": JIRA_TOKEN,
            "T_TRELLO_KEY": DEFAULT_KEY,
            "T_TRELLO_TOKEN": TRELLO_TOKEN,
            "T_GITHUB_HOOK": SECRETS["github"],
            "T_JIRA_HOOK": SECRETS["jira"],
            "T_TRELLO_HOOK": SECRETS["trello"],
        }

    def start(self, hang_after: str = "10m", link_on: str = "declared") -> None:
        with (self.tmp / "syncd.log").open("wb") as log:
            self.process = subprocess.Popen(
                [SYNCD, "run", "--config", str(self.config(hang_after, link_on))],
                env=self.env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            wait_for(self.polled_all, "the first poll of every source")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def logs(self) -> str:
        return (self.tmp / "syncd.log").read_text()[-3000:]

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        path = self.tmp / "ledger.db"
        if not path.exists():
            return []
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()

    def polled_all(self) -> bool:
        rows = self.query("SELECT count(*) FROM source_status WHERE last_success_at IS NOT NULL")
        return bool(rows) and rows[0][0] == 3

    def owner_of(self, source: str) -> str | None:
        rows = self.query(
            "SELECT r.owner FROM requests r JOIN links l ON l.request_id = r.id WHERE l.source = ?",
            source,
        )
        return rows[0][0] if rows else None

    def hook(
        self,
        source: str,
        body: bytes,
        headers: dict[str, str] | None = None,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        post = client.post if client is not None else httpx.post
        return post(f"{self.url}/hooks/{source}", content=body, headers=headers or {})

    def signed(
        self, source: str, body: bytes, client: httpx.Client | None = None
    ) -> httpx.Response:
        secret = SECRETS[source]
        if source == "github":
            headers = {
                "x-hub-signature-256": hub_signature(secret, body),
                "x-github-event": "issues",
            }
        elif source == "jira":
            headers = {"x-hub-signature": hub_signature(secret, body)}
        else:
            digest = hmac.new(secret.encode(), body + self.callback.encode(), hashlib.sha1)
            headers = {"x-trello-webhook": base64.b64encode(digest.digest()).decode()}
        return self.hook(source, body, headers, client)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.url}/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def lists_made(self) -> dict[str, int]:
        """Reads of each tool's change listing: one per poll of that source."""
        return {
            "github": self.github.count("GET", "/repos/{owner}/{repo}/issues"),
            "jira": self.jira.count(None, "/rest/api/3/search/jql"),
            "trello": self.trello.count("GET", "/boards/{boardId}/actions"),
        }


@pytest.fixture
def daemon(
    github_emulator: GitHubEmulator,
    jira_emulator: JiraEmulator,
    trello_emulator: TrelloEmulator,
    tmp_path: Path,
) -> Iterator[Daemon]:
    github_emulator.add_repo("acme/api", collaborators=["alice-gh", "bob-gh"])
    github_emulator.create_issue("acme/api", "Checkout fails", assignees=["alice-gh"])
    accounts = {p: jira_emulator.add_user(p.title()) for p in ("alice", "bob")}
    jira_emulator.add_project("OPS", "Operations")
    jira_emulator.create_issue("OPS", "Printer down", assignee=accounts["alice"])
    board = trello_emulator.add_board("Escalations", members=["alicet", "bobt"])
    card = trello_emulator.create_card(board, "To Do", "Refund", members=["alicet"])
    d = Daemon(
        github_emulator,
        jira_emulator,
        trello_emulator,
        tmp_path,
        free_port(),
        board,
        card,
        accounts,
    )
    yield d
    if d.process is not None and d.process.poll() is None:
        d.process.terminate()
        assert d.process.wait(timeout=20) == 0


@pytest.mark.slow
def test_signed_hooks_wake_the_right_source_and_nothing_else(daemon):
    daemon.start()
    assert daemon.owner_of("github") == "alice"
    changes = {
        "github": lambda: daemon.github.set_assignees("acme/api", 1, ["bob-gh"]),
        "jira": lambda: daemon.jira.set_assignee("OPS-1", daemon.accounts["bob"]),
        "trello": lambda: daemon.trello.set_members(daemon.card, ["bobt"]),
    }
    for source, change in changes.items():
        before = daemon.lists_made()
        change()
        # The payload says nothing syncd reads: the poll finds the change in the tool.
        r = daemon.signed(source, json.dumps({"hint": source, "at": time.time()}).encode())
        assert r.status_code == 202, r.text
        wait_for(lambda s=source: daemon.owner_of(s) == "bob", f"the {source} handoff")
        after = daemon.lists_made()
        woke = {s for s in after if after[s] != before[s]}
        assert woke == {source}, (source, before, after)
    m = daemon.metrics()
    for source in changes:
        assert m[("syncd_webhooks_total", (("result", "accepted"), ("source", source)))] == 1


@pytest.mark.slow
def test_a_hooked_handoff_is_written_to_the_other_tools_at_once(daemon):
    # How the two items become one request is not the subject here: in this mode a plain
    # mention links them.
    daemon.start(link_on="any-mention")
    card = daemon.trello.create_card(
        daemon.board, "To Do", "Printer down", "See OPS-1", members=["alicet"], by="alicet"
    )
    assert daemon.signed("trello", b'{"action": {"type": "createCard"}}').status_code == 202
    both = (
        "SELECT count(*) FROM links WHERE request_id = "
        "(SELECT request_id FROM links WHERE ref = 'OPS-1')"
    )
    wait_for(lambda: daemon.query(both) == [(2,)], "the card to join OPS-1's request")
    daemon.jira.set_assignee("OPS-1", daemon.accounts["bob"])
    assert daemon.signed("jira", b'{"webhookEvent": "jira:issue_updated"}').status_code == 202
    # Trello polls every 10 minutes: only the wake-up of the source owed the write can make
    # the new owner arrive on the card within seconds.
    wait_for(lambda: daemon.trello.members_of(card) == ["bobt"], "bob on the Trello card")


@pytest.mark.slow
def test_forged_replayed_and_oversize_hooks_are_refused_and_counted(daemon):
    daemon.start()
    before = daemon.lists_made()
    body = b'{"action": "assigned"}'
    assert daemon.hook("github", body).status_code == 401  # unsigned
    forged = {"x-hub-signature-256": hub_signature("guessed-secret", body)}
    assert daemon.hook("github", body, forged).status_code == 401
    assert daemon.signed("github", body).status_code == 202
    assert daemon.signed("github", body).status_code == 409  # the same delivery again
    big = b"{" + b" " * 5000 + b"}"
    assert daemon.signed("jira", big).status_code == 413
    assert daemon.hook("mail", body).status_code == 404  # no such source takes hooks
    assert daemon.hook("nonexistent-" + "x" * 50, body).status_code == 404
    wait_for(lambda: daemon.lists_made()["github"] == before["github"] + 1, "the one poll")
    time.sleep(1.0)
    after = daemon.lists_made()
    assert after == {**before, "github": before["github"] + 1}, (before, after)
    m = daemon.metrics()
    assert m[("syncd_webhooks_total", (("result", "unsigned"), ("source", "github")))] == 1
    assert m[("syncd_webhooks_total", (("result", "bad_signature"), ("source", "github")))] == 1
    assert m[("syncd_webhooks_total", (("result", "replay"), ("source", "github")))] == 1
    assert m[("syncd_webhooks_total", (("result", "too_large"), ("source", "jira")))] == 1
    # An unknown path never becomes a label of its own.
    assert m[("syncd_webhooks_total", (("result", "unknown_source"), ("source", "")))] == 2
    assert "guessed-secret" not in daemon.logs()
    assert SECRETS["github"] not in daemon.logs()


@pytest.mark.slow
def test_trello_head_check_answers_for_sources_that_take_hooks(daemon):
    daemon.start()
    assert httpx.head(daemon.callback).status_code == 200
    assert httpx.head(f"{daemon.url}/hooks/unknown").status_code == 404


@pytest.mark.slow
def test_a_burst_of_100_hooks_causes_at_most_two_polls(daemon):
    daemon.start()
    polls = ("syncd_polls_total", (("source", "github"),))
    before = daemon.metrics()[polls]
    daemon.github.set_assignees("acme/api", 1, ["bob-gh"])
    t0 = time.monotonic()

    # A bulk edit: a hundred deliveries at once, as the tool sends them, over many connections.
    with httpx.Client(limits=httpx.Limits(max_connections=16)) as client:

        def send(n: int) -> int:
            body = json.dumps({"delivery": n}).encode()
            return daemon.signed("github", body, client).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert set(pool.map(send, range(100))) == {202}
    wait_for(lambda: daemon.owner_of("github") == "bob", "the handoff")
    took = time.monotonic() - t0
    time.sleep(2.0)  # room for any poll still queued to happen, if it wrongly would
    made = daemon.metrics()[polls] - before
    assert 1 <= made <= 2, (made, took)


@pytest.mark.slow
def test_healthz_turns_503_while_a_poll_hangs(daemon):
    daemon.start(hang_after="2s")
    assert httpx.get(f"{daemon.url}/healthz").status_code == 200
    # The next listing request hangs far longer than hang_after.
    daemon.github.faults.add(Fault(delay=25, path=r"^/repos/acme/api/issues$", method="GET"))
    body = b'{"n": 1}'
    assert daemon.signed("github", body).status_code == 202
    r = wait_for(
        lambda: (r := httpx.get(f"{daemon.url}/healthz")).status_code == 503 and r,
        "/healthz to report the hang",
    )
    assert "github" in r.text
    assert "poll running" in r.text


@pytest.mark.slow
def test_metrics_parse_as_prometheus_text_and_move_with_a_handoff(daemon):
    daemon.start()
    text = httpx.get(f"{daemon.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "syncd_source_last_success_timestamp_seconds",
        "syncd_poll_duration_seconds",
        "syncd_source_requests",
        "syncd_source_outbox_pending",
        "syncd_source_dead_letters",
        "syncd_source_quarantined_items",
        "syncd_handoffs",
        "syncd_routed",
        "syncd_handoffs_overdue",
    ):
        assert name in families, name
    assert all(
        n.startswith("syncd_") for n in families if not n.startswith(("python_", "process_"))
    )
    before = daemon.metrics()
    key = ("syncd_handoffs_total", (("source", "github"),))
    daemon.github.set_assignees("acme/api", 1, ["bob-gh"])
    assert daemon.signed("github", b'{"n": 2}').status_code == 202
    wait_for(lambda: daemon.metrics().get(key, 0) == before.get(key, 0) + 1, "the handoff count")
    after = daemon.metrics()
    polls = ("syncd_polls_total", (("source", "github"),))
    assert after[polls] == before[polls] + 1
    ok = ("syncd_source_requests_total", (("source", "github"), ("status", "200")))
    assert after[ok] > before.get(ok, 0)
    # No secret and no title in the exposition.
    text = httpx.get(f"{daemon.url}/metrics").text
    assert "Checkout fails" not in text
    assert not any(secret in text for secret in SECRETS.values())
