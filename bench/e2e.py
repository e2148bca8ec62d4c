"""End-to-end benchmark: a function whose weights come from TensorCast.

The ``mlp`` guest (``examples/guests/mlp.wasm``: ``y = linear(gelu(linear(x,
w1, b1)), w2, b2)``, exact erf GELU, float32) is deployed on real
``tensor-wasm serve`` processes with ``"artifacts": {"weights": KEY}`` and
invoked over HTTP. Every process is started on free loopback ports with
temporary homes, and stopped at the end (also on errors). Two benchmarks:

1. ``invoke`` -- throughput and latency of ``POST /functions/{id}/invoke`` on
   one gateway in TensorCast ``auto`` mode (it starts and owns its Store
   Daemon; the daemon config is a temporary copy of the defaults with
   ``listen_port: 0`` passed as ``$TENSORCAST_DAEMON_CONFIG``, so nothing
   clashes with a daemon on the default port 50052). This process attaches
   to the same daemon with ``tc.init(mode="auto")`` and registers the
   weights with ``tc.put(..., key="mlp:v1")``. Size: batch 32,
   1024 -> 4096 -> 1024 (``--quick``: batch 8, 256 -> 1024 -> 256). The
   request carries ``x`` as base64 (pre-encoded once), the response is parsed
   back into a numpy array (JSON + base64) -- what a real client does.
   ``--concurrency`` clients (default 2, each its own keep-alive connection
   on its own thread) send one request at a time each. Peer: the same
   computation in numpy in this process (``x @ w1.T + b1``, GELU with a
   vectorised float32 erf (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7), ``@
   w2.T + b2``), driven the same way by the same number of threads, with
   OpenBLAS at ``--blas-threads`` (default 1) threads per call: N callers x
   1 BLAS thread fill N cores, where OpenBLAS's default (one thread per
   core per call) oversubscribes them and spins (3-6x slower here). Before
   timing, the gateway's output is checked once against a float64 numpy
   reference with the exact ``math.erf``, and so is the peer's. Rounds
   alternate ours and the peer (the order rotates), each ``--warmup``
   seconds untimed then ``--duration`` seconds measured; reported: the
   median invokes/s of the rounds and p50/p99 latency over every measured
   call; target: ours/numpy throughput >= 0.5 (informational). The notes
   add the CPU time per call (bench process + gateway + daemon) and how busy
   other processes kept the machine during the measured windows.
   Concurrency: on the 2-core machine this was written on (shared, other
   processes kept 0.5-1 CPU busy), 1 and 2 clients gave the same gateway
   throughput (46/s), 3 and 4 less (42/s, 38/s) at 1.5-2x the latency; 2 is
   the default, as on an idle 2-core machine it keeps both cores busy.
2. ``pull`` -- the first invoke on a host WITHOUT the weights vs on the host
   that has them. A Global Store and two Store Daemons connected to it (each
   with its own ``TENSORCAST_HOME``: two hosts), and two gateways, each
   started with ``--tensorcast-address`` of its own daemon. Every round puts
   fresh weights (the base weights scaled, so a new artifact id) under a
   fresh key on daemon A, deploys the mlp bound to that key on both gateways
   (untimed), then times the first invoke on gateway B (which resolves the
   key through the Global Store and pulls the artifact from A's daemon over
   P2P before mapping it) and on gateway A (resolve and map locally), in
   rotating order. Before each round B's daemon is checked not to hold the
   artifact and its warm reserve to be filled (so the pull meets a daemon in
   its steady state); after it, to hold it. Both outputs are checked against
   numpy. Reported: medians of the rounds, and the ratio pull/local. No
   target.

Run from the repository root::

    python bench/e2e.py                  # full run (about 80 s)
    python bench/e2e.py --quick          # smoke run (small sizes, about 20 s)
    python bench/e2e.py --concurrency 4  # more concurrent HTTP clients
    python bench/e2e.py --json out.json  # also write machine-readable results

The exit status is 1 only for errors, or for a missed target with ``--check``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import dataclasses
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    from bench._common import (
        BenchResult,
        Stats,
        Target,
        add_output_options,
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
BENCHMARKS = ("invoke", "pull")
PEER_NAME = "peer"
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
MLP_WASM = REPO / "examples" / "guests" / "mlp.wasm"
MiB = 1 << 20
RATIO_TARGET = 0.5
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 120.0
# Relative tolerance of the output checks (max |diff| / max |reference|).
RTOL = 1e-4
SETTLE_S = 0.3
# Note when other processes kept at least this many CPUs busy.
OTHER_LOAD_WARN_CPUS = 0.2

# `tensor-wasm serve`, run by this interpreter (the console script's code).
SERVE_CODE = (
    "import sys; from tensorwasm_tc.cli.tensor_wasm import main; "
    "sys.argv[0] = 'tensor-wasm'; main()"
)

Log = Callable[[str], None]
Arrays = dict[str, np.ndarray[Any, Any]]


@dataclasses.dataclass(frozen=True)
class Shape:
    batch: int
    d_in: int
    hidden: int
    d_out: int

    def label(self) -> str:
        return f"batch {self.batch}, {self.d_in}-{self.hidden}-{self.d_out}"

    def weight_bytes(self) -> int:
        return 4 * (self.hidden * self.d_in + self.hidden + self.d_out * self.hidden + self.d_out)


FULL_SHAPE = Shape(32, 1024, 4096, 1024)
QUICK_SHAPE = Shape(8, 256, 1024, 256)


@dataclasses.dataclass(frozen=True)
class Settings:
    shape: Shape
    rounds: int
    duration_s: float
    warmup_s: float
    concurrency: int
    blas_threads: int
    pull_rounds: int
    quick: bool
    benchmarks: tuple[str, ...]


# --------------------------------------------------------------------------
# The computation, in numpy
# --------------------------------------------------------------------------

# Abramowitz & Stegun 7.1.26: erf(x) ~ 1 - (a1 t + ... + a5 t^5) exp(-x^2),
# t = 1 / (1 + p |x|), |error| < 1.5e-7.
_AS_P = np.float32(0.3275911)
_AS_A = tuple(
    np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
)


def erf_f32(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A vectorised float32 erf (A&S 7.1.26)."""
    a1, a2, a3, a4, a5 = _AS_A
    ax = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + _AS_P * ax)
    poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
    y = np.float32(1.0) - poly * np.exp(-ax * ax)
    out: np.ndarray[Any, Any] = np.copysign(y, x)
    return out


