"""A listening socket served by one thread per connection (the daemon's fd
channel and its P2P data plane)."""

from __future__ import annotations

import contextlib
import socket
import threading


class Listener:
    """Accepts on ``sock`` in a background thread and hands each connection
    to ``serve`` in a thread of its own; ``close`` stops accepting."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self._sock = sock
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
