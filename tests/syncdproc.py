"""The installed `syncd` console script run as a subprocess, the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SYNCD = Path(sys.executable).parent / "syncd"
# Variables that would change what syncd reads or prints, cleared unless a test sets them.
_CLEARED = (
    "SYNCD_CONFIG",
    "CREDENTIALS_DIRECTORY",
    "STATE_DIRECTORY",
    "NO_COLOR",
    "COLUMNS",
    "LINES",
    "GITHUB_TOKEN",
)


def syncd(
    *args: str | Path,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    full_env.update(env or {})
    return subprocess.run(
        [str(SYNCD), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
        check=False,
    )


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The "syncd: error: ..." lines, without the prefix."""
    prefix = "syncd: error: "
    return [ln.removeprefix(prefix) for ln in result.stderr.splitlines() if ln.startswith(prefix)]
