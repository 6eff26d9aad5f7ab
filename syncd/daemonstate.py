"""What the running daemon tells other processes about itself, next to its ledger.

Two files beside `ledger.db`:

- `ledger.db.lock`: the daemon lock (Ledger.acquire_daemon_lock), holding the daemon's pid.
  Whether a daemon holds it is answered by trying a shared lock, not by trusting the pid.
- `ledger.db.daemon.json`: written by the daemon (atomically, by rename) when it starts,
  stops, after each reload and at most every PROGRESS_EVERY while it makes progress:
  its pid, when it started, when a poll last finished, and the last reload's outcome.

`syncd status` reads both to say whether a daemon holds the ledger and when it last made
progress; `syncd reload` signals the daemon and waits here for its answer.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from syncd.filemodes import LEDGER_MODE, open_private
from syncd.ledger import iso, now_utc, parse_iso

# How often, at most, the progress time is written while polls keep finishing.
PROGRESS_EVERY = 5.0


def lock_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".lock")


def state_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + ".daemon.json")


def write_state(ledger: Path, state: dict[str, Any]) -> None:
    """Replace the state file whole, so a reader never sees half of it."""
    path = state_path(ledger)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC, LEDGER_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(state, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_state(ledger: Path) -> dict[str, Any]:
    try:
        data = json.loads(state_path(ledger).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_held(ledger: Path) -> bool | None:
    """Whether a daemon holds the ledger's lock now; None when that cannot be told (the
    lock file is not readable by this user)."""
    try:
        fd = os.open(lock_path(ledger), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing releases a shared lock taken just to test
    return False


def lock_pid(ledger: Path) -> int | None:
    """The pid written into the lock file by the last daemon that took it."""
    try:
        text = lock_path(ledger).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process (the service user's): alive
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def daemon_status(ledger: Path) -> dict[str, Any]:
    """What `syncd status` says about the daemon, as JSON-ready values."""
    held = lock_held(ledger)
    state = read_state(ledger)
    pid = lock_pid(ledger) or state.get("pid")
    alive = pid_alive(int(pid)) if isinstance(pid, int) else None
    progress = parse_iso(state.get("progress_at"))
    return {
        "running": held,
        "pid": pid,
        "pid_alive": alive,
        "started_at": state.get("started_at"),
        "stopped_at": state.get("stopped_at"),
        "last_progress_at": state.get("progress_at"),
        "progress_age_seconds": (
            int((now_utc() - progress).total_seconds()) if progress is not None else None
        ),
        "last_reload_at": state.get("reload_at"),
        "last_reload_ok": state.get("reload_ok"),
    }


class StateWriter:
    """The daemon's side: keeps the state file current without writing on every tick."""

    def __init__(self, ledger: Path) -> None:
        self.ledger = ledger
        self.state: dict[str, Any] = {
            "pid": os.getpid(),
            "started_at": iso(now_utc()),
            "stopped_at": None,
            "progress_at": None,
            "reloads": 0,
            "reload_at": None,
            "reload_ok": None,
            "reload_problems": [],
        }
        self._written_progress: str | None = None
        self._written_at = 0.0

    def _write(self) -> None:
        # Best effort: a full disk or a read-only directory must not stop the daemon.
        with contextlib.suppress(OSError):
            write_state(self.ledger, self.state)

    def started(self) -> None:
        self._write()

    def progressed(self, progress_at: str | None, monotonic: float) -> None:
        if progress_at is None or progress_at == self._written_progress:
            return
        self.state["progress_at"] = progress_at
        if monotonic - self._written_at >= PROGRESS_EVERY or self._written_progress is None:
            self._written_progress = progress_at
            self._written_at = monotonic
            self._write()

    def reloaded(self, ok: bool, problems: list[str]) -> None:
        self.state.update(
            reloads=self.state["reloads"] + 1,
            reload_at=iso(now_utc()),
            reload_ok=ok,
            reload_problems=problems,
        )
        self._write()

    def stopped(self) -> None:
        self.state["stopped_at"] = iso(now_utc())
        self._write()
