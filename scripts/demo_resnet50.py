"""The README's main job: a MATLAB ResNet-50 becomes a torchvision model, with a short report.

No MATLAB here, so the input is generated: a fine-tuned MATLAB ResNet-50 (177 layers, 5-class
head renamed ``fc``, conv biases, non-trivial BatchNorm statistics, a mean image; random weights)
saved as MATLAB saves a DAGNetwork (v7). Then, as a user would: ``matport inspect``, the same as
``matport convert net.mat -o model.pt`` (checkpoint with class names and preprocessing), and a
check of the reloaded checkpoint against a MATLAB-style ONNX export built from the MATLAB arrays
(``matport.synth.onnx_export``), run in onnxruntime by ``matport.verify``. Pass ``--mat FILE``
(and ``--onnx FILE``) to convert (and check) your own MATLAB ResNet-50 instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import matport
from matport.checkpoint import load_checkpoint, save
from matport.network import find_networks, read_network
from matport.network.encode import write_network


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mat", type=Path, help="a MATLAB ResNet-50 .mat (default: generate one)")
    ap.add_argument("--out", type=Path,
                    help="folder to keep the outputs in (default: a temporary folder, removed)")
    ap.add_argument("--onnx", type=Path, help="MATLAB's ONNX export of --mat, to verify against")
    ap.add_argument("--images", type=int, default=8, help="random images for the check")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="matport-demo-") as tmp:
            return run(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    return run(args, args.out)


def run(args: argparse.Namespace, out: Path) -> int:

    mat = args.mat
    if mat is None:
        from matport.synth.resnet50 import finetuned

        mat = out / "resnet50_flowers.mat"
        if mat.exists():
            print(f"refusing to overwrite {mat}", file=sys.stderr)
            return 2
        t = time.perf_counter()
        write_network(mat, finetuned(), format="v7")
        print(f"generated {mat} ({mat.stat().st_size / 1e6:.0f} MB, MATLAB DAGNetwork v7, "
              f"random weights) in {time.perf_counter() - t:.1f} s")

    matfile = matport.read(mat)
    for ref in find_networks(matfile):
        print(f"found {ref.path}: {ref.class_name}")

    t = time.perf_counter()
    model = matport.load_resnet50(mat)
    took = time.perf_counter() - t
    info = model.matport
    print(f"load_resnet50: {took:.2f} s -> {type(model).__module__}.{type(model).__name__}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
    print(info.summary())

    checkpoint = out / (mat.stem + ".pt")
    if checkpoint.exists():
        print(f"refusing to overwrite {checkpoint}", file=sys.stderr)
        return 2
    save(model, checkpoint)
    reloaded = load_checkpoint(checkpoint)
    print(f"checkpoint: {checkpoint} ({checkpoint.stat().st_size / 1e6:.0f} MB)")

    # The check: MATLAB-style ONNX export of the same network (built from the MATLAB arrays by
    # matport.synth, independently of the transplant), run in onnxruntime, compared by verify.
    if args.onnx is None and args.mat is not None:
        print("no --onnx export given: skipping the comparison with MATLAB's ONNX export")
        return 0
    onnx_path = args.onnx
    if onnx_path is None:
        from matport.synth.onnx_export import export

        onnx_path = export(read_network(mat), out / (mat.stem + ".onnx"))
    report = matport.verify(reloaded, onnx_path, num_random=args.images)
    print(report.summary())
    print("OK: the torchvision model computes what the MATLAB network computes" if report.passed
          else "MISMATCH")
    return 0 if report.passed else 1

if __name__ == "__main__":
    sys.exit(main())
