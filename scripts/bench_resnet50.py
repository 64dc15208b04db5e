"""Benchmark matport.load_resnet50 against the floors set in issue 3, all in one run.

Generates full-size MATLAB ResNet-50 files (matport.synth.resnet50: the Designer parameters
struct with scipy; DAGNetwork v7 / v7.3 with the project's writer when it exists), then measures:

- load_resnet50 on each file vs its baseline (params struct: scipy.io.loadmat of the same file;
  v7: reading the file and inflating its compressed elements; v7.3: h5py reading every dataset):
  --repeat fresh subprocesses of each, alternating, each timing 2 runs; best time, peak RSS;
- inference time of the transplanted model vs a stock torchvision resnet50 (same input, same
  threads, interleaved runs, median);
- load_resnet50 vs matport.read of the same file in one process (interleaved medians, target
  1.1), the transplant alone (load_resnet50 of the network already read, target 0.05 s warm)
  and the first call in a fresh process against a warm one (target 0.2 s more).

Prints a Markdown table (targets: load ratios <= 1.3, peak RSS < 600 MB, inference ratio <= 1.05).
Usage: python scripts/bench_resnet50.py [--repeat 5] [--threads 1] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from baselines import (
    AGAINST_READ_HEADER,
    against_read,
    against_read_row,
    h5_read_all,
    inflate_v7,
    interleaved_inference,
)


def loadmat(path: str) -> object:
    import scipy.io

    return scipy.io.loadmat(path)


def load(path: str) -> object:
    from matport.convert.families.resnet50 import load_resnet50

    return load_resnet50(path)


CASES = {"loadmat": loadmat, "inflate": inflate_v7, "h5py": h5_read_all, "load_resnet50": load}


IMPORTS = {"loadmat": "scipy.io", "inflate": "zlib", "h5py": "h5py",
           "load_resnet50": "matport.convert.families.resnet50"}


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(case: str, path: str, repeat: int, threads: int) -> None:
    """One measurement in this (fresh) process: best time, RSS once the libraries are imported
    and peak RSS, as JSON."""
    import importlib

    importlib.import_module(IMPORTS[case])
    if case == "load_resnet50":
        import torch

        torch.set_num_threads(threads)
    imported_mb = _status_mb("VmRSS")
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        CASES[case](path)
        times.append(time.perf_counter() - t)
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts from its parent's high-water mark.
    peak_mb = _status_mb("VmHWM")
    print(json.dumps({"best_s": min(times), "peak_rss_mb": peak_mb, "imported_mb": imported_mb}))


def measure(case: str, path: str, repeat: int, threads: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", case, path, "--repeat", str(repeat),
                          "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def inference(threads: int, repeat: int) -> tuple[float, float]:
    import numpy as np
    import torch
    import torchvision

    from matport.convert.families.resnet50 import load_resnet50
    from matport.synth import resnet50 as fixture

    torch.set_num_threads(threads)
    ours = load_resnet50(fixture.pretrained_like())
    stock = torchvision.models.resnet50().eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(8, 3, 224, 224)).astype("f4"))
    return interleaved_inference(ours, stock, x, repeat)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dir", help="where to write the generated files (default: a temp dir)")
    p.add_argument("--child", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child, args.repeat, args.threads)
        return

    from matport.synth import resnet50 as fixture

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="bench_resnet50_"))
    workdir.mkdir(parents=True, exist_ok=True)
    net = fixture.pretrained_like()
    files = {}
    for form, baseline in (("designer-v7", "loadmat"), ("dagnetwork-v7", "inflate"),
                           ("dagnetwork-v73", "h5py")):
        try:
            files[form] = (fixture.write_form(form, net, workdir / f"{form}.mat"), baseline)
        except LookupError as exc:
            print(f"skipping {form}: {exc}", file=sys.stderr)
    rows = ["| case | file MB | baseline | baseline s | load_resnet50 s | ratio (<= 1.3) "
            "| peak RSS MB (< 600) | of which imports (torch, torchvision) |",
            "|---|---|---|---|---|---|---|---|"]
    for form, (path, baseline) in files.items():
        # alternate the two, so that both see the same load of a shared machine
        runs: dict[str, list[dict[str, float]]] = {baseline: [], "load_resnet50": []}
        for _ in range(args.repeat):
            for case in runs:
                runs[case].append(measure(case, str(path), 2, args.threads))
        base = min(runs[baseline], key=lambda r: r["best_s"])
        ours = min(runs["load_resnet50"], key=lambda r: r["best_s"])
        ours["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs["load_resnet50"])
        rows.append(f"| {form} | {os.path.getsize(path) / 1e6:.0f} | {baseline} "
                    f"| {base['best_s']:.3f} | {ours['best_s']:.3f} "
                    f"| {ours['best_s'] / base['best_s']:.2f} | {ours['peak_rss_mb']:.0f} "
                    f"| {ours['imported_mb']:.0f} |")
    rows += ["", *AGAINST_READ_HEADER]
    for form, (path, _) in files.items():
        rows.append(against_read_row(form, against_read("load_resnet50", path, args.repeat)))
    t_ours, t_stock = inference(args.threads, args.repeat)
    rows += ["", "| inference, batch 8 x 3 x 224 x 224 | transplanted s | stock torchvision s "
             "| ratio (<= 1.05) |", "|---|---|---|---|",
             f"| median of {args.repeat}, {args.threads} thread(s) | {t_ours:.3f} "
             f"| {t_stock:.3f} | {t_ours / t_stock:.3f} |"]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
