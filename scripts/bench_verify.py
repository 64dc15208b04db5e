"""Benchmark ``matport.verify``: the plain check against the instrumented per-layer comparison.

On a full-size MATLAB ResNet-50 (``matport.synth.resnet50``, random weights) and its MATLAB-style
ONNX export (``matport.synth.onnx_export``), interleaved, medians of ``--repeats`` runs:

- ``verify(model, onnx)`` (a plain, fully optimized onnxruntime session; what every check that
  holds costs) over ``verify(model, onnx, per_layer=True)`` (plus the instrumented session that
  computes every layer's tensor, which runs when outputs differ or for ``--html``);
- onnxruntime alone: the optimized session over the instrumented one on the same batch, each
  built and run once per call, as ``verify`` does.

Ratios below 1 mean the default path is faster. Prints a Markdown section for BENCHMARKS.md.
Usage: python scripts/bench_verify.py [--repeats 5] [--images 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def median_times(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Each callable's median wall time, the callables interleaved (one warm-up each)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():
        fn()
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=8, help="random inputs per check")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from matport.convert.families.resnet50 import load_resnet50
    from matport.synth.onnx_export import export
    from matport.synth.resnet50 import finetuned
    from matport.verify import onnx_run, verify
    from matport.verify.inputs import onnx_input, random_raw

    net = finetuned()
    model = load_resnet50(net)
    with tempfile.TemporaryDirectory(prefix="matport-bench-verify-") as tmp:
        path = export(net, Path(tmp) / "resnet50.onnx")
        checks = median_times({
            "plain": lambda: verify(model, path, network=net, num_random=args.images),
            "per_layer": lambda: verify(model, path, network=net, num_random=args.images,
                                        per_layer=True),
        }, args.repeats)
        ex = onnx_run.load_export(path)
        info = model.matport
        x = onnx_input(ex, info, random_raw(info, args.images, np.random.default_rng(0), ex)[0])
        layers = [lay.name for lay in net.layers]
        tensors = [t for t in onnx_run.layer_tensors(ex, layers).values() if t != ex.input_name]
        sessions = median_times({
            "optimized": lambda: onnx_run.run(ex, x),
            "instrumented": lambda: onnx_run.run(ex, x, tensors, instrumented=True),
        }, args.repeats)

    load = os.getloadavg()[0]
    print(f"## matport verify: plain check vs per-layer comparison (load average {load:.2f})\n")
    print(f"Full-size ResNet-50, {args.images} random 224x224 inputs, medians of "
          f"{args.repeats} interleaved runs, 1 torch thread.\n")
    print("| ratio | value |\n| --- | --- |")
    print(f"| `verify()` / `verify(per_layer=True)` | "
          f"{checks['plain'] / checks['per_layer']:.2f} |")
    print(f"| onnxruntime optimized run / instrumented run (all {len(tensors)} layer tensors) | "
          f"{sessions['optimized'] / sessions['instrumented']:.2f} |")


if __name__ == "__main__":
    main()