def mlp_numpy(x: np.ndarray[Any, Any], w: Arrays) -> np.ndarray[Any, Any]:
    """The peer: the mlp guest's computation in float32 numpy."""
    h = x @ w["w1"].T
    h += w["b1"]
    g = erf_f32(h * np.float32(1.0 / math.sqrt(2.0)))
    g += np.float32(1.0)
    g *= h
    g *= np.float32(0.5)
    y: np.ndarray[Any, Any] = g @ w["w2"].T
    y += w["b2"]
    return y


def mlp_reference(x: np.ndarray[Any, Any], w: Arrays) -> np.ndarray[Any, Any]:
    """Float64 with the exact ``math.erf``: what outputs are checked against."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    h = x.astype(np.float64) @ w["w1"].T.astype(np.float64) + w["b1"]
    g = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
    y: np.ndarray[Any, Any] = g @ w["w2"].T.astype(np.float64) + w["b2"]
    return y


def check_close(what: str, got: np.ndarray[Any, Any], want: np.ndarray[Any, Any]) -> float:
    """Raises unless ``got`` matches ``want`` to RTOL (relative to max |want|)."""
    if got.shape != want.shape:
        raise RuntimeError(f"{what}: shape {got.shape}, expected {want.shape}")
    err = float(np.max(np.abs(got.astype(np.float64) - want)) / max(np.max(np.abs(want)), 1e-30))
    if not err <= RTOL:
        raise RuntimeError(f"{what}: relative error {err:.2e} > {RTOL:g}")
    return err


# (setter, getter) names of the OpenBLAS builds numpy ships or links.
_BLAS_FUNCS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


def set_blas_threads(n: int) -> tuple[int, int] | None:
    """Sets the thread count of the OpenBLAS numpy loaded (as threadpoolctl
    does); returns ``(before, after)``, or None when it cannot (another BLAS,
    or no /proc)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        names = next(((s, g) for s, g in _BLAS_FUNCS if hasattr(lib, s) and hasattr(lib, g)), None)
        if names is None:
            continue
        setter, getter = getattr(lib, names[0]), getattr(lib, names[1])
        getter.restype = ctypes.c_int
        setter.argtypes = [ctypes.c_int]
        before = int(getter())
        setter(n)
        return before, int(getter())
    return None


def make_weights(shape: Shape, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)

    def normal(*dims: int, scale: float) -> np.ndarray[Any, Any]:
        return (rng.standard_normal(dims, dtype=np.float32) * np.float32(scale)).astype(np.float32)

    return {
        "w1": normal(shape.hidden, shape.d_in, scale=1.0 / math.sqrt(shape.d_in)),
        "b1": normal(shape.hidden, scale=0.1),
        "w2": normal(shape.d_out, shape.hidden, scale=1.0 / math.sqrt(shape.hidden)),
        "b2": normal(shape.d_out, scale=0.1),
    }


def make_input(shape: Shape, seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).standard_normal((shape.batch, shape.d_in), dtype=np.float32)


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------


def invoke_body(x: np.ndarray[Any, Any]) -> bytes:
    doc = {
        "export": "run",
        "inputs": {
            "x": {
                "dtype": "f32",
                "shape": list(x.shape),
                "data_b64": base64.b64encode(np.ascontiguousarray(x).tobytes()).decode(),
            }
        },
        "output_encoding": "data_b64",
    }
    return json.dumps(doc).encode()


