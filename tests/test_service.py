"""syncd as a systemd service: the notify protocol, credentials, reload, stop, operators, units.

The daemon runs as a real process (the venv's `syncd run`) with NOTIFY_SOCKET pointing at a
datagram socket this test owns, exactly as systemd would start it, and talks to the loopback
GitHub emulator. The unit files are checked with systemd-analyze itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.config import DEFAULT_CONFIG_PATH, DaemonConfig
from syncd.daemon import Daemon
from syncd.health import JobState, Progress, health, hung, short_reason, status_line
from syncd.notify import Notifier
from syncd.sandbox.github import GitHubEmulator
from syncd.sandbox.server import Fault

ROOT = Path(__file__).resolve().parent.parent
SYNCD_BIN = Path(sys.executable).parent / "syncd"
UNITS = ROOT / "systemd"
TOKEN = "ghp_serviceTestToken_9f8e7d6c5b4a3210"
ISSUES = r"^/repos/acme/api/issues$"
# Ping period is half of this: 0.5s. Short, so the tests see many ticks quickly.
WATCHDOG_USEC = 1_000_000
HANG_AFTER = 2.0
STOP_TIMEOUT = 2.0

pytestmark = pytest.mark.slow


# -- the systemd side of the notify protocol -------------------------------------------------


@dataclass
class Message:
    at: float  # time.monotonic() when received
    fields: dict[str, str]

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def get(self, key: str) -> str | None:
        return self.fields.get(key)


@dataclass
class NotifySocket:
    """What systemd's end of $NOTIFY_SOCKET sees: every datagram, in order, timestamped."""

    path: Path
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.settimeout(0.1)
        self._arrived = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._arrived:
                self.messages.append(Message(time.monotonic(), fields))
                self._arrived.notify_all()

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self._sock.close()

    def snapshot(self) -> list[Message]:
        with self._arrived:
            return list(self.messages)

    def wait_for(
        self, want: Callable[[Message], bool], what: str, *, after: int = 0, timeout: float = 20
    ) -> int:
        """Index of the first message from index `after` on that `want` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.snapshot()[after:], start=after):
                if want(m):
                    return i
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [m.fields for m in self.snapshot()[after:]][-8:]
                raise AssertionError(f"no {what} within {timeout}s; last messages: {seen}")
            with self._arrived:
                self._arrived.wait(timeout=min(left, 0.2))


def has(key: str, value: str = "1") -> Callable[[Message], bool]:
    return lambda m: m.get(key) == value


def status_has(text: str) -> Callable[[Message], bool]:
    return lambda m: text in (m.get("STATUS") or "")


# -- fixtures ------------------------------------------------------------------------------------


@dataclass
class Service:
    dir: Path
    config: Path
    ledger: Path
    creds: Path
    log: Path
    notify: NotifySocket
    gh: GitHubEmulator
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def write_config(self, *, extra_sources: str = "", hang_after: float = HANG_AFTER) -> None:
        self.config.write_text(
            f'ledger = "{self.ledger}"\n\n'
            "[daemon]\n"
            'jitter = "0s"\n'
            f'hang_after = "{hang_after}s"\n'
            f'stop_timeout = "{STOP_TIMEOUT}s"\n'
            f"{source('api', 'acme/api', self.gh.base_url)}"
            f"{extra_sources}"
            '\n[[people]]\nid = "alice"\nhandles = { github = "alice-gh" }\n'
            '\n[[people]]\nid = "bob"\nhandles = { github = "bob-gh" }\n'
        )

    def start(self, **popen: Any) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_PID")}
        env.update(
            NOTIFY_SOCKET=str(self.notify.path),
            WATCHDOG_USEC=str(WATCHDOG_USEC),
            CREDENTIALS_DIRECTORY=str(self.creds),
        )
        out = self.log.open("ab")
        proc = subprocess.Popen(
            [str(SYNCD_BIN), "--config", str(self.config), "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            **popen,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def log_lines(self) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        # Every line is JSON, the scheduler's own warnings included.
        return [json.loads(line) for line in lines if line.strip()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log_lines() if e.get("event") == name]


def source(name: str, repo: str, base_url: str, credential: str = "github-token") -> str:
    return (
        f'\n[[sources]]\nname = "{name}"\ntype = "github"\nrepo = "{repo}"\n'
        f'base_url = "{base_url}"\ntoken = {{ credential = "{credential}" }}\n'
        'interval = "1s"\nwrite_spacing = 0\n'
    )


@pytest.fixture
def service(github_emulator: GitHubEmulator) -> Iterator[Service]:
    gh = github_emulator
    gh.token = TOKEN
    for repo in ("acme/api", "acme/web"):
        gh.add_repo(repo, collaborators=["alice-gh", "bob-gh"])
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer than that.
    d = Path(tempfile.mkdtemp(prefix="syncd-svc-"))
    creds = d / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "github-token").write_text(TOKEN + "\n")
    notify = NotifySocket(d / "notify")
    svc = Service(d, d / "syncd.toml", d / "ledger.db", creds, d / "daemon.log", notify, gh)
    svc.write_config()
    try:
        yield svc
    finally:
        for proc in svc.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        notify.close()
        shutil.rmtree(d, ignore_errors=True)


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    start = time.monotonic()
    code = proc.wait(timeout=timeout)
    return code, time.monotonic() - start


def ledger_rows(ledger: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SYNCD_BIN), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


# -- the daemon under the notify protocol ---------------------------------------------------------


def test_ready_watchdog_hang_reload_and_stop_in_order(service: Service) -> None:
    svc, notify = service, service.notify
    svc.gh.create_issue("acme/api", "Checkout fails", assignees=["alice-gh"])
    # Keep the ledger locked for a while, so that opening and migrating it has to wait.
    blocker = sqlite3.connect(svc.ledger, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    proc = svc.start()
    time.sleep(2)
    assert notify.snapshot() == [], "nothing may be sent before the ledger is ready"
    blocker.execute("ROLLBACK")
    blocker.close()

    # READY=1 comes first, and only once the ledger is opened and migrated.
    ready = notify.wait_for(has("READY"), "READY=1")
    assert ready == 0, notify.snapshot()[0].fields
    assert ledger_rows(svc.ledger, "SELECT name FROM migrations")

    # Healthy: pings at the watchdog's pace, and a STATUS line that says so.
    first = notify.wait_for(has("WATCHDOG"), "a first WATCHDOG=1", after=ready)
    third = notify.wait_for(has("WATCHDOG"), "more pings", after=first + 2)
    assert sum("WATCHDOG" in m for m in notify.snapshot()[first : third + 1]) >= 3
    notify.wait_for(status_has("1 source ok, outbox 0"), "an ok STATUS", after=ready)

    # The next poll hangs in a slow response for longer than hang_after: the pings stop
    # while it hangs, and come back once it is over.
    svc.gh.faults.add(Fault(delay=HANG_AFTER + 4, method="GET", path=ISSUES))
    hung = notify.wait_for(status_has("1 hung (api: poll running"), "a hung STATUS", after=third)
    resumed = notify.wait_for(has("WATCHDOG"), "pings after the hang", after=hung, timeout=15)
    seen = notify.snapshot()
    # Three ping periods or more went by without a ping, while STATUS kept saying why.
    assert seen[resumed].at - seen[hung].at >= 1.5, "pings went on while the poll hung"
    assert len(seen[hung:resumed]) >= 3
    (withheld,) = svc.events("not making progress; withholding watchdog pings")
    assert withheld["reason"].startswith("api: poll running for ")
    assert svc.events("making progress again; watchdog pings resumed")

    # SIGHUP: RELOADING=1 with the monotonic clock, then READY=1 again.
    before = notify.wait_for(has("WATCHDOG"), "a ping before the reload", after=resumed)
    proc.send_signal(signal.SIGHUP)
    reloading = notify.wait_for(has("RELOADING"), "RELOADING=1", after=before)
    usec = int(notify.snapshot()[reloading].fields["MONOTONIC_USEC"])
    assert abs(usec - time.monotonic_ns() // 1000) < 10_000_000
    notify.wait_for(has("READY"), "READY=1 after the reload", after=reloading)
    assert svc.events("config reloaded")

    # SIGTERM: STOPPING=1, then exit 0.
    proc.send_signal(signal.SIGTERM)
    code, _ = wait_exit(proc, timeout=15)
    assert code == 0
    stopping = notify.wait_for(has("STOPPING"), "STOPPING=1", after=reloading)
    assert all("WATCHDOG" not in m for m in notify.snapshot()[stopping:])
    (stopped,) = svc.events("stopped")
    assert stopped["clean"] is True  # every poll finished its page


def test_credentials_are_used_and_never_shown(service: Service) -> None:
    svc, notify = service, service.notify
    svc.gh.create_issue("acme/api", "Checkout fails", assignees=["alice-gh"])
    # One answer echoes the token back in an error body, the way a careless proxy might.
    bad = {"message": f"Bad credentials: {TOKEN}"}
    svc.gh.faults.add(Fault(status=401, body=bad, path=ISSUES, times=2))
    proc = svc.start()
    notify.wait_for(status_has("1 failing (api: 401 since "), "a failing STATUS")
    # The next poll authenticates with the credential, which the emulator accepts.
    notify.wait_for(status_has("1 source ok"), "an ok STATUS")
    assert ledger_rows(svc.ledger, "SELECT title, owner FROM requests") == [
        ("Checkout fails", "alice")
    ]
    assert svc.gh.count("GET", "/repos/{owner}/{repo}/issues", 200) >= 1
    # Neither the command line nor the environment carries it: it came from a file.
    assert TOKEN.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    assert TOKEN.encode() not in Path(f"/proc/{proc.pid}/environ").read_bytes()
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, timeout=15)[0] == 0

    failed = [e for e in svc.events("poll") if not e["ok"]]
    assert failed, "the 401 was logged"
    assert "Bad credentials: REDACTED" in failed[0]["error"]
    assert TOKEN not in svc.log.read_text()
    assert all(TOKEN not in json.dumps(m.fields) for m in notify.snapshot())


def test_a_broken_config_on_reload_keeps_the_old_one_running(service: Service) -> None:
    svc, notify = service, service.notify
    svc.gh.create_issue("acme/api", "Checkout fails")
    svc.gh.create_issue("acme/web", "Spinner never stops")
    proc = svc.start()
    ready = notify.wait_for(has("READY"), "READY=1")
    notify.wait_for(status_has("1 source ok"), "an ok STATUS", after=ready)

    good = svc.config.read_text()
    svc.config.write_text(good.replace('interval = "1s"', 'interval = "soon"', 1))
    proc.send_signal(signal.SIGHUP)
    reloading = notify.wait_for(has("RELOADING"), "RELOADING=1", after=ready)
    ready_again = notify.wait_for(has("READY"), "READY=1 after the reload", after=reloading)
    (failed,) = svc.events("reload failed; still running the previous config")
    assert any("sources[0] (api).interval" in p for p in failed["problems"])
    notify.wait_for(status_has("previous config kept"), "the failure in STATUS", after=reloading)

    # Still running the old config: polling, and pinging the watchdog.
    polls = len(svc.events("poll"))
    ping = notify.wait_for(has("WATCHDOG"), "a ping after the failed reload", after=ready_again)
    deadline = time.monotonic() + 10
    while len(svc.events("poll")) < polls + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(svc.events("poll")) >= polls + 2
    assert proc.poll() is None

    # A good config then takes effect: a second source starts polling.
    svc.write_config(extra_sources=source("web", "acme/web", svc.gh.base_url))
    proc.send_signal(signal.SIGHUP)
    reloading = notify.wait_for(has("RELOADING"), "a second RELOADING=1", after=ping)
    notify.wait_for(has("READY"), "READY=1 after the second reload", after=reloading)
    notify.wait_for(status_has("2 sources ok"), "both sources ok", after=reloading)
    (reloaded,) = svc.events("config reloaded")
    assert reloaded["sources"] == ["api", "web"]
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, timeout=15)[0] == 0


def test_sigterm_while_a_poll_is_stuck_exits_0_within_stop_timeout(service: Service) -> None:
    svc, notify = service, service.notify
    svc.gh.create_issue("acme/api", "Checkout fails")
    proc = svc.start()
    ready = notify.wait_for(has("READY"), "READY=1")
    notify.wait_for(status_has("1 source ok"), "an ok STATUS", after=ready)
    # Much longer than TimeoutStopSec: waiting for this poll would get syncd SIGKILLed.
    svc.gh.faults.add(Fault(delay=120, method="GET", path=ISSUES))
    notify.wait_for(status_has("1 hung"), "a hung STATUS", after=ready)

    proc.send_signal(signal.SIGTERM)
    code, took = wait_exit(proc, timeout=STOP_TIMEOUT + 10)
    assert code == 0
    assert STOP_TIMEOUT - 0.5 <= took <= STOP_TIMEOUT + 4
    notify.wait_for(has("STOPPING"), "STOPPING=1", after=ready)
    (gave_up,) = svc.events(
        "polls still running at stop_timeout; exiting without them "
        "(their sources are read again from the last committed page)"
    )
    assert gave_up["sources"] == ["api"]
    assert ledger_rows(svc.ledger, "PRAGMA integrity_check") == [("ok",)]


def test_a_second_daemon_on_the_same_ledger_refuses(service: Service) -> None:
    svc, notify = service, service.notify
    first = svc.start()
    ready = notify.wait_for(has("READY"), "READY=1")
    second = svc.start()
    assert wait_exit(second, timeout=30)[0] == 1
    text = svc.log.read_text()
    assert f"another syncd daemon (pid {first.pid}) is already running on {svc.ledger}" in text
    # It refused before it told systemd anything, and the first one carries on.
    assert sum("READY" in m for m in notify.snapshot()) == 1
    notify.wait_for(has("WATCHDOG"), "the first daemon's pings", after=ready)
    assert first.poll() is None


# -- operators on the same machine -----------------------------------------------------------------


def test_ledger_files_follow_the_units_umask(service: Service) -> None:
    # UMask=0007 in the unit: the operators' group may read and write the ledger.
    svc = service
    proc = svc.start(umask=0o007)
    svc.notify.wait_for(status_has("1 source ok"), "an ok STATUS")
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        mode = (svc.dir / name).stat().st_mode & 0o777
        assert mode == 0o660, f"{name}: {oct(mode)}"
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, timeout=15)[0] == 0


def test_operator_reads_do_not_wait_for_the_daemons_writes(service: Service) -> None:
    svc, notify = service, service.notify
    svc.gh.create_issue("acme/api", "Checkout fails", assignees=["alice-gh"])
    proc = svc.start()
    notify.wait_for(status_has("1 source ok"), "an ok STATUS")
    # Hold the ledger's write lock, as the daemon does while it applies a page. In WAL mode
    # even an EXCLUSIVE transaction lets readers through; without WAL they would wait for it
    # (up to the 30s busy timeout).
    writer = sqlite3.connect(svc.ledger, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("UPDATE requests SET title = 'uncommitted'")
        start = time.monotonic()
        status = cli("--config", str(svc.config), "status", "--json", timeout=20)
        shown = cli("--config", str(svc.config), "show", "REQ-1", "--json", timeout=20)
        took = time.monotonic() - start
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert status.returncode == 0, status.stderr
    assert shown.returncode == 0, shown.stderr
    assert took < 10
    (api,) = json.loads(status.stdout)["sources"]
    assert api["source"] == "api"
    assert json.loads(shown.stdout)["title"] == "Checkout fails"
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, timeout=15)[0] == 0


def test_operator_assign_while_the_daemon_runs(service: Service) -> None:
    svc, notify, gh = service, service.notify, service.gh
    gh.create_issue("acme/api", "Checkout fails", assignees=["alice-gh"])
    # Items link only by declaration: the web issue's author, a collaborator, declares it.
    gh.create_issue(
        "acme/web",
        "Spinner never stops",
        "GitHub issue: acme/api#1\n\nBackend side.",
        user="bob-gh",
    )
    svc.write_config(extra_sources=source("web", "acme/web", gh.base_url))
    proc = svc.start()

    def owners(repo: str) -> list[str]:
        return [a["login"] for a in gh.issue(repo, 1)["assignees"]]

    deadline = time.monotonic() + 20
    while owners("acme/web") != ["alice-gh"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert owners("acme/web") == ["alice-gh"]

    # Handoffs back and forth from the CLI while the daemon polls both sources every second
    # and writes back: each one must land whole, and the last one must win everywhere.
    people = ["bob", "alice", "bob", "alice", "bob"]
    for i, person in enumerate(people):
        result = cli("--config", str(svc.config), "assign", "REQ-1", person, "--note", f"n{i}")
        assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 20
    while (owners("acme/api"), owners("acme/web")) != (["bob-gh"], ["bob-gh"]):
        assert time.monotonic() < deadline, (owners("acme/api"), owners("acme/web"))
        time.sleep(0.2)
    notify.wait_for(status_has("2 sources ok, outbox 0"), "an empty outbox")
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, timeout=15)[0] == 0

    assert ledger_rows(svc.ledger, "PRAGMA integrity_check") == [("ok",)]
    assert ledger_rows(svc.ledger, "SELECT key, owner FROM requests") == [("REQ-1", "bob")]
    handoffs = ledger_rows(
        svc.ledger,
        "SELECT to_value, note FROM events "
        "WHERE kind = 'owner_changed' AND source = 'operator' ORDER BY id",
    )
    assert handoffs == [(p, f"n{i}") for i, p in enumerate(people)]
    assert ledger_rows(svc.ledger, "SELECT count(*) FROM outbox WHERE status = 'pending'") == [(0,)]
    assert "database is locked" not in svc.log.read_text()


# -- the watchdog's decisions, in process --------------------------------------------------------------


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__(address="")
        self.sent: list[tuple[str, ...]] = []

    def send(self, *lines: str) -> None:
        self.sent.append(lines)


def test_a_stalled_scheduler_stops_the_pings(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service
    svc.write_config(hang_after=1)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(svc.creds))
    notifier = RecordingNotifier()
    daemon = Daemon(svc.config, notifier=notifier)
    try:
        daemon._schedule()
        # The scheduler runs, but no longer starts the source's job: its jobs are gone
        # before their first run, as when its thread stalls or a job is lost.
        daemon.scheduler.start(paused=True)
        daemon.scheduler.remove_all_jobs()
        daemon.scheduler.resume()
        daemon._tick()
        assert "WATCHDOG=1" in notifier.sent[-1]
        # 1s interval: two intervals plus hang_after (1s) without a start is a stall.
        time.sleep(3.3)
        daemon._tick()
        assert "WATCHDOG=1" not in notifier.sent[-1]
        assert re.search(r"1 not scheduled \(api: no poll for \d+s\)", notifier.sent[-1][0])
        verdict, _ = daemon.check()
        assert verdict.reason.startswith("api: no poll started for ")
        daemon.scheduler.pause()
        verdict, line = daemon.check()
        assert verdict == (False, "scheduler is not running")
        assert "scheduler not running" in line
    finally:
        daemon.scheduler.shutdown(wait=False)
        daemon.engine.close()
        daemon.reader.close()
        daemon.ledger.close()


T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def progress(**jobs: JobState) -> Progress:
    return Progress(started_at=T0, jobs=dict(jobs))


def job(**kw: Any) -> JobState:
    return JobState(interval=timedelta(minutes=1), scheduled_at=T0, **kw)


def test_health_is_about_progress_not_about_failures() -> None:
    hang, jitter = timedelta(minutes=10), timedelta(seconds=5)
    now = T0 + timedelta(minutes=30)
    recent = now - timedelta(seconds=30)
    # A source that fails (a 429, a refused token) is still polled on time: healthy.
    failing = job(last_start=recent, last_end=recent, last_ok=False, last_error="api: 429")
    assert health(progress(api=failing), now, hang, jitter).healthy
    # A poll running past hang_after is a hang.
    stuck = job(last_start=now - timedelta(minutes=11), running_since=now - timedelta(minutes=11))
    assert health(progress(api=stuck), now, hang, jitter) == (False, "api: poll running for 660s")
    # A job not started for two intervals + jitter + hang_after: the scheduler stalled.
    idle = job(last_start=now - timedelta(minutes=13))
    verdict = health(progress(ok=job(last_start=recent), api=idle), now, hang, jitter)
    assert verdict == (False, "api: no poll started for 780s")
    assert health(progress(api=job(last_start=now - timedelta(minutes=12))), now, hang, jitter)[0]
    # A job that never ran is judged from when it was scheduled.
    assert not health(progress(api=job()), now, hang, jitter).healthy
    assert not health(progress(), now, hang, jitter, scheduler_running=False).healthy


def test_status_line_names_what_needs_a_look() -> None:
    hang, jitter = timedelta(minutes=10), timedelta(0)
    now = T0 + timedelta(minutes=5)
    since = T0 + timedelta(minutes=3)
    ok = job(last_start=now, last_end=now, last_ok=True)
    err = "trello-ops: GET https://api.trello.com/1/boards/x/cards answered 429: {}"
    failing = job(last_start=now, last_ok=False, last_error=err, failing_since=since)
    p = progress(a=ok, b=replace(ok), c=replace(ok), d=replace(ok))
    p.jobs["trello-ops"] = failing
    hhmm = since.astimezone().strftime("%H:%M")
    line = status_line(p, 0, 0, now, hang, jitter)
    assert line == f"4 sources ok, 1 failing (trello-ops: 429 since {hhmm}), outbox 0"
    eleven = now - timedelta(minutes=11)
    p.jobs["c"] = job(last_start=eleven, running_since=eleven, last_ok=True)
    line = status_line(p, 3, 1, now, hang, jitter, notes=["reload failed"])
    assert line == (
        f"3 sources ok, 1 failing (trello-ops: 429 since {hhmm}), "
        "1 hung (c: poll running 660s), outbox 3, 1 dead, reload failed"
    )


def test_failing_since_is_the_start_of_the_streak() -> None:
    j = job()
    j.started(T0)
    j.finished(T0 + timedelta(seconds=1), False, "api: x timed out")
    j.started(T0 + timedelta(minutes=1))
    j.finished(T0 + timedelta(minutes=1, seconds=1), False, "api: x timed out")
    assert j.failing_since == T0
    j.started(T0 + timedelta(minutes=2))
    j.finished(T0 + timedelta(minutes=2, seconds=1), True, None)
    assert j.failing_since is None


@pytest.mark.parametrize(
    ("error", "short"),
    [
        ("api: GET https://x/repos answered 503: upstream", "503"),
        ("api: GET https://x/repos timed out", "timeout"),
        ("api: GET https://x/repos failed: ConnectError", "ConnectError"),
        ("api: internal error: KeyError: 'x'", "internal error"),
        (None, "failed"),
        ("mail: the mailbox INBOX does not exist", "the mailbox INBOX does not exist"),
    ],
)
def test_short_reason(error: str | None, short: str) -> None:
    assert short_reason(error) == short


# -- the unit files ------------------------------------------------------------------------------------

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


def directives(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) for every directive, in order; repeated keys kept."""
    out, section = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def one(path: Path, key: str) -> str:
    (value,) = [v for _, k, v in directives(path) if k == key]
    return value


