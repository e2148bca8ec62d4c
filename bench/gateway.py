"""Gateway benchmark: ``tensor-wasm serve`` against a bare FastAPI endpoint.

One benchmark, two servers, the same load generator:

* ours -- a real ``tensor-wasm serve`` subprocess on a free loopback port
  with a fresh ``--home``, the audit log on (``file:`` in the temp dir) and
  metrics on, behind the native front (``--front python``: the Python app
  alone on the port), in dev mode (no tokens) or, with ``--with-auth``, with a
  bearer token. A trivial function (``run() -> i32`` returning 42) is
  deployed with ``POST /functions`` and the load is
  ``POST /functions/{id}/invoke`` with the body ``{"export":"run"}``: a fresh
  instance per call, as the route does.
* peer -- a bare FastAPI app with one ``POST`` route on the same path that
  returns a constant JSON object without reading the body, run by uvicorn in
  a subprocess with the settings ``tensor-wasm serve`` uses (one worker,
  ``loop``/``http`` ``auto`` -> uvloop/httptools when installed, access log
  off, no server header).

The load generator is a separate process: HTTP/1.1 keep-alive over
``--concurrency`` connections (32), one request in flight per connection,
pre-encoded request bytes (identical for both servers but the ``Host``
port), minimal response parsing (status line, ``Content-Length``), and one
``time.perf_counter_ns`` latency per request. It runs ``--warmup`` seconds
untimed, then ``--duration`` seconds measured. By default it is the Python
generator below (asyncio protocols on uvloop when installed); ``--loadgen
wrk`` uses ``wrk`` (one thread) instead when it is on PATH. Rounds alternate
the servers (the order rotates every round) and report the median
requests/s of the rounds, and p50/p99 latency over every measured request.

Run from the repository root::

    python -m bench.gateway                  # full run (about 70 s)
    python -m bench.gateway --quick          # smoke run (a few seconds)
    python -m bench.gateway --json out.json  # also write machine-readable results

Targets (issue 4): ours >= 0.5x the peer's requests/s, p99 under 10 ms and
at least 2000 invokes/s on a 2-core machine. The exit status is 1 only for
errors, or for a missed target with ``--check``.
"""

from __future__ import annotations

import argparse
import array
import base64
import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:
    from bench._common import (
        BenchResult,
        Stats,
        Target,
        add_output_options,
        distribution_version,
        environment_info,
        finish,
        format_duration,
        format_table,
        import_package,
        median,
        non_negative_float,
        positive_float,
        positive_int,
        progress,
        safe_ratio,
    )
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from _common import (  # type: ignore[no-redef, import-not-found, unused-ignore]
        BenchResult,
        Stats,
        Target,
        add_output_options,
        distribution_version,
        environment_info,
        finish,
        format_duration,
        format_table,
        import_package,
        median,
        non_negative_float,
        positive_float,
        positive_int,
        progress,
        safe_ratio,
    )

PACKAGE = "tensorwasm_tc"
PEER_NAME = "bare FastAPI"
HOST = "127.0.0.1"
CONTENDERS = ("ours", "peer")
LOADGENS = ("python", "wrk")

Log = Callable[[str], None]

# (module (func (export "run") (result i32) i32.const 42)), assembled by hand:
# header, type section [() -> i32], function section [type 0], export
# section ["run" -> func 0], code section [no locals, i32.const 42, end].
TRIVIAL_WAT = '(module (func (export "run") (result i32) i32.const 42))'
TRIVIAL_WASM = bytes.fromhex(
    "0061736d010000000105016000017f030201000707010372756e00000a06010400412a0b"
)
TRIVIAL_RESULT = [42]
INVOKE_BODY = b'{"export":"run"}'
PEER_RESPONSE = {"function_id": "fn-peer", "result": TRIVIAL_RESULT}

SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 15.0
# Pause between two load-generator runs, so that the previous server's
# executor threads and the kernel's socket clean-up are done.
SETTLE_S = 0.3
# Warn when the load generator kept at least this share of one CPU busy.
LOADGEN_BUSY_WARN = 0.8
# Warn when other processes kept at least this many CPUs busy during the rounds.
OTHER_LOAD_WARN_CPUS = 0.2

# The peer: a bare FastAPI app on uvicorn with the settings of
# tensorwasm_tc.gateway.server.serve (one worker, loop/http auto, no access
# log, no server header). argv: host port response-json
_PEER_CHILD = """\
import json, sys
from typing import Any
import uvicorn
from fastapi import FastAPI

host, port, response = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
app = FastAPI()

@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}

@app.post("/functions/{id}/invoke")
async def invoke(id: str) -> dict[str, Any]:
    return response

uvicorn.run(
    app, host=host, port=port, lifespan="on", access_log=False, log_level="warning",
    server_header=False, loop="auto", http="auto",
)
"""

# The load generator: keep-alive HTTP/1.1 over N connections, one request in
# flight on each. argv: a JSON settings object. Writes the measured
# latencies (ns, array('q')) to settings["out"] and prints one JSON line.
_LOADGEN_CHILD = r"""
import array, asyncio, json, os, socket, sys, time

cfg = json.loads(sys.argv[1])
if cfg["cpus"]:
    os.sched_setaffinity(0, cfg["cpus"])
try:
    import uvloop
except ImportError:
    uvloop = None
    loop_name = "asyncio"
else:
    loop_name = "uvloop"

REQUEST = cfg["request"].encode("latin-1")
clock = time.perf_counter_ns
HZ = os.sysconf("SC_CLK_TCK")


def machine_busy_s():
    try:
        with open("/proc/stat", "rb") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / HZ
    except (OSError, ValueError, IndexError):
        return None


def server_cpu_s():
    try:
        with open(f"/proc/{cfg['server_pid']}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except (OSError, ValueError, IndexError):
        return None


class Gen:
    def __init__(self, loop):
        self.loop = loop
        self.phase = 0  # 0 warm-up, 1 measured, 2 draining
        self.latencies = array.array("q")
        self.completed = 0
        self.status = {}
        self.outstanding = 0
        self.failure = None
        self.drained = loop.create_future()

    def done(self, conn, status, t1):
        self.outstanding -= 1
        if self.phase == 1:
            self.latencies.append(t1 - conn.t0)
            self.completed += 1
            self.status[status] = self.status.get(status, 0) + 1
        if self.phase < 2:
            conn.fire()
        elif self.outstanding == 0 and not self.drained.done():
            self.drained.set_result(None)

    def fail(self, message):
        if self.failure is None:
            self.failure = message
        if not self.drained.done():
            self.drained.set_result(None)


class Conn(asyncio.Protocol):
    def __init__(self, gen):
        self.gen = gen
        self.buf = bytearray()
        self.need = -1
        self.status = 0
        self.t0 = 0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def fire(self):
        self.gen.outstanding += 1
        self.t0 = clock()
        self.transport.write(REQUEST)

    def data_received(self, data):
        buf = self.buf
        buf += data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                i = head.find(b"\r\ncontent-length:")
                if i < 0:
                    self.gen.fail("a response without Content-Length")
                    return
                j = head.find(b"\r\n", i + 2)
                self.status = int(head[9:12])
                self.need = end + 4 + int(head[i + 17 : j if j >= 0 else len(head)])
            if len(buf) < self.need:
                return
            del buf[: self.need]
            self.need = -1
            self.gen.done(self, self.status, clock())
            if not buf:
                return

    def connection_lost(self, exc):
        if self.gen.phase < 2:
            self.gen.fail(f"connection lost: {exc or 'closed by the server'}")


async def main():
    loop = asyncio.get_running_loop()
    gen = Gen(loop)
    conns = []
    for _ in range(cfg["concurrency"]):
        _, conn = await loop.create_connection(lambda: Conn(gen), cfg["host"], cfg["port"])
        conns.append(conn)
    for conn in conns:
        conn.fire()
    await asyncio.sleep(cfg["warmup_s"])
    gen.phase = 1
    t_start, cpu_start, srv_start = clock(), time.process_time(), server_cpu_s()
    all_start = machine_busy_s()
    await asyncio.sleep(cfg["duration_s"])
    gen.phase = 2
    t_end, cpu_end, srv_end = clock(), time.process_time(), server_cpu_s()
    all_end = machine_busy_s()
    if gen.outstanding:
        try:
            await asyncio.wait_for(asyncio.shield(gen.drained), 10.0)
        except asyncio.TimeoutError:
            pass
    for conn in conns:
        conn.transport.close()
    window = (t_end - t_start) * 1e-9
    with open(cfg["out"], "wb") as f:
        gen.latencies.tofile(f)
    srv = None if srv_start is None or srv_end is None else (srv_end - srv_start) / window
    gen_cpu = (cpu_end - cpu_start) / window
    others = None
    if srv is not None and all_start is not None and all_end is not None:
        others = max(0.0, (all_end - all_start) / window - srv - gen_cpu)
    print(json.dumps({
        "completed": gen.completed,
        "window_s": window,
        "status": {str(k): v for k, v in gen.status.items()},
        "failure": gen.failure,
        "loadgen_cpu": gen_cpu,
        "server_cpu": srv,
        "others_cpu": others,
        "loop": loop_name,
    }))


if uvloop is not None:
    uvloop.run(main())
else:
    asyncio.run(main())
"""