def decode_output(body: bytes) -> np.ndarray[Any, Any]:
    doc = json.loads(body)
    y = doc["outputs"]["y"]
    if y["dtype"] != "f32":
        raise RuntimeError(f"output y has dtype {y['dtype']!r}, expected f32")
    arr = np.frombuffer(base64.b64decode(y["data_b64"]), dtype=np.float32)
    return arr.reshape(y["shape"])


class Http:
    """One keep-alive HTTP/1.1 connection (not thread-safe: one per thread)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=HTTP_TIMEOUT_S)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def json(self, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
        status, body = self.request(method, path, None if doc is None else json.dumps(doc).encode())
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def close(self) -> None:
        self.conn.close()


def deploy_mlp(port: int, key: str, name: str = "mlp") -> str:
    wasm_b64 = base64.b64encode(MLP_WASM.read_bytes()).decode()
    c = Http(port)
    try:
        status, doc = c.json(
            "POST",
            "/functions",
            {"name": name, "wasm_b64": wasm_b64, "artifacts": {"weights": key}},
        )
    finally:
        c.close()
    if status != 201:
        raise RuntimeError(f"deploy on :{port} failed: {status} {str(doc)[:300]}")
    fid: str = doc["id"]
    return fid


def invoke_once(port: int, fid: str, body: bytes) -> np.ndarray[Any, Any]:
    c = Http(port)
    try:
        status, raw = c.request("POST", f"/functions/{fid}/invoke", body)
    finally:
        c.close()
    if status != 200:
        raise RuntimeError(f"invoke on :{port} failed: {status} {raw[:300]!r}")
    return decode_output(raw)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def base_env(tc_home: Path) -> dict[str, str]:
    """This environment for a child: its own ``TENSORCAST_HOME``, TensorCast
    on (the test suite turns it off), no warm-reserve override (the configs
    say what they want), and the API settings at their defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENSOR_WASM_API_")}
    for k in ("TENSOR_WASM_TENSORCAST", "TENSOR_WASM_TENSORCAST_ADDRESS"):
        env.pop(k, None)
    env.pop("TENSORCAST_RESERVE_BYTES", None)
    env.pop("TENSORCAST_DAEMON_CONFIG", None)
    env["TENSORCAST_HOME"] = str(tc_home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def daemon_config(
    path: Path, storage: Path, worker_id: str, *, stable_bytes: int, reserve_bytes: int
) -> Path:
    # JSON is YAML: no YAML writer needed.
    path.write_text(
        json.dumps(
            {
                "host": HOST,
                "listen_port": 0,
                "p2p_port": 0,
                "metrics_port": -1,
                "storage_path": str(storage),
                "worker_id": worker_id,
                "memory_tiers": {"stable_bytes": stable_bytes, "reserve_bytes": reserve_bytes},
            }
        )
    )
    return path


@dataclasses.dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0  # gateways
    record: Any = None  # daemons, Global Store: their SessionRecord

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class Processes:
    """Every process the benchmark starts; :meth:`close` stops them all
    (gateways first, then daemons, then the Global Store)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Proc] = []

    def _popen(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.root / f"{name}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        p = Proc(name, proc, log_path)
        self.procs.append(p)
        return p

    def _session(self, p: Proc, home: Path) -> Any:
        from tensorwasm_tc.tensorcast.sessions import SessionRecord

        path = home / "store_sessions" / f"{p.name}.json"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if path.exists():
                with contextlib.suppress(ValueError, OSError):
                    rec = SessionRecord.from_json(json.loads(path.read_text()))
                    if rec.pid == p.proc.pid:
                        p.record = rec
                        return rec
            if p.proc.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.proc.returncode}:\n{p.tail()}")
            time.sleep(0.02)
        raise RuntimeError(f"{p.name} not ready within {START_TIMEOUT_S:.0f} s")

    def global_store(self, home: Path) -> Proc:
        cfg = self.root / "gs.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "global_store": {
                        "listen": {"host": HOST, "port": 0},
                        "metrics": {"port": -1},
                        "database": {"path": str(self.root / "gs.db")},
                        "heartbeat": {"interval_ms": 1000, "timeout_ms": 30000},
                    }
                }
            )
        )
        p = self._popen(
            "gs",
            [sys.executable, "-m", "tensorwasm_tc.tensorcast.global_store", "--config", str(cfg),
             "--listen-port", "0", "--metrics-port", "-1", "--session-id", "gs"],
            base_env(home),
        )  # fmt: skip
        self._session(p, home)
        return p

    def daemon(
        self, name: str, home: Path, gs_address: str, *, stable_bytes: int, reserve_bytes: int
    ) -> Proc:
        cfg = daemon_config(
            self.root / f"{name}.yaml",
            self.root / f"storage-{name}",
            f"bench-e2e-{name}",
            stable_bytes=stable_bytes,
            reserve_bytes=reserve_bytes,
        )
        p = self._popen(
            name,
            [sys.executable, "-m", "tensorwasm_tc.tensorcast.daemon", "--config", str(cfg),
             "--session-id", name, "--log-level", "WARNING",
             "--global-store-mode", "connect", "--global-store-address", gs_address],
            base_env(home),
        )  # fmt: skip
        self._session(p, home)
        return p

    def gateway(self, name: str, env: dict[str, str], args: Sequence[str] = ()) -> Proc:
        home = self.root / f"{name}-home"
        env = dict(env)
        env["TENSOR_WASM_HOME"] = str(home)
        env["TENSOR_WASM_API_AUDIT_LOG"] = f"file:{self.root / f'{name}-audit.log'}"
        port = free_port()
        argv = [sys.executable, "-c", SERVE_CODE, "serve", "--host", HOST, "--port", str(port)]
        argv += ["--home", str(home), *args]
        p = self._popen(name, argv, env)
        p.port = port
        wait_tensorcast(p)
        return p

    def stop(self, p: Proc) -> None:
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
            try:
                p.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait(10)

    def close(self) -> None:
        # Gateways first (an auto-mode gateway stops the daemon it owns).
        order = sorted(self.procs, key=lambda p: (p.record is not None, p.name == "gs"))
        for p in order:
            with contextlib.suppress(Exception):
                self.stop(p)
        self.procs.clear()


@contextlib.contextmanager
def processes(root: Path) -> Iterator[Processes]:
    root.mkdir(parents=True, exist_ok=True)
    ps = Processes(root)
    try:
        yield ps
    finally:
        ps.close()


def wait_tensorcast(p: Proc) -> dict[str, Any]:
    """Polls ``/readyz`` until the gateway serves and TensorCast is connected."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last: Any = None
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise RuntimeError(f"{p.name} exited with {p.proc.returncode}:\n{p.tail()}")
        try:
            c = Http(p.port)
            try:
                status, last = c.json("GET", "/readyz")
            finally:
                c.close()
            tcs = last.get("tensorcast", {}) if isinstance(last, dict) else {}
            if status == 200 and tcs.get("state") == "connected":
                return dict(tcs)
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"{p.name}: TensorCast not connected within {START_TIMEOUT_S:.0f} s "
        f"(last /readyz: {last}):\n{p.tail()}"
    )


