"""How an application process attaches to its Store Daemon: `init`,
`shutdown` and the `Context` they manage.

Modes (the upstream startup guide's, name for name):

* ``connect``: attach to a running daemon, by ``address`` or by the newest
  live daemon session under ``$TENSORCAST_HOME``; never starts anything.
* ``create``: start a daemon (and first a Global Store when
  ``global_store_mode="start"``) as children of this process, wait until
  they serve, attach. This process owns them: `shutdown` (or interpreter
  exit) stops them.
* ``auto``: one owner among processes sharing ``$TENSORCAST_HOME``: under an
  exclusive lock on ``auto.lock``, connect to the daemon an earlier ``auto``
  started with the same parameters, fail with ``AUTO_CONFIG_MISMATCH`` when
  it was started with different ones, else ``create``.

One process holds at most one client (one daemon address). This module
starts and stops processes only through their command-line interface
(``python -m tensorwasm_tc.tensorcast.daemon`` / ``...global_store``) and
their session files; it never talks to the Global Store beyond a health
check of one it started or must refuse to start twice.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal

import grpc

from tensorwasm_tc.tensorcast import sessions
from tensorwasm_tc.tensorcast.errors import ArtifactError
from tensorwasm_tc.tensorcast.options import PortConfig, StoreOptions

if TYPE_CHECKING:
    from tensorwasm_tc.tensorcast.daemon.client import DaemonClient
    from tensorwasm_tc.tensorcast.store import Store

__all__ = [
    "GLOBAL_STORE_MODES",
    "MODES",
    "Context",
    "current",
    "find_daemon_config",
    "init",
    "init_config_hash",
    "shutdown",
]

log = logging.getLogger(__name__)

Mode = Literal["connect", "create", "auto"]
MODES: Final = ("connect", "create", "auto")
GlobalStoreMode = Literal["none", "connect", "start"]
GLOBAL_STORE_MODES: Final = ("none", "connect", "start")

DAEMON_CONFIG_ENV: Final = "TENSORCAST_DAEMON_CONFIG"
GLOBAL_STORE_CONFIG_ENV: Final = "TENSORCAST_GLOBAL_STORE_CONFIG"
# The modules `create` runs with ``python -m``; overridable so a custom build
# (or a test double that speaks the same protocol) can stand in.
DAEMON_MODULE_ENV: Final = "TENSORCAST_DAEMON_MODULE"
GLOBAL_STORE_MODULE_ENV: Final = "TENSORCAST_GLOBAL_STORE_MODULE"
DAEMON_MODULE: Final = "tensorwasm_tc.tensorcast.daemon"
GLOBAL_STORE_MODULE: Final = "tensorwasm_tc.tensorcast.global_store"

DAEMON_CONFIG_NAME: Final = "store_daemon_config.yaml"
GLOBAL_STORE_CONFIG_NAME: Final = "global_store_config.yaml"

#: How long a started process may take to write its session file and answer
#: its health RPC (a cold Python import of grpc + numpy is ~1 s; a daemon
#: re-registering durable artifacts takes longer).
STARTUP_TIMEOUT_S: Final = 60.0
#: How long `auto` waits for another process's election (its launch included).
AUTO_LOCK_TIMEOUT_S: Final = STARTUP_TIMEOUT_S * 2 + 30.0
#: SIGTERM → SIGKILL grace when stopping an owned process.
STOP_GRACE_S: Final = 10.0
#: One health RPC (Status / GetStatus).
HEALTH_RPC_TIMEOUT_S: Final = 2.0
_POLL_S: Final = 0.05
_LOG_TAIL_LINES: Final = 40


# --------------------------------------------------------------------------
# Context


@dataclass(eq=False)
class Context:
    """This process's attachment to a Store Daemon.

    ``address``: the daemon's gRPC host:port. ``is_owner``: this process
    started the daemon (``create``, or the elected ``auto`` owner) and stops
    it on `shutdown`. ``session_id``: the client session this process opens
    on the daemon (``init(session_id=...)`` or a fresh id).
    """

    address: str
    is_owner: bool
    session_id: str
    mode: Mode
    socket_path: str | None = None
    daemon_session_id: str = ""
    global_store_address: str = ""
    config_hash: str = ""
    pid: int = field(default_factory=os.getpid)
    _children: list[_Child] = field(default_factory=list, repr=False)
    _client: DaemonClient | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def client(self) -> DaemonClient:
        """The daemon client (opened on first use)."""
        with self._lock:
            if self._client is None:
                from tensorwasm_tc.tensorcast.daemon.client import DaemonClient

                self._client = DaemonClient(
                    self.address, socket_path=self.socket_path, session_id=self.session_id
                )
            return self._client

    @property
    def store(self) -> Store:
        """The Store with default options, shared by the module-level verbs."""
        client = self.client
        with self._lock:
            if self._store is None:
                from tensorwasm_tc.tensorcast.store import Store

                self._store = Store(client)
            return self._store

    def new_store(self, opts: StoreOptions | None = None) -> Store:
        from tensorwasm_tc.tensorcast.store import Store

        return Store(self.client, opts)

    def _close(self) -> None:
        with self._lock:
            client, self._client, self._store = self._client, None, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing the daemon client failed", exc_info=True)
        if self.is_owner and self.pid == os.getpid():
            for child in reversed(self._children):
                child.stop()
            self._children.clear()


_state_lock = threading.RLock()
_current: Context | None = None
_atexit_registered = False


def current() -> Context:
    """The Context of this process; FAILED_PRECONDITION before `init`."""
    ctx = _current
    if ctx is None or ctx.pid != os.getpid():
        raise ArtifactError(
            "TensorCast is not initialized in this process: call init() first",
            "FAILED_PRECONDITION",
        )
    return ctx


# --------------------------------------------------------------------------
# init / shutdown


def init(
    mode: Mode = "connect",
    address: str | None = None,
    daemon_config_path: str | os.PathLike[str] | None = None,
    global_store_mode: GlobalStoreMode = "none",
    global_store_address: str | None = None,
    global_store_config_path: str | os.PathLike[str] | None = None,
    port_config: PortConfig | None = None,
    show_daemon_logs: bool = True,
    session_id: str | None = None,
) -> Context:
    """Attaches this process to a Store Daemon (see the module docstring for
    the modes) and returns its `Context`. Calling it again with the same
    address (or none) returns the same Context; with another address it
    fails: one process keeps one daemon endpoint."""
    global _current
    if mode not in MODES:
        raise ArtifactError(
            f"mode must be one of {', '.join(MODES)}, not {mode!r}", "INVALID_ARGUMENT"
        )
    if global_store_mode not in GLOBAL_STORE_MODES:
        raise ArtifactError(
            f"global_store_mode must be one of {', '.join(GLOBAL_STORE_MODES)}, "
            f"not {global_store_mode!r}",
            "INVALID_ARGUMENT",
        )
    if global_store_mode == "connect" and mode != "connect" and not global_store_address:
        log.info(
            "global_store_mode='connect' without global_store_address: the daemon uses "
            "the Global Store address of its config file"
        )
    ports = port_config or PortConfig()
    with _state_lock:
        existing = _current
        if existing is not None and existing.pid != os.getpid():
            # Inherited across fork: the parent's client and children are not ours.
            _current = existing = None
        if existing is not None:
            if address is not None and _normalize(address) != _normalize(existing.address):
                raise ArtifactError(
                    f"client already initialized for address {existing.address} refusing "
                    f"second client for address {address}; call shutdown() first or use one "
                    "daemon endpoint per process",
                    "FAILED_PRECONDITION",
                )
            return existing
        home = sessions.tensorcast_home()
        sessions.live_sessions(home=home)  # drops records of dead processes
        client_session = session_id or uuid.uuid4().hex
        if mode == "connect":
            ctx = _connect(
                address,
                home,
                client_session,
                ports,
                global_store_mode,
                global_store_address,
                global_store_config_path,
            )
        else:
            if address is not None:
                log.info("address=%s is ignored in %s mode", address, mode)
            params = _LaunchParams.resolve(
                daemon_config_path,
                global_store_mode,
                global_store_address,
                global_store_config_path,
                ports,
                show_daemon_logs,
                session_id,
            )
            if mode == "create":
                ctx = _create(params, home, client_session, "create")
            else:
                ctx = _auto(params, home, client_session)
        _current = ctx
        return ctx


def shutdown() -> None:
    """Closes this process's client and stops the processes it owns. Safe to
    call twice, or without `init`."""
    global _current
    with _state_lock:
        ctx, _current = _current, None
    if ctx is not None and ctx.pid == os.getpid():
        ctx._close()


def _atexit_shutdown() -> None:
    try:
        shutdown()
    except Exception:  # interpreter teardown: never raise
        log.debug("TensorCast shutdown at exit failed", exc_info=True)


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_atexit_shutdown)
        _atexit_registered = True


def _normalize(address: str) -> str:
    host, _, port = address.strip().rpartition(":")
    if host in ("localhost", "0.0.0.0", "[::]", "[::1]", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


# --------------------------------------------------------------------------
# connect


def _connect(
    address: str | None,
    home: Path,
    client_session: str,
    ports: PortConfig,
    global_store_mode: str,
    global_store_address: str | None,
    global_store_config_path: object,
) -> Context:
    if ports != PortConfig():
        log.info("port_config is ignored in connect mode: no local process is started")
    if global_store_mode != "none" or global_store_address or global_store_config_path:
        log.info(
            "global_store_* arguments are ignored in connect mode: they do not reconfigure "
            "a running daemon; set them when the daemon starts"
        )
    record: sessions.SessionRecord | None = None
    if address is None:
        records = sessions.live_sessions("daemon", home=home)
        if not records:
            raise ArtifactError(
                f"No local daemon session found under {home}: start a daemon "
                "(tensorcast-cli daemon start) or pass address=",
                "FAILED_PRECONDITION",
            )
        record = records[0]
        address = record.address
    else:
        record = next(
            (
                r
                for r in sessions.live_sessions("daemon", home=home)
                if _normalize(r.address) == _normalize(address)
            ),
            None,
        )
    status = _daemon_status(address, HEALTH_RPC_TIMEOUT_S)
    if status is None:
        raise ArtifactError(f"the Store Daemon at {address} is not reachable", "UNAVAILABLE")
    socket_path = (record.socket_path if record else "") or getattr(status, "socket_path", "")
    return Context(
        address=address,
        is_owner=False,
        session_id=client_session,
        mode="connect",
        socket_path=socket_path if socket_path and os.path.exists(socket_path) else None,
        daemon_session_id=record.session_id if record else "",
        global_store_address=(record.global_store_address if record else "")
        or getattr(status, "global_store_address", ""),
        config_hash=record.config_hash if record else "",
    )


# --------------------------------------------------------------------------
# create


@dataclass(frozen=True)
class _LaunchParams:
    """Everything `create` needs, resolved; also what `auto` hashes."""

    daemon_config_path: str
    daemon_config_sha256: str
    global_store_mode: str
    global_store_address: str
    global_store_config_path: str
    global_store_config_sha256: str
    ports: PortConfig
    session_id: str
    show_daemon_logs: bool

    @classmethod
    def resolve(
        cls,
        daemon_config_path: str | os.PathLike[str] | None,
        global_store_mode: str,
        global_store_address: str | None,
        global_store_config_path: str | os.PathLike[str] | None,
        ports: PortConfig,
        show_daemon_logs: bool,
        session_id: str | None,
    ) -> _LaunchParams:
        daemon_cfg = find_daemon_config(daemon_config_path)
        gs_cfg: Path | None = None
        if global_store_mode == "start":
            gs_cfg = find_global_store_config(global_store_config_path)
            if global_store_address:
                log.info("global_store_address is ignored with global_store_mode='start'")
            global_store_address = None
        else:
            if global_store_config_path is not None:
                log.info("global_store_config_path is ignored unless global_store_mode='start'")
            gs_ports = (ports.global_store_listen_port, ports.global_store_metrics_port)
            if any(p is not None for p in gs_ports):
                log.info(
                    "Global Store ports in port_config are ignored unless global_store_mode='start'"
                )
            ports = PortConfig(
                daemon_listen_port=ports.daemon_listen_port,
                daemon_p2p_port=ports.daemon_p2p_port,
            )
            if global_store_mode == "none" and global_store_address:
                log.info("global_store_address is ignored with global_store_mode='none'")
                global_store_address = None
        for name, port in asdict(ports).items():
            if port is not None and not 0 <= port <= 65535:
                raise ArtifactError(
                    f"port_config.{name}={port} is not a TCP port (0..65535)", "INVALID_ARGUMENT"
                )
        return cls(
            daemon_config_path=str(daemon_cfg),
            daemon_config_sha256=_file_sha256(daemon_cfg),
            global_store_mode=global_store_mode,
            global_store_address=global_store_address or "",
            global_store_config_path=str(gs_cfg) if gs_cfg else "",
            global_store_config_sha256=_file_sha256(gs_cfg) if gs_cfg else "",
            ports=ports,
            session_id=session_id or "",
            show_daemon_logs=show_daemon_logs,
        )


def init_config_hash(params: _LaunchParams) -> str:
    """What `auto` compares across processes: every init parameter that
    changes the daemon (paths, file contents, Global Store wiring, ports,
    explicit session id), not cosmetic ones (``show_daemon_logs``)."""
    doc = {
        "daemon_config_path": params.daemon_config_path,
        "daemon_config_sha256": params.daemon_config_sha256,
        "global_store_mode": params.global_store_mode,
        "global_store_address": params.global_store_address,
        "global_store_config_path": params.global_store_config_path,
        "global_store_config_sha256": params.global_store_config_sha256,
        "ports": asdict(params.ports),
        "session_id": params.session_id,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _config_candidates(name: str) -> Iterator[Path]:
    """A config file shipped with TensorCast: in the working directory's or
    this package's repository checkout (``examples/config/<name>``), then in
    the installed package's bundled data."""
    yield Path.cwd() / "examples" / "config" / name
    for parent in Path(__file__).resolve().parents[1:5]:
        yield parent / "examples" / "config" / name
    with contextlib.suppress(ModuleNotFoundError, OSError, TypeError):
        bundled = resources.files("tensorwasm_tc._bundled")
        for candidate in (bundled / name, bundled / "config" / name):
            if candidate.is_file():
                yield Path(str(candidate))


