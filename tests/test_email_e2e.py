"""`syncd run` as a real process with a shared mailbox (real Dovecot and aiosmtpd) and a
GitHub repository (the loopback emulator) as its two sources."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.sandbox.github import GitHubEmulator
from tests.daemonproc import daemon, github_source, person, syncd, wait_until, write_config
from tests.mailservers import (
    Mailbox,
    SmtpServer,
    compose,
    dovecot_fixture,  # noqa: F401
    email_source,
    mailbox_fixture,  # noqa: F401
    smtp_fixture,  # noqa: F401
)
from tests.test_email_hostile import CASES

pytestmark = pytest.mark.slow

TOKEN = "ghp_emailE2eSecretToken0123456789abc"
PASSWORD_ENV = "E2E_IMAP_PASSWORD"


@pytest.fixture
def gh(contract_trace: Any) -> Iterator[GitHubEmulator]:
    with GitHubEmulator(token=TOKEN, trace=contract_trace) as emulator:
        emulator.add_repo("acme/api", collaborators=["alice-gh", "bob-gh"])
        yield emulator


@pytest.fixture
def setup(
    tmp_path: Path, gh: GitHubEmulator, mailbox: Mailbox, smtp: SmtpServer
) -> tuple[Path, Path, dict[str, str]]:
    ledger = tmp_path / "ledger.db"
    body = (
        email_source("support", mailbox, smtp, password_env=PASSWORD_ENV)
        + github_source("api", "acme/api", gh.base_url, "E2E_GH_TOKEN")
        + person("alice", github="alice-gh", email="alice@example.com")
        + person("bob", github="bob-gh", email="bob@example.com")
    )
    config = write_config(tmp_path / "syncd.toml", body, ledger=ledger)
    return config, ledger, {"E2E_GH_TOKEN": TOKEN, PASSWORD_ENV: mailbox.password}


def query(ledger: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    if not ledger.exists():
        return []
    con = sqlite3.connect(ledger)
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # the daemon has not created the schema yet
        return []
    finally:
        con.close()


def owner_of(ledger: Path, key: str) -> str | None:
    rows = query(ledger, "SELECT owner FROM requests WHERE key = ?", key)
    return rows[0][0] if rows else None


def polls_after(ledger: Path, source: str, count: int) -> Any:
    """Waits until `source` has been polled `count` more times."""
    seen: list[str] = []

    def check() -> bool:
        rows = query(ledger, "SELECT last_poll_at FROM source_status WHERE source = ?", source)
        if rows and rows[0][0] and (not seen or rows[0][0] != seen[-1]):
            seen.append(rows[0][0])
        return len(seen) > count

    return check


def gh_owners(gh: GitHubEmulator, number: int) -> list[str]:
    return [a["login"] for a in gh.issue("acme/api", number)["assignees"]]


def test_a_mailbox_thread_and_a_github_issue_share_one_owner(
    tmp_path: Path,
    gh: GitHubEmulator,
    mailbox: Mailbox,
    smtp: SmtpServer,
    setup: tuple[Path, Path, dict[str, str]],
) -> None:
    config, ledger, env = setup
    log = tmp_path / "daemon.log"
    root = mailbox.deliver(
        compose("Checkout fails on mobile", "Carol <carol@customer.org>", "t1@customer.org", "Help")
    )
    with daemon(config, env=env, log=log):
        # (1) A new mail becomes a request; a reply joins it.
        wait_until(lambda: query(ledger, "SELECT key FROM requests"), what="a request from mail")
        reply = mailbox.deliver(
            compose(
                "Re: Checkout fails on mobile",
                "carol@customer.org",
                "t2@customer.org",
                "Still failing",
                reply_to="t1@customer.org",
                references=["t1@customer.org"],
            )
        )
        wait_until(
            lambda: query(ledger, "SELECT 1 FROM links WHERE source_updated_at IS NOT NULL"),
            what="the reply",
        )
        # The GitHub issue for it declares the request, so it joins the same request.
        issue = gh.create_issue(
            "acme/api", "Checkout fails", "Request: REQ-1\n\nReported by mail.", user="alice-gh"
        )
        wait_until(lambda: len(query(ledger, "SELECT 1 FROM links")) == 2, what="the issue link")
        assert query(ledger, "SELECT key FROM requests") == [("REQ-1",)]

        # (2) Tagging the thread from an IMAP client makes alice the owner, also in GitHub.
        mailbox.tag(reply, add=["owner-alice"])
        wait_until(lambda: owner_of(ledger, "REQ-1") == "alice", what="alice from the tag")
        wait_until(lambda: gh_owners(gh, issue) == ["alice-gh"], what="alice on the issue")
        assert smtp.received == []  # a handoff made in the mailbox is not announced to it

        # (3) An owner change in GitHub: the keyword moves and one threaded reply goes out.
        r = httpx.patch(
            f"{gh.base_url}/repos/acme/api/issues/{issue}",
            json={"assignees": ["bob-gh"]},
            headers={"authorization": f"Bearer {TOKEN}", "accept": "application/vnd.github+json"},
        )
        assert r.status_code == 200
        wait_until(lambda: owner_of(ledger, "REQ-1") == "bob", what="bob from GitHub")
        (sent,) = smtp.wait_for(1, timeout=20)
        wait_until(
            lambda: all("owner-bob" in mailbox.flags()[u] for u in (root, reply)),
            what="owner-bob on the thread",
        )
        flags = mailbox.flags()
        assert not any("owner-alice" in flags[u] for u in (root, reply))
        message = sent.message
        assert message["In-Reply-To"] == "<t2@customer.org>"
        assert message["References"] == "<t1@customer.org> <t2@customer.org>"
        assert message["Subject"] == "Re: [REQ-1] Checkout fails on mobile"
        assert sent.rcpt_tos == ["support@example.com"]
        # The reply reaches the shared mailbox, as it would through the MTA.
        own = mailbox.deliver(sent.data)
        wait_until(polls_after(ledger, "support", 3), what="three more polls")

    # A restart does not send the reply again, nor read it as a request.
    with daemon(config, env=env, log=tmp_path / "daemon2.log"):
        wait_until(polls_after(ledger, "support", 3), what="polls after the restart")
        assert len(smtp.received) == 1
        assert query(ledger, "SELECT count(*) FROM requests") == [(1,)]
        assert owner_of(ledger, "REQ-1") == "bob"

        # (4) A reply with the assign command from a known person hands off.
        mailbox.deliver(
            compose(
                "Re: Checkout fails on mobile",
                "Bob <bob@example.com>",
                "t3@example.com",
                "Alice wrote that code.\n/assign alice\n",
                reply_to="t2@customer.org",
                references=["t1@customer.org", "t2@customer.org"],
            )
        )
        wait_until(lambda: owner_of(ledger, "REQ-1") == "alice", what="alice from /assign")
        wait_until(lambda: gh_owners(gh, issue) == ["alice-gh"], what="alice back on the issue")
        wait_until(
            lambda: all("owner-alice" in f for u, f in mailbox.flags().items() if u != own),
            what="owner-alice on the thread",
        )
    assert len(smtp.received) == 1
    shown = json.loads(syncd("--ledger", str(ledger), "show", "REQ-1", "--json").stdout)
    assert {link["source"]: link["snapshot_owner"] for link in shown["links"]} == {
        "support": "alice",
        "api": "alice",
    }
    handoffs = query(
        ledger,
        "SELECT from_value, to_value, source FROM events WHERE kind = 'owner_changed' ORDER BY id",
    )
    assert handoffs == [
        (None, "alice", "support"),
        ("alice", "bob", "api"),
        ("bob", "alice", "support"),
    ]
    # The handoff by mail names who commanded it and in which message.
    assert query(
        ledger,
        "SELECT actor, detail FROM events WHERE kind = 'owner_changed' ORDER BY id DESC LIMIT 1",
    ) == [("bob", "/assign by bob@example.com in message <t3@example.com>")]
    logs = log.read_text() + (tmp_path / "daemon2.log").read_text()
    assert mailbox.password not in logs
    assert TOKEN not in logs


def test_hostile_mail_does_not_stop_the_daemon_or_leak_the_password(
    tmp_path: Path, mailbox: Mailbox, setup: tuple[Path, Path, dict[str, str]]
) -> None:
    config, ledger, env = setup
    log = tmp_path / "daemon.log"
    for case in CASES:
        mailbox.deliver(case.message)
    with daemon(config, env=env, log=log) as proc:
        wait_until(
            lambda: (
                query(ledger, "SELECT count(*) FROM quarantine")
                == [(sum(1 for c in CASES if c.quarantined),)]
            ),
            what="the quarantined mail",
        )
        mailbox.deliver(compose("After the storm", "dave@customer.org", "calm@customer.org"))
        wait_until(
            lambda: query(ledger, "SELECT 1 FROM requests WHERE title = 'After the storm'"),
            what="a normal mail after the hostile ones",
        )
        assert proc.poll() is None
    status = syncd("--ledger", str(ledger), "status", "--json")
    assert json.loads(status.stdout)["totals"]["quarantined"] == 3
    dump = "\n".join(sqlite3.connect(ledger).iterdump())
    text = log.read_text() + status.stdout + dump
    assert mailbox.password not in text
    assert "header injection" in dump
    assert "Traceback" not in log.read_text()


def test_a_refused_login_is_reported_without_the_password(
    tmp_path: Path, mailbox: Mailbox, setup: tuple[Path, Path, dict[str, str]]
) -> None:
    config, ledger, env = setup
    wrong = "wrong-imap-password-3c9f1a"
    result = syncd(
        "--config",
        str(config),
        "--debug",
        "sync",
        "--once",
        env={**env, PASSWORD_ENV: wrong},
        check=False,
    )
    assert result.returncode != 0
    assert "login" in (result.stdout + result.stderr).lower()
    status = syncd("--ledger", str(ledger), "status", "--json")
    (support,) = [s for s in json.loads(status.stdout)["sources"] if s["source"] == "support"]
    assert "refused" in str(support)
    text = (
        result.stdout
        + result.stderr
        + status.stdout
        + "\n".join(sqlite3.connect(ledger).iterdump())
    )
    assert wrong not in text
    assert mailbox.password not in text
