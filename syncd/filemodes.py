"""File modes: what syncd creates is never readable by others, whatever the umask; and the
files it reads secrets and settings from are checked the way ssh checks its own.

The ledger (and SQLite's -wal and -shm, which take the ledger's mode), its lock and state
files hold notes, customer addresses and owners: at most 0660, and group write only where
the umask grants it (the unit's UMask=0007 does, so operators can `syncd assign`; the usual
022 gives 0640). HTTP traces hold whole response bodies: 0600.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from syncd.config import Config

LEDGER_MODE = 0o660  # before the umask; "others" are always cleared
TRACE_MODE = 0o600


def _restrict(fd: int, most: int) -> None:
    """Clear every bit beyond `most` on an open file: the umask may have let "others" in."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & ~most:
        os.fchmod(fd, mode & most)


def create_private(path: Path, most: int = LEDGER_MODE) -> bool:
    """Create `path` empty with at most `most` (less what the umask takes away). False when
    it existed already; an existing file of this user's is restricted the same way."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, most)
    except FileExistsError:
        restrict_existing(path, most)
        return False
    try:
        _restrict(fd, most)
    finally:
        os.close(fd)
    return True


def restrict_existing(path: Path, most: int = LEDGER_MODE) -> None:
    """Take bits beyond `most` off a file this user owns (a ledger made by an older syncd
    under umask 022 was world-readable). Another user's file is left as it is."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & ~most:
        os.chmod(path, stat.S_IMODE(st.st_mode) & most)


def open_private(path: Path, flags: int, most: int) -> int:
    """os.open with O_CREAT, the file then holding at most `most` (when it is this user's)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, most)
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            _restrict(fd, most)
    except OSError:
        os.close(fd)
        raise
    return fd


def open_append(path: Path, most: int = TRACE_MODE) -> int:
    """A file descriptor appending to `path` (a trace), at most 0600."""
    return open_private(path, os.O_WRONLY | os.O_APPEND, most)


def ledger_files(ledger: Path) -> list[Path]:
    return [ledger, *(ledger.with_name(ledger.name + s) for s in ("-wal", "-shm"))]


def loose_files(config_path: Path | None, config: Config) -> list[str]:
    """Warnings, as ssh gives them, for a config file others may write (they could point
    syncd at their own server and collect its tokens) and secret files others may read."""
    found = []
    if config_path is not None:
        found += _loose(config_path, stat.S_IWOTH, "writable by others", "o-w")
    for source in config.sources:
        for name, ref in source.secret_refs().items():
            if ref.file is not None:
                found += _loose(
                    Path(ref.file),
                    stat.S_IROTH | stat.S_IWOTH,
                    f"readable by others (source {source.name}, {name})",
                    "o-rwx",
                )
    return found


def _loose(path: Path, bits: int, what: str, fix: str) -> list[str]:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return []  # a missing file is reported where it is read
    if mode & bits:
        return [f"UNPROTECTED FILE: {path} is {what} (mode {mode:04o}); chmod {fix} {path}"]
    return []
