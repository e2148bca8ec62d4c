"""Prometheus metrics of one gateway (its own registry, so several apps in
one process never collide)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tensorwasm_tc import _core, build_info

BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


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
        self.requests = Counter(
            "tensor_wasm_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "tensor_wasm_http_request_duration_seconds",
            "HTTP request duration by method and route template",
            ["method", "route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "tensor_wasm_http_requests_in_flight",
            "HTTP requests being served, by method and route template",
            ["method", "route"],
            registry=r,
        )
        self.spawns = Counter(
            "tensor_wasm_instance_spawns",
            "Instances started: one per invoke of a function, one per persistent instance",
            registry=r,
        )
        self.rate_limited = Counter(
            "tensor_wasm_rate_limited",
            "Requests refused by the per-token rate limiter",
            registry=r,
        )
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
