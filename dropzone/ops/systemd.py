"""systemd's notify protocol: plain datagrams to ``$NOTIFY_SOCKET``, no libsystemd.

Notifying is best effort: the service manager may be gone, restarting, or absent (a
container, a terminal). A failed send is logged once per outage and never raised, because
losing a notification must not take down the daemon it describes.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING

from dropzone.log import get_logger

if TYPE_CHECKING:
    from collections.abc import Mapping

# A full receive queue would block a datagram send; the main loop must not hang on it.
_SEND_TIMEOUT_S = 1.0


def notify_address(value: str) -> str | None:
    """The socket address for ``$NOTIFY_SOCKET``: a path, or ``@name`` for an abstract one."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval_s(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """The watchdog interval systemd asks for (``WATCHDOG_USEC``), or None when there is none.

    ``WATCHDOG_PID``, when set, names the process the watchdog is meant for: any other
    process (a child that inherited the environment) must not ping.
    """
    usec = _positive_int(env.get("WATCHDOG_USEC", ""))
    if usec is None:
        return None
    meant_for = env.get("WATCHDOG_PID", "")
    if meant_for and _positive_int(meant_for) != (os.getpid() if pid is None else pid):
        return None
    return usec / 1_000_000


def _positive_int(text: str) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value > 0 else None


class SystemdNotifier:
    """Tells the service manager READY, STATUS, WATCHDOG and STOPPING; a no-op without one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        raw = env.get("NOTIFY_SOCKET", "")
        self._raw = raw
        self._address = notify_address(raw)
        self._lock = threading.Lock()
        self._failing = False
        self._log = get_logger()
        if raw and self._address is None:
            self._log.warning(
                "systemd.notify_unsupported",
                notify_socket=raw,
                note="only socket paths and @abstract names are supported; not notifying",
            )

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when it was sent."""
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(_SEND_TIMEOUT_S)
                sock.sendto(payload, self._address)
        except OSError as exc:
            self._failed(exc)
            return False
        with self._lock:
            self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([] if status is None else [_status(status)]))

    def status(self, text: str) -> bool:
        return self.notify(_status(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def _failed(self, exc: OSError) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            self._log.warning(
                "systemd.notify_failed",
                notify_socket=self._raw,
                error=str(exc),
                note="further failures are not logged until a send succeeds",
            )


def _status(text: str) -> str:
    # One assignment per line: a newline inside the text would start a bogus assignment.
    return "STATUS=" + " ".join(text.splitlines())