def _find_config(
    explicit: str | os.PathLike[str] | None, env_name: str, name: str, what: str
) -> Path:
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ArtifactError(f"{what} config {path} does not exist", "NOT_FOUND")
        return path.resolve()
    from_env = os.environ.get(env_name, "").strip()
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise ArtifactError(
                f"{what} config {path} (from ${env_name}) does not exist", "NOT_FOUND"
            )
        return path.resolve()
    for candidate in _config_candidates(name):
        if candidate.is_file():
            return candidate.resolve()
    raise ArtifactError(
        f"no {what} config found: pass its path, set ${env_name}, or install a "
        f"package that bundles examples/config/{name}",
        "FAILED_PRECONDITION",
    )


def find_daemon_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``daemon_config_path`` → ``$TENSORCAST_DAEMON_CONFIG`` → the packaged
    ``examples/config/store_daemon_config.yaml``; none → FAILED_PRECONDITION."""
    return _find_config(explicit, DAEMON_CONFIG_ENV, DAEMON_CONFIG_NAME, "Store Daemon")


def find_global_store_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Same order as `find_daemon_config`, for ``global_store_config.yaml``."""
    return _find_config(explicit, GLOBAL_STORE_CONFIG_ENV, GLOBAL_STORE_CONFIG_NAME, "Global Store")


