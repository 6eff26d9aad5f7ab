"""The board's app over a real ledger file: filters, escaping, links, headers, read-only."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from syncd.cli.web import exposure_warning
from syncd.config import Config, Person, Team
from syncd.cycle import Engine
from syncd.ledger import Ledger
from syncd.listener import Listener, bind
from syncd.web.app import CSP, Settings, create_app
from tests.memtool import Clock, MemAdapter, Tool, install
from tests.syncdproc import SYNCD

PEOPLE = [
    Person(id="alice", name="Alice Moreau", handles={"github": "alice-gh"}),
    Person(id="bob", name="Bob Stone", handles={"github": "bob-gh"}),
    Person(id="carol", name="Carol Diaz", handles={"github": "carol-gh"}),
]


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    clock = Clock()
    gh = Tool("github", clock)
    with Ledger(path) as ledger:
        engine = Engine(Config(people=PEOPLE, ledger=path), ledger)
        install(engine, [MemAdapter("api", gh)])
        gh.create("acme/api#1", "Checkout fails", ["alice-gh"])
        gh.create("acme/api#2", "<b>bold</b> & {{ 7*7 }}", ["bob-gh"])
        gh.create("acme/api#3", "Nobody's", [])
        gh.create("acme/api#4", "Finished", ["carol-gh"])
        engine.sync_once()
        gh.set_state("acme/api#4", "done")
        gh.set_owners("acme/api#1", ["bob-gh"])
        engine.sync_once()
    # A tool link that is not http(s): the page must not make it clickable.
    con = sqlite3.connect(path)
    con.execute("UPDATE links SET url = 'javascript:alert(1)' WHERE ref = 'acme/api#2'")
    con.execute(
        "UPDATE links SET url = 'https://github.com/acme/api/issues/1' WHERE ref = 'acme/api#1'"
    )
    # Follow-through (routing) keeps the latest handoff per request: REQ-1's to Bob, two
    # hours ago, and REQ-2's (Bob's since creation, tracked here as a handoff) a minute ago.
    for key, age in (("REQ-1", "-2 hours"), ("REQ-2", "-1 minutes")):
        con.execute(
            "INSERT INTO handoffs (request_id, event_id, owner, previous_owner, at) "
            "SELECT r.id, max(e.id), r.owner, e.from_value, "
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) FROM requests r "
            "JOIN events e ON e.request_id = r.id AND e.kind = 'owner_changed' WHERE r.key = ?",
            (age, key),
        )
    con.commit()
    con.close()
    return path


@pytest.fixture
def client(ledger_path: Path) -> Iterator[httpx.Client]:
    """The app served by uvicorn on a loopback port, as `syncd web` serves it."""
    settings = Settings(
        ledger=ledger_path,
        teams=[Team(id="payments", members=["alice", "bob"])],
        stale_after=timedelta(days=3),
        accept_within=lambda owner: timedelta(hours=1),
    )
    server = Listener(create_app(settings), bind("127.0.0.1", 0))
    server.start()
    host, port = server.address
    try:
        with httpx.Client(base_url=f"http://{host}:{port}") as client:
            yield client
    finally:
        server.stop()


def test_board_lanes_and_filters_in_the_url(client):
    page = client.get("/").text
    assert 'data-owner=""' in page  # the unowned lane is always there
    assert 'data-key="REQ-4"' not in page  # done: not shown by default
    only_bob = client.get("/?person=bob").text
    assert 'data-key="REQ-1"' in only_bob
    assert 'data-key="REQ-2"' in only_bob
    assert 'data-key="REQ-3"' not in only_bob
    done = client.get("/?state=done").text
    assert 'data-key="REQ-4"' in done
    assert 'data-key="REQ-1"' not in done
    team = client.get("/?team=payments&state=open&state=done").text
    assert 'data-key="REQ-4"' not in team  # carol is not in the team
    assert 'data-key="REQ-1"' in team
    assert client.get("/?team=nosuchteam").status_code == 200


def test_source_text_is_escaped(client):
    page = client.get("/").text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; {{ 7*7 }}" in page
    assert "<b>bold</b>" not in page
    assert "49" not in page.split("REQ-2", 1)[1][:200]


def test_only_http_links_are_clickable(client):
    page = client.get("/r/REQ-2").text
    assert "javascript:" not in page
    assert "acme/api#2" in page
    page = client.get("/r/REQ-1").text
    assert 'href="https://github.com/acme/api/issues/1"' in page


def test_request_page_timeline_and_missing_request(client):
    page = client.get("/r/REQ-1").text
    assert "owner_changed" in page
    assert client.get("/r/REQ-99").status_code == 404
    assert client.get("/r/not-a-key").status_code == 404


def test_feed_returns_only_newer_handoffs(client):
    rows = client.get("/api/feed").json()
    assert rows[0]["to_owner"] == "bob"  # newest first
    newest = rows[0]["event_id"]
    assert client.get(f"/api/feed?after={newest}").json() == []
    assert len(client.get(f"/api/feed?after={newest - 1}").json()) == 1


@pytest.mark.parametrize("path", ["/", "/health", "/static/board.css", "/nope", "/r/REQ-1"])
def test_every_response_carries_the_security_headers(client, path):
    r = client.get(path)
    assert r.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP
    assert r.headers["x-content-type-options"] == "nosniff"


def test_pages_have_no_inline_script_or_style(client):
    for path in ("/", "/r/REQ-1", "/health", "/nope"):
        page = client.get(path).text
        assert "<script>" not in page
        assert "<style" not in page
        assert " style=" not in page
        assert " on" + "click=" not in page


def test_foreign_host_names_are_refused(client):
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400


def test_only_get_is_served(client):
    assert client.post("/").status_code == 405
    assert client.post("/api/feed").status_code == 405


def test_the_board_connection_cannot_write(ledger_path):
    with Ledger(ledger_path, readonly=True) as ledger, pytest.raises(sqlite3.OperationalError):
        ledger.conn.execute("DELETE FROM requests")


def card_classes(page: str, key: str) -> str:
    head = page.split(f'data-key="{key}"', 1)[0]
    return head.rsplit('<li class="', 1)[1].split('"', 1)[0]


def test_unaccepted_handoffs_are_marked_and_late_ones_overdue(client):
    page = client.get("/").text
    assert "overdue" in card_classes(page, "REQ-1")
    assert "awaiting" in card_classes(page, "REQ-2")
    assert "overdue" not in card_classes(page, "REQ-2")
    assert "awaiting" not in card_classes(page, "REQ-3")  # unowned: nobody to accept
    attention = page.split('id="awaiting"', 1)[1].split("</section>", 1)[0]
    assert attention.index("REQ-1") < attention.index("REQ-2")  # oldest first


def test_metrics_count_awaiting_and_overdue_handoffs(ledger_path):
    from prometheus_client.parser import text_string_to_metric_families

    from syncd.metrics import DaemonMetrics

    text = DaemonMetrics(lambda: ledger_path, lambda owner: timedelta(hours=1)).render()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text.decode())
        for s in f.samples
    }
    assert samples[("syncd_handoffs_awaiting_acceptance", ())] == 2
    assert samples[("syncd_handoffs_overdue", ())] == 1
    assert samples[("syncd_handoffs_total", (("source", "api"),))] == 4
    assert samples[("syncd_requests", (("state", "done"),))] == 1


def test_a_ledger_gone_missing_is_a_503_page_not_a_crash(client, ledger_path):
    ledger_path.rename(ledger_path.with_name("moved.db"))
    r = client.get("/")
    assert r.status_code == 503
    assert "cannot be read" in r.text
    assert r.headers["content-security-policy"] == CSP
    feed = client.get("/api/feed")
    assert feed.status_code == 503
    assert "error" in feed.json()


def test_syncd_web_serves_and_stops_quietly_on_ctrl_c(ledger_path: Path) -> None:
    """The command as a user runs it: it says where it serves, serves, and Ctrl-C ends it
    with exit 0 and one line, not click's "Aborted!" and exit 1."""
    probe = bind("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    command = [str(SYNCD), "--ledger", str(ledger_path), "web", "--listen", f"127.0.0.1:{port}"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            first = proc.stderr.readline()
            url = re.fullmatch(r"syncd web: serving .* at (http://127\.0\.0\.1:\d+/)\n", first)
            assert url, first
            assert "Checkout fails" in httpx.get(url[1], timeout=10).text
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=20) == 0
            assert proc.stderr.read() == "syncd web: stopped\n"
        finally:
            proc.kill()


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
        ("0.0.0.0", True),  # noqa: S104  (a value checked, nothing bound)
        ("::", True),
        ("192.0.2.10", True),
    ],
)
def test_serving_beyond_loopback_is_warned_about(host: str, warned: bool) -> None:
    """The board has no login: serving it beyond this machine gets a warning naming the
    host and the way to share it safely; loopback gets none (the Ctrl-C test above checks
    that `syncd web` on loopback prints nothing else)."""
    warning = exposure_warning(host)
    if warned:
        assert warning is not None
        assert host in warning
        assert "reverse proxy with authentication" in warning
    else:
        assert warning is None