def runnable_copy(unit: Path, into: Path, name: str | None = None) -> Path:
    """The unit with ExecStart pointing at this venv's syncd, so that verify, which insists
    that the program exists, checks everything else exactly as shipped."""
    text = unit.read_text()
    for directive in ("ExecStart", "ExecReload"):
        shipped = f"{directive}=/opt/syncd/venv/bin/syncd "
        assert text.count(shipped) == 1
        text = text.replace(shipped, f"{directive}={SYNCD_BIN} ")
    copy = into / unit.name
    copy.write_text(text)
    if name is None:
        return copy
    (into / name).symlink_to(copy.name)
    return into / name


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_analyze
@pytest.mark.parametrize(
    ("unit", "instance"), [("syncd.service", None), ("syncd@.service", "syncd@ops.service")]
)
def test_unit_passes_verify(tmp_path: Path, unit: str, instance: str | None) -> None:
    path = runnable_copy(UNITS / unit, tmp_path, instance)
    result = analyze("verify", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


@needs_analyze
def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    # verify exits 0 on a directive it cannot parse (it ignores it, as systemd would), so
    # the check above also insists on silence. Here is such a unit, and what it says.
    path = runnable_copy(UNITS / "syncd.service", tmp_path)
    path.write_text(path.read_text().replace("Type=notify", "Type=notfy"))
    result = analyze("verify", str(path))
    assert "Failed to parse service type, ignoring: notfy" in result.stdout + result.stderr


@needs_analyze
@pytest.mark.parametrize(
    ("unit", "instance"), [("syncd.service", None), ("syncd@.service", "syncd@ops.service")]
)
def test_unit_exposure_is_at_most_1_5(tmp_path: Path, unit: str, instance: str | None) -> None:
    path = runnable_copy(UNITS / unit, tmp_path, instance)
    result = analyze("security", "--offline=true", "--no-pager", str(path))
    assert result.returncode == 0, result.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert m, result.stdout
    assert float(m.group(1)) <= 1.5, result.stdout


def test_unit_is_what_the_daemon_expects() -> None:
    unit = UNITS / "syncd.service"
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"
    assert one(unit, "ExecStart").split()[1:] == ["--config", DEFAULT_CONFIG_PATH, "run"]
    # Waits for the daemon's answer, so `systemctl reload` returns after the reload.
    assert one(unit, "ExecReload").split()[1:] == [
        "--config",
        DEFAULT_CONFIG_PATH,
        "reload",
        "--pid",
        "$MAINPID",
    ]
    assert one(unit, "Restart") == "on-failure"
    assert one(unit, "StateDirectory") == "syncd"
    assert one(unit, "ConfigurationDirectory") == "syncd"
    assert one(unit, "RestrictAddressFamilies").split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert one(unit, "LoadCredential").startswith("github-token:/etc/syncd/credentials/")
    # The stop grace syncd gives stuck polls must end before systemd's SIGKILL.
    stop = timedelta(seconds=int(one(unit, "TimeoutStopSec").removesuffix("s")))
    assert DaemonConfig().stop_timeout < stop
    assert int(one(unit, "WatchdogSec").removesuffix("s")) >= 10
    # No secret may live in the unit: no environment at all.
    keys = {k for _, k, _ in directives(unit)}
    assert not keys & {"Environment", "EnvironmentFile", "DynamicUser"}
    assert one(unit, "User") == "syncd"
    assert one(unit, "Group") == "syncd-operators"


def test_template_differs_from_the_unit_only_where_instances_must() -> None:
    plain = directives(UNITS / "syncd.service")
    template = directives(UNITS / "syncd@.service")
    differ = {k for a, b in zip(plain, template, strict=True) if a != b for _, k, _ in (a, b)}
    assert differ == {
        "Description",
        "ExecStart",
        "ExecReload",
        "SyslogIdentifier",
        "StateDirectory",
        "LoadCredential",
    }
    assert one(UNITS / "syncd@.service", "StateDirectory") == "syncd-%i"
    assert "/etc/syncd/%i.toml" in one(UNITS / "syncd@.service", "ExecStart")
    assert "/etc/syncd/%i.toml" in one(UNITS / "syncd@.service", "ExecReload")


def test_a_long_job_that_keeps_progressing_is_not_hung() -> None:
    t0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    hang = timedelta(minutes=10)
    job = JobState(interval=timedelta(minutes=1), scheduled_at=t0)
    job.started(t0)
    p = Progress(started_at=t0, jobs={"api": job})
    assert hung(p, t0 + timedelta(minutes=11), hang) == [("api", timedelta(minutes=11))]
    job.progressed(t0 + timedelta(minutes=9))  # e.g. the 500th write-back went out
    assert hung(p, t0 + timedelta(minutes=11), hang) == []
    job.finished(t0 + timedelta(minutes=12), True, None)
    job.progressed(t0 + timedelta(minutes=13))  # late calls after the end change nothing
    assert job.running_since is None


# -- `syncd reload`: what the unit's ExecReload runs --------------------------------------------


def test_reload_returns_after_the_daemon_has_reloaded(service: Service) -> None:
    svc, notify = service, service.notify
    proc = svc.start()
    ready = notify.wait_for(has("READY"), "READY=1")
    svc.write_config(extra_sources=source("web", "acme/web", svc.gh.base_url))
    result = cli("--config", str(svc.config), "reload", "--pid", str(proc.pid))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"reloaded: the daemon (pid {proc.pid}) runs the new config\n"
    # By the time it returned, systemd had been told the reload began and ended.
    seen = notify.snapshot()[ready + 1 :]
    reloading = next(i for i, m in enumerate(seen) if m.get("RELOADING") == "1")
    assert any(m.get("READY") == "1" for m in seen[reloading:])
    assert svc.events("config reloaded")

    # A broken config: exit 1 with the problems; the daemon keeps running the old one.
    svc.config.write_text(svc.config.read_text().replace('interval = "1s"', 'interval = "2h1h"', 1))
    result = cli("--config", str(svc.config), "reload")  # the pid from the ledger's lock
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"syncd: error: {svc.config}: reload failed; the daemon keeps running the previous config"
    )
    assert any("sources[0] (api).interval: '2h1h': 'h' appears twice" in ln for ln in lines[1:])
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, timeout=15)[0] == 0


