"""Benchmark (issue 2): reading a ResNet-50-sized network written by matport's writer.

Ratios against baselines measured in the same run, on the same file:
- time: ``matport.read`` and ``read_network`` versus just reading the file's bytes and inflating
  its compressed variables (v7), or h5py reading every dataset (v7.3);
- memory: peak RSS of a fresh process above the interpreter with its imports, versus the size of
  the weights.
- time against ``scipy.io.loadmat`` (issue 14): ``matport.read`` of the ResNet-50 Designer
  parameters struct (v7, written by scipy), and of every small v7 corpus file scipy reads, with
  the inflater matport uses (``isal`` when installed, else ``zlib``) named;
- time against mat-io's ``matio.load_from_mat`` (issue 14; it decodes MATLAB's objects too; the
  rows are left out when mat-io is not installed): the DAGNetwork v7 and v7.3 files, the
  Designer struct and every small v7 corpus file mat-io reads.
Run: ``python scripts/bench_read.py [--repeat N] [--markdown BENCHMARKS.md]``; ``--small-only``
prints just the small-file rows against scipy and mat-io (no ResNet-50 files are written).
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
from importlib.metadata import version
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
    ap.add_argument("--small-only", action="store_true",
                    help="only the small corpus files against scipy.io.loadmat")
    args = ap.parse_args()
    if args.small_only:
        if args.markdown:
            ap.error("--small-only measures part of the section; it cannot replace it")
        print("\n".join(anchor_lines(None, [], args.repeat)))
        return 0

    import matport
    from matport.network import read_network
    from matport.network.encode import write_network
    from matport.synth.resnet50 import pretrained_like

    net = pretrained_like()
    rows, written = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, baseline, label in (("v7", inflate_v7, "read bytes + inflate"),
                                     ("v7.3", h5_read_all, "h5py reads every dataset")):
            path = Path(tmp) / f"resnet50_{fmt}.mat"
            write_network(path, net, format=fmt)  # type: ignore[arg-type]
            written.append((f"ResNet-50 DAGNetwork ({fmt}, {path.stat().st_size / 1e6:.0f} MB)",
                            path))
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
        anchors = anchor_lines(net, written, args.repeat)
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
    lines += anchors
    publish(lines, args.markdown)
    return 0


def anchor_lines(net: object | None, written: list[tuple[str, Path]], repeat: int) -> list[str]:
    """Tables of ``matport.read`` time over ``scipy.io.loadmat``'s and over mat-io's, interleaved,
    medians: the ResNet-50 Designer struct written from ``net`` (None: skipped), the ``written``
    (label, file) pairs (mat-io only: scipy reads no objects), then the small corpus files each
    reads."""
    import scipy.io

    from matport.mat.inflate import ENGINE
    from matport.synth.resnet50 import write_form

    with tempfile.TemporaryDirectory() as tmp:
        designer = []
        if net is not None:
            path = write_form("designer-v7", net, Path(tmp) / "designer.mat")  # type: ignore[arg-type]
            designer.append((f"ResNet-50 Designer struct (v7, {path.stat().st_size / 1e6:.0f} MB)",
                             path))
        lines = ["", f"Against `scipy.io.loadmat` (inflater: `{ENGINE}`; targets: <= 0.8 on the "
                 "large file, <= 1.5 on small files):", "",
                 *against("`scipy.io.loadmat`", scipy.io.loadmat, designer, repeat)]
        try:
            import matio
        except ImportError:
            return [*lines, "", "mat-io is not installed: no rows against it."]
        return [*lines, "", f"Against mat-io's `matio.load_from_mat` {version('mat-io')} (which "
                "decodes MATLAB's objects too; reported, no target):", "",
                *against("mat-io", matio.load_from_mat, [*written, *designer], repeat)]


def against(name: str, theirs: Callable[[Path], object], cases: list[tuple[str, Path]],
            repeat: int) -> list[str]:
    """A table of ``matport.read`` over ``theirs`` on each case and on the small corpus v7 files
    ``theirs`` reads (together), interleaved, medians of ``repeat`` rounds."""
    import warnings

    import matport

    small = small_v7_files(ROOT.parent / "shared" / "corpus", theirs)
    groups = [(label, [path]) for label, path in cases]
    if small:
        groups.append((f"{len(small)} small corpus v7 files, together", small))
    rows = [f"| file | {name} | `matport.read` | ratio |", "|---|---|---|---|"]
    for label, files in groups:
        ours, other = [], []
        for _ in range(repeat):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                other.append(sum(timed(theirs, f) for f in files))
            ours.append(sum(timed(matport.read, f) for f in files))
        rows.append(f"| {label} | {statistics.median(other):.3f} s | "
                    f"{statistics.median(ours):.3f} s | "
                    f"{statistics.median(ours) / statistics.median(other):.2f} |")
    return rows


def small_v7_files(corpus: Path, reader: Callable[[Path], object]) -> list[Path]:
    """The corpus's v7 files under 1 MB that ``reader`` reads (the issue's small-file anchor)."""
    import warnings

    out = []
    for path in sorted(corpus.glob("*/*.mat")):
        if path.stat().st_size > 1 << 20 or path.read_bytes()[:10] != b"MATLAB 5.0":
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reader(path)
        except Exception:  # noqa: BLE001 - a file the anchor cannot read is no anchor
            continue
        out.append(path)
    return out


def publish(lines: list[str], markdown: Path | None) -> None:
    """Print a section (``lines``, its heading first) and, given ``markdown``, put it in that
    Markdown file in place of the section with the same heading (up to the next '## ')."""
    text = "\n".join(lines) + "\n"
    print(text)
    if markdown:
        _replace_section(markdown, lines[0], text)


def _replace_section(path: Path, heading: str, text: str) -> None:
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
