"""Closing a connection turned away when full without losing its 503: closing a socket with unread
bytes sends a reset that can discard the 503, so one shared thread drains such sockets first.
"""

from __future__ import annotations

import socket
import threading
import time

LINGER_S = 2.0  # at most this long before a refused socket is closed anyway
POLL_S = 0.05


class LingeringCloser:
    """Sockets whose 503 was sent, closed once drained."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._lock = threading.Lock()
        self._pending: list[tuple[socket.socket, float]] = []
        self._thread: threading.Thread | None = None

    def close_later(self, sock: socket.socket) -> None:
        """Close a socket once the client is done with it."""
        with self._lock:
            self._pending.append((sock, time.monotonic() + LINGER_S))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="turn-away-closer",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                pending, self._pending = self._pending, []
            kept = [(sock, until) for sock, until in pending
                    if not self._finished(sock, until)]
            with self._lock:
                self._pending[:0] = kept
                if not self._pending:  # nothing left: the next refusal starts a thread again
                    self._thread = None
                    return
            time.sleep(POLL_S)

    def _finished(self, sock: socket.socket, until: float) -> bool:
        """Read what the client sent; close when it closed, failed, or its time is up."""
        done = self._stopping.is_set() or time.monotonic() >= until
        try:
            while chunk := sock.recv(65536):
                del chunk
            done = True
        except BlockingIOError:
            pass
        except OSError:
            done = True
        if done:
            sock.close()
        return done
