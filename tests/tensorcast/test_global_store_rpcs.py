"""The Global Store's RPCs against a real gRPC server on a loopback port:
workers and heartbeats, replicas and source choice, versioned keys, cluster
token, status codes, metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from tensorwasm_tc.tensorcast._proto.tensorcast.global_store.v1 import global_store_pb2 as pb
from tensorwasm_tc.tensorcast.errors import ArtifactError, from_rpc_error
from tensorwasm_tc.tensorcast.global_store.client import GlobalStoreClient, GlobalStoreError
from tensorwasm_tc.tensorcast.global_store.config import GlobalStoreConfig
from tensorwasm_tc.tensorcast.global_store.server import GlobalStoreServer

# Long enough that no worker dies by accident on a loaded machine; the test
# of death by silence uses its own short timeout.
HEARTBEAT_TIMEOUT_MS = 30_000
SHORT_HEARTBEAT_TIMEOUT_MS = 400

ServerFactory = Callable[..., GlobalStoreServer]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[ServerFactory]:
    started: list[GlobalStoreServer] = []

    def make(**overrides: object) -> GlobalStoreServer:
        fields: dict[str, object] = {
            "listen_port": 0,
            "metrics_port": 0,
            "database_path": str(tmp_path / "metadata.db"),
            "heartbeat_interval_ms": 100,
            "heartbeat_timeout_ms": HEARTBEAT_TIMEOUT_MS,
            "shutdown_grace_ms": 0,
        }
        fields.update(overrides)
        server = GlobalStoreServer(GlobalStoreConfig(**fields), build="test-build")  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop(0)


@pytest.fixture
def server(make_server: ServerFactory) -> GlobalStoreServer:
    return make_server()


@pytest.fixture
def gs(server: GlobalStoreServer) -> Iterator[GlobalStoreClient]:
    client = GlobalStoreClient(server.address)
    yield client
    client.close()


def manifest(artifact_id: str = "a1", total: int = 64) -> pb.ArtifactManifest:
    return pb.ArtifactManifest(
        artifact_id=artifact_id,
        tensors=[pb.TensorSpec(name="w", dtype="float32", shape=[4, 4], offset=0, nbytes=64)],
        total_bytes=total,
        chunk_bytes=32,
        chunk_checksums=[b"\x00" * 32, b"\x01" * 32],
        policy="cache",
    )


def worker(gs: GlobalStoreClient, wid: str) -> None:
    gs.register_worker(worker_id=wid, address=f"{wid}:50052", p2p_address=f"{wid}:50053")


def code_of(exc: pytest.ExceptionInfo[GlobalStoreError]) -> str:
    return exc.value.status_code


# -- workers ---------------------------------------------------------------


def test_register_worker_returns_heartbeat_settings_and_is_idempotent(
    gs: GlobalStoreClient,
) -> None:
    r1 = gs.register_worker(worker_id="w1", address="h1:1", p2p_address="h1:2", build="b")
    r2 = gs.register_worker(worker_id="w1", address="h1:9", p2p_address="h1:2", build="b")
    assert (r1.heartbeat_interval_ms, r1.heartbeat_timeout_ms) == (100, HEARTBEAT_TIMEOUT_MS)
    assert r2 == r1
    workers = gs.list_workers().workers
    assert [(w.worker_id, w.address, w.alive) for w in workers] == [("w1", "h1:9", True)]


def test_heartbeat_of_unknown_worker_says_unknown(gs: GlobalStoreClient) -> None:
    assert gs.heartbeat(worker_id="nobody").known is False
    worker(gs, "w1")
    assert gs.heartbeat(worker_id="w1", stable_bytes_used=10, active_transfers=2).known is True
    (w,) = gs.list_workers().workers
    assert (w.stable_bytes_used, w.active_transfers) == (10, 2)


def test_worker_without_heartbeat_dies_and_its_replicas_hide_until_it_returns(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = make_server(
        heartbeat_timeout_ms=SHORT_HEARTBEAT_TIMEOUT_MS,
        database_path=str(tmp_path / "short.db"),
    )
    gs = GlobalStoreClient(server.address)
    worker(gs, "w1")
    worker(gs, "w2")
    gs.register_artifact(manifest=manifest(), worker_id="w1", tier=pb.TIER_MEMORY)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # w2 keeps beating, w1 falls silent
        gs.heartbeat(worker_id="w2")
        if [w.worker_id for w in gs.list_workers().workers] == ["w2"]:
            break
        time.sleep(0.05)
    alive = [w.worker_id for w in gs.list_workers().workers]
    assert alive == ["w2"]
    everyone = {w.worker_id: w.alive for w in gs.list_workers(include_dead=True).workers}
    assert everyone == {"w1": False, "w2": True}
    assert list(gs.get_artifact(artifact_id="a1").replicas) == []
    with pytest.raises(GlobalStoreError) as e:
        gs.pick_source(artifact_id="a1", worker_id="w2")
    assert code_of(e) == "NOT_FOUND"
    assert gs.heartbeat(worker_id="w1").known is True  # back from the dead
    assert gs.pick_source(artifact_id="a1", worker_id="w2").source.worker_id == "w1"
    gs.close()


def test_unregister_removes_worker_and_replicas(gs: GlobalStoreClient) -> None:
    worker(gs, "w1")
    gs.register_artifact(manifest=manifest(), worker_id="w1", tier=pb.TIER_DISK)
    gs.unregister_worker(worker_id="w1")
    assert gs.heartbeat(worker_id="w1").known is False
    assert list(gs.get_artifact(artifact_id="a1").replicas) == []
    worker(gs, "w1")
    assert list(gs.get_artifact(artifact_id="a1").replicas) == []


def test_reregister_drops_memory_replicas_and_keeps_disk_ones(gs: GlobalStoreClient) -> None:
    worker(gs, "w1")
    gs.register_artifact(manifest=manifest("m"), worker_id="w1", tier=pb.TIER_MEMORY)
    gs.register_artifact(manifest=manifest("d"), worker_id="w1", tier=pb.TIER_DISK)
    worker(gs, "w1")  # the daemon restarted
    assert list(gs.get_artifact(artifact_id="m").replicas) == []
    (rep,) = gs.get_artifact(artifact_id="d").replicas
    assert (rep.worker_id, rep.tier, rep.p2p_address) == ("w1", pb.TIER_DISK, "w1:50053")


# -- artifacts, replicas, source choice ------------------------------------


def test_register_artifact_is_idempotent_and_round_trips_the_manifest(
    gs: GlobalStoreClient,
) -> None:
    worker(gs, "w1")
    m = manifest()
    assert gs.register_artifact(manifest=m, worker_id="w1").created is True
    assert gs.register_artifact(manifest=m, worker_id="w1").created is False
    got = gs.get_artifact(artifact_id="a1")
    assert got.manifest.tensors == m.tensors
    assert got.manifest.chunk_checksums == m.chunk_checksums
    assert [(r.worker_id, r.tier) for r in got.replicas] == [("w1", pb.TIER_MEMORY)]


def test_pick_source_prefers_memory_then_least_loaded_and_never_the_requester(
    gs: GlobalStoreClient,
) -> None:
    for w in ("w1", "w2", "w3", "w4"):
        worker(gs, w)
    gs.register_artifact(manifest=manifest(), worker_id="w1", tier=pb.TIER_DISK)
    gs.add_replica(artifact_id="a1", worker_id="w2", tier=pb.TIER_MEMORY)
    gs.add_replica(artifact_id="a1", worker_id="w3", tier=pb.TIER_MEMORY)
    gs.heartbeat(worker_id="w2", active_transfers=5)
    gs.heartbeat(worker_id="w3", active_transfers=1)

    src = gs.pick_source(artifact_id="a1", worker_id="w4").source
    assert (src.worker_id, src.tier, src.load) == ("w3", pb.TIER_MEMORY, 1)
    assert gs.pick_source(artifact_id="a1", worker_id="w3").source.worker_id == "w2"
    disk = gs.pick_source(artifact_id="a1", worker_id="w4", prefer_disk=True).source
    assert (disk.worker_id, disk.tier) == ("w1", pb.TIER_DISK)

    gs.remove_replica(artifact_id="a1", worker_id="w2")
    gs.remove_replica(artifact_id="a1", worker_id="w1", tier=pb.TIER_DISK)
    with pytest.raises(GlobalStoreError) as e:
        gs.pick_source(artifact_id="a1", worker_id="w3")
    assert code_of(e) == "NOT_FOUND"
    assert "no live replica of artifact a1 other than worker w3" in e.value.message


def test_pick_source_spreads_concurrent_pulls_before_the_next_heartbeat(
    gs: GlobalStoreClient,
) -> None:
    for w in ("w1", "w2", "w3"):
        worker(gs, w)
    gs.register_artifact(manifest=manifest(), worker_id="w1")
    gs.add_replica(artifact_id="a1", worker_id="w2")
    picks = [gs.pick_source(artifact_id="a1", worker_id="w3").source.worker_id for _ in range(4)]
    assert sorted(picks) == ["w1", "w1", "w2", "w2"]


def test_unknown_artifact_and_worker_are_reported(gs: GlobalStoreClient) -> None:
    with pytest.raises(GlobalStoreError) as e:
        gs.get_artifact(artifact_id="nope")
    assert code_of(e) == "NOT_FOUND"
    with pytest.raises(GlobalStoreError) as e:
        gs.register_artifact(manifest=manifest(), worker_id="ghost")
    assert code_of(e) == "FAILED_PRECONDITION"
    worker(gs, "w1")
    with pytest.raises(GlobalStoreError) as e:
        gs.add_replica(artifact_id="nope", worker_id="w1")
    assert code_of(e) == "NOT_FOUND"


@pytest.mark.parametrize(
    ("call", "fields"),
    [
        ("register_worker", {"worker_id": "", "address": "h:1"}),
        ("register_worker", {"worker_id": "w", "address": ""}),
        ("heartbeat", {"worker_id": ""}),
        ("get_artifact", {"artifact_id": ""}),
        ("register_artifact", {}),
        ("register_artifact", {"manifest": pb.ArtifactManifest(artifact_id="")}),
        ("register_artifact", {"manifest": pb.ArtifactManifest(artifact_id="x", policy="x")}),
        (
            "register_artifact",
            {
                "manifest": pb.ArtifactManifest(
                    artifact_id="x", total_bytes=8, tensors=[pb.TensorSpec(name="t", nbytes=16)]
                )
            },
        ),
        (
            "register_artifact",
            {
                "manifest": pb.ArtifactManifest(
                    artifact_id="x", total_bytes=100, chunk_bytes=32, chunk_checksums=[b"x"]
                )
            },
        ),
        ("register_artifact", {"manifest": manifest(), "tier": 7}),
        ("put_key", {"key": "", "artifact_id": "a"}),
        ("put_key", {"key": "k", "artifact_id": ""}),
        ("get_key", {"key": ""}),
        ("pick_source", {"artifact_id": ""}),
    ],
)
def test_malformed_requests_are_invalid_argument(
    gs: GlobalStoreClient, call: str, fields: dict[str, object]
) -> None:
    with pytest.raises(GlobalStoreError) as e:
        getattr(gs, call)(**fields)
    assert code_of(e) == "INVALID_ARGUMENT"
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- keys --------------------------------------------------------------------


def test_keys_are_versioned_with_history(gs: GlobalStoreClient) -> None:
    gs.register_artifact(manifest=manifest("a1"))
    gs.register_artifact(manifest=manifest("a2"))
    assert gs.put_key(key="model:latest", artifact_id="a1").version == 1
    assert gs.put_key(key="model:latest", artifact_id="a2").version == 2
    latest = gs.get_key(key="model:latest")
    assert (latest.artifact_id, latest.version) == ("a2", 2)
    assert gs.get_key(key="model:latest", version=1).artifact_id == "a1"
    with pytest.raises(GlobalStoreError) as e:
        gs.get_key(key="model:latest", version=9)
    assert code_of(e) == "NOT_FOUND"


def test_put_key_compare_and_swap(gs: GlobalStoreClient) -> None:
    gs.register_artifact(manifest=manifest("a1"))
    gs.register_artifact(manifest=manifest("a2"))
    assert gs.put_key(key="k", artifact_id="a1", expected_version=0).version == 1
    with pytest.raises(GlobalStoreError) as e:
        gs.put_key(key="k", artifact_id="a2", expected_version=0)
    assert code_of(e) == "ABORTED"
    assert e.value.retryable is True
    assert "version 1" in e.value.message
    assert gs.put_key(key="k", artifact_id="a2", expected_version=1).version == 2
    assert gs.get_key(key="k").artifact_id == "a2"


def test_concurrent_cas_puts_have_exactly_one_winner_per_version(
    gs: GlobalStoreClient, server: GlobalStoreServer
) -> None:
    gs.register_artifact(manifest=manifest("a1"))
    results: list[str] = []
    lock = threading.Lock()

    def racer() -> None:
        c = GlobalStoreClient(server.address)
        try:
            c.put_key(key="race", artifact_id="a1", expected_version=0)
            outcome = "won"
        except GlobalStoreError as e:
            outcome = e.status_code
        finally:
            c.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ABORTED"] * 7 + ["won"]
    assert gs.get_key(key="race").version == 1


def test_key_swap_is_seen_by_the_next_get_and_needs_a_registered_artifact(
    gs: GlobalStoreClient,
) -> None:
    gs.register_artifact(manifest=manifest("a1"))
    with pytest.raises(GlobalStoreError) as e:
        gs.put_key(key="k", artifact_id="unregistered")
    assert code_of(e) == "FAILED_PRECONDITION"
    gs.put_key(key="k", artifact_id="a1")
    gs.register_artifact(manifest=manifest("a2"))
    gs.put_key(key="k", artifact_id="a2")
    assert gs.get_key(key="k").artifact_id == "a2"


def test_delete_and_list_keys(gs: GlobalStoreClient) -> None:
    gs.register_artifact(manifest=manifest("a1"))
    for k in ("model:a", "model:b", "other"):
        gs.put_key(key=k, artifact_id="a1")
    assert [k.key for k in gs.list_keys(prefix="model:").keys] == ["model:a", "model:b"]
    assert len(gs.list_keys().keys) == 3
    assert gs.delete_key(key="model:a").deleted is True
    assert gs.delete_key(key="model:a").deleted is False
    with pytest.raises(GlobalStoreError) as e:
        gs.get_key(key="model:a")
    assert code_of(e) == "NOT_FOUND"
    with pytest.raises(GlobalStoreError):
        gs.get_key(key="model:a", version=1)
    # versions are never reused: caches keyed by (key, version) stay correct
    assert gs.put_key(key="model:a", artifact_id="a1", expected_version=0).version == 2


def test_status_counts(gs: GlobalStoreClient) -> None:
    worker(gs, "w1")
    gs.register_artifact(manifest=manifest("a1"), worker_id="w1")
    gs.put_key(key="k", artifact_id="a1")
    st = gs.get_status()
    assert (st.workers_alive, st.artifacts, st.keys, st.build) == (1, 1, 1, "test-build")
    assert st.schema_version >= 1


# -- cluster token -----------------------------------------------------------


def test_cluster_token_is_required_when_configured(make_server: ServerFactory) -> None:
    server = make_server(cluster_token="s3cret")
    for token in (None, "wrong"):
        c = GlobalStoreClient(server.address, cluster_token=token)
        with pytest.raises(GlobalStoreError) as e:
            c.get_status()
        c.close()
        assert code_of(e) == "PERMISSION_DENIED"
        assert "cluster token mismatch" in e.value.message
    ok = GlobalStoreClient(server.address, cluster_token="s3cret")
    assert ok.register_worker(worker_id="w1", address="h:1").heartbeat_timeout_ms > 0
    ok.close()


def test_errors_map_to_artifact_errors(gs: GlobalStoreClient) -> None:
    with pytest.raises(ArtifactError) as e:
        gs.get_key(key="nope")
    assert isinstance(e.value, grpc.RpcError)
    mapped = from_rpc_error(e.value)
    assert (mapped.status_code, mapped.retryable) == ("NOT_FOUND", False)


def test_unreachable_store_is_unavailable_and_retryable(tmp_path: Path) -> None:
    c = GlobalStoreClient("127.0.0.1:1", timeout=1.0)
    with pytest.raises(GlobalStoreError) as e:
        c.get_status()
    c.close()
    assert (e.value.status_code, e.value.retryable) == ("UNAVAILABLE", True)


# -- metrics -----------------------------------------------------------------


def test_metrics_endpoint_serves_the_global_store_metrics(
    gs: GlobalStoreClient, server: GlobalStoreServer
) -> None:
    worker(gs, "w1")
    with pytest.raises(GlobalStoreError):
        gs.get_key(key="missing")
    body = httpx.get(f"http://{server.metrics_address}/metrics", timeout=5).text
    assert 'tc_global_store_requests_total{code="OK",method="RegisterWorker"} 1.0' in body
    assert 'tc_global_store_requests_total{code="NOT_FOUND",method="GetKey"} 1.0' in body
    assert "tc_global_store_workers_alive 1.0" in body
    assert "tc_global_store_artifacts 0.0" in body
    assert "tc_global_store_request_duration_seconds_bucket" in body


def test_a_second_server_on_a_taken_port_is_refused(
    make_server: ServerFactory, server: GlobalStoreServer, tmp_path: Path
) -> None:
    with pytest.raises(OSError, match="cannot listen on"):
        make_server(listen_port=server.port, database_path=str(tmp_path / "other.db"))
