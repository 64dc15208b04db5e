"""Benchmark matport.load_torchvision per model family, as ratios.

For each family, a full-size MATLAB-layout network (matport.synth.families, random weights) is
written as a DAGNetwork v7 file with matport's writer, then:

- load time: ``matport.load_torchvision(file)`` against reading the same file (its bytes read and
  every compressed element inflated, scripts/baselines.py), each in fresh subprocesses,
  alternating, best of --repeat;
- inference: the loaded model against the stock ``torchvision.models.<family>()`` (batch 8 at the
  family's input size, same threads, interleaved runs, median);
- ``load_torchvision`` against ``matport.read`` of the same file in one process (interleaved
  medians, target 1.1), the conversion of the network already read, and the first call in a
  fresh process against a warm one (target 0.2 s more).

Prints a Markdown table (target: inference ratio <= 1.05).
Usage: python scripts/bench_families.py [--families resnet18 squeezenet1_1] [--repeat 3]
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
    inflate_v7,
    interleaved_inference,
)

SIZES = {"resnet18": 224, "resnet101": 224, "squeezenet1_1": 227, "vgg16": 224, "vgg19": 224,
         "densenet201": 224, "inception_v3": 299}


def load(path: str) -> object:
    from matport.convert.families.registry import load_torchvision

    return load_torchvision(path)


CASES = {"inflate": inflate_v7, "load_torchvision": load}


def child(case: str, path: str, repeat: int) -> None:
    """Best time of ``repeat`` runs of ``case`` in this fresh process, as JSON."""
    if case == "load_torchvision":
        import torch
        import torchvision  # noqa: F401 (imports are not what is measured)

        from matport.convert.families import registry

        torch.set_num_threads(1)
        registry.families()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        CASES[case](path)
        times.append(time.perf_counter() - t)
    print(json.dumps({"best_s": min(times)}))


def measure(case: str, path: str, repeat: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", case, path, "--repeat",
                          str(repeat)], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["best_s"])


def inference(family: str, path: Path, repeat: int) -> tuple[float, float]:
    """Median seconds of the loaded model and of the stock torchvision model on one batch."""
    import torch
    import torchvision

    from matport.convert.families.registry import load_torchvision

    ours = load_torchvision(path)
    stock = getattr(torchvision.models, family)(num_classes=ours.matport.num_classes).eval()
    size = SIZES[family]
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(0))
    return interleaved_inference(ours, stock, x, repeat)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dir", help="where to write the generated files (default: a temp dir)")
    p.add_argument("--child", nargs=2, metavar=("CASE", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child, args.repeat)
        return

    import torch

    from matport.network.encode import write_network
    from matport.synth import families as synth

    torch.set_num_threads(args.threads)
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="bench_families_"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = ["| family | file MB | read file s | load_torchvision s | load / read "
            "| inference s (batch 8) | stock torchvision s | inference ratio (<= 1.05) |",
            "|---|---|---|---|---|---|---|---|"]
    read_rows = ["", *AGAINST_READ_HEADER]
    for family in args.families:
        path = workdir / f"{family}.mat"
        write_network(path, synth.build(family, size=SIZES[family]))
        runs: dict[str, list[float]] = {"inflate": [], "load_torchvision": []}
        for _ in range(args.repeat):  # alternate, so both see the same load of the machine
            for case in runs:
                runs[case].append(measure(case, str(path), 1))
        base, ours = min(runs["inflate"]), min(runs["load_torchvision"])
        t_ours, t_stock = inference(family, path, args.repeat)
        rows.append(f"| {family} | {os.path.getsize(path) / 1e6:.0f} | {base:.3f} | {ours:.3f} "
                    f"| {ours / base:.2f} | {t_ours:.3f} | {t_stock:.3f} "
                    f"| {t_ours / t_stock:.3f} |")
        read_rows.append(against_read_row(family, against_read("load_torchvision", path,
                                                               args.repeat)))
        path.unlink()
    print("\n".join(rows + read_rows))


if __name__ == "__main__":
    main()
