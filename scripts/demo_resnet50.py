"""The README's main job: a MATLAB ResNet-50 becomes a torchvision model, with a short report.

No MATLAB here, so the input is generated: a fine-tuned MATLAB ResNet-50 (177 layers, 5-class
head renamed ``fc``, conv biases, non-trivial BatchNorm statistics, a mean image; random weights)
saved as MATLAB saves a DAGNetwork (v7). Then, as a user would: ``matport inspect``, the same as
``matport convert net.mat -o model.pt`` (checkpoint with class names and preprocessing), and a
check of the converted model against a reference forward pass computed separately on the MATLAB
arrays. Pass ``--mat FILE`` to convert your own MATLAB ResNet-50 instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matport  # noqa: E402
from matport.network import find_networks, read_network  # noqa: E402
from matport.network.encode import write_network  # noqa: E402
from matport.pytorch.checkpoint import load_checkpoint, save  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mat", type=Path, help="a MATLAB ResNet-50 .mat (default: generate one)")
    ap.add_argument("--out", type=Path,
                    help="folder to keep the outputs in (default: a temporary folder, removed)")
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
        from tests.resnet50_fixture import finetuned

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

    # The check: the same images through a reference written on the MATLAB arrays directly.
    from tests.reference_resnet50 import forward

    net = read_network(mat)
    rng = np.random.default_rng(0)
    h, w, _ = info.input_size
    images = rng.integers(0, 256, size=(args.images, h, w, 3), dtype=np.uint8)
    head = next(c.source for c in net.connections if net.layer(c.dest).type == "SoftmaxLayer")
    want = forward(net, images.astype(np.float32), (head,))[head]
    with torch.no_grad():
        got = model(info.preprocess(images)).numpy()
        again = reloaded(reloaded.matport.preprocess(images)).numpy()
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    names = info.class_names or []
    print(f"check on {args.images} random images: max relative logit error {rel:.1e}, "
          f"top-1 agreement {agree:.0%}, checkpoint identical: {np.array_equal(got, again)}")
    print("top-1 classes:", ", ".join(names[i] for i in got.argmax(1)))
    ok = rel <= 1e-4 and agree == 1.0 and np.array_equal(got, again)
    print("OK: the torchvision model computes what the MATLAB network computes" if ok
          else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
