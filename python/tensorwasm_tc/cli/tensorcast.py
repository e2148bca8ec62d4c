"""`tensorcast` / `tensorcast-cli`: start, stop and inspect the Global Store
and the Store Daemon."""

from __future__ import annotations

import click

from tensorwasm_tc.tensorcast.daemon.cli import daemon_group
from tensorwasm_tc.tensorcast.global_store.cli import global_group
from tensorwasm_tc.tensorcast.version import version_triplet


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(message="%(version)s", version=version_triplet())
def main() -> None:
    """TensorCast: named sets of tensors shared across processes and hosts."""


main.add_command(global_group)
main.add_command(daemon_group)
