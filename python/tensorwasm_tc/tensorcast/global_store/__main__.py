"""``python -m tensorwasm_tc.tensorcast.global_store --config PATH``: runs a
Global Store in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tensorwasm_tc.tensorcast.global_store.config import ConfigError, load_config
from tensorwasm_tc.tensorcast.global_store.schema import SchemaError


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tensorwasm_tc.tensorcast.global_store",
        description="Run a TensorCast Global Store in the foreground.",
    )
    ap.add_argument("--config", required=True, help="global_store_config.yaml")
    ap.add_argument("--listen-port", type=int, default=None, help="gRPC port (0: free port)")
    ap.add_argument(
        "--metrics-port", type=int, default=None, help="metrics port (0: free, -1: off)"
    )
    ap.add_argument("--session-id", default=None, help="name of the session record")
    ap.add_argument(
        "--owner-pid", type=int, default=0, help="exit when this process is gone (0: never)"
    )
    args = ap.parse_args(argv)
    try:
        config = load_config(args.config).with_overrides(
            listen_port=args.listen_port, metrics_port=args.metrics_port
        )
    except ConfigError as e:
        print(f"global store: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from tensorwasm_tc.tensorcast.global_store.server import serve

    try:
        return serve(config, session_id=args.session_id, owner_pid=args.owner_pid)
    except (SchemaError, OSError) as e:
        logging.getLogger("tensorwasm_tc.tensorcast.global_store").error("%s", e)
        print(f"global store: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
