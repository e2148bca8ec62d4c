"""Prometheus metrics of one gateway (its own registry, so several apps in
one process never collide).

The HTTP series, instance spawns and rate-limit refusals are counted in the
core (``_core.HttpStats``), where the native front of ``tensor-wasm serve``
counts the requests it answers itself; this app counts the rest there too,
and one collector reads them all at scrape time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tensorwasm_tc import _core, build_info

# Upper bounds (seconds) of the request-duration histogram's buckets.
BUCKETS: tuple[float, ...] = tuple(_core.HTTP_BUCKETS)
# The `le` labels, spelled as prometheus-client spells them.
_LE = [repr(b) for b in BUCKETS] + ["+Inf"]


class _HttpCollector(Collector):
    """The core's HTTP counters, spawns and rate-limit refusals."""

    def __init__(self, stats: _core.HttpStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "tensor_wasm_http_requests",
            "HTTP requests by method, route template and status",
            labels=["method", "route", "status"],
        )
        duration = HistogramMetricFamily(
            "tensor_wasm_http_request_duration_seconds",
            "HTTP request duration by method and route template",
            labels=["method", "route"],
        )
        in_flight = GaugeMetricFamily(
            "tensor_wasm_http_requests_in_flight",
            "HTTP requests being served, by method and route template",
            labels=["method", "route"],
        )
        for method, route, flying, statuses, counts, total, _count in self._stats.snapshot():
            for status, n in statuses:
                requests.add_metric([method, route, str(status)], n)
            cumulative = itertools.accumulate(counts)
            duration.add_metric(
                [method, route], buckets=list(zip(_LE, cumulative, strict=True)), sum_value=total
            )
            in_flight.add_metric([method, route], flying)
        yield requests
        yield duration
        yield in_flight
        spawns = CounterMetricFamily(
            "tensor_wasm_instance_spawns",
            "Instances started: one per invoke of a function, one per persistent instance",
        )
        spawns.add_metric([], self._stats.spawns)
        yield spawns
        limited = CounterMetricFamily(
            "tensor_wasm_rate_limited", "Requests refused by the per-token rate limiter"
        )
        limited.add_metric([], self._stats.rate_limited)
        yield limited
        served, forwarded = self._stats.front_requests
        if served or forwarded:
            front = CounterMetricFamily(
                "tensor_wasm_front_requests",
                "Requests reaching the native front of tensor-wasm serve, by who answered "
                "them: the front itself (function invokes) or the app behind it",
                labels=["handled_by"],
            )
            front.add_metric(["front"], served)
            front.add_metric(["app"], forwarded)
            yield front


class _LiveCollector(Collector):
    """Values read at scrape time: kernel dispatches, instances, jobs."""

    def __init__(
        self,
        active_instances: Callable[[], int],
        jobs_in_flight: Callable[[], int],
        tensorcast: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._active = active_instances
        self._jobs = jobs_in_flight
        self._tensorcast = tensorcast

    def collect(self) -> Iterator[Metric]:
        kernels = CounterMetricFamily(
            "tensor_wasm_kernel_dispatches",
            "Kernel dispatches by op and device (guests and tensorwasm_tc.ops)",
            labels=["op", "device"],
        )
        for op, device, count in _core.kernel_dispatch_counts():
            kernels.add_metric([op, device], count)
        yield kernels
        active = GaugeMetricFamily(
            "tensor_wasm_active_instances", "Live persistent instances held by the gateway"
        )
        active.add_metric([], self._active())
        yield active
        jobs = GaugeMetricFamily("tensor_wasm_jobs_in_flight", "Async jobs pending or running")
        jobs.add_metric([], self._jobs())
        yield jobs
        if self._tensorcast is not None:
            st = self._tensorcast()
            up = GaugeMetricFamily(
                "tensor_wasm_tensorcast_up",
                "1 while the server is attached to its TensorCast daemon, by link mode "
                "(auto, connect, off); what /readyz reports",
                labels=["mode"],
            )
            up.add_metric([str(st.get("mode", ""))], 1.0 if st.get("state") == "connected" else 0.0)
            yield up


class Metrics:
    def __init__(
        self,
        active_instances: Callable[[], int],
        jobs_in_flight: Callable[[], int],
        tensorcast: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes,
        # process_open_fds, ... of this server.
        ProcessCollector(registry=r)
        # Shared with the native front (see the module docstring).
        self.stats = _core.HttpStats()
        r.register(_HttpCollector(self.stats))
        info = build_info()
        build = Gauge(
            "tensor_wasm_build_info",
            "Build of the running server (value is always 1)",
            ["version", "git_sha", "rustc_version", "profile", "target"],
            registry=r,
        )
        build.labels(
            _core.__version__,
            info["git_sha"],
            info["rustc_version"],
            info["profile"],
            info["target"],
        ).set(1)
        r.register(_LiveCollector(active_instances, jobs_in_flight, tensorcast))
        # The TensorCast SDK's tc_store_* series of this process (the verbs
        # the gateway runs to bind artifacts) on the same endpoint.
        from tensorwasm_tc.tensorcast import _metrics as tc_metrics

        for collector in tc_metrics.collectors():
            r.register(collector)
