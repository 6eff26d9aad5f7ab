"""`syncd demo` as a real process: what it prints, how it exits, and what it leaves behind.

The whole story includes the shared mailbox, which runs a real Dovecot: that test carries
the `dovecot` marker and is skipped, with the reason, on a machine without Dovecot. CI has
it (scripts/dev installs dovecot-imapd), so there it always runs. The story without the
mailbox runs everywhere.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox import mail
from tests.daemonproc import SYNCD

pytestmark = pytest.mark.slow

# How long the demo may take. It takes under ten seconds; this only catches a story that
# waits out its timeouts instead of moving on as soon as each step is done.
FAST = 45.0


@pytest.fixture
def scratch() -> Iterator[Path]:
    """The demo's TMPDIR, so the test sees every temporary directory it makes. Not under
    pytest's tmp dir: run as root, the demo runs Dovecot as the dovecot user, which must
    reach its directory in here."""
    directory = Path(tempfile.mkdtemp(prefix="syncd-demo-test-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_demo(scratch: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [*SYNCD, "demo", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    return result, time.monotonic() - started


def processes_in(directory: Path) -> list[str]:
    """Live processes started from, or working in, `directory` (Dovecot's processes all
    work in its base_dir, which the demo makes there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # exited, waiting to be reaped: nothing runs any more
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue  # gone meanwhile, or not ours to look at
        if str(directory) in cmdline or cwd.startswith(str(directory)):
            found.append(f"{proc.name}: {cmdline} (in {cwd})")
    return found


def assert_clean(scratch: Path) -> None:
    assert list(scratch.iterdir()) == [], "the demo left temporary files behind"
    assert processes_in(scratch) == [], "the demo left processes running"


def assert_story(result: subprocess.CompletedProcess[str], items: int) -> None:
    """The GitHub, Jira and Trello story reached its end; `items` were linked."""
    # The narrative and the tables on one stream, in order: `syncd demo > file` reads right.
    assert result.stderr == ""
    assert "did not end as it should" not in result.stdout, result.stdout
    everywhere = re.search(r"^==> Carol is the owner everywhere: (.*)$", result.stdout, re.M)
    assert everywhere, result.stdout
    owners = everywhere.group(1)
    for item in ("GitHub acme/api#1", "GitHub acme/web#1", "Jira OPS-7", "Trello card"):
        assert item in owners
    assert owners.count(", ") + 2 == items, owners  # "a, b, c and d"
    # Sentences, not Python values.
    assert not re.search(r"[{\[]'", result.stdout), result.stdout
    assert result.stdout.index("==> the ledger\n") < result.stdout.index("REQUEST  STATE")
    # The operator's view, printed by `syncd ls`: one request for the story, one other.
    assert re.search(r"^REQ-1 +open +carol ", result.stdout, re.MULTILINE), result.stdout
    # REQ-1 is the API issue, with its title, whichever source the daemon polled first.
    assert re.search(
        r"^REQ-1 +open .* Checkout fails for cards issued in the EU$", result.stdout, re.M
    ), result.stdout
    assert re.search(r"^REQ-2 +open +bob +web ", result.stdout, re.MULTILINE)
    assert not re.search(r"^REQ-3 ", result.stdout, re.MULTILINE)


@pytest.mark.dovecot
def test_the_demo_tells_the_whole_story_with_the_shared_mailbox(scratch: Path) -> None:
    missing = mail.missing()
    if missing is not None:
        pytest.skip(f"the demo's mailbox part needs a real IMAP server: {missing}")
    result, took = run_demo(scratch)
    assert result.returncode == 0, result.stderr
    assert_story(result, items=5)
    assert "SKIPPED" not in result.stdout
    assert "and mail thread" in result.stdout
    assert re.search(r"^REQ-1 .* accounts,api,ops,support,web ", result.stdout, re.MULTILINE)
    assert "the customer's thread carries the keywords owner-carol\n" in result.stdout
    assert "items in the ledger from the mailbox: 1\n" in result.stdout
    # One threaded reply per handoff, in order, each saying who owns the request now.
    replies = re.findall(
        r"^  (\d)\. to support@acme\.example  Subject: Re: \[REQ-1\] Card payments declined at checkout "
        r"\(your ref OPS-7\)  In-Reply-To: <card-payments-4711@globex\.example>\n"
        r" +(.+) now owns REQ-1 ",
        result.stdout,
        re.MULTILINE,
    )
    assert replies == [
        ("1", "Alice Moreau (alice)"),
        ("2", "Bob Okafor (bob)"),
        ("3", "Carol Diaz (carol)"),
    ], result.stdout
    assert took < FAST
    assert_clean(scratch)


def test_the_demo_without_the_mailbox_says_what_it_skipped(scratch: Path) -> None:
    result, took = run_demo(scratch, "--no-email")
    assert result.returncode == 0, result.stderr
    assert_story(result, items=4)
    skipped = "==> SKIPPED the shared mailbox (email) part of the story: "
    # Said when the story starts, and again after the long output, where it is seen.
    assert result.stdout.count(skipped + "it was turned off with --no-email\n") == 2
    assert result.stdout.rstrip().endswith(skipped + "it was turned off with --no-email")
    assert "mail thread" not in result.stdout
    assert re.search(r"^REQ-1 .* accounts,api,ops,web ", result.stdout, re.MULTILINE)
    assert took < FAST
    assert_clean(scratch)


def test_keep_prints_the_commands_to_explore_the_kept_ledger(scratch: Path) -> None:
    result, _ = run_demo(scratch, "--no-email", "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    (kept,) = scratch.iterdir()
    lines = result.stdout.splitlines()
    start = lines.index(f"==> kept {kept}; to explore the ledger the story left, run:")
    commands = [ln.strip() for ln in lines[start + 1 :] if ln.startswith("  ")]
    assert len(commands) == 6
    assert commands[0].endswith(f"--ledger {kept}/ledger.db ls --all")
    for command in commands[:-1]:
        # As printed, with the program as this test starts it; each works.
        argv = shlex.split(command)
        assert Path(argv[0]).name == "syncd"
        ran = subprocess.run(
            [*SYNCD, *argv[1:]], capture_output=True, text=True, timeout=60, check=False
        )
        assert ran.returncode == 0, (command, ran.stderr)
        assert ran.stdout
    assert commands[-1] == f"less {kept}/syncd.log    # the daemon's log"
    shutil.rmtree(kept)


def test_without_dovecot_the_reason_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mail, "dovecot_binary", lambda: None)
    reason = mail.missing()
    assert reason is not None
    assert "Dovecot is not installed" in reason
    assert "apt-get install dovecot-imapd" in reason
    assert "scripts/dev setup as root" in reason
    with pytest.raises(mail.MailServerUnavailable, match="apt-get install dovecot-imapd"):
        mail.start_dovecot()


def test_without_aiosmtpd_the_reason_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mail, "dovecot_binary", lambda: "/usr/sbin/dovecot")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aiosmtpd" else real(name)
    )
    reason = mail.missing()
    assert reason is not None
    assert "aiosmtpd is not installed" in reason
    assert "pip install" in reason