def _create(params: _LaunchParams, home: Path, client_session: str, mode: Mode) -> Context:
    children: list[_Child] = []
    try:
        gs_address = params.global_store_address
        if params.global_store_mode == "start":
            running = _healthy_global_store(home)
            if running is not None:
                raise ArtifactError(
                    f"a Global Store is already running under {home} at {running.address} "
                    f"(pid {running.pid}); global_store_mode='start' does not borrow it: stop "
                    "it (tensorcast-cli global stop) or use global_store_mode='connect'",
                    "FAILED_PRECONDITION",
                )
            gs_child = _start_global_store(params, home)
            children.append(gs_child)
            gs_address = gs_child.record.address if gs_child.record else ""
        daemon = _start_daemon(params, home, gs_address)
        children.append(daemon)
    except BaseException:
        for child in reversed(children):
            child.stop()
        raise
    _register_atexit()
    record = daemon.record
    assert record is not None
    socket_path = record.socket_path
    return Context(
        address=record.address,
        is_owner=True,
        session_id=client_session,
        mode=mode,
        socket_path=socket_path if socket_path and os.path.exists(socket_path) else None,
        daemon_session_id=record.session_id,
        global_store_address=record.global_store_address or gs_address,
        config_hash=init_config_hash(params),
        _children=children,
    )


