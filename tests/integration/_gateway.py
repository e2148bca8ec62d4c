"""Helpers for the gateway's integration tests: a real ``tensor-wasm serve``
subprocess on a free loopback port, and the guests the tests deploy.

`GatewayServer` owns one server process. Start it with `GatewayServer.start`
(or the `running_gateway` context manager); it waits for ``/readyz``. Stop it
with `stop` (SIGTERM, then a bounded wait) or `crash` (SIGKILL), and start a
fresh process on the same home with `restart`.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import wasmtime

REPO = Path(__file__).resolve().parents[2]
GUESTS = REPO / "examples" / "guests"
CORPUS = REPO / "tests" / "corpus"

# Spins forever; only a deadline (or a crash of the server) stops it.
SPIN_WAT = """
(module
  (func (export "spin") (loop $forever (br $forever))))
"""

# A trivial function with a `main` export (the default export) and a pure one.
ADD_WAT = """
(module
  (func (export "main") (result i32) (i32.const 7))
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1))))
"""

# Grows one page at a time until refused, then aborts like an allocator would.
MEMORY_BOMB_WAT = """
(module
  (memory 1)
  (func (export "bomb")
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
"""

# A counter whose state is an internal (unexported) global plus memory:
# `inc` bumps the global and adds it to a running sum at offset 16, so after
# n increments the sum is n(n+1)/2 unless an instance was torn. `init` (the
# pre-initialiser) counts its runs and draws 8 random bytes at offset 32.
COUNTER_WAT = """
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (global $inits (mut i32) (i32.const 0))
  (func (export "init")
    (global.set $inits (i32.add (global.get $inits) (i32.const 1)))
    (drop (call $random_get (i32.const 32) (i32.const 8))))
  (func (export "inits") (result i32) (global.get $inits))
  (func (export "seed") (result i64) (i64.load (i32.const 32)))
  (func (export "inc") (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.store (i32.const 16) (i32.add (i32.load (i32.const 16)) (global.get $n)))
    (global.get $n))
  (func (export "get") (result i32) (global.get $n))
  (func (export "sum") (result i32) (i32.load (i32.const 16))))
"""

STARTUP_TIMEOUT_S = 60.0
# `tensor-wasm serve`, run by this interpreter: the console script's own code.
SERVE_COMMAND = (
    sys.executable,
    "-c",
    "import sys; from tensorwasm_tc.cli.tensor_wasm import main; sys.argv[0] = 'tensor-wasm'; "
    "main()",
    "serve",
)


@functools.cache
def wat(text: str) -> bytes:
    """WebAssembly text → binary module (memoised)."""
    return bytes(wasmtime.wat2wasm(text))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def corpus_wasm(name: str) -> bytes:
    """A module of tests/corpus (``name`` without ``.wat``), compiled."""
    return wat((CORPUS / f"{name}.wat").read_text())


def guest_wasm(name: str) -> bytes:
    """A committed example guest (``name`` without ``.wasm``)."""
    return (GUESTS / f"{name}.wasm").read_bytes()


def _has_request_id(response: httpx.Response) -> None:
    assert response.headers.get("x-request-id"), (
        f"{response.request.method} {response.request.url.path} -> "
        f"{response.status_code} without X-Request-Id"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def headers(token: str | None = None, tenant: int | str | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    if token is not None:
        out["Authorization"] = f"Bearer {token}"
    if tenant is not None:
        out["X-TensorWasm-Tenant"] = str(tenant)
    return out


@dataclass
class GatewayServer:
    """One ``tensor-wasm serve`` process (see the module docstring)."""

    home: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    _clients: list[httpx.Client] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log_path = self.home.parent / f"{self.home.name}-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, home: Path, env: Mapping[str, str] | None = None, args: list[str] | None = None
    ) -> GatewayServer:
        """``args``: more ``tensor-wasm serve`` flags (e.g. ``--tensorcast-address``)."""
        server = cls(home=home, env=dict(env or {}), args=list(args or []))
        server._launch()
        return server

    def _launch(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENSOR_WASM_API_")}
        env.setdefault("TENSOR_WASM_API_AUDIT_LOG", "none")
        env["TENSOR_WASM_HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        last_error = ""
        for _attempt in range(3):  # a free port can be taken before the server binds it
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        *SERVE_COMMAND,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.port),
                        "--home",
                        str(self.home),
                        *self.args,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.home.parent,
                )
            if self._wait_ready():
                return
            last_error = self.log()
            self._kill()
        raise RuntimeError(f"tensor-wasm serve did not become ready:\n{last_error}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=1.0)
                if r.status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(
        self, token: str | None = None, tenant: int | str | None = None, timeout: float = 30.0
    ) -> httpx.Client:
        """A keep-alive client for this server (closed on `stop`). Every
        response it gets must carry an ``X-Request-Id``."""
        c = httpx.Client(
            base_url=self.url,
            headers=headers(token, tenant),
            timeout=timeout,
            event_hooks={"response": [_has_request_id]},
        )
        self._clients.append(c)
        return c

    def _close_clients(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        self._close_clients()
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                raise
        code = self.proc.returncode
        self.proc = None
        return code

    def crash(self) -> None:
        """SIGKILL: no shutdown hooks run."""
        self._close_clients()
        self._kill()

    def _kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def restart(self) -> None:
        """Starts a new process on the same home (after `stop` or `crash`)."""
        assert self.proc is None, "stop or crash the server first"
        self._launch()

    # --- API helpers --------------------------------------------------------

    def deploy(
        self,
        client: httpx.Client,
        wasm: bytes,
        name: str = "fn",
        limits: Mapping[str, int] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """POST /functions; asserts 201 and returns the body."""
        body: dict[str, Any] = {"name": name, "wasm_b64": b64(wasm), **extra}
        if limits is not None:
            body["limits"] = dict(limits)
        r = client.post("/functions", json=body)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out


@contextlib.contextmanager
def running_gateway(
    home: Path, env: Mapping[str, str] | None = None, args: list[str] | None = None
) -> Iterator[GatewayServer]:
    """A started server; SIGTERM and wait on exit."""
    server = GatewayServer.start(home, env, args)
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            server._kill()


def wait_job(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Polls GET /jobs/{id} until the job is completed or failed."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if job["status"] in ("completed", "failed"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")
        time.sleep(0.02)


def assert_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """The response is the error envelope with this status and kind."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"kind", "message"}, body
    assert body["error"]["kind"] == kind, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response.headers.get("x-request-id"), response.headers
    err: dict[str, Any] = body["error"]
    return err


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value} (labels as exposed)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out
