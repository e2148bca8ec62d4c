"""The TensorCast Global Store: a cluster's metadata (workers and their
heartbeats, artifacts and their replicas, versioned key -> artifact mappings)
behind the ``tensorcast.global_store.v1.GlobalStore`` gRPC service.

Daemons talk to it through `GlobalStoreClient`; SDK clients never do. The
server runs as its own process (``python -m tensorwasm_tc.tensorcast.global_store``
or ``tensorcast-cli global start``) and records itself in
``$TENSORCAST_HOME/store_sessions/``; `find_running` reads that record.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from tensorwasm_tc.tensorcast.sessions import SessionRecord, live_sessions

__all__ = ["find_running", "probe"]


def probe(address: str, timeout: float = 1.0) -> bool:
    """Whether a Global Store answers GetStatus at ``address``. A refusal for a
    missing cluster token counts as an answer: the server is up."""
    from tensorwasm_tc.tensorcast.global_store.client import GlobalStoreClient, GlobalStoreError

    client = GlobalStoreClient(address, timeout=timeout)
    try:
        client.get_status()
    except GlobalStoreError as e:
        return e.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        client.close()
    return True


def find_running(home: Path | None = None, timeout: float = 1.0) -> SessionRecord | None:
    """The record of a healthy Global Store under ``home`` (default
    ``$TENSORCAST_HOME``): its session file names a live process AND it answers
    GetStatus. None when there is none."""
    for rec in live_sessions("global_store", home):
        if probe(rec.address, timeout):
            return rec
    return None