def test_status_says_whether_a_daemon_holds_the_ledger(service: Service) -> None:
    proc = service.start()
    service.notify.wait_for(has("READY"), "READY=1")
    deadline = time.monotonic() + 15
    daemon: dict[str, Any] = {}
    while time.monotonic() < deadline:
        daemon = json.loads(cli("--config", str(service.config), "status", "--json").stdout)[
            "daemon"
        ]
        if daemon["last_progress_at"]:
            break
        time.sleep(0.2)
    assert daemon["running"] is True
    assert daemon["pid"] == proc.pid
    assert daemon["pid_alive"] is True
    assert daemon["last_progress_at"] is not None
    text = cli("--config", str(service.config), "status").stdout
    assert text.splitlines()[0].startswith(f"daemon: running, pid {proc.pid}; last progress ")

    proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc, timeout=15)[0] == 0
    stopped = json.loads(cli("--config", str(service.config), "status", "--json").stdout)
    assert stopped["daemon"]["running"] is False
    assert stopped["daemon"]["pid_alive"] is False
    first = cli("--config", str(service.config), "status").stdout.splitlines()[0]
    assert first.startswith(f"daemon: NOT RUNNING (last pid {proc.pid} gone, stopped ")
    gone = cli("--config", str(service.config), "reload", "--pid", str(proc.pid))
    assert gone.returncode == 1
    assert gone.stderr == f"syncd: error: no process {proc.pid}; is the daemon running?\n"
    nothing = cli("--config", str(service.config), "reload")
    assert nothing.returncode == 1
    assert nothing.stderr == f"syncd: error: no daemon holds {service.ledger}; nothing to reload\n"
