"""Running the real `syncd` executable from tests: config files, processes, waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SYNCD = [sys.executable, "-m", "syncd"]


def github_source(name: str, repo: str, base_url: str, token_env: str, interval: str = "1s") -> str:
    return f"""
[[sources]]
name = "{name}"
type = "github"
repo = "{repo}"
base_url = "{base_url}"
token = {{ env = "{token_env}" }}
interval = "{interval}"
write_spacing = 0
"""


def person(pid: str, **handles: str) -> str:
    inner = ", ".join(f'{k} = "{v}"' for k, v in handles.items())
    return f'\n[[people]]\nid = "{pid}"\nhandles = {{ {inner} }}\n'


def write_config(path: Path, body: str, *, ledger: Path) -> Path:
    path.write_text(f'ledger = "{ledger}"\n\n[daemon]\njitter = "0s"\n' + body)
    return path


def syncd(
    *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*SYNCD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"syncd {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


@contextmanager
def daemon(
    config: Path, *extra: str, env: Mapping[str, str] | None = None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`syncd run` as a real process; stopped with SIGTERM (then killed) afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*SYNCD, "--config", str(config), "run", *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
