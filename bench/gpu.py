"""GPU benchmark: the CUDA backend against torch on the same device.

Runs on a machine with an NVIDIA GPU and torch (CUDA build); elsewhere it
says why it cannot run and exits with status 2. The real backend is turned
on for this process (``TENSORCAST_CUDA_BACKEND=cuda``) unless the caller set
the variable.

1. ``matmul``    -- ``ops.matmul`` on device tensors, f32 and bf16, at 4096^3
   and 8192^3, vs ``torch.matmul`` (TFLOP/s; target ours >= 0.9x torch).
2. ``elementwise`` -- ``softmax`` and ``layernorm`` over rows of a
   8192 x 8192 f32 tensor and ``add`` of two (GB/s moved; target >= 0.8x).
3. ``dispatch``  -- a guest's ``op("add")`` on 4-element device tensors
   (``bench/kernels.py``'s loop guest on ``Runtime(device="cuda")``): time
   per call (target: median under 10 us).
4. ``mlp``       -- the ``mlp`` example guest (batch 32, 1024 -> 4096 -> 1024)
   on the GPU vs the same model in torch (ratio reported).

Every timing is the median of ``--repeat`` rounds, each synchronised with
the device before the clock stops (``_core.device_synchronize`` for ours,
``torch.cuda.synchronize`` for torch); rounds alternate ours and torch.

    python -m bench.gpu                 # full run
    python -m bench.gpu --quick         # small sizes, few rounds
    python -m bench.gpu --json out.json
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TENSORCAST_CUDA_BACKEND", "cuda")

import numpy as np

from bench._common import (
    BenchResult,
    Target,
    add_output_options,
    environment_info,
    finish,
    format_table,
    import_package,
    progress,
    safe_ratio,
)

PACKAGE = "tensorwasm_tc"
REPO_ROOT = Path(__file__).resolve().parents[1]
MLP_WASM = REPO_ROOT / "examples" / "guests" / "mlp.wasm"
Log = Callable[[str], None]


def _median_time(fn: Callable[[], object], sync: Callable[[], None], repeat: int) -> float:
    fn()
    sync()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _pair(
    ours: Callable[[], object],
    ours_sync: Callable[[], None],
    peer: Callable[[], object],
    peer_sync: Callable[[], None],
    repeat: int,
) -> tuple[float, float]:
    """Median seconds of ours and of the peer, in alternating rounds."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(3):
        a.append(_median_time(ours, ours_sync, max(1, repeat // 3)))
        b.append(_median_time(peer, peer_sync, max(1, repeat // 3)))
    return statistics.median(a), statistics.median(b)


def bench_matmul(tw: Any, torch: Any, quick: bool, repeat: int, log: Log) -> list[BenchResult]:
    sync = lambda: tw._core.device_synchronize("cuda:0")  # noqa: E731
    out = []
    for n in (1024, 2048) if quick else (4096, 8192):
        for dtype in ("f32", "bf16"):
            tdt = torch.float32 if dtype == "f32" else torch.bfloat16
            a_t = torch.randn(n, n, device="cuda", dtype=torch.float32)
            b_t = torch.randn(n, n, device="cuda", dtype=torch.float32)
            a = tw.Tensor.from_numpy(a_t.cpu().numpy()).to("cuda")
            b = tw.Tensor.from_numpy(b_t.cpu().numpy()).to("cuda")
            if dtype == "bf16":
                a, b = tw.ops.cast(a, "bf16"), tw.ops.cast(b, "bf16")
            a_t, b_t = a_t.to(tdt), b_t.to(tdt)
            got = np.from_dlpack(tw.ops.cast(tw.ops.matmul(a, b), "f32").to("cpu"))
            want = (a_t @ b_t).float().cpu().numpy()
            tol = 1e-2 if dtype == "bf16" else 1e-3
            err = float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) or 1.0))
            if err > tol:
                raise RuntimeError(f"matmul {dtype} {n}: relative error {err:.2e}")
            ours_s, peer_s = _pair(
                functools.partial(tw.ops.matmul, a, b),
                sync,
                functools.partial(torch.matmul, a_t, b_t),
                torch.cuda.synchronize,
                repeat,
            )
            flops = 2 * n**3
            log(
                f"matmul {dtype} {n}^3: ours {flops / ours_s / 1e12:.1f}, torch "
                f"{flops / peer_s / 1e12:.1f} TFLOP/s"
            )
            out.append(
                BenchResult(
                    name=f"matmul {dtype} {n}^3",
                    unit="GFLOP/s",
                    ours=flops / ours_s / 1e9,
                    peer=flops / peer_s / 1e9,
                    ratio=safe_ratio(peer_s, ours_s),
                    ratio_def="ours/torch throughput",
                    targets=[Target("ratio", ">=", 0.9, "ratio >= 0.9")],
                    note="cuBLAS through ops.matmul vs torch.matmul, same device",
                )
            )
    return out


def bench_elementwise(tw: Any, torch: Any, quick: bool, repeat: int, log: Log) -> list[BenchResult]:
    sync = lambda: tw._core.device_synchronize("cuda:0")  # noqa: E731
    rows = cols = 2048 if quick else 8192
    x_t = torch.randn(rows, cols, device="cuda")
    y_t = torch.randn(rows, cols, device="cuda")
    x = tw.Tensor.from_numpy(x_t.cpu().numpy()).to("cuda")
    y = tw.Tensor.from_numpy(y_t.cpu().numpy()).to("cuda")
    nbytes = rows * cols * 4
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any], int]] = [
        (
            "softmax",
            functools.partial(tw.ops.softmax, x),
            functools.partial(torch.softmax, x_t, -1),
            2 * nbytes,
        ),
        (
            "layernorm",
            functools.partial(tw.ops.layernorm, x),
            functools.partial(torch.nn.functional.layer_norm, x_t, (cols,)),
            2 * nbytes,
        ),
        (
            "add",
            functools.partial(tw.ops.add, x, y),
            functools.partial(torch.add, x_t, y_t),
            3 * nbytes,
        ),
    ]
    out = []
    for name, ours, peer, moved in cases:
        got = np.from_dlpack(ours().to("cpu"))
        want = peer().cpu().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        ours_s, peer_s = _pair(ours, sync, peer, torch.cuda.synchronize, repeat)
        log(f"{name}: ours {moved / ours_s / 1e9:.0f}, torch {moved / peer_s / 1e9:.0f} GB/s")
        out.append(
            BenchResult(
                name=f"{name} {rows}x{cols} f32",
                unit="s",
                ours=ours_s,
                peer=peer_s,
                ratio=safe_ratio(peer_s, ours_s),
                ratio_def="torch/ours time",
                targets=[Target("ratio", ">=", 0.8, "ratio >= 0.8")],
                note=f"{moved / 1e9:.2f} GB moved per call",
            )
        )
    return out


