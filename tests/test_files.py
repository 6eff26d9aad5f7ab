"""Files syncd creates are never readable by others, whatever the umask; loose config and
secret files are warned about; ledger paths are taken literally; commands that need a
ledger never create one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.daemonstate import write_state
from syncd.http import TraceWriter
from syncd.ledger import Ledger, now_utc
from syncd.models import Observation, Page
from syncd.people import Directory

SYNCD = str(Path(sys.executable).with_name("syncd"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000, 0o007], ids=["umask-022", "umask-000", "umask-007"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def observe(ledger: Ledger, ref: str, title: str) -> None:
    obs = Observation(
        source="api",
        ref=ref,
        url=f"https://github.example/{ref}",
        title=title,
        state="open",
        owners=(),
        updated_at=now_utc(),
        keys=(f"github:{ref}",),
    )
    ledger.apply_page("api", "github", Page([obs]), Directory.build([]))


def test_ledger_wal_shm_lock_state_and_trace_modes(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path, daemon=True) as ledger:
        observe(ledger, "acme/api#1", "One")
        write_state(path, {"pid": 1})
        trace = tmp_path / "trace.jsonl"
        TraceWriter(trace).write({"x": 1})
        files = [path, tmp_path / "ledger.db-wal", tmp_path / "ledger.db-shm"]
        files += [tmp_path / "ledger.db.lock", tmp_path / "ledger.db.daemon.json"]
        for f in files:
            assert f.exists(), f
            m = mode(f)
            assert m & 0o007 == 0, f"{f.name} is {m:04o} under umask {umask:03o}"
            assert m & 0o111 == 0
            assert m & 0o400
            # Group write only where the umask grants it (the unit's UMask=0007).
            expected = 0o640 if umask & 0o020 or f.name.endswith(".lock") else 0o660
            assert m == expected, f"{f.name} is {m:04o} under umask {umask:03o}"
        assert mode(trace) == 0o600


def test_an_old_world_readable_ledger_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path):
        pass
    os.chmod(path, 0o644)
    with Ledger(path):
        pass
    assert mode(path) & 0o007 == 0


def syncd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYNCD, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_config_check_warns_about_loose_config_and_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("ghp_not_a_real_token_1234567890\n")
    config = tmp_path / "syncd.toml"
    config.write_text(
        f'ledger = "{tmp_path / "ledger.db"}"\n'
        '[[sources]]\nname = "api"\ntype = "github"\nrepo = "acme/api"\n'
        f'token = {{ file = "{secret}" }}\n'
    )
    os.chmod(secret, 0o600)
    os.chmod(config, 0o640)
    quiet = syncd("config", "check", "--config", str(config))
    assert quiet.returncode == 0, quiet.stderr
    assert "warning" not in quiet.stderr
    os.chmod(secret, 0o644)
    os.chmod(config, 0o666)  # noqa: S103 - the loose file under test
    loud = syncd("config", "check", "--config", str(config))
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert any(f"{config} is writable by others" in line for line in lines), lines
    assert any(f"{secret} is readable by others" in line for line in lines), lines
    assert all(line.startswith("syncd: warning: UNPROTECTED FILE") for line in lines)
    assert "ghp_not_a_real_token" not in loud.stderr


@pytest.mark.parametrize("folder", ["pt#frag", "a%41b", "what?mode=rw", "with spaces"])
def test_ledger_paths_are_taken_literally(tmp_path: Path, folder: str) -> None:
    path = tmp_path / folder / "ledger.db"
    path.parent.mkdir()
    with Ledger(path) as ledger:
        observe(ledger, "acme/api#1", f"Lives in {folder}")
    if "%41" in folder:  # the folder SQLite would open if it decoded the escape
        (tmp_path / "aAb").mkdir()
        with Ledger(tmp_path / "aAb" / "ledger.db") as other:
            observe(other, "acme/api#2", "The wrong ledger")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = syncd("--ledger", str(path), "ls")
    assert result.returncode == 0, result.stderr
    assert f"Lives in {folder}" in result.stdout
    assert "wrong ledger" not in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created


@pytest.mark.parametrize(
    "command",
    [
        ["assign", "REQ-1", "bob"],
        ["ls"],
        ["show", "REQ-1"],
        ["link", "REQ-1", "OPS-7"],
        ["unlink", "OPS-7"],
        ["split", "REQ-2"],
        ["relink", "--dry-run"],
        ["away", "bob", "--until", "3d"],
        ["back", "bob"],
        ["accept", "REQ-1"],
    ],
)
def test_commands_that_need_a_ledger_never_create_one(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nope" / "pt#frag" / "ledger.db"
    result = syncd("--ledger", str(missing), *command)
    assert result.returncode == 1
    assert f"syncd: error: no ledger at {missing}" in result.stderr
    assert list(tmp_path.iterdir()) == []
