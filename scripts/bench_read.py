"""Benchmark (issue 2): reading a ResNet-50-sized network written by matport's writer.

Ratios against baselines measured in the same run, on the same file:
- time: ``matport.read`` and ``read_network`` versus just reading the file's bytes and inflating
  its compressed variables (v7), or h5py reading every dataset (v7.3);
- memory: peak RSS of a fresh process above the interpreter with its imports, versus the size of
  the weights.
Run: ``python scripts/bench_read.py [--repeat N] [--markdown BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from baselines import h5_read_all, inflate_v7

ROOT = Path(__file__).resolve().parents[1]

MEMORY_PROBE = r"""
import json, re, sys
import matport
from matport.network import read_network

def hwm():  # peak resident set (KiB) of this process since exec
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))

before = hwm()
net = read_network(sys.argv[1])
after = hwm()
print(json.dumps({"before_kib": before, "after_kib": after,
                  "weights": sum(a.nbytes for l in net.layers
                                 for a in (*l.learnables.values(), *l.state.values()))}))
"""


def timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--markdown", type=Path, help="replace this script's section in the file")
    args = ap.parse_args()

    import matport
    from matport.network import read_network
    from matport.network.encode import write_network
    from matport.synth.resnet50 import pretrained_like

    net = pretrained_like()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, baseline, label in (("v7", inflate_v7, "read bytes + inflate"),
                                     ("v7.3", h5_read_all, "h5py reads every dataset")):
            path = Path(tmp) / f"resnet50_{fmt}.mat"
            write_network(path, net, format=fmt)  # type: ignore[arg-type]
            base, rd, rn = [], [], []
            for _ in range(args.repeat):  # interleaved so that machine noise hits all alike
                base.append(timed(baseline, path))
                rd.append(timed(matport.read, path))
                rn.append(timed(read_network, path))
            probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)],
                                   capture_output=True, text=True, check=True, cwd=ROOT)
            mem = json.loads(probe.stdout)
            peak = (mem["after_kib"] - mem["before_kib"]) * 1024
            b = statistics.median(base)
            rows.append({
                "format": fmt, "file_mb": path.stat().st_size / 1e6, "baseline": label,
                "baseline_s": b, "read_ratio": statistics.median(rd) / b,
                "network_ratio": statistics.median(rn) / b,
                "peak_over_weights": peak / mem["weights"], "weights_mb": mem["weights"] / 1e6,
            })
    lines = [
        "## Reading a ResNet-50-sized network (`scripts/bench_read.py`)",
        "",
        f"{sum(lay.num_parameters for lay in net.layers) / 1e6:.1f} M learnable parameters "
        f"(float32), written by matport's writer; medians of {args.repeat} interleaved runs. "
        "Targets: time ratio <= 1.3, peak memory <= 2.5x the weights.",
        "",
        "| file | baseline | baseline time | `matport.read` / baseline | `read_network` / baseline "
        "| peak RSS above interpreter / weights |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['format']} ({r['file_mb']:.0f} MB) | {r['baseline']} | "
                     f"{r['baseline_s']:.2f} s | {r['read_ratio']:.2f} | {r['network_ratio']:.2f} "
                     f"| {r['peak_over_weights']:.2f} ({r['weights_mb']:.0f} MB of weights) |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        replace_section(args.markdown, lines[0], text)
    return 0


def replace_section(path: Path, heading: str, text: str) -> None:
    """Replace the section starting at ``heading`` (up to the next '## ') in a Markdown file."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(heading)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(heading))
        new = old[:start] + text + ("\n" + old[end + 1 :] if end >= 0 else "")
    path.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