def store_for(p: Proc) -> Any:
    from tensorwasm_tc.tensorcast.daemon.client import DaemonClient
    from tensorwasm_tc.tensorcast.store import Store

    return Store(DaemonClient(p.record.address, p.record.socket_path, session_id="bench-e2e"))


def close_store(store: Any) -> None:
    with contextlib.suppress(Exception):
        store.client.close()


def wait_reserve(store: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        st = store.client.status()
        if st.reserve_ready_bytes >= st.reserve_bytes:
            return
        time.sleep(0.02)
    raise RuntimeError("the daemon's warm reserve was not filled in time")


def holds(store: Any, artifact_id: str) -> bool:
    return any(a.artifact_id == artifact_id for a in store.client.status().artifacts)


@contextlib.contextmanager
def env_vars(**values: str) -> Iterator[None]:
    """Sets environment variables of this process for the block."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------
# Load: N threads, one call in flight each
# --------------------------------------------------------------------------


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_s() -> float | None:
    """CPU seconds all CPUs spent busy since boot (/proc/stat)."""
    try:
        with open("/proc/stat", "rb") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / _HZ
    except (OSError, ValueError, IndexError):
        return None


def process_cpu_s(pids: Sequence[int]) -> float | None:
    """CPU seconds (user + system) the processes ``pids`` used so far."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _HZ
        except (OSError, ValueError, IndexError):
            return None
    return total


@dataclasses.dataclass
class Round:
    rate: float  # calls completed in the measured window per second
    completed: int
    latencies_s: list[float]
    ours_cpus: float | None = None  # CPUs busy in the processes taking part
    others_cpus: float | None = None  # CPUs busy in every other process


def drive(
    make_worker: Callable[[], tuple[Callable[[], None], Callable[[], None]]],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    pids: Sequence[int] = (),
) -> Round:
    """Runs ``concurrency`` threads, each calling its own worker (``make_worker()``
    -> ``(call, close)``) back to back: ``warmup_s`` untimed, then
    ``duration_s`` measured. Throughput counts the calls that ended inside the
    measured window; latencies are those of the calls that started in it.
    The CPU time of ``pids`` (and of the machine) is read at the window's
    edges, so that the load of other processes can be reported."""
    clock = time.perf_counter
    workers = [make_worker() for _ in range(concurrency)]
    barrier = threading.Barrier(concurrency + 1)
    window = [0.0, 0.0]
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    done = [0] * concurrency
    errors: list[BaseException] = []
    stop = threading.Event()

    def run(i: int) -> None:
        call = workers[i][0]
        barrier.wait()
        start, end = window
        mine = lat[i]
        n = 0
        try:
            while not stop.is_set():
                t0 = clock()
                if t0 >= end:
                    break
                call()
                t1 = clock()
                if t0 >= start:
                    mine.append(t1 - t0)
                if start <= t1 <= end:
                    n += 1
        except BaseException as exc:
            errors.append(exc)
            stop.set()
        done[i] = n

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(concurrency)]
    try:
        for t in threads:
            t.start()
        now = clock()
        window[0], window[1] = now + warmup_s, now + warmup_s + duration_s
        barrier.wait()
        time.sleep(max(0.0, window[0] - clock()))
        busy0, cpu0 = machine_busy_s(), process_cpu_s(pids)
        time.sleep(max(0.0, window[1] - clock()))
        busy1, cpu1 = machine_busy_s(), process_cpu_s(pids)
        for t in threads:
            t.join()
    finally:
        for _, close in workers:
            with contextlib.suppress(Exception):
                close()
    if errors:
        raise errors[0]
    latencies = [v for xs in lat for v in xs]
    if not latencies:
        raise RuntimeError("no call completed in the measured window")
    ours_cpus = others_cpus = None
    if None not in (busy0, busy1, cpu0, cpu1):
        assert busy0 is not None and busy1 is not None and cpu0 is not None and cpu1 is not None
        ours_cpus = (cpu1 - cpu0) / duration_s
        others_cpus = max(0.0, (busy1 - busy0) / duration_s - ours_cpus)
    return Round(
        rate=sum(done) / duration_s,
        completed=sum(done),
        latencies_s=latencies,
        ours_cpus=ours_cpus,
        others_cpus=others_cpus,
    )