# wrk: POST the same body, and print p50/p99 in microseconds when done.
_WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = '{body}'
{headers}
done = function(summary, latency, requests)
  io.write(string.format("TW_P50_US %d\\n", latency:percentile(50)))
  io.write(string.format("TW_P99_US %d\\n", latency:percentile(99)))
  io.write(string.format("TW_REQUESTS %d\\n", summary.requests))
  io.write(string.format("TW_DURATION_US %d\\n", summary.duration))
  local e = summary.errors
  io.write(string.format("TW_ERRORS %d\\n", e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int
    duration_s: float
    warmup_s: float
    concurrency: int
    loadgen: str
    pin: bool
    with_auth: bool
    quick: bool
    front: str = "native"


@dataclasses.dataclass
class Round:
    """One load-generator run against one server."""

    rps: float
    completed: int
    window_s: float
    errors: int
    p50_s: float
    p99_s: float
    loadgen_cpu: float | None = None
    server_cpu: float | None = None
    others_cpu: float | None = None
    latencies_s: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "rps": self.rps,
            "completed": self.completed,
            "window_s": self.window_s,
            "errors": self.errors,
            "p50_s": self.p50_s,
            "p99_s": self.p99_s,
            "loadgen_cpus_busy": self.loadgen_cpu,
            "server_cpus_busy": self.server_cpu,
            "other_processes_cpus_busy": self.others_cpu,
        }


@dataclasses.dataclass
class Server:
    """A server subprocess and what the load generator needs to reach it."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    path: str = "/"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def request_bytes(self) -> bytes:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {HOST}:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(INVOKE_BODY)}",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + INVOKE_BODY

    def stderr_tail(self, n: int = 5) -> str:
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-n:])


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def serve_command() -> list[str]:
    """``tensor-wasm serve``: the console script of this interpreter's
    environment (no version-manager shim in between, so that the pid is the
    server's), else the one on PATH, else the CLI's entry point."""
    local = Path(sys.executable).parent / "tensor-wasm"
    if local.is_file() and os.access(local, os.X_OK):
        return [str(local)]
    found = shutil.which("tensor-wasm")
    if found:
        return [found]
    return [sys.executable, "-c", "from tensorwasm_tc.cli.tensor_wasm import main; main()"]


def _popen(
    argv: list[str], env: dict[str, str], stderr_path: Path, cpus: list[int] | None
) -> subprocess.Popen[bytes]:
    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    with open(stderr_path, "wb") as err:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=pin if cpus else None,
        )


def wait_ready(server: Server, url_path: str) -> None:
    import httpx

    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    url = f"http://{HOST}:{server.port}{url_path}"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} server exited with {server.proc.returncode}: "
                + server.stderr_tail()
            )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} server not ready after {SERVER_START_TIMEOUT_S:.0f} s")


def stop(server: Server) -> int | None:
    """SIGTERM (graceful shutdown), then SIGKILL after a while."""
    proc = server.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def start_ours(
    workdir: Path, token: str | None, cpus: list[int] | None, front: str = "native"
) -> Server:
    home = workdir / "home"
    port = free_port()
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("TENSOR_WASM_API_")]:
        del env[key]  # embedded defaults, whatever this shell has set
    env["TENSOR_WASM_API_AUDIT_LOG"] = f"file:{workdir / 'audit.log'}"
    env["TENSOR_WASM_API_FRONT"] = front
    if token is not None:
        env["TENSOR_WASM_API_TOKENS"] = f"{token}:tenant=*"
    argv = [*serve_command(), "serve", "--host", HOST, "--port", str(port), "--home", str(home)]
    server = Server(
        "ours", _popen(argv, env, workdir / "ours.stderr", cpus), port, workdir / "ours.stderr"
    )
    if token is not None:
        server.headers["Authorization"] = f"Bearer {token}"
    try:
        wait_ready(server, "/readyz")
    except BaseException:
        stop(server)
        raise
    return server


def start_peer(workdir: Path, cpus: list[int] | None) -> Server:
    port = free_port()
    argv = [sys.executable, "-c", _PEER_CHILD, HOST, str(port), json.dumps(PEER_RESPONSE)]
    stderr_path = workdir / "peer.stderr"
    server = Server("peer", _popen(argv, dict(os.environ), stderr_path, cpus), port, stderr_path)
    try:
        wait_ready(server, "/healthz")
    except BaseException:
        stop(server)
        raise
    return server


def deploy(server: Server) -> str:
    """Deploys the trivial function, checks one invoke, and aims the load at it."""
    import httpx

    base = f"http://{HOST}:{server.port}"
    with httpx.Client(base_url=base, headers=server.headers, timeout=30.0) as client:
        body = {"name": "bench-trivial", "wasm_b64": base64.b64encode(TRIVIAL_WASM).decode()}
        resp = client.post("/functions", json=body)
        if resp.status_code != 201:
            raise RuntimeError(f"deploy failed: {resp.status_code} {resp.text[:200]}")
        fid: str = resp.json()["id"]
        check = client.post(
            f"/functions/{fid}/invoke",
            content=INVOKE_BODY,
            headers={"Content-Type": "application/json"},
        )
        result = check.json().get("result") if check.status_code == 200 else None
        if result != TRIVIAL_RESULT:
            raise RuntimeError(f"invoke check failed: {check.status_code} {check.text[:200]}")
    server.path = f"/functions/{fid}/invoke"
    return fid


# --------------------------------------------------------------------------
# Load generators
# --------------------------------------------------------------------------


def run_python_loadgen(
    server: Server, cfg: Settings, workdir: Path, cpus: list[int] | None
) -> Round:
    out = workdir / f"lat-{server.name}.bin"
    spec = {
        "host": HOST,
        "port": server.port,
        "request": server.request_bytes().decode("latin-1"),
        "concurrency": cfg.concurrency,
        "warmup_s": cfg.warmup_s,
        "duration_s": cfg.duration_s,
        "out": str(out),
        "cpus": cpus or [],
        "server_pid": server.proc.pid,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _LOADGEN_CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=cfg.warmup_s + cfg.duration_s + 60.0,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"load generator exited with {proc.returncode}: " + " | ".join(tail))
    doc: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if doc["failure"]:
        raise RuntimeError(f"load generator against {server.name}: {doc['failure']}")
    raw = array.array("q")
    with open(out, "rb") as f:
        raw.frombytes(f.read())
    out.unlink()
    latencies = [v * 1e-9 for v in raw]
    if not latencies:
        raise RuntimeError(f"no request to {server.name} completed in the measured window")
    ok = int(doc["status"].get("200", 0))
    lat = Stats.of(latencies)
    return Round(
        rps=doc["completed"] / doc["window_s"],
        completed=int(doc["completed"]),
        window_s=float(doc["window_s"]),
        errors=int(doc["completed"]) - ok,
        p50_s=lat.median,
        p99_s=lat.p99,
        loadgen_cpu=doc["loadgen_cpu"],
        server_cpu=doc["server_cpu"],
        others_cpu=doc["others_cpu"],
        latencies_s=latencies,
    )


def _wrk_run(
    server: Server, seconds: float, concurrency: int, script: Path, cpus: list[int] | None
) -> dict[str, float]:
    argv = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "-s",
        str(script),
        f"http://{HOST}:{server.port}{server.path}",
    ]
    if cpus:
        argv = ["taskset", "-c", ",".join(map(str, cpus)), *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60.0, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    values = dict(re.findall(r"^TW_(\w+) (\d+)$", proc.stdout, re.MULTILINE))
    return {k: float(v) for k, v in values.items()}


def run_wrk_loadgen(server: Server, cfg: Settings, workdir: Path, cpus: list[int] | None) -> Round:
    script = workdir / f"wrk-{server.name}.lua"
    headers = "\n".join(
        f'wrk.headers["{k}"] = "{v}"'
        for k, v in {"Content-Type": "application/json", **server.headers}.items()
    )
    script.write_text(
        _WRK_SCRIPT.format(body=INVOKE_BODY.decode(), headers=headers), encoding="utf-8"
    )
    if cfg.warmup_s > 0:
        _wrk_run(server, cfg.warmup_s, cfg.concurrency, script, cpus)
    v = _wrk_run(server, cfg.duration_s, cfg.concurrency, script, cpus)
    window = v["DURATION_US"] * 1e-6
    completed = int(v["REQUESTS"])
    return Round(
        rps=completed / window,
        completed=completed,
        window_s=window,
        errors=int(v["ERRORS"]),
        p50_s=v["P50_US"] * 1e-6,
        p99_s=v["P99_US"] * 1e-6,
    )


LOADGEN_FUNCS: dict[str, Callable[[Server, Settings, Path, list[int] | None], Round]] = {
    "python": run_python_loadgen,
    "wrk": run_wrk_loadgen,
}


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


def cpu_plan(pin: bool) -> tuple[list[int] | None, list[int] | None]:
    """(server CPUs, load-generator CPUs): with ``--pin``, the generator on the
    last usable CPU and the servers on the others; else no pinning."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[:-1], cpus[-1:]


def count_lines(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def bench_gateway(cfg: Settings, workdir: Path, log: Log) -> tuple[list[BenchResult], list[str]]:
    server_cpus, loadgen_cpus = cpu_plan(cfg.pin)
    token = f"bench{secrets.token_hex(16)}" if cfg.with_auth else None
    loadgen = LOADGEN_FUNCS[cfg.loadgen]
    servers: dict[str, Server] = {}
    rounds: dict[str, list[Round]] = {name: [] for name in CONTENDERS}
    exit_codes: dict[str, int | None] = {}
    try:
        log(
            f"starting tensor-wasm serve ({cfg.front} front"
            + (", with a bearer token)" if token else ", dev mode)")
        )
        servers["ours"] = start_ours(workdir, token, server_cpus, cfg.front)
        fid = deploy(servers["ours"])
        log(f"deployed the trivial function as {fid}")
        log("starting the bare FastAPI peer")
        servers["peer"] = start_peer(workdir, server_cpus)
        servers["peer"].path = servers["ours"].path
        servers["peer"].headers = dict(servers["ours"].headers)
        for r in range(cfg.rounds):
            shift = r % len(CONTENDERS)
            for name in CONTENDERS[shift:] + CONTENDERS[:shift]:
                time.sleep(SETTLE_S)
                res = loadgen(servers[name], cfg, workdir, loadgen_cpus)
                rounds[name].append(res)
                log(
                    f"round {r + 1}/{cfg.rounds} {name}: {res.rps:.0f} req/s, "
                    f"p50 {format_duration(res.p50_s)}, p99 {format_duration(res.p99_s)}"
                    + (f", {res.errors} non-200" if res.errors else "")
                )
    finally:
        for name, server in servers.items():
            exit_codes[name] = stop(server)
    audit_lines = count_lines(workdir / "audit.log")

    rps = {name: [x.rps for x in rs] for name, rs in rounds.items()}
    rps_stats = {name: Stats.of(xs) for name, xs in rps.items()}
    pooled = cfg.loadgen == "python"
    lat: dict[str, Stats | None] = {}
    p50: dict[str, float] = {}
    p99: dict[str, float] = {}
    for name, rs in rounds.items():
        if pooled:  # percentiles over every measured request of every round
            st = Stats.of([v for x in rs for v in x.latencies_s])
            lat[name], p50[name], p99[name] = st, st.median, st.p99
        else:  # wrk reports percentiles only: medians of the rounds' figures
            lat[name] = None
            p50[name] = median([x.p50_s for x in rs])
            p99[name] = median([x.p99_s for x in rs])
    errors = {name: sum(x.errors for x in rs) for name, rs in rounds.items()}
    completed = {name: sum(x.completed for x in rs) for name, rs in rounds.items()}

    ours_rps, peer_rps = rps_stats["ours"].median, rps_stats["peer"].median
    extra: dict[str, Any] = {
        "rounds": {name: [x.summary() for x in rs] for name, rs in rounds.items()},
        "completed": completed,
        "non_200": errors,
        "audit_lines": audit_lines,
        "server_exit_codes": exit_codes,
        "server_cpus": server_cpus,
        "loadgen_cpus": loadgen_cpus,
        "auth": "bearer" if token else "dev",
    }
    for name in CONTENDERS:
        busy = [x.server_cpu for x in rounds[name] if x.server_cpu is not None]
        gen = [x.loadgen_cpu for x in rounds[name] if x.loadgen_cpu is not None]
        extra[f"{name}_server_cpus_busy_median"] = median(busy) if busy else None
        extra[f"{name}_loadgen_cpus_busy_median"] = median(gen) if gen else None

    notes: list[str] = []
    for name in CONTENDERS:
        if errors[name]:
            notes.append(f"{errors[name]} of {completed[name]} {name} responses were not 200")
    load_note = []
    for name in CONTENDERS:
        srv = extra[f"{name}_server_cpus_busy_median"]
        gen = extra[f"{name}_loadgen_cpus_busy_median"]
        if srv is not None and gen is not None:
            load_note.append(f"{name}: server {srv:.2f} CPUs, load generator {gen:.2f} CPUs")
    if load_note:
        notes.append("busy (medians of the rounds): " + "; ".join(load_note))
    others = [x.others_cpu for rs in rounds.values() for x in rs if x.others_cpu is not None]
    extra["other_processes_cpus_busy_median"] = median(others) if others else None
    if others:
        notes.append(
            f"other processes kept {median(others):.2f} CPUs busy during the measured windows "
            "(median of the rounds)"
            + (
                ": the machine was shared, figures are pessimistic and noisy"
                if median(others) >= OTHER_LOAD_WARN_CPUS
                else ""
            )
        )
    busiest = max(
        (x.loadgen_cpu for rs in rounds.values() for x in rs if x.loadgen_cpu is not None),
        default=0.0,
    )
    if busiest >= LOADGEN_BUSY_WARN:
        notes.append(
            f"the load generator kept {busiest:.2f} CPUs busy in a round: it may be the "
            "bottleneck there"
        )
    expected = 1 + sum(completed.values()) - completed["peer"]
    if audit_lines is not None and audit_lines < expected:
        notes.append(f"audit log has {audit_lines} lines, expected at least {expected}")

    throughput_note = (
        f"median of {cfg.rounds} rounds x {cfg.duration_s:g} s (after {cfg.warmup_s:g} s "
        f"warm-up), {cfg.concurrency} keep-alive connections, load generator: "
        + (
            "Python asyncio protocols in a separate process"
            if cfg.loadgen == "python"
            else "wrk -t1"
        )
        + (f", pinned to CPU {loadgen_cpus}" if loadgen_cpus else "")
        + "; ours: POST /functions/{id}/invoke, audit to a file, "
        + ("bearer token" if token else "dev mode")
        + f", {cfg.front} front"
        + "; peer: a constant JSON response, body unread"
    )
    if notes:
        throughput_note += "; " + "; ".join(notes)
    lat_how = (
        "over every measured request" if pooled else f"the median of {cfg.rounds} wrk runs' figures"
    )
    results = [
        BenchResult(
            name="gateway: invoke requests/s",
            unit="req/s",
            ours=ours_rps,
            peer=peer_rps,
            ratio=safe_ratio(ours_rps, peer_rps),
            ratio_def="ours/peer",
            targets=[
                Target("ratio", ">=", 0.5, "ratio >= 0.5"),
                Target("ours", ">=", 2000.0, "ours >= 2000/s"),
            ],
            ours_stats=rps_stats["ours"],
            peer_stats=rps_stats["peer"],
            note=throughput_note,
            extra=extra,
        ),
        BenchResult(
            name="gateway: latency p50",
            unit="s",
            ours=p50["ours"],
            peer=p50["peer"],
            ratio=safe_ratio(p50["ours"], p50["peer"]),
            ratio_def="ours/peer",
            ours_stats=lat["ours"],
            peer_stats=lat["peer"],
        ),
        BenchResult(
            name="gateway: latency p99",
            unit="s",
            ours=p99["ours"],
            peer=p99["peer"],
            ratio=safe_ratio(p99["ours"], p99["peer"]),
            ratio_def="ours/peer",
            targets=[Target("ours", "<", 0.010, "ours < 10 ms")],
            note=(
                f"latency percentiles {lat_how}; with {cfg.concurrency} connections each "
                f"waiting for its response, the mean latency is {cfg.concurrency} / "
                "throughput (Little's law), so p99 < 10 ms needs well over "
                f"{cfg.concurrency / 0.010:.0f} req/s"
            ),
        ),
    ]
    summary = (
        f"invokes/s {ours_rps:.0f} vs {peer_rps:.0f} req/s for the peer "
        f"(ratio {ours_rps / peer_rps:.2f}); p50 {format_duration(p50['ours'])} vs "
        f"{format_duration(p50['peer'])}; p99 {format_duration(p99['ours'])} vs "
        f"{format_duration(p99['peer'])}"
    )
    return results, [summary]


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

# (full run, --quick); explicit flags override either.
DEFAULTS: dict[str, tuple[float, float]] = {
    "rounds": (5, 1),
    "duration": (5.0, 1.5),
    "warmup": (1.0, 0.5),
}


def build_parser() -> argparse.ArgumentParser:
    def dflt(key: str) -> str:
        full, quick = DEFAULTS[key]
        return f"(default {full:g}; {quick:g} with --quick)"

    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway",
        description=(
            "Benchmark `tensor-wasm serve` (invoke of a trivial function) against a bare "
            "uvicorn/FastAPI endpoint under the same keep-alive load."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-run sizes (a few seconds); targets are not meaningful",
    )
    parser.add_argument(
        "--rounds", type=positive_int, help=f"rounds per server, alternating {dflt('rounds')}"
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        metavar="SECONDS",
        help=f"measured seconds per round {dflt('duration')}",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_float,
        metavar="SECONDS",
        help=f"untimed seconds of load before each measured round {dflt('warmup')}",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=32,
        help="keep-alive connections, one request in flight each (default 32)",
    )
    parser.add_argument(
        "--loadgen",
        choices=LOADGENS,
        default="python",
        help="load generator: the built-in Python one (default) or wrk (must be on PATH)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the load generator to the last usable CPU and the servers to the others",
    )
    parser.add_argument(
        "--with-auth",
        action="store_true",
        help="configure a bearer token (TENSOR_WASM_API_TOKENS) and send it on every request",
    )
    parser.add_argument(
        "--front",
        choices=("native", "python"),
        default="native",
        help="TENSOR_WASM_API_FRONT of our server: the native front (default) or the "
        "Python app alone on the port",
    )
    add_output_options(parser)
    return parser


def resolve_settings(args: argparse.Namespace) -> Settings:
    pick = 1 if args.quick else 0

    def value(key: str) -> float:
        given = getattr(args, key)
        return float(given) if given is not None else DEFAULTS[key][pick]

    return Settings(
        rounds=int(value("rounds")),
        duration_s=value("duration"),
        warmup_s=value("warmup"),
        concurrency=int(args.concurrency),
        loadgen=str(args.loadgen),
        pin=bool(args.pin),
        with_auth=bool(args.with_auth),
        front=str(args.front),
        quick=bool(args.quick),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    log = progress(args.quiet)

    if import_package(PACKAGE) is None:
        return 2
    if args.loadgen == "wrk" and shutil.which("wrk") is None:
        print("error: --loadgen wrk: wrk is not on PATH", file=sys.stderr)
        return 2

    cfg = resolve_settings(args)
    env = environment_info(PACKAGE)
    env["peer"] = PEER_NAME
    for dist in ("fastapi", "uvicorn", "uvloop", "httptools", "starlette", "pydantic"):
        env[f"{dist}_version"] = distribution_version(dist)
    env["serve_command"] = serve_command()
    log(
        f"{PACKAGE} {env['package_version'] or '?'} vs FastAPI {env['fastapi_version']} on "
        f"uvicorn {env['uvicorn_version']} (uvloop {env['uvloop_version'] or 'absent'}, "
        f"httptools {env['httptools_version'] or 'absent'}); python {env['python_version']}, "
        f"{env['cpu_count_usable']} usable CPUs"
    )

    results: list[BenchResult] = []
    footers: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tw-bench-gateway-") as tmp:
        try:
            rows, summary = bench_gateway(cfg, Path(tmp), log)
            results.extend(rows)
            footers.extend(summary)
        except Exception as exc:  # report it as the benchmark's row
            results.append(
                BenchResult(
                    name="gateway: invoke requests/s",
                    unit="req/s",
                    error=f"{type(exc).__name__}: {exc}",
                )
            )

    title = f"tensorwasm_tc gateway vs {PEER_NAME} (uvicorn, same settings)"
    if cfg.quick:
        title += " [quick]"
    print(title)
    print(format_table(results, peer_name=PEER_NAME))
    if cfg.quick:
        footers.append("--quick: rounds are too short for the targets to mean anything")
    return finish(
        results,
        benchmark="gateway",
        json_path=args.json,
        environment=env,
        settings=dataclasses.asdict(cfg),
        check=args.check,
        log=log,
        footers=footers,
    )


if __name__ == "__main__":
    sys.exit(main())
