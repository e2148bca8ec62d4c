"""Every row of the SDK error table, end to end: a stub daemon answers with
each gRPC code and the module-level verbs raise `ArtifactError` with that
``status_code`` and the documented ``retryable``; transient codes are retried
within the verb's policy, the others are not."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tensorwasm_tc.tensorcast as tc
from prometheus_client import REGISTRY

from tests.tensorcast._stub_daemon import DATA_METHODS, StubDaemon

#: (code, retryable) — the table of docs/tensorcast-sdk.md.
ERROR_TABLE = [
    ("INVALID_ARGUMENT", False),
    ("FAILED_PRECONDITION", False),
    ("NOT_FOUND", False),
    ("RESOURCE_EXHAUSTED", False),
    ("UNAVAILABLE", True),
    ("DEADLINE_EXCEEDED", True),
    ("ABORTED", True),
    ("DATA_LOSS", False),
]

# Fast backoff so exhausting a policy takes milliseconds; attempts as upstream.
FAST = {
    "register": tc.RetryPolicy(30.0, 2, 0.005, 2.0, 0.5),
    "put": tc.RetryPolicy(45.0, 2, 0.005, 2.0, 0.5),
    "get": tc.RetryPolicy(40.0, 3, 0.005, 2.0, 0.5),
    "get_into": tc.RetryPolicy(40.0, 3, 0.005, 2.0, 0.5),
}


@pytest.fixture(scope="module")
def stub() -> Iterator[StubDaemon]:
    s = StubDaemon().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def attached(stub: StubDaemon) -> Iterator[tc.Context]:
    stub.reset()
    ctx = tc.init(mode="connect", address=stub.address, show_daemon_logs=False)
    yield ctx
    tc.shutdown()


def data_calls(stub: StubDaemon) -> int:
    return sum(stub.calls(m) for m in DATA_METHODS)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


TENSORS = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(4, dtype=np.int64)}


@pytest.mark.parametrize(("code", "retryable"), ERROR_TABLE)
def test_get_raises_each_code_with_its_retryable_flag(
    stub: StubDaemon, code: str, retryable: bool
) -> None:
    store = tc.store(tc.StoreOptions(retry_overrides=FAST))
    errors_before = metric("tc_store_operation_errors_total", verb="get", status=code)
    stub.fail(code, times=100)
    with pytest.raises(tc.ArtifactError) as info:
        store.get("model:v1")
    assert info.value.status_code == code
    assert info.value.retryable is retryable
    assert data_calls(stub) == (3 if retryable else 1)
    after = metric("tc_store_operation_errors_total", verb="get", status=code)
    assert after == errors_before + 1


@pytest.mark.parametrize(("code", "retryable"), ERROR_TABLE)
def test_register_raises_each_code_with_its_retryable_flag(
    stub: StubDaemon, code: str, retryable: bool
) -> None:
    store = tc.store(tc.StoreOptions(retry_overrides=FAST))
    stub.fail(code, times=100)
    with pytest.raises(tc.ArtifactError) as info:
        store.register(TENSORS, key="model:v1")
    assert info.value.status_code == code
    assert info.value.retryable is retryable
    assert data_calls(stub) == (2 if retryable else 1)


def test_unavailable_twice_then_success_within_get_default_policy(stub: StubDaemon) -> None:
    tc.put(TENSORS, key="model:v1")
    retries_before = metric("tc_store_operation_retries_total", verb="get")
    stub.reset()
    stub.fail("UNAVAILABLE", times=2, methods=frozenset({"Get"}))
    out = tc.get("model:v1")
    assert stub.calls("Get") == 3
    np.testing.assert_array_equal(out["w"], TENSORS["w"])
    np.testing.assert_array_equal(out["b"], TENSORS["b"])
    assert metric("tc_store_operation_retries_total", verb="get") == retries_before + 2


def test_a_third_unavailable_exhausts_get_default_attempts(stub: StubDaemon) -> None:
    tc.put(TENSORS, key="model:v1")
    stub.reset()
    stub.fail("UNAVAILABLE", times=3, methods=frozenset({"Get"}))
    with pytest.raises(tc.ArtifactError) as info:
        tc.get("model:v1")
    assert info.value.status_code == "UNAVAILABLE"
    assert stub.calls("Get") == 3


def test_put_retries_once_by_default(stub: StubDaemon) -> None:
    stub.fail("ABORTED", times=1, methods=frozenset({"Register"}))
    artifact_id = tc.put(TENSORS, key="model:v2")
    assert stub.calls("Register") == 2
    assert tc.get(artifact_id)["w"].shape == (3, 4)


def test_get_into_retries_transient_failures(stub: StubDaemon) -> None:
    tc.put(TENSORS, key="model:v1")
    stub.reset()
    stub.fail("DEADLINE_EXCEEDED", times=2, methods=frozenset({"Get"}))
    target = {"w": np.zeros((3, 4), dtype=np.float32)}
    tc.get_into("model:v1", target)
    np.testing.assert_array_equal(target["w"], TENSORS["w"])
    assert stub.calls("Get") == 3


def test_non_retryable_error_is_not_retried_by_the_verbs(stub: StubDaemon) -> None:
    tc.put(TENSORS, key="model:v1")
    stub.reset()
    stub.fail("DATA_LOSS", times=1, methods=frozenset({"Get"}), message="chunk 3 checksum")
    with pytest.raises(tc.ArtifactError, match="chunk 3 checksum") as info:
        tc.get("model:v1")
    assert info.value.status_code == "DATA_LOSS"
    assert stub.calls("Get") == 1
    # The failure was one-shot: the next get succeeds.
    assert tc.get("model:v1")["b"].tolist() == [1, 1, 1, 1]


def test_retry_overrides_bound_attempts(stub: StubDaemon) -> None:
    store = tc.store(
        tc.StoreOptions(retry_overrides={"get": tc.RetryPolicy(20.0, 2, 0.005, 2.0, 0.5)})
    )
    stub.fail("UNAVAILABLE", times=100, methods=frozenset({"Get"}))
    with pytest.raises(tc.ArtifactError):
        store.get("model:v1")
    assert stub.calls("Get") == 2


def test_missing_key_is_not_found(stub: StubDaemon) -> None:
    with pytest.raises(tc.ArtifactError) as info:
        tc.get("no:such:key")
    assert info.value.status_code == "NOT_FOUND"
    assert info.value.retryable is False
    assert stub.calls("Get") == 1


def test_same_tensors_give_the_same_artifact_id() -> None:
    assert tc.register(TENSORS) == tc.register(dict(TENSORS))


def test_store_and_artifact_stay_callable_after_their_submodules_load() -> None:
    import tensorwasm_tc.tensorcast.artifact
    import tensorwasm_tc.tensorcast.store  # noqa: F401

    assert callable(tc.store) and callable(tc.artifact)
    from tensorwasm_tc.tensorcast.store import Store

    assert isinstance(tc.store(), Store)


def test_artifact_handle_reads_through_the_module_verbs() -> None:
    tc.put(TENSORS, key="model:v1")
    art = tc.artifact(key="model:v1")
    assert art.exists()
    tensors = art.tensor_dict(device="cpu")
    np.testing.assert_array_equal(tensors["w"], TENSORS["w"])
    view = art.view(slices={"w": [(0, 1, 3)]}).tensor_dict()
    np.testing.assert_array_equal(view["w"], TENSORS["w"][1:3])