# --------------------------------------------------------------------------
# 1. invoke throughput vs numpy
# --------------------------------------------------------------------------


def bench_invoke(cfg: Settings, workdir: Path, log: Log) -> list[BenchResult]:
    shape = cfg.shape
    root = workdir / "invoke"
    tc_home = root / "tc-home"
    tc_home.mkdir(parents=True)
    dcfg = daemon_config(
        root / "daemon.yaml",
        root / "storage",
        "bench-e2e-auto",
        stable_bytes=max(256 * MiB, 4 * shape.weight_bytes()),
        reserve_bytes=0,
    )
    env = base_env(tc_home)
    env["TENSORCAST_DAEMON_CONFIG"] = str(dcfg)
    body_bytes = len(invoke_body(make_input(shape, seed=2)))
    series: dict[str, list[Round]] = {"ours": [], "peer": []}
    blas = set_blas_threads(cfg.blas_threads) if cfg.blas_threads else None
    if blas is not None:
        log(f"invoke: numpy's OpenBLAS threads {blas[0]} -> {blas[1]} (--blas-threads)")
    try:
        ours_err, peer_err = _invoke_rounds(cfg, root, env, dcfg, tc_home, series, log)
    finally:
        if blas is not None:
            set_blas_threads(blas[0])
    return _invoke_results(cfg, series, blas, ours_err, peer_err, body_bytes)


def _invoke_rounds(
    cfg: Settings,
    root: Path,
    env: dict[str, str],
    dcfg: Path,
    tc_home: Path,
    series: dict[str, list[Round]],
    log: Log,
) -> tuple[float, float]:
    import tensorwasm_tc.tensorcast as tc

    shape = cfg.shape
    weights = make_weights(shape, seed=1)
    x = make_input(shape, seed=2)
    body = invoke_body(x)
    want = mlp_reference(x, weights)
    with processes(root) as ps:
        log("invoke: starting tensor-wasm serve (TensorCast auto mode)")
        gw = ps.gateway("gateway", env)
        with env_vars(TENSORCAST_HOME=str(tc_home), TENSORCAST_DAEMON_CONFIG=str(dcfg)):
            ctx = tc.init(mode="auto")
            try:
                if ctx.is_owner:
                    raise RuntimeError("tc.init(mode='auto') started a daemon of its own")
                aid = tc.put(weights, key="mlp:v1")
                log(
                    f"invoke: put {shape.weight_bytes() / MiB:.1f} MiB of weights as mlp:v1 "
                    f"({aid[:12]}...) on the gateway's daemon at {ctx.address}"
                )
                fid = deploy_mlp(gw.port, "mlp:v1")
                ours_err = check_close("gateway output", invoke_once(gw.port, fid, body), want)
                peer_err = check_close("numpy output", mlp_numpy(x, weights), want)
                log(f"invoke: outputs match (relative error {ours_err:.1e}, numpy {peer_err:.1e})")
                path = f"/functions/{fid}/invoke"
                pids = [os.getpid(), gw.proc.pid, int(ctx.client.status().pid)]

                def ours_worker() -> tuple[Callable[[], None], Callable[[], None]]:
                    c = Http(gw.port)

                    def call() -> None:
                        status, raw = c.request("POST", path, body)
                        if status != 200:
                            raise RuntimeError(f"invoke: {status} {raw[:200]!r}")
                        decode_output(raw)

                    return call, c.close

                def peer_worker() -> tuple[Callable[[], None], Callable[[], None]]:
                    def call() -> None:
                        mlp_numpy(x, weights)

                    return call, lambda: None

                workers = {"ours": ours_worker, "peer": peer_worker}
                for r in range(cfg.rounds):
                    shift = r % 2
                    for name in list(workers)[shift:] + list(workers)[:shift]:
                        time.sleep(SETTLE_S)
                        res = drive(
                            workers[name], cfg.concurrency, cfg.warmup_s, cfg.duration_s, pids
                        )
                        series[name].append(res)
                        st = Stats.of(res.latencies_s)
                        log(
                            f"invoke: round {r + 1}/{cfg.rounds} {name}: {res.rate:.1f}/s, "
                            f"p50 {format_duration(st.median)}, p99 {format_duration(st.p99)}"
                            + (
                                ""
                                if res.others_cpus is None
                                else f"; other processes busy {res.others_cpus:.2f} CPUs"
                            )
                        )
            finally:
                tc.shutdown()
    return ours_err, peer_err


