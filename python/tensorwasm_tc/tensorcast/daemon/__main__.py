"""``python -m tensorwasm_tc.tensorcast.daemon``: a Store Daemon in the foreground."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys

from tensorwasm_tc.tensorcast.daemon.config import GLOBAL_STORE_MODES, DaemonConfig
from tensorwasm_tc.tensorcast.daemon.server import serve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tensorwasm_tc.tensorcast.daemon")
    ap.add_argument("--config", required=True, help="daemon config YAML")
    ap.add_argument("--listen-port", type=int, default=None, help="gRPC port (0 = any free port)")
    ap.add_argument("--p2p-port", type=int, default=None, help="P2P port (0 = any free port)")
    ap.add_argument("--global-store-mode", choices=GLOBAL_STORE_MODES, default=None)
    ap.add_argument("--global-store-address", default=None, help="host:port")
    ap.add_argument("--global-store-config", default=None, help="Global Store config (mode start)")
    ap.add_argument("--session-id", default=None)
    ap.add_argument("--owner-pid", type=int, default=0)
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        cfg = DaemonConfig.load(args.config).with_overrides(
            listen_port=args.listen_port,
            p2p_port=args.p2p_port,
            global_store_mode=args.global_store_mode,
            global_store_address=args.global_store_address,
            global_store_config=args.global_store_config,
        )
    except (OSError, ValueError) as e:
        print(f"error: cannot load daemon config {args.config}: {e}", file=sys.stderr)
        return 2
    session_id = args.session_id or secrets.token_hex(6)
    return serve(cfg, session_id, owner_pid=args.owner_pid)


if __name__ == "__main__":
    sys.exit(main())