def _start_global_store(params: _LaunchParams, home: Path) -> _Child:
    session = f"global-store-{uuid.uuid4().hex[:12]}"
    argv = ["--config", params.global_store_config_path]
    if params.ports.global_store_listen_port is not None:
        argv += ["--listen-port", str(params.ports.global_store_listen_port)]
    if params.ports.global_store_metrics_port is not None:
        argv += ["--metrics-port", str(params.ports.global_store_metrics_port)]
    module = os.environ.get(GLOBAL_STORE_MODULE_ENV, "").strip() or GLOBAL_STORE_MODULE
    child = _Child.launch("Global Store", module, argv, session, home, params.show_daemon_logs)
    child.wait_ready(_global_store_answers)
    return child


def _start_daemon(params: _LaunchParams, home: Path, gs_address: str) -> _Child:
    session = params.session_id or f"daemon-{uuid.uuid4().hex[:12]}"
    argv = ["--config", params.daemon_config_path]
    if params.ports.daemon_listen_port is not None:
        argv += ["--listen-port", str(params.ports.daemon_listen_port)]
    if params.ports.daemon_p2p_port is not None:
        argv += ["--p2p-port", str(params.ports.daemon_p2p_port)]
    # The Global Store was started above when mode is "start": the daemon
    # connects to it rather than starting its own.
    gs_mode = "connect" if params.global_store_mode == "start" else params.global_store_mode
    argv += ["--global-store-mode", gs_mode]
    if gs_mode == "connect" and gs_address:
        argv += ["--global-store-address", gs_address]
    module = os.environ.get(DAEMON_MODULE_ENV, "").strip() or DAEMON_MODULE
    child = _Child.launch("Store Daemon", module, argv, session, home, params.show_daemon_logs)
    child.wait_ready(lambda address: _daemon_status(address, HEALTH_RPC_TIMEOUT_S) is not None)
    return child