def _invoke_results(
    cfg: Settings,
    series: dict[str, list[Round]],
    blas: tuple[int, int] | None,
    ours_err: float,
    peer_err: float,
    request_bytes: int,
) -> list[BenchResult]:
    shape = cfg.shape
    rates = {k: Stats.of([x.rate for x in v]) for k, v in series.items()}
    lat = {k: Stats.of([s for x in v for s in x.latencies_s]) for k, v in series.items()}
    o, p = rates["ours"].median, rates["peer"].median
    how = (
        f"{cfg.concurrency} client thread(s), one call in flight each; median of {cfg.rounds} "
        f"rounds x {cfg.duration_s:g} s (after {cfg.warmup_s:g} s warm-up); numpy's OpenBLAS "
        + (f"at {blas[1]} thread(s) per call" if blas else "at its default thread count")
    )
    others = [x.others_cpus for v in series.values() for x in v if x.others_cpus is not None]
    if others:
        how += (
            f"; other processes kept {median(others):.2f} CPUs busy during the measured "
            "windows (median)"
            + (
                ": the machine was shared, figures are pessimistic and noisy"
                if median(others) >= OTHER_LOAD_WARN_CPUS
                else ""
            )
        )
    # Paired: ours and the peer of the same round ran back to back.
    paired = [a.rate / b.rate for a, b in zip(series["ours"], series["peer"], strict=True)]
    how += (
        f"; ours/numpy per round: {', '.join(f'{v:.2f}' for v in paired)} "
        f"(median {median(paired):.2f})"
    )
    busy = {k: [x.ours_cpus for x in v if x.ours_cpus is not None] for k, v in series.items()}
    # CPU seconds per call: this process (+ the gateway and its daemon for ours).
    per_call = {
        k: median([x.ours_cpus / x.rate for x in v if x.ours_cpus is not None and x.rate > 0])
        if busy[k]
        else None
        for k, v in series.items()
    }
    if per_call["ours"] is not None and per_call["peer"] is not None:
        how += (
            f"; CPU time per call (median): ours {format_duration(per_call['ours'])} (client, "
            f"gateway and daemon), numpy {format_duration(per_call['peer'])}"
        )
    return [
        BenchResult(
            name=f"mlp invokes/s ({shape.label()})",
            unit="req/s",
            ours=o,
            peer=p,
            ratio=safe_ratio(o, p),
            ratio_def="ours/numpy",
            targets=[Target("ratio", ">=", RATIO_TARGET, f"ratio >= {RATIO_TARGET:g}")],
            ours_stats=rates["ours"],
            peer_stats=rates["peer"],
            note=(
                f"ours: POST /functions/{{id}}/invoke over HTTP keep-alive, weights bound via "
                f"TensorCast (auto mode), x sent as base64, y decoded; peer: the same float32 "
                f"computation in numpy in-process; {how}"
            ),
            extra={
                "concurrency": cfg.concurrency,
                "ours_rel_error": ours_err,
                "peer_rel_error": peer_err,
                "request_bytes": request_bytes,
                "blas_threads": None if blas is None else blas[1],
                "ratio_per_round": paired,
                "cpus_busy_median": {k: median(v) if v else None for k, v in busy.items()},
                "cpu_s_per_call_median": per_call,
                "other_processes_cpus_busy_median": median(others) if others else None,
                "round_detail": {
                    k: [
                        {
                            "rate": x.rate,
                            "completed": x.completed,
                            "cpus_busy": x.ours_cpus,
                            "other_processes_cpus_busy": x.others_cpus,
                        }
                        for x in v
                    ]
                    for k, v in series.items()
                },
            },
        ),
        BenchResult(
            name="mlp latency p50",
            unit="s",
            ours=lat["ours"].median,
            peer=lat["peer"].median,
            ratio=safe_ratio(lat["ours"].median, lat["peer"].median),
            ratio_def="ours/numpy",
            ours_stats=lat["ours"],
            peer_stats=lat["peer"],
        ),
        BenchResult(
            name="mlp latency p99",
            unit="s",
            ours=lat["ours"].p99,
            peer=lat["peer"].p99,
            ratio=safe_ratio(lat["ours"].p99, lat["peer"].p99),
            ratio_def="ours/numpy",
            note="latency percentiles over every call measured in every round",
        ),
    ]


