"""`syncd run` as a real process against the loopback GitHub emulator."""

from __future__ import annotations

import json
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.server import Fault
from tests.daemonproc import daemon, github_source, person, syncd, wait_until, write_config

pytestmark = pytest.mark.slow

TOKEN = "ghp_e2eSecretToken0123456789abcdef"


@pytest.fixture
def gh(contract_trace) -> GitHubEmulator:
    with GitHubEmulator(token=TOKEN, trace=contract_trace) as emu:
        for repo in ("acme/api", "acme/web"):
            emu.add_repo(repo, collaborators=["alice-gh", "bob-gh"])
        yield emu


@pytest.fixture
def setup(tmp_path: Path, gh: GitHubEmulator, contract_trace_dir: Path):
    ledger = tmp_path / "ledger.db"
    body = (
        github_source("api", "acme/api", gh.base_url, "E2E_GH_TOKEN")
        + github_source("web", "acme/web", gh.base_url, "E2E_GH_TOKEN")
        + person("alice", github="alice-gh")
        + person("bob", github="bob-gh")
    )
    config = write_config(tmp_path / "syncd.toml", body, ledger=ledger)
    trace = contract_trace_dir / f"client-{tmp_path.name}.jsonl"
    return config, ledger, trace, {"E2E_GH_TOKEN": TOKEN}


def owners(gh: GitHubEmulator, repo: str, n: int) -> list[str]:
    return [a["login"] for a in gh.issue(repo, n)["assignees"]]


def test_handoff_through_the_rest_api_reaches_the_other_repo(tmp_path, gh, setup):
    config, ledger, trace, env = setup
    api = gh.create_issue("acme/api", "Checkout fails", assignees=["alice-gh"])
    web = gh.create_issue(
        "acme/web", "[acme/api#1] Spinner never stops", "Backend side.", user="bob-gh"
    )
    log = tmp_path / "daemon.log"
    with daemon(config, "--trace-http", str(trace), env=env, log=log) as proc:
        wait_until(lambda: owners(gh, "acme/web", web) == ["alice-gh"], what="alice on acme/web#1")
        # A person hands off in GitHub's own API, the way any client would.
        r = httpx.patch(
            f"{gh.base_url}/repos/acme/api/issues/{api}",
            json={"assignees": ["bob-gh"]},
            headers={"authorization": f"Bearer {TOKEN}", "accept": "application/vnd.github+json"},
        )
        assert r.status_code == 200
        wait_until(lambda: owners(gh, "acme/web", web) == ["bob-gh"], what="bob on acme/web#1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    con = sqlite3.connect(ledger)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert con.execute("SELECT key, owner FROM requests").fetchall() == [("REQ-1", "bob")]
    handoffs = con.execute(
        "SELECT from_value, to_value, source FROM events WHERE kind = 'owner_changed' ORDER BY id"
    ).fetchall()
    assert handoffs == [(None, "alice", "api"), ("alice", "bob", "api")]
    assert con.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone() == (0,)
    con.close()
    shown = json.loads(syncd("--ledger", str(ledger), "show", "REQ-1", "--json").stdout)
    assert {link["ref"]: link["snapshot_owner"] for link in shown["links"]} == {
        "acme/api#1": "bob",
        "acme/web#1": "bob",
    }
    text = log.read_text() + trace.read_text() + json.dumps(shown)
    assert TOKEN not in text
    assert "stopped" in log.read_text()


def test_second_daemon_on_the_same_ledger_refuses(tmp_path, gh, setup):
    config, ledger, _, env = setup
    with daemon(config, env=env, log=tmp_path / "first.log"):
        wait_until(ledger.exists, what="the ledger")
        second = syncd("--config", str(config), "run", env=env, check=False)
    assert second.returncode == 1
    assert "already running" in second.stderr
    assert str(ledger) in second.stderr


def test_no_change_cycle_is_one_conditional_request_per_source(tmp_path, gh, setup):
    config, _ledger, _, env = setup
    # Three pages of 100 issues, changed a minute apart as real work is.
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    for n in range(250):
        gh.clock = lambda n=n: start + timedelta(minutes=n)
        gh.create_issue("acme/api", f"Issue {n}")
    for _ in range(3):  # first sync, then the cycle that re-reads the boundary item
        syncd("--config", str(config), "sync", "--once", env=env)
    gh.reset_counts()
    syncd("--config", str(config), "sync", "--once", env=env)
    assert gh.counts == {("GET", "/repos/{owner}/{repo}/issues", 304): 2}


def test_malformed_item_is_quarantined_and_the_cycle_goes_on(tmp_path, gh, setup):
    config, ledger, _, env = setup
    gh.create_issue("acme/api", "Good one")
    # The page answers with one item that lacks its assignees and one that is fine.
    page = json.dumps(
        [
            {
                **{k: v for k, v in gh.issue("acme/api", 1).items() if k != "assignees"},
                "number": 2,
                "title": "Broken",
            },
            gh.issue("acme/api", 1),
        ]
    ).encode()
    gh.faults.add(
        Fault(
            status=200,
            body=page,
            headers={"content-type": "application/json"},
            method="GET",
            path=r"^/repos/acme/api/issues$",
        )
    )
    result = syncd("--config", str(config), "sync", "--once", env=env, check=False)
    assert result.returncode == 0, result.stderr
    # The item is named with its reason, not only counted.
    assert "  quarantined acme/api#2: assignees is missing" in result.stdout
    con = sqlite3.connect(ledger)
    assert con.execute("SELECT title FROM requests").fetchall() == [("Good one",)]
    (reason,) = con.execute("SELECT reason FROM quarantine WHERE source = 'api'").fetchone()
    assert "assignees" in reason
    con.close()
    status = json.loads(syncd("--ledger", str(ledger), "status", "--json").stdout)
    assert status["totals"]["quarantined"] == 1


def test_page_that_is_not_json_fails_the_poll_and_unassigns_nothing(tmp_path, gh, setup):
    config, ledger, _, env = setup
    gh.create_issue("acme/api", "Owned", assignees=["alice-gh"])
    syncd("--config", str(config), "sync", "--once", env=env)
    gh.set_assignees("acme/api", 1, [])
    gh.faults.add(Fault(malformed=True, method="GET", path=r"^/repos/acme/api/issues$", times=None))
    result = syncd("--config", str(config), "sync", "--once", env=env, check=False)
    assert result.returncode == 1
    assert "not JSON" in result.stderr or "not JSON" in result.stdout
    con = sqlite3.connect(ledger)
    assert con.execute("SELECT owner FROM requests").fetchall() == [("alice",)]
    con.close()
