"""The audit log: one JSON line per state-mutating request, denied ones
included (schema: `docs/AUDIT-LOG.md`).

Lines are written whole under a lock and flushed before the response is
sent, so concurrent requests never tear a line and a crash loses none that
were acknowledged. ``file:`` sinks are opened in append mode. Descriptor
writes go through the core's ``AuditSink``, the writer the native front of
``tensor-wasm serve`` uses for the invokes it answers: one lock for both.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import IO, Any

import orjson

from tensorwasm_tc import _core

log = logging.getLogger("tensorwasm_tc.gateway")


class AuditLog:
    def __init__(self, sink: str) -> None:
        self.sink = sink
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._stream: IO[str] | None = None
        # Where descriptor writes go (file sinks; stdout once `share_stdout`).
        self.core_sink: _core.AuditSink | None = None
        if sink == "stdout":
            self._stream = sys.stdout
        elif sink.startswith("file:"):
            path = sink[len("file:") :]
            directory = os.path.dirname(path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self.core_sink = _core.AuditSink(self._fd)
        self.enabled = sink != "none"
        self.records = 0

    def share_stdout(self) -> _core.AuditSink | None:
        """The core writer for this log, for the native front: a ``stdout``
        log moves from ``sys.stdout`` to descriptor 1 so both write through
        one lock. None when the log is off."""
        with self._lock:
            if self._stream is not None:
                self._stream.flush()
                self._stream = None
                self.core_sink = _core.AuditSink(1)
            return self.core_sink

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = orjson.dumps(record) + b"\n"
        with self._lock:
            try:
                if self.core_sink is not None:
                    # One write(2) of the whole line (on an O_APPEND fd for
                    # files: whole lines even when another process appends
                    # to the same file). It keeps the GIL: winning it back
                    # after os.write costs the event loop far more than the
                    # write (bench/gateway.py).
                    self.core_sink.write(line)
                elif self._stream is not None:
                    self._stream.write(line.decode())
                    self._stream.flush()
                self.records += 1
            except OSError as err:
                log.error("audit log write failed: %s", err.strerror)

    def flush(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
            elif self._stream is not None:
                self._stream.flush()

    def close(self) -> None:
        with self._lock:
            if self.core_sink is not None:
                self.core_sink.close()
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None