# --------------------------------------------------------------------------
# 2. first invoke: pulled over P2P vs local
# --------------------------------------------------------------------------


def bench_pull(cfg: Settings, workdir: Path, log: Log) -> list[BenchResult]:
    shape = cfg.shape
    root = workdir / "pull"
    homes = {h: root / f"tc-home-{h}" for h in ("gs", "a", "b")}
    for h in homes.values():
        h.mkdir(parents=True)
    size = shape.weight_bytes()
    stable = max(256 * MiB, (cfg.pull_rounds + 2) * size + 64 * MiB)
    reserve = max(64 * MiB, 2 * size)
    base = make_weights(shape, seed=3)
    x = make_input(shape, seed=4)
    body = invoke_body(x)
    first: dict[str, list[float]] = {"pull": [], "local": []}
    second: dict[str, list[float]] = {"pull": [], "local": []}
    stores: list[Any] = []
    with processes(root) as ps:
        gs = ps.global_store(homes["gs"])
        gs_addr = gs.record.address
        daemons = {
            h: ps.daemon(h, homes[h], gs_addr, stable_bytes=stable, reserve_bytes=reserve)
            for h in ("a", "b")
        }
        gateways = {
            h: ps.gateway(
                f"gateway-{h}",
                base_env(homes[h]),
                ["--tensorcast-address", daemons[h].record.address],
            )
            for h in ("a", "b")
        }
        log(
            f"pull: Global Store {gs_addr}; daemons A {daemons['a'].record.address}, "
            f"B {daemons['b'].record.address}; gateways :{gateways['a'].port}, "
            f":{gateways['b'].port}"
        )
        try:
            sa, sb = store_for(daemons["a"]), store_for(daemons["b"])
            stores += [sa, sb]
            port = {"pull": gateways["b"].port, "local": gateways["a"].port}
            for r in range(cfg.pull_rounds):
                scale = np.float32(1.0 + 0.01 * (r + 1))
                w = {k: (v * scale).astype(np.float32) for k, v in base.items()}
                key = f"mlp:round-{r}"
                aid = sa.put(w, key=key)
                want = mlp_reference(x, w)
                fids = {which: deploy_mlp(port[which], key, f"mlp-{r}") for which in port}
                if holds(sb, aid):
                    raise RuntimeError(f"round {r}: daemon B already holds {aid[:12]}")
                wait_reserve(sb)
                order = ["pull", "local"] if r % 2 == 0 else ["local", "pull"]
                for which in order:
                    time.sleep(SETTLE_S)
                    t0 = time.perf_counter()
                    y = invoke_once(port[which], fids[which], body)
                    first[which].append(time.perf_counter() - t0)
                    check_close(f"round {r} {which} output", y, want)
                for which in order:
                    t0 = time.perf_counter()
                    invoke_once(port[which], fids[which], body)
                    second[which].append(time.perf_counter() - t0)
                if not holds(sb, aid):
                    raise RuntimeError(f"round {r}: daemon B does not hold {aid[:12]} after")
                log(
                    f"pull: round {r + 1}/{cfg.pull_rounds}: first invoke on B (pull) "
                    f"{format_duration(first['pull'][-1])}, on A (local) "
                    f"{format_duration(first['local'][-1])}; second "
                    f"{format_duration(second['pull'][-1])} / "
                    f"{format_duration(second['local'][-1])}"
                )
        finally:
            for s in stores:
                close_store(s)

    fp, fl = Stats.of(first["pull"]), Stats.of(first["local"])
    sp, sl = Stats.of(second["pull"]), Stats.of(second["local"])
    return [
        BenchResult(
            name=f"first invoke: pull (B) vs local (A), {size / MiB:.1f} MiB",
            unit="s",
            ours=fp.median,
            peer=fl.median,
            ratio=safe_ratio(fp.median, fl.median),
            ratio_def="pull/local",
            ours_stats=fp,
            peer_stats=fl,
            note=(
                "ours: first invoke of a freshly deployed mlp on gateway B, whose daemon lacks "
                "the weights (Global Store lookup, P2P pull from daemon A, map, load, run); "
                "peer: the same on gateway A, whose daemon holds them (map, load, run); "
                f"median of {cfg.pull_rounds} rounds, fresh key and weights every round"
            ),
            extra={"pull_s": first["pull"], "local_s": first["local"], "weight_bytes": size},
        ),
        BenchResult(
            name="  (context) second invoke B vs A",
            unit="s",
            ours=sp.median,
            peer=sl.median,
            ratio=safe_ratio(sp.median, sl.median),
            ratio_def="B/A",
            ours_stats=sp,
            peer_stats=sl,
            note="informational: the next invoke on each, weights already mapped",
        ),
    ]


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

