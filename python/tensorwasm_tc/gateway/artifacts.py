"""Functions bound to TensorCast artifacts.

A function deployed with ``artifacts: {"weights": "model:v1"}`` reads the
tensors of the artifact under key ``model:v1`` as ``tensor_bound("weights/<name>")``.
The gateway keeps one `TensorCastLink` per process:

* It attaches to a Store Daemon with the SDK (``tc.init``): ``auto`` under
  ``TENSORCAST_HOME`` (connect to the daemon running there, or start one this
  process owns), or ``connect`` to ``--tensorcast-address``. It attaches in
  the background at startup and again, on demand, after the daemon went away,
  so a daemon restart needs no gateway restart.
* Every invoke resolves the function's keys (the daemon's ``Info``; through
  the Global Store when the daemon has one), so a key moved by
  ``tc.register(..., key=...)`` is seen by the next invoke.
* An artifact is mapped once per process, read-only and zero-copy (the
  daemon's sealed memfd; a peer pull first when this host lacks it), and
  shared by every function and instance bound to it. The executor borrows
  those pages: nothing is copied into the sandbox or into Python.
* A function's `Function` is loaded once per set of artifact ids. When a key
  moves, the next invoke loads it again against the new ids; invokes already
  running keep the old `Function` (and so the old mapping) until they end.

Failures to reach the daemon or to find a key are ``424 artifact_unavailable``
with a hint to retry, never a 500.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

from tensorwasm_tc import Function
from tensorwasm_tc.gateway.errors import ApiError
from tensorwasm_tc.tensorcast.errors import ArtifactError

log = logging.getLogger("tensorwasm_tc.gateway")

Mode = Literal["auto", "connect", "off"]
MODES: Final = ("auto", "connect", "off")
#: Seconds between attempts to re-attach after a failure (requests in between
#: fail fast with 424 instead of each waiting on a dead daemon).
RETRY_AFTER_S: Final = 1.0
#: Daemon RPCs on the invoke path give up after this many seconds.
RPC_TIMEOUT_S: Final = 10.0
_UNREACHABLE: Final = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "FAILED_PRECONDITION")


def unavailable(message: str) -> ApiError:
    return ApiError("artifact_unavailable", message, headers={"retry-after": "1"})


def check_aliases(artifacts: Mapping[str, str]) -> None:
    """Deploy-time validation of ``{alias: key}``."""
    for alias, key in artifacts.items():
        if not alias or "/" in alias or len(alias) > 128:
            raise ApiError(
                "invalid_args", f"artifact alias {alias!r} must be 1-128 characters without '/'"
            )
        if not key or len(key) > 1024 or not key.isprintable():
            raise ApiError("invalid_args", f"artifact key for {alias!r} must be non-empty text")


@dataclass(frozen=True, slots=True)
class Bound:
    """A function loaded against one set of artifact ids."""

    ids: tuple[str, ...]  # in alias order
    fn: Function


class TensorCastLink:
    """This gateway process's attachment to TensorCast (thread-safe)."""

    def __init__(self, mode: Mode, address: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"tensorcast mode must be one of {MODES}")
        self.mode = mode
        self.address = address
        self._lock = threading.Lock()  # state; held briefly, never across I/O
        self._attach_lock = threading.Lock()  # one attach at a time
        self._ctx: Any = None
        self._state = "off" if mode == "off" else "starting"
        self._error = ""
        self._last_attempt = 0.0
        self._attaching = False
        self._arrays: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
        self._bound: dict[str, Bound] = {}  # function id -> latest binding

    # ------------------------------------------------------------ attach
    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def start_background(self) -> None:
        if self.enabled:
            with self._lock:
                self._attaching = True
            threading.Thread(target=self._attach_quietly, name="tw-tensorcast", daemon=True).start()

    def _retry_in_background(self) -> None:
        with self._lock:
            due = (
                self.enabled
                and self._ctx is None
                and not self._attaching
                and time.monotonic() - self._last_attempt >= RETRY_AFTER_S
            )
            if due:
                self._attaching = True
        if due:
            self.start_background()

    def _attach_quietly(self) -> None:
        try:
            with contextlib.suppress(ApiError):  # logged, shown by /readyz, retried on demand
                self.context()
        finally:
            with self._lock:
                self._attaching = False

    def context(self) -> Any:
        """The SDK context, attaching first when needed (blocking; never
        while holding the state lock, which /readyz takes on the event loop)."""
        if not self.enabled:
            raise ApiError(
                "artifact_store_unavailable",
                "this server runs without TensorCast (--no-tensorcast), so artifacts cannot "
                "be bound",
            )
        with self._attach_lock:
            with self._lock:
                if self._ctx is not None:
                    return self._ctx
                now = time.monotonic()
                if self._error and now - self._last_attempt < RETRY_AFTER_S:
                    raise unavailable(self._message())
                self._last_attempt = now
            import tensorwasm_tc.tensorcast as tc

            try:
                if self.mode == "connect":
                    ctx = tc.init(mode="connect", address=self.address)
                else:
                    ctx = tc.init(mode="auto", show_daemon_logs=False)
            except ArtifactError as err:
                with self._lock:
                    self._state, self._error = "unavailable", err.message
                    message = self._message()
                log.warning("TensorCast unavailable: %s", err.message)
                raise unavailable(message) from None
            with self._lock:
                self._ctx = ctx
                self._state, self._error = "connected", ""
        log.info(
            "TensorCast: %s daemon at %s%s",
            "started the" if ctx.is_owner else "attached to the",
            ctx.address,
            " (zero-copy)" if ctx.socket_path else " (inline: no shared socket)",
        )
        return ctx

    def _message(self) -> str:
        where = self.address or "under TENSORCAST_HOME"
        return f"the TensorCast daemon ({where}) is unavailable: {self._error}; retry shortly"

    def _lost(self, err: ArtifactError) -> ApiError:
        """The daemon stopped answering: detach, so the next request
        re-attaches (to a restarted daemon, or, in auto mode, a new one)."""
        import tensorwasm_tc.tensorcast as tc

        with self._lock:
            had, self._ctx = self._ctx, None
            self._state, self._error = "unavailable", err.message
            self._last_attempt = time.monotonic()
            self._arrays.clear()
            message = self._message()
        if had is not None:
            try:
                tc.shutdown()
            except Exception:  # detaching must not fail the request twice
                log.debug("TensorCast shutdown failed", exc_info=True)
        log.warning("TensorCast daemon lost: %s", err.message)
        return unavailable(message)

    def close(self) -> None:
        import tensorwasm_tc.tensorcast as tc

        with self._lock:
            self._bound.clear()
            self._arrays.clear()
            had, self._ctx = self._ctx, None
        if had is not None:
            try:
                tc.shutdown()
            except Exception:
                log.debug("TensorCast shutdown failed", exc_info=True)

    # ------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """The link's state (for /readyz). Asking while it is unavailable
        also retries the attach in the background (at most once per
        ``RETRY_AFTER_S``), so a probe sees a recovered daemon without any
        invoke having to come first."""
        self._retry_in_background()
        with self._lock:
            out: dict[str, Any] = {"mode": self.mode, "state": self._state}
            if self._ctx is not None:
                out["address"] = self._ctx.address
                out["zero_copy"] = bool(self._ctx.socket_path)
                out["artifacts_mapped"] = len(self._arrays)
            elif self.address:
                out["address"] = self.address
            if self._error:
                out["error"] = self._error
            return out

    # ----------------------------------------------------------- binding
    def _call(self, fn: Callable[[Any], Any]) -> Any:
        ctx = self.context()
        try:
            return fn(ctx)
        except ArtifactError as err:
            if err.status_code in _UNREACHABLE:
                raise self._lost(err) from None
            if err.status_code == "NOT_FOUND":
                raise unavailable(f"{err.message}; retry once it is registered") from None
            raise unavailable(f"TensorCast: {err.message}") from None

    def resolve(self, artifacts: Mapping[str, str]) -> tuple[str, ...]:
        """The artifact id of every key, in alias order."""

        def run(ctx: Any) -> tuple[str, ...]:
            ids = []
            for alias, key in artifacts.items():
                resp = ctx.client.info(key=key)
                if not resp.exists:
                    raise unavailable(
                        f"artifact {alias!r}: no artifact under key {key!r} in TensorCast; "
                        "register it (tc.put(..., key=...)) and retry"
                    )
                ids.append(str(resp.manifest.artifact_id))
            return tuple(ids)

        result: tuple[str, ...] = self._call(run)
        return result

    def arrays(self, artifact_id: str) -> dict[str, np.ndarray[Any, Any]]:
        """The artifact's tensors, mapped once per process (read-only)."""
        with self._lock:
            hit = self._arrays.get(artifact_id)
        if hit is not None:
            return hit
        got: dict[str, np.ndarray[Any, Any]] = self._call(lambda ctx: ctx.store.get(artifact_id))
        with self._lock:
            return self._arrays.setdefault(artifact_id, got)

    def function(
        self,
        function_id: str,
        artifacts: Mapping[str, str],
        load: Callable[[dict[str, dict[str, Any]]], Function],
    ) -> Function:
        """The function loaded against the artifacts its keys name now."""
        ids = self.resolve(artifacts)
        with self._lock:
            cur = self._bound.get(function_id)
            if cur is not None and cur.ids == ids:
                return cur.fn
        bindings = {alias: self.arrays(aid) for alias, aid in zip(artifacts, ids, strict=True)}
        fn = load(bindings)
        with self._lock:
            cur = self._bound.get(function_id)
            if cur is not None and cur.ids == ids:
                return cur.fn  # another request bound it meanwhile
            self._bound[function_id] = Bound(ids, fn)
            self._prune()
        if cur is not None:
            log.info("function %s rebound to %s", function_id, ", ".join(i[:12] for i in ids))
        return fn

    def forget(self, function_id: str) -> None:
        with self._lock:
            self._bound.pop(function_id, None)
            self._prune()

    def _prune(self) -> None:
        """Drops mappings no current binding uses (running invokes of an old
        binding keep theirs alive through their `Function`)."""
        live = {aid for b in self._bound.values() for aid in b.ids}
        for aid in [a for a in self._arrays if a not in live]:
            del self._arrays[aid]
