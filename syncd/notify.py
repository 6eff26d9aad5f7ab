"""The systemd notify protocol: a datagram per message to $NOTIFY_SOCKET (sd_notify(3)).

Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the daemon needs no flag.
The protocol is one datagram of newline-separated KEY=VALUE lines; no library is needed.
"""

from __future__ import annotations

import contextlib
import os
import socket

_SEND_TIMEOUT = 2.0


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | None = None
        self._sock: socket.socket | None = None
        if address:
            # A leading '@' names a socket in the abstract namespace.
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # A full receive queue would block sendto(); the main loop must never hang on it.
            self._sock.settimeout(_SEND_TIMEOUT)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> None:
        if self._sock is None or self._address is None:
            return
        # systemd going away must never take the daemon with it.
        with contextlib.suppress(OSError):
            self._sock.sendto("\n".join(lines).encode(), self._address)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Half of WatchdogSec, as systemd recommends, when this process is the one watched."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.1, int(usec) / 2_000_000)
    except ValueError:
        return None
