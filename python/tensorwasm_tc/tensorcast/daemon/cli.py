"""`tensorcast-cli daemon ...`."""

from __future__ import annotations

import click


@click.group(name="daemon")
def daemon_group() -> None:
    """Manage the Store Daemon."""
