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
    "SUDO_USER",
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


def syncd_on_terminal(
    *args: str | Path, columns: int = 80, lines: int = 24, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run syncd with stdout and stderr on a pseudo-terminal of the given size; returns the
    exit status and everything it printed (with "\\r\\n" line ends turned into "\\n")."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    full_env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    full_env.update({"TERM": "xterm-256color", **(env or {})})
    proc = subprocess.Popen(
        [str(SYNCD), *map(str, args)], stdin=slave, stdout=slave, stderr=slave, env=full_env
    )
    os.close(slave)
    output = read_terminal(master)
    code = proc.wait(timeout=60)
    return code, output.decode("utf-8", "replace").replace("\r\n", "\n")


def read_terminal(master: int) -> bytes:
    """All a child writes to its pseudo-terminal until it closes its side; closes `master`."""
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return b"".join(chunks)
