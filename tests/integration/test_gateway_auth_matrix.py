"""Authentication and tenant isolation: every route x {no token, wrong token,
token of another tenant, right token}, a wildcard token acting as another
tenant, listings that never show another tenant's resources,
``TENSOR_WASM_API_REQUIRE_TENANT``, the metrics token and the per-token rate
limit (a real 429 with its headers)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tensorwasm_tc.gateway.config import BARE_TOKEN_WARNING

from ._gateway import (
    ADD_WAT,
    GatewayServer,
    assert_error,
    b64,
    corpus_wasm,
    headers,
    parse_metrics,
    running_gateway,
    wait_job,
    wat,
)

TOKENS = "tokA:tenant=1,tokB:tenant=2,tokW:tenant=*"
METRICS_TOKEN = "metrics-secret"


@dataclass
class World:
    server: GatewayServer
    fn1: str  # tenant 1's function (a counter)
    inst1: str  # tenant 1's instance of it
    job1: str  # tenant 1's completed job
    fn2: str  # tenant 2's function
    inst2: str  # tenant 2's instance
    http: httpx.Client  # keep-alive, no default headers
    snap1: bytes  # a snapshot of tenant 1's counter

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def counter(self) -> int:
        """The value of tenant 1's instance counter (read with the right token)."""
        r = self.http.post(
            f"/instances/{self.inst1}/invoke",
            json={"export": "get"},
            headers=headers("tokA", 1),
        )
        assert r.status_code == 200, r.text
        value: int = r.json()["result"][0]
        return value


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("gw-auth") / "home"
    env = {"TENSOR_WASM_API_TOKENS": TOKENS, "TENSOR_WASM_API_METRICS_TOKEN": METRICS_TOKEN}
    with running_gateway(home, env) as srv:
        a = srv.client("tokA", 1)
        b = srv.client("tokB", 2)
        fn1 = srv.deploy(a, corpus_wasm("stateful_counter"), name="t1-counter")["id"]
        inst1 = a.post("/instances", json={"function_id": fn1}).json()["instance_id"]
        r = a.post(f"/functions/{fn1}/invoke-async", json={"export": "inc"})
        job1 = r.json()["job_id"]
        assert wait_job(a, job1)["status"] == "completed"
        fn2 = srv.deploy(b, corpus_wasm("stateful_counter"), name="t2-counter")["id"]
        inst2 = b.post("/instances", json={"function_id": fn2}).json()["instance_id"]
        snap1 = a.post(f"/instances/{inst1}/snapshot").content
        yield World(srv, fn1, inst1, job1, fn2, inst2, srv.client(), snap1)


# --------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # {fn}, {inst}, {job}: tenant 1's resources
    ok: int
    body: Callable[[World], dict[str, Any]] | None = None
    raw: Callable[[World], bytes] | None = None
    fresh: bool = False  # the success case consumes its resource: use a new one

    def send(
        self, w: World, hdrs: dict[str, str], fn: str | None = None, inst: str | None = None
    ) -> httpx.Response:
        path = self.path.format(fn=fn or w.fn1, inst=inst or w.inst1, job=w.job1)
        kwargs: dict[str, Any] = {"headers": hdrs}
        if self.body is not None:
            kwargs["json"] = self.body(w)
        if self.raw is not None:
            kwargs["content"] = self.raw(w)
            kwargs["headers"] = {**hdrs, "content-type": "application/octet-stream"}
        return w.http.request(self.method, path, **kwargs)


ROUTES: dict[str, Route] = {
    "create_function": Route(
        "POST", "/functions", 201, body=lambda w: {"name": "m", "wasm_b64": b64(wat(ADD_WAT))}
    ),
    "list_functions": Route("GET", "/functions", 200),
    "get_function": Route("GET", "/functions/{fn}", 200),
    "delete_function": Route("DELETE", "/functions/{fn}", 204, fresh=True),
    "invoke_function": Route(
        "POST", "/functions/{fn}/invoke", 200, body=lambda w: {"export": "get"}
    ),
    "invoke_function_async": Route(
        "POST", "/functions/{fn}/invoke-async", 202, body=lambda w: {"export": "get"}
    ),
    "get_job": Route("GET", "/jobs/{job}", 200),
    "create_instance": Route("POST", "/instances", 201, body=lambda w: {"function_id": w.fn1}),
    "list_instances": Route("GET", "/instances", 200),
    "invoke_instance": Route(
        "POST", "/instances/{inst}/invoke", 200, body=lambda w: {"export": "inc"}
    ),
    "delete_instance": Route("DELETE", "/instances/{inst}", 204, fresh=True),
    "snapshot_instance": Route("POST", "/instances/{inst}/snapshot", 200),
    # Restores onto the acting tenant's function with the snapshot's module.
    "restore_instance": Route("POST", "/instances/restore", 201, raw=lambda w: w.snap1),
}
# Routes that name a resource of tenant 1 (others act on the caller's tenant).
RESOURCE_ROUTES = {
    "get_function",
    "delete_function",
    "invoke_function",
    "invoke_function_async",
    "get_job",
    "create_instance",
    "invoke_instance",
    "delete_instance",
    "snapshot_instance",
}