# (full run, --quick); explicit flags override either.
DEFAULTS: dict[str, tuple[float, float]] = {
    "rounds": (5, 1),
    "duration": (5.0, 1.5),
    "warmup": (1.0, 0.5),
    "pull_rounds": (5, 2),
}


def build_parser() -> argparse.ArgumentParser:
    def dflt(key: str) -> str:
        full, quick = DEFAULTS[key]
        return f"(default {full:g}; {quick:g} with --quick)"

    parser = argparse.ArgumentParser(
        prog="python bench/e2e.py",
        description=(
            "Benchmark the mlp guest with TensorCast-bound weights end to end: invokes over "
            "HTTP vs numpy in-process, and the first invoke on a host that pulls the weights "
            "over P2P vs one that has them."
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (batch 8, 256-1024-256, short rounds); targets are not meaningful",
    )
    parser.add_argument(
        "--rounds", type=positive_int, help=f"throughput rounds per contender {dflt('rounds')}"
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        metavar="SECONDS",
        help=f"measured seconds per throughput round {dflt('duration')}",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_float,
        metavar="SECONDS",
        help=f"untimed seconds before each measured round {dflt('warmup')}",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=2,
        help="concurrent HTTP clients, and numpy threads for the peer (default 2)",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        metavar="N",
        help="OpenBLAS threads of the numpy peer per call (default 1: one core per client "
        "thread, as the gateway runs one invoke per core; 0 = leave OpenBLAS's default)",
    )
    parser.add_argument(
        "--pull-rounds",
        type=positive_int,
        help=f"rounds of the first-invoke benchmark {dflt('pull_rounds')}",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=BENCHMARKS,
        help="run only this benchmark (repeatable; default: all)",
    )
    parser.add_argument(
        "--dir", metavar="DIR", help="where homes and logs go (default: system temp)"
    )
    add_output_options(parser)
    return parser


def resolve_settings(args: argparse.Namespace) -> Settings:
    pick = 1 if args.quick else 0

    def value(key: str) -> float:
        given = getattr(args, key)
        return float(given) if given is not None else DEFAULTS[key][pick]

    return Settings(
        shape=QUICK_SHAPE if args.quick else FULL_SHAPE,
        rounds=int(value("rounds")),
        duration_s=value("duration"),
        warmup_s=value("warmup"),
        concurrency=int(args.concurrency),
        blas_threads=max(0, int(args.blas_threads)),
        pull_rounds=int(value("pull_rounds")),
        quick=bool(args.quick),
        benchmarks=tuple(b for b in BENCHMARKS if not args.only or b in args.only),
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds main, so every process started so far is stopped.
    sys.exit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = progress(args.quiet)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if import_package(PACKAGE) is None:
        return 2
    if not MLP_WASM.is_file():
        print(f"error: {MLP_WASM} is missing", file=sys.stderr)
        return 2
    cfg = resolve_settings(args)
    env = environment_info(PACKAGE)
    env["numpy_version"] = np.__version__
    log(
        f"{PACKAGE} {env['package_version'] or '?'}; numpy {np.__version__}; python "
        f"{env['python_version']}, {env['cpu_count_usable']} usable CPUs; mlp "
        f"{cfg.shape.label()}, {cfg.concurrency} client(s)"
    )
    results: list[BenchResult] = []
    started = time.perf_counter()
    runners = {"invoke": bench_invoke, "pull": bench_pull}
    rows = {"invoke": "mlp invokes/s", "pull": "first invoke: pull vs local"}
    with tempfile.TemporaryDirectory(prefix="tw-bench-e2e-", dir=args.dir) as tmp:
        for name in cfg.benchmarks:
            try:
                results.extend(runners[name](cfg, Path(tmp), log))
            except Exception as exc:  # report it and go on with the others
                results.append(
                    BenchResult(
                        name=rows[name], unit="s", error=f"{type(exc).__name__}: {exc}"[:2000]
                    )
                )
    env["wall_s"] = time.perf_counter() - started
    title = "tensorwasm_tc end to end: mlp with TensorCast weights vs numpy / local"
    if cfg.quick:
        title += " [quick]"
    print(title)
    print(
        f"  peer: numpy in-process for the invoke rows, gateway A (weights local) for the "
        f"first-invoke rows; wall {env['wall_s']:.1f} s"
    )
    print()
    print(format_table(results, peer_name=PEER_NAME))
    footers = ["--quick: sizes are too small for the targets to mean anything"] if cfg.quick else []
    return finish(
        results,
        benchmark="e2e",
        json_path=args.json,
        environment=env,
        settings=dataclasses.asdict(cfg),
        check=args.check,
        log=log,
        footers=footers,
    )


if __name__ == "__main__":
    sys.exit(main())