def bench_dispatch(tw: Any, quick: bool, log: Log) -> list[BenchResult]:
    from bench.kernels import ABI_WAT

    fn = tw.Runtime(device="cuda", cache_dir=False).load(ABI_WAT)
    inputs = {"a": np.arange(1, 5, dtype=np.float32)}
    n = 2_000 if quick else 20_000
    for count in (0, 3):
        got = list(fn.invoke("loop", [count], inputs=inputs).values)
        if got != [count]:
            raise RuntimeError(f"guest loop({count}) returned {got!r}")
    per_round = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn.invoke("loop", [n], inputs=inputs)
        t1 = time.perf_counter()
        fn.invoke("loop", [0], inputs=inputs)
        t2 = time.perf_counter()
        per_round.append(max(0.0, (t1 - t0) - (t2 - t1)) / n)
    per_op = statistics.median(per_round)
    log(f"dispatch: {per_op * 1e6:.2f} us per op('add') on the device")
    return [
        BenchResult(
            name="guest op('add') on cuda:0, per call",
            unit="s",
            ours=per_op,
            targets=[Target("ours", "<", 10e-6, "ours < 10 us")],
            note=f"(invoke loop({n}) - invoke loop(0)) / {n}, 4-element f32 input",
        )
    ]


def bench_mlp(tw: Any, torch: Any, quick: bool, repeat: int, log: Log) -> list[BenchResult]:
    batch, d_in, hidden, d_out = (8, 256, 1024, 256) if quick else (32, 1024, 4096, 1024)
    rng = np.random.default_rng(0)

    def w(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    weights = {"w1": w(hidden, d_in), "b1": w(hidden), "w2": w(d_out, hidden), "b2": w(d_out)}
    x = w(batch, d_in)
    fn = tw.Runtime(device="cuda").load(MLP_WASM.read_bytes(), bindings={"weights": weights})
    tw_w = {k: torch.from_numpy(v).cuda() for k, v in weights.items()}
    x_t = torch.from_numpy(x).cuda()

    def torch_mlp() -> Any:
        h = torch.nn.functional.gelu(x_t @ tw_w["w1"].T + tw_w["b1"])
        return h @ tw_w["w2"].T + tw_w["b2"]

    got = np.from_dlpack(fn.invoke("run", inputs={"x": x}).outputs["y"])
    np.testing.assert_allclose(got, torch_mlp().cpu().numpy(), rtol=1e-3, atol=1e-3)
    # Ours includes moving x in and y out (the invoke's contract); so does torch's.
    ours_s, peer_s = _pair(
        lambda: fn.invoke("run", inputs={"x": x}),
        lambda: None,
        lambda: torch_mlp().cpu(),
        torch.cuda.synchronize,
        repeat,
    )
    log(f"mlp: ours {ours_s * 1e3:.2f} ms, torch {peer_s * 1e3:.2f} ms")
    return [
        BenchResult(
            name=f"mlp guest {batch}x{d_in}->{hidden}->{d_out}",
            unit="s",
            ours=ours_s,
            peer=peer_s,
            ratio=safe_ratio(peer_s, ours_s),
            ratio_def="torch/ours time",
            note="invoke (input in, output back on the host) vs torch with .cpu()",
        )
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu",
        description="Benchmark the CUDA backend against torch on the same GPU.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per case (30)")
    add_output_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log = progress(args.quiet)
    tw = import_package(PACKAGE)
    if tw is None:
        return 2
    info = tw.device_info()
    if info["backend"] != "cuda" or not info["devices"]:
        print(f"bench/gpu.py needs an NVIDIA GPU: {info.get('reason') or 'none found'}")
        return 2
    try:
        import torch
    except ImportError:
        print("bench/gpu.py compares with torch: install a CUDA build of torch")
        return 2
    if not torch.cuda.is_available():
        print("bench/gpu.py compares with torch: torch sees no CUDA device")
        return 2
    repeat = 6 if args.quick else max(3, args.repeat)
    env = environment_info(PACKAGE)
    env["device"] = info["devices"][0]
    env["driver_version"] = info["driver_version"]
    env["peer"] = "torch"
    env["peer_version"] = torch.__version__
    results: list[BenchResult] = []
    steps: list[tuple[str, Callable[[], list[BenchResult]]]] = [
        ("matmul", lambda: bench_matmul(tw, torch, args.quick, repeat, log)),
        ("elementwise", lambda: bench_elementwise(tw, torch, args.quick, repeat, log)),
        ("dispatch", lambda: bench_dispatch(tw, args.quick, log)),
        ("mlp", lambda: bench_mlp(tw, torch, args.quick, repeat, log)),
    ]
    for name, step in steps:
        try:
            results.extend(step())
        except Exception as exc:  # report it and go on
            results.append(BenchResult(name=name, unit="s", error=f"{type(exc).__name__}: {exc}"))
    print(
        f"tensorwasm_tc CUDA backend vs torch {torch.__version__} on {info['devices'][0]['name']}"
    )
    print(format_table(results, peer_name="torch"))
    return finish(
        results,
        benchmark="gpu",
        json_path=args.json,
        environment=env,
        settings={"quick": args.quick, "repeat": repeat},
        check=getattr(args, "check", False),
        log=log,
    )


if __name__ == "__main__":
    sys.exit(main())
