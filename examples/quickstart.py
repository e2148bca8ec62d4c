"""Quickstart: a WebAssembly MLP whose weights live in TensorCast.

Start a gateway in one terminal (it also starts its TensorCast Store Daemon)::

    tensor-wasm serve

and run this script in another::

    python examples/quickstart.py                # or --server http://HOST:PORT

It walks through the whole flow:

1. wait until the gateway is ready and attached to TensorCast (``GET /readyz``);
2. make random weights for a small two-layer perceptron and register them
   in TensorCast under the key ``mlp:v1`` (``tc.put``);
3. deploy ``examples/guests/mlp.wasm`` with those weights bound to it
   (``POST /functions`` with ``"artifacts": {"weights": "mlp:v1"}``);
4. invoke it over HTTP with an input batch (``POST /functions/{id}/invoke``);
5. compute the same thing with numpy and compare.

Run it with the same ``TENSORCAST_HOME`` as the gateway (the default is the
same for both), so that both use the same Store Daemon.
"""

from __future__ import annotations

import argparse
import base64
import math
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import httpx
import numpy as np
import tensorwasm_tc.tensorcast as tc

MLP_WASM = Path(__file__).resolve().parent / "guests" / "mlp.wasm"
BATCH, D_IN, HIDDEN, D_OUT = 8, 64, 256, 64
CONNECT_GRACE_S = 5.0  # how long to wait for a gateway that is still starting


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def wait_for_tensorcast(client: httpx.Client, timeout: float) -> dict[str, Any]:
    """Polls /readyz until the gateway's TensorCast link is connected."""
    started = time.monotonic()
    while True:
        try:
            ready = client.get("/readyz").json()
        except httpx.TransportError:
            if time.monotonic() - started < CONNECT_GRACE_S:  # it may be starting
                time.sleep(0.2)
                continue
            fail(
                f"no gateway answers at {client.base_url}: start one with `tensor-wasm serve` "
                "in another terminal (or pass --server URL)"
            )
        status: dict[str, Any] = ready.get("tensorcast") or {}
        if status.get("mode") in (None, "off"):
            fail("the gateway runs without TensorCast: restart it without --no-tensorcast")
        if status.get("state") == "connected":
            return status
        if status.get("state") == "unavailable":
            fail(f"the gateway cannot reach TensorCast: {status.get('error')}")
        if time.monotonic() - started > timeout:
            fail(f"TensorCast is not connected after {timeout:.0f} s: {status}")
        time.sleep(0.2)


def gelu(h: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The exact (erf) GELU, as the guest computes it."""
    erf = np.vectorize(math.erf)
    return np.asarray(0.5 * h * (1.0 + erf(h / math.sqrt(2.0))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8080", help="the gateway's URL")
    parser.add_argument(
        "--tensorcast-address",
        help="HOST:PORT of the Store Daemon (default: the one the gateway uses)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it")
    args = parser.parse_args()

    with httpx.Client(base_url=args.server, timeout=60.0) as client:
        # 1. The gateway, attached to TensorCast.
        status = wait_for_tensorcast(client, args.timeout)
        print(f"gateway {args.server} ready; TensorCast daemon at {status.get('address')}")

        # 2. Weights, registered in TensorCast. The gateway started its own
        # daemon ("auto" mode): this process attaches to the same one.
        if args.tensorcast_address or status.get("mode") == "connect":
            tc.init(mode="connect", address=args.tensorcast_address or status["address"])
        else:
            tc.init(mode="auto")
        rng = np.random.default_rng(0)
        weights = {
            "w1": rng.standard_normal((HIDDEN, D_IN), dtype=np.float32) / math.sqrt(D_IN),
            "b1": rng.standard_normal(HIDDEN, dtype=np.float32) * 0.1,
            "w2": rng.standard_normal((D_OUT, HIDDEN), dtype=np.float32) / math.sqrt(HIDDEN),
            "b2": rng.standard_normal(D_OUT, dtype=np.float32) * 0.1,
        }
        weights = {name: w.astype(np.float32) for name, w in weights.items()}
        artifact_id = tc.put(weights, key="mlp:v1")
        print(f"registered the weights as mlp:v1 (artifact {artifact_id[:12]}...)")

        # 3. Deploy the guest, bound to the weights: it reads them as
        # "weights/w1", "weights/b1", ... (see examples/guests/mlp.c).
        resp = client.post(
            "/functions",
            json={
                "name": "mlp",
                "wasm_b64": base64.b64encode(MLP_WASM.read_bytes()).decode(),
                "artifacts": {"weights": "mlp:v1"},
            },
        )
        if resp.status_code != 201:
            fail(f"deploy failed: {resp.status_code} {resp.text}")
        function_id = resp.json()["id"]
        print(f"deployed {MLP_WASM.name} as {function_id}")

        # 4. Invoke it: tensors travel as dtype + shape + base64 bytes.
        x = rng.standard_normal((BATCH, D_IN), dtype=np.float32)
        resp = client.post(
            f"/functions/{function_id}/invoke",
            json={
                "export": "run",
                "inputs": {
                    "x": {
                        "dtype": "f32",
                        "shape": list(x.shape),
                        "data_b64": base64.b64encode(x.tobytes()).decode(),
                    }
                },
                "output_encoding": "data_b64",
            },
        )
        if resp.status_code != 200:
            fail(f"invoke failed: {resp.status_code} {resp.text}")
        out = resp.json()["outputs"]["y"]
        y = np.frombuffer(base64.b64decode(out["data_b64"]), dtype=np.float32)
        y = y.reshape(out["shape"])

    # 5. The same computation in numpy.
    h = x @ weights["w1"].T + weights["b1"]
    expected = gelu(h) @ weights["w2"].T + weights["b2"]
    diff = float(np.max(np.abs(y - expected)))
    print(f"wasm  y[0, :5] = {np.array2string(y[0, :5], precision=5)}")
    print(f"numpy y[0, :5] = {np.array2string(expected[0, :5], precision=5)}")
    print(f"max abs difference: {diff:.2e}")
    tc.shutdown()
    if diff > 1e-4 * max(1.0, float(np.max(np.abs(expected)))):
        fail("the outputs differ")
    print("OK")


if __name__ == "__main__":
    main()
