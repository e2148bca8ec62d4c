"""A small ``/metrics`` HTTP server for the Global Store and the Store Daemon.

Like prometheus_client's ``start_http_server``, but it polls for shutdown
every 50 ms instead of 500 ms, so stopping a server is prompt."""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app


class _MetricsHTTPServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _MetricsHTTPServer6(_MetricsHTTPServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_metrics_http(host: str, port: int, registry: CollectorRegistry, name: str) -> WSGIServer:
    """Serves ``registry`` on ``host:port`` (0 = a free port) from a daemon
    thread; ``shutdown()`` and ``server_close()`` the result to stop it."""
    cls = _MetricsHTTPServer6 if ":" in host else _MetricsHTTPServer
    httpd = make_server(
        host.strip("[]"), port, make_wsgi_app(registry), cls, handler_class=_QuietHandler
    )
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    ).start()
    return httpd