def _fresh(w: World) -> tuple[str, str]:
    """A new function and instance of tenant 1, for the consuming cases."""
    a = headers("tokA", 1)
    body = {"name": "fresh", "wasm_b64": b64(corpus_wasm("stateful_counter"))}
    fn = w.http.post("/functions", json=body, headers=a).json()["id"]
    inst = w.http.post("/instances", json={"function_id": fn}, headers=a).json()["instance_id"]
    return fn, inst


def _still_there(w: World) -> None:
    a = headers("tokA", 1)
    assert w.get(f"/functions/{w.fn1}", headers=a).status_code == 200
    listed = w.get("/instances", headers=a).json()["instances"]
    assert w.inst1 in {i["instance_id"] for i in listed}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_no_token_is_401(world: World, route: str) -> None:
    before = world.counter()
    r = ROUTES[route].send(world, headers(None, 1))
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    _still_there(world)
    assert world.counter() == before


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("bad", ["wrong-token", "tokA-but-longer", "Basic tokA"])
def test_wrong_token_is_401(world: World, route: str, bad: str) -> None:
    before = world.counter()
    hdrs = headers(None, 1)
    hdrs["Authorization"] = bad if bad.startswith("Basic") else f"Bearer {bad}"
    r = ROUTES[route].send(world, hdrs)
    assert_error(r, 401, "unauthorized")
    assert "tokA" not in r.text and bad not in r.text
    _still_there(world)
    assert world.counter() == before


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_token_of_another_tenant_is_403(world: World, route: str) -> None:
    before = world.counter()
    # tokB may only act for tenant 2: asking to act as tenant 1 is refused.
    r = ROUTES[route].send(world, headers("tokB", 1))
    assert_error(r, 403, "tenant_scope_denied")
    _still_there(world)
    assert world.counter() == before


@pytest.mark.parametrize("route", sorted(RESOURCE_ROUTES))
@pytest.mark.parametrize("token", ["tokB", "tokW"])
def test_acting_as_another_tenant_never_touches_its_resources(
    world: World, route: str, token: str
) -> None:
    before = world.counter()
    # In its own scope (tenant 2), the token still may not reach tenant 1's resources.
    r = ROUTES[route].send(world, headers(token, 2))
    assert_error(r, 403, "tenant_scope_denied")
    _still_there(world)
    assert world.counter() == before


@pytest.mark.parametrize("route", sorted(RESOURCE_ROUTES))
def test_missing_tenant_header_is_tenant_zero(world: World, route: str) -> None:
    # tokW without the header acts as tenant 0, which owns none of these.
    r = ROUTES[route].send(world, headers("tokW"))
    assert_error(r, 403, "tenant_scope_denied")
    # tokA without the header asks for tenant 0, outside its scope.
    r = ROUTES[route].send(world, headers("tokA"))
    assert_error(r, 403, "tenant_scope_denied")


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("token", ["tokA", "tokW"])
def test_right_token_succeeds(world: World, route: str, token: str) -> None:
    spec = ROUTES[route]
    fn = inst = None
    if spec.fresh:
        fn, inst = _fresh(world)
    r = spec.send(world, headers(token, 1), fn=fn, inst=inst)
    assert r.status_code == spec.ok, r.text
    if route == "create_function":
        assert r.json()["tenant_id"] == 1
    if route == "restore_instance":
        # Onto one of tenant 1's counters (the newest), never tenant 2's.
        assert r.json()["tenant_id"] == 1
        assert r.json()["function_id"] != world.fn2


# --------------------------------------------------------------------------- listings


def test_listings_show_only_the_callers_tenants(world: World) -> None:
    def ids(path: str, hdrs: dict[str, str], key: str, field: str) -> set[str]:
        r = world.get(path, headers=hdrs)
        assert r.status_code == 200, r.text
        return {item[field] for item in r.json()[key]}

    for path, key, field, one, two in (
        ("/functions", "functions", "id", world.fn1, world.fn2),
        ("/instances", "instances", "instance_id", world.inst1, world.inst2),
    ):
        as_a = ids(path, headers("tokA", 1), key, field)
        assert one in as_a and two not in as_a
        as_b = ids(path, headers("tokB", 2), key, field)
        assert two in as_b and one not in as_b
        # A wildcard token acting as tenant 2 sees tenant 2 only.
        as_w2 = ids(path, headers("tokW", 2), key, field)
        assert two in as_w2 and one not in as_w2
        # Without the header, a wildcard token lists every tenant it may act for.
        as_w = ids(path, headers("tokW"), key, field)
        assert {one, two} <= as_w
        # ... and so does a scoped token (it may not act for tenant 0).
        as_a_all = ids(path, headers("tokA"), key, field)
        assert one in as_a_all and two not in as_a_all


def test_function_ids_of_another_tenant_are_never_listed_in_bodies(world: World) -> None:
    for path in ("/functions", "/instances"):
        r = world.get(path, headers=headers("tokB", 2))
        assert world.fn1 not in r.text
        assert world.inst1 not in r.text


