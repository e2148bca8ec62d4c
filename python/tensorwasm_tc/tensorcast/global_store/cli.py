"""`tensorcast-cli global ...`."""

from __future__ import annotations

import click


@click.group(name="global")
def global_group() -> None:
    """Manage the Global Store."""
