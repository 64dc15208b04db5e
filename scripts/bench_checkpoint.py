"""Benchmark (issue 14, items 3 and 4): loading a ResNet-50 checkpoint written by ``matport.save``.

The model is ``load_resnet50`` of a synthetic MATLAB ResNet-50 (``matport.synth.resnet50``),
saved as ``.safetensors`` (+ its config) and as ``.pt``. The floor: the same ``state_dict`` as a
plain safetensors file, read by ``safetensors.torch.load_file`` into a torchvision resnet50 built
on the meta device (``load_state_dict(assign=True)``).

- time: ``load_checkpoint`` of each artifact / the floor, in one process, interleaved, medians
  of ``--repeat`` rounds (target <= 1.2);
- memory: a fresh process per case; peak RSS above the imports, once loaded and once every weight
  has been read, over the weights' size (target <= 1.15), and the bytes the model's tensor
  storages hold over the weights' size (target 1.0).
Run: ``python scripts/bench_checkpoint.py [--repeat N] [--threads 1] [--markdown BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from bench_read import publish
from safetensors.torch import load_file, save_file
from torch import nn

from matport.checkpoint import load_checkpoint, save

FLOOR = "floor.safetensors"


def floor(folder: Path) -> nn.Module:
    """The least work: torchvision's resnet50 on the meta device, safetensors' own reader."""
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    model.load_state_dict(load_file(str(folder / FLOOR)), assign=True)
    return model.eval()


LOADERS: dict[str, Callable[[Path], nn.Module]] = {
    "floor": floor,
    "safetensors": lambda folder: load_checkpoint(folder / "resnet50.safetensors"),
    "pt": lambda folder: load_checkpoint(folder / "resnet50.pt"),
}


def write_artifacts(folder: Path) -> None:
    from matport.convert.families.resnet50 import load_resnet50
    from matport.synth.resnet50 import pretrained_like

    model = load_resnet50(pretrained_like())
    save(model, folder / "resnet50.safetensors")
    save(model, folder / "resnet50.pt")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / FLOOR))


def _kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(key)


def child(case: str, folder: Path) -> None:
    """Memory of one load in this fresh process (imports done first), as JSON."""
    from matport.convert.families.registry import families

    families()  # the family modules' imports are imports, not loading
    before = _kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak resident size restarts from here
    model = LOADERS[case](folder)
    loaded = _kib("VmHWM")
    tensors = [*model.state_dict().values()]
    for t in tensors:
        t.sum()  # every byte read once
    touched = _kib("VmHWM")
    weights = sum(t.numel() * t.element_size() for t in tensors)
    held = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    print(json.dumps({"weights": weights, "held": sum(held.values()),
                      "loaded": (loaded - before) * 1024, "touched": (touched - before) * 1024}))


def memory(case: str, folder: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", case, str(folder)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timings(folder: Path, repeat: int) -> dict[str, float]:
    """Median seconds of each loader, rounds interleaved after one warm-up call each."""
    times: dict[str, list[float]] = {case: [] for case in LOADERS}
    for load in LOADERS.values():
        load(folder)
    for _ in range(repeat):
        for case, load in LOADERS.items():
            start = time.perf_counter()
            load(folder)
            times[case].append(time.perf_counter() - start)
    return {case: statistics.median(t) for case, t in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--markdown", type=Path, help="replace this script's section in the file")
    ap.add_argument("--child", nargs=2, metavar=("CASE", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_artifacts(folder)
        load_before = os.getloadavg()[0]
        t = timings(folder, args.repeat)
        mem = {case: memory(case, folder) for case in LOADERS}
        load_after = os.getloadavg()[0]
        size = {case: (folder / name).stat().st_size / 1e6 for case, name in
                (("floor", FLOOR), ("safetensors", "resnet50.safetensors"), ("pt", "resnet50.pt"))}
    weights_mb = mem["floor"]["weights"] / 1e6
    lines = [
        "## Loading a ResNet-50 checkpoint (`scripts/bench_checkpoint.py`)",
        "",
        "`matport.load_checkpoint` of a ResNet-50 written by `matport.save` (the model: "
        "`load_resnet50` of `matport.synth.resnet50`), against the floor: the same `state_dict` "
        "as a plain safetensors file, `safetensors.torch.load_file` into torchvision's resnet50 "
        "built on the meta device, `load_state_dict(assign=True)`. Both map their file "
        "(copy-on-write): a weight is read from it when first used. Time: one process, "
        f"interleaved, medians of {args.repeat} rounds, {args.threads} thread(s). Memory: a fresh "
        f"process per case, peak RSS above the imports over the weights ({weights_mb:.1f} MB): "
        "once loaded (mapped pages count, so this is the part of the file the kernel mapped in "
        "around the few bytes read, which depends on how the file sits in the page cache) and "
        "once every weight has been read; storages: the bytes the model's tensors hold over the "
        "weights. Load average "
        f"{load_before:.1f} before / {load_after:.1f} after the runs (2 cores shared).",
        "",
        "| artifact | file MB | load s | / floor (<= 1.2) | peak once loaded / weights "
        "| peak after reading every weight / weights (<= 1.15) | storages / weights (1.0) |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, label in (("floor", "floor: plain safetensors + meta resnet50"),
                        ("safetensors", "`.safetensors` + config"), ("pt", "`.pt`")):
        m = mem[case]
        lines.append(f"| {label} | {size[case]:.1f} | {t[case]:.3f} | {t[case] / t['floor']:.2f} "
                     f"| {m['loaded'] / m['weights']:.2f} | {m['touched'] / m['weights']:.2f} "
                     f"| {m['held'] / m['weights']:.3f} |")
    publish(lines, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