def test_each_tenant_keeps_its_own_instance_state(world: World) -> None:
    b = headers("tokB", 2)
    url = f"/instances/{world.inst2}/invoke"
    before = world.counter()
    for expected in (1, 2):
        r = world.http.post(url, json={"export": "inc"}, headers=b)
        assert r.json()["result"] == [expected]
    assert world.counter() == before


# --------------------------------------------------------------------------- open routes


def test_probes_need_no_token(world: World) -> None:
    assert world.get("/healthz").status_code == 200
    assert world.get("/readyz").status_code == 200
    assert world.get("/openapi.json").status_code == 200


def test_metrics_token(world: World) -> None:
    assert_error(world.get("/metrics"), 401, "unauthorized")
    assert_error(world.get("/metrics", headers=headers("wrong")), 401, "unauthorized")
    # An API token is not the metrics token.
    assert_error(world.get("/metrics", headers=headers("tokW")), 401, "unauthorized")
    r = world.get("/metrics", headers=headers(METRICS_TOKEN))
    assert r.status_code == 200
    assert "tensor_wasm_http_requests_total" in r.text
    assert METRICS_TOKEN not in r.text and "tokA" not in r.text


def test_secrets_never_appear_in_the_server_log(world: World) -> None:
    log = world.server.log()
    assert "auth: 3 bearer token(s) configured" in log
    for secret in ("tokA", "tokB", "tokW", METRICS_TOKEN):
        assert secret not in log


# --------------------------------------------------------------------------- other servers


def test_require_tenant_makes_the_header_mandatory(tmp_path: Path) -> None:
    env = {"TENSOR_WASM_API_TOKENS": TOKENS, "TENSOR_WASM_API_REQUIRE_TENANT": "1"}
    with running_gateway(tmp_path / "home", env) as srv:
        for method, path in (("GET", "/functions"), ("GET", "/instances"), ("GET", "/jobs/x")):
            r = httpx.request(method, srv.url + path, headers=headers("tokW"))
            assert_error(r, 400, "missing_tenant")
        r = httpx.post(
            srv.url + "/functions",
            json={"name": "x", "wasm_b64": b64(wat(ADD_WAT))},
            headers=headers("tokA"),
        )
        assert_error(r, 400, "missing_tenant")
        # Auth still comes first; probes stay open.
        assert_error(httpx.get(srv.url + "/functions"), 401, "unauthorized")
        assert httpx.get(srv.url + "/healthz").status_code == 200
        ok = httpx.get(srv.url + "/functions", headers=headers("tokA", 1))
        assert ok.status_code == 200
        assert_error(
            httpx.get(srv.url + "/functions", headers=headers("tokA", "not-a-number")),
            400,
            "invalid_tenant",
        )


def test_bare_and_malformed_tokens_at_startup(tmp_path: Path) -> None:
    env = {"TENSOR_WASM_API_TOKENS": "legacy-secret, bad token!:tenant=1 ,tokA:tenant=1"}
    with running_gateway(tmp_path / "home", env) as srv:
        # The bare token is a wildcard.
        r = httpx.get(srv.url + "/functions", headers=headers("legacy-secret", 99))
        assert r.status_code == 200, r.text
        assert httpx.get(srv.url + "/functions", headers=headers("tokA", 1)).status_code == 200
        log = srv.log()
    assert log.count(BARE_TOKEN_WARNING) == 1
    assert "entry #2 ignored" in log
    assert "legacy-secret" not in log and "bad token" not in log


def test_rate_limit_429_with_headers(tmp_path: Path) -> None:
    env = {
        "TENSOR_WASM_API_TOKENS": TOKENS,
        "TENSOR_WASM_API_RATE_LIMIT_QPS": "0.25",
        "TENSOR_WASM_API_RATE_LIMIT_BURST": "3",
    }
    with running_gateway(tmp_path / "home", env) as srv:
        a = srv.client("tokA", 1)
        remaining = []
        for _ in range(3):
            r = a.get("/functions")
            assert r.status_code == 200, r.text
            assert r.headers["ratelimit-limit"] == "3"
            remaining.append(int(r.headers["ratelimit-remaining"]))
        assert remaining == [2, 1, 0]

        r = a.get("/functions")
        assert_error(r, 429, "rate_limited")
        retry = int(r.headers["retry-after"])
        # 1 - tokens is just under 1 (a sliver has refilled): ceil(~1 / 0.25) = 4.
        assert 1 <= retry <= math.ceil(1 / 0.25)
        assert retry >= 3
        assert r.headers["ratelimit-limit"] == "3"
        assert r.headers["ratelimit-remaining"] == "0"
        assert r.headers["ratelimit-reset"] == str(retry)
        # Mutating routes are limited too, and the bucket is per token.
        assert_error(
            a.post("/functions", json={"name": "x", "wasm_b64": b64(wat(ADD_WAT))}),
            429,
            "rate_limited",
        )
        b = srv.client("tokB", 2)
        assert b.get("/functions").status_code == 200
        # Probes are not limited.
        assert a.get("/healthz").status_code == 200
        samples = parse_metrics(a.get("/metrics").text)
        assert samples["tensor_wasm_rate_limited_total"] == 2.0