class _Child:
    """A process this one started: its Popen, its output, its session record."""

    def __init__(
        self,
        what: str,
        proc: subprocess.Popen[bytes],
        session_id: str,
        home: Path,
        log_path: Path | None,
        log_file: IO[bytes] | None,
    ) -> None:
        self.what = what
        self.proc = proc
        self.session_id = session_id
        self.home = home
        self.log_path = log_path
        self._log_file = log_file
        self._tail: deque[str] = deque(maxlen=_LOG_TAIL_LINES)
        self.record: sessions.SessionRecord | None = None
        self._pump_thread: threading.Thread | None = None
        if proc.stdout is not None:
            self._pump_thread = threading.Thread(
                target=self._pump, args=(proc.stdout,), name=f"tc-{what}-log", daemon=True
            )
            self._pump_thread.start()

    @classmethod
    def launch(
        cls,
        what: str,
        module: str,
        argv: list[str],
        session_id: str,
        home: Path,
        show_logs: bool,
    ) -> _Child:
        cmd = [
            sys.executable,
            "-m",
            module,
            *argv,
            "--session-id",
            session_id,
            "--owner-pid",
            str(os.getpid()),
        ]
        env = dict(os.environ)
        env["TENSORCAST_HOME"] = str(home)
        log_path: Path | None = None
        log_file: IO[bytes] | None = None
        if show_logs:
            stdout: int | IO[bytes] = subprocess.PIPE
        else:
            log_dir = home / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = log_dir / f"{session_id}.out.log"
            log_file = open(log_path, "ab")  # noqa: SIM115 (owned by the _Child)
            stdout = log_file
        log.info("starting the %s: %s", what, " ".join(cmd))
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C to the app reaches it via shutdown()
            )
        except OSError as err:
            if log_file is not None:
                log_file.close()
            raise ArtifactError(f"could not start the {what}: {err}", "UNAVAILABLE") from err
        return cls(what, proc, session_id, home, log_path, log_file)

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            self._tail.append(line.rstrip("\n"))
            with contextlib.suppress(Exception):
                sys.stderr.write(line)
        stream.close()

    def log_tail(self) -> str:
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                lines = self.log_path.read_text(errors="replace").splitlines()
                return "\n".join(lines[-_LOG_TAIL_LINES:])
        return "\n".join(self._tail)

    def _fail(self, why: str) -> ArtifactError:
        self.stop()
        if self._pump_thread is not None:
            self._pump_thread.join(2.0)  # the output it has not streamed yet
        tail = self.log_tail().strip()
        where = f" (log: {self.log_path})" if self.log_path else ""
        msg = f"the {self.what} did not start: {why}{where}"
        if tail:
            msg += "\n--- last lines of its output ---\n" + tail
        return ArtifactError(msg, "UNAVAILABLE")

    def wait_ready(
        self, answers: Callable[[str], bool], timeout: float = STARTUP_TIMEOUT_S
    ) -> None:
        """Polls (with a deadline) for the child's session file and a health
        answer; raises with the tail of its output on exit or timeout."""
        deadline = time.monotonic() + timeout
        path = sessions.session_dir(self.home) / f"{self.session_id}.json"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self._fail(f"it exited with status {code}")
            if self.record is None:
                with contextlib.suppress(OSError, ValueError, TypeError):
                    self.record = sessions.SessionRecord.from_json(json.loads(path.read_text()))
            if self.record is not None and answers(self.record.address):
                log.info(
                    "%s ready at %s (pid %d, session %s)",
                    self.what,
                    self.record.address,
                    self.proc.pid,
                    self.session_id,
                )
                return
            if time.monotonic() >= deadline:
                raise self._fail(f"not ready after {timeout:.0f}s")
            time.sleep(_POLL_S)

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM, wait ``grace`` seconds, SIGKILL; then drop its session file
        if it could not remove it itself."""
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("the %s (pid %d) ignored SIGTERM; killing it", self.what, proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        sessions.remove_session(self.session_id, home=self.home)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


# --------------------------------------------------------------------------
# auto


def _auto(params: _LaunchParams, home: Path, client_session: str) -> Context:
    """Singleflight connect-or-create under ``$TENSORCAST_HOME/auto.lock``.

    The owner records ``auto.json`` (config hash + the daemon's session id)
    while it holds the lock; later processes compare hashes against it. A
    live daemon that `auto` did not start counts as a mismatch: its
    configuration is unknown, and starting a second daemon beside it would
    split the host."""
    want = init_config_hash(params)
    home.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / "auto.lock", AUTO_LOCK_TIMEOUT_S):
        daemons = [
            r
            for r in sessions.live_sessions("daemon", home=home)
            if _daemon_status(r.address, HEALTH_RPC_TIMEOUT_S) is not None
        ]
        election = _read_auto_record(home)
        if daemons:
            by_id = {r.session_id: r for r in daemons}
            elected = by_id.get(str(election.get("daemon_session_id", "")))
            if elected is None:
                other = daemons[0]
                raise ArtifactError(
                    f"AUTO_CONFIG_MISMATCH: a Store Daemon not started by mode='auto' is "
                    f"running under {home} at {other.address} (session {other.session_id}); "
                    "use mode='connect' or stop it",
                    "FAILED_PRECONDITION",
                )
            have = str(election.get("config_hash", ""))
            if have != want:
                raise ArtifactError(
                    f"AUTO_CONFIG_MISMATCH: the daemon at {elected.address} was started by "
                    f"mode='auto' with config hash {have}, this process asks for {want}; "
                    "keep init() parameters identical across processes",
                    "FAILED_PRECONDITION",
                )
            log.info("auto: connecting to the elected daemon at %s", elected.address)
            socket_path = elected.socket_path
            return Context(
                address=elected.address,
                is_owner=False,
                session_id=client_session,
                mode="auto",
                socket_path=socket_path if socket_path and os.path.exists(socket_path) else None,
                daemon_session_id=elected.session_id,
                global_store_address=elected.global_store_address,
                config_hash=want,
            )
        log.info("auto: no daemon under %s; this process (pid %d) starts one", home, os.getpid())
        ctx = _create(params, home, client_session, "auto")
        _write_auto_record(
            home,
            {
                "config_hash": want,
                "daemon_session_id": ctx.daemon_session_id,
                "address": ctx.address,
                "owner_pid": os.getpid(),
            },
        )
        return ctx


def _read_auto_record(home: Path) -> dict[str, Any]:
    try:
        data = json.loads((home / "auto.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_auto_record(home: Path, data: dict[str, Any]) -> None:
    tmp = home / f".auto.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, home / "auto.json")


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive flock held for the block; waits at most ``timeout``."""
    with open(path, "a+b") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ArtifactError(
                        f"timed out after {timeout:.0f}s waiting for {path} (another process "
                        "is electing the auto-mode daemon owner)",
                        "DEADLINE_EXCEEDED",
                    ) from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------
# health checks


def _daemon_status(address: str, timeout: float) -> Any | None:
    """The daemon's StatusResponse, or None when it does not answer."""
    from tensorwasm_tc.tensorcast._proto.tensorcast.daemon.v1 import daemon_pb2, daemon_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = daemon_pb2_grpc.StoreDaemonStub(channel)  # type: ignore[no-untyped-call]
        try:
            return stub.Status(daemon_pb2.StatusRequest(), timeout=timeout)
        except grpc.RpcError:
            return None


def _global_store_answers(address: str) -> bool:
    """Whether a Global Store serves at ``address``."""
    from tensorwasm_tc.tensorcast.global_store import probe

    return probe(address, HEALTH_RPC_TIMEOUT_S)


def _healthy_global_store(home: Path) -> sessions.SessionRecord | None:
    from tensorwasm_tc.tensorcast.global_store import find_running

    return find_running(home, HEALTH_RPC_TIMEOUT_S)
