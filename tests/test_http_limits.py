"""Every header is hostile and every body is bounded, against the real `syncd sync --once`.

The GitHub emulator answers with headers and bodies a hostile or broken server could send;
syncd runs as a child process, so its exit status, its log lines and its peak memory
(its ru_maxrss, from wait4, measured apart from pytest's) are what a deployment would see.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from syncd.config import parse_config
from syncd.cycle import Engine
from syncd.ledger import Ledger
from syncd.sandbox.github import DEFAULT_TOKEN, GitHubEmulator
from syncd.sandbox.server import Fault

SYNCD = str(Path(sys.executable).with_name("syncd"))
REPO = "acme/api"
GIB = 1 << 30
RSS_LIMIT_MB = 200


def write_config(tmp: Path, github: GitHubEmulator, daemon: str = "") -> Path:
    path = tmp / "syncd.toml"
    path.write_text(
        f'ledger = "{tmp / "ledger.db"}"\n'
        f"[daemon]\n{daemon}\n"
        "[[sources]]\n"
        'name = "api"\ntype = "github"\n'
        f'repo = "{REPO}"\nbase_url = "{github.base_url}"\n'
        'token = { env = "LIMITS_GITHUB_TOKEN" }\n'
    )
    return path


# Linux carries the peak RSS of the process image an exec replaces into the new one, and a
# child forked (or vforked) from pytest starts from pytest's own, which grows to hundreds of
# MB over a full run. So syncd is started by a small interpreter, whose wait4 sees syncd's
# peak alone (plus that interpreter's few MB), and which exits with syncd's status.
_MEASURE = """
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def sync_once(config: Path) -> tuple[int, str, str, float]:
    """Exit status, stdout, stderr and peak RSS in MB of one `syncd sync --once`."""
    env = {**os.environ, "LIMITS_GITHUB_TOKEN": DEFAULT_TOKEN}
    out, err = config.parent / "out", config.parent / "err"
    peak = config.parent / "peak-rss-kib"
    with out.open("wb") as o, err.open("wb") as e:
        measured = [SYNCD, "--config", str(config), "sync", "--once"]
        code = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(peak), *measured],
            stdout=o,
            stderr=e,
            env=env,
            check=False,
        ).returncode
    return (
        code,
        out.read_text(),
        err.read_text(),
        int(peak.read_text()) / 1024,  # Linux reports KiB
    )


@pytest.fixture
def github(github_emulator: GitHubEmulator) -> GitHubEmulator:
    github_emulator.add_repo(REPO, collaborators=["alice-m"])
    github_emulator.create_issue(REPO, "One", assignees=["alice-m"])
    return github_emulator


def log_events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_malformed_headers_are_ignored_with_a_log_line(
    github: GitHubEmulator, tmp_path: Path
) -> None:
    # First a 429 whose retry-after is garbage: the generic backoff applies and the retry
    # succeeds. Then answers carrying a reset in milliseconds (octokit's recorded fixtures
    # do), a superscript digit and a 10 kB header.
    github.faults.add(Fault(status=429, headers={"retry-after": "soon, maybe"}, body="{}"))
    github.faults.add(
        Fault(
            times=None,
            headers={
                "x-ratelimit-reset": "1700000000000",
                "x-ratelimit-remaining": "\u00b2",
                "x-ratelimit-limit": "9" * 10_000,
            },
        )
    )
    code, out, err, _ = sync_once(write_config(tmp_path, github))
    assert code == 0, err
    assert "api: ok" in out
    ignored = {e["header"] for e in log_events(err) if e.get("event") == "header_ignored"}
    assert {"retry-after", "x-ratelimit-reset", "x-ratelimit-remaining"} <= ignored, err
    assert "x-ratelimit-limit" in ignored


def gzip_bomb(size: int) -> bytes:
    """`size` zero bytes, gzip-compressed a mebibyte at a time (about 1 MB for 1 GiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join([*parts, packer.flush()])


def test_a_gzip_bomb_fails_the_source_with_the_limit_and_memory_stays_bounded(
    github: GitHubEmulator, tmp_path: Path
) -> None:
    bomb = gzip_bomb(GIB)
    assert len(bomb) < 2 * (1 << 20)
    github.faults.add(
        Fault(
            status=200,
            body=bomb,
            headers={"content-encoding": "gzip"},
            path=r"/issues$",
            times=None,
        )
    )
    code, out, err, peak_mb = sync_once(write_config(tmp_path, github))
    print(f"gzip bomb of 1 GiB: peak RSS of syncd sync --once {peak_mb:.1f} MB")
    assert code == 1, err
    assert "api: FAILED" in out
    assert "more than 33554432 bytes once decompressed" in out
    assert "max_response_bytes" in out
    assert peak_mb < RSS_LIMIT_MB


def test_the_limit_and_the_timeout_are_settings(
    github: GitHubEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIMITS_GITHUB_TOKEN", DEFAULT_TOKEN)
    config_path = write_config(
        tmp_path, github, 'http_timeout = "7s"\nmax_response_bytes = 100000\n'
    )
    import tomllib

    config = parse_config(tomllib.loads(config_path.read_text()))
    with Ledger(config.ledger) as ledger:
        engine = Engine(config, ledger)
        try:
            adapter = engine.adapters["api"]
            assert adapter.http.timeout == 7.0
            # A listing bigger than 100 kB fails with the configured limit in its message.
            for n in range(300):
                github.create_issue(REPO, f"Issue {n} " + "x" * 400)
            (result,) = engine.sync_once()
        finally:
            engine.close()
    assert not result.ok
    assert result.error is not None
    assert "more than 100000 bytes" in result.error


def test_an_error_quoting_the_source_reaches_the_terminal_without_control_characters(
    github: GitHubEmulator, tmp_path: Path
) -> None:
    github.faults.add(
        Fault(status=422, body="\x1b]0;pwned\x07Validation\r\nFAKE\x1b[2J failed", times=None)
    )
    code, out, err, _ = sync_once(write_config(tmp_path, github))
    assert code == 1
    assert "Validation" in out
    assert "failed" in out
    for text in (out, err):
        assert not any(c in text for c in "\x1b\x07\r"), repr(text)


def test_a_source_that_cannot_be_reached_says_why(tmp_path: Path) -> None:
    """Not only "ConnectError": the system's reason, which tells the admin what to fix."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    closed = SimpleNamespace(base_url=f"http://127.0.0.1:{port}/api/v3")
    code, out, err, _ = sync_once(write_config(tmp_path, closed))  # type: ignore[arg-type]
    assert code == 1
    line = next(x for x in out.splitlines() if x.startswith("api: FAILED"))
    assert line.endswith("failed: ConnectError ([Errno 111] Connection refused)"), line
    assert "syncd: error: 1 of 1 sources failed: api" in err
