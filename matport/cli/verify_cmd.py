"""``matport verify NET.mat NET.onnx``: check the converted model against MATLAB's ONNX export.

``matport verify NET.mat --export-onnx OUT.onnx`` writes the converted model as ONNX instead (with
MATLAB's input normalization inside, so it takes raw data like MATLAB's export) and checks that.
``--html REPORT.html`` also writes the report as a static page (layer graph, per-layer errors).

Exit status: 0 when the check holds, 1 when it does not, 2 when it could not run (custom ONNX
operators, unreadable files, a network that does not convert, inputs that do not fit, an output
file that cannot be written ...): one line on stderr, or with ``--json`` the report on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from matport.errors import MatportError
from matport.options import FAMILIES
from matport.verify import DEFAULT_RTOL

if TYPE_CHECKING:
    from torch import nn

    from matport.verify import VerifyReport

HELP = ("check that the PyTorch conversion of a MATLAB network computes what MATLAB's own ONNX "
        "export of it computes (exit 0: holds, 1: differs, 2: could not check)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mat", help="the .mat file holding the network")
    p.add_argument("onnx", nargs="?",
                   help="the ONNX file MATLAB's exportONNXNetwork wrote for it")
    p.add_argument("--export-onnx", metavar="OUT",
                   help="instead, write the converted model to OUT with torch.onnx and check it")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON (schema: matport.verify.REPORT_SCHEMA)")
    p.add_argument("--html", metavar="FILE",
                   help="also write the report as a static HTML page (layer graph, per-layer "
                        "errors; compares every layer even when the outputs agree)")
    p.add_argument("--num-random", type=int, default=8, metavar="N",
                   help="number of random inputs (default 8)")
    p.add_argument("--images", metavar="DIR",
                   help="also feed the images of this folder (resized to the input size)")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL, metavar="R",
                   help=f"relative tolerance: max|torch - onnx| <= R * max|onnx| "
                        f"(default {DEFAULT_RTOL:g})")
    p.add_argument("--variable", help="the network's variable path when the file holds several")
    p.add_argument("--family", choices=FAMILIES, default="auto",
                   help="the conversion to check, as for `matport convert` (default auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")


def run(args: argparse.Namespace) -> int:
    from matport.verify import VerifyReport

    onnx_path = args.onnx or args.export_onnx or ""
    if (args.onnx is None) == (args.export_onnx is None):
        report = VerifyReport.error("give either an ONNX file or --export-onnx OUT", onnx_path,
                                    args.mat, args.rtol)
    else:
        unwritable = [r for r in map(_unwritable, (args.export_onnx, args.html)) if r]
        report = (VerifyReport.error(unwritable[0], onnx_path, args.mat, args.rtol)
                  if unwritable else _verified(args, onnx_path))
    if args.html and not _unwritable(args.html):
        report = _with_html(report, args.html)
    if args.json:
        print(report.to_json())
    elif report.status == "error":
        print(f"matport verify: error: {report.reason}", file=sys.stderr)
    else:
        print(report.summary())
    return {"verified": 0, "failed": 1}.get(report.status, 2)


def _verified(args: argparse.Namespace, onnx_path: str) -> VerifyReport:
    from matport.verify import VerifyReport, verify

    try:
        model = _exported(args) if args.export_onnx else args.mat
        return verify(
            model, onnx_path, num_random=args.num_random, images_dir=args.images,
            rtol=args.rtol, seed=args.seed, variable=args.variable, family=args.family,
            per_layer=bool(args.html),
        )
    except MatportError as exc:
        return VerifyReport.error(str(exc), onnx_path, args.mat, args.rtol)
    except OSError as exc:  # writing --export-onnx (a full disk, a race with the checks)
        return VerifyReport.error(f"cannot write {exc.filename or args.export_onnx}: "
                                  f"{exc.strerror or exc}", onnx_path, args.mat, args.rtol)


def _with_html(report: VerifyReport, path: str) -> VerifyReport:
    """``report`` after writing it to ``path``; an error report when the file cannot be written."""
    from matport.verify import VerifyReport
    from matport.verify.html import write_html

    try:
        write_html(report.to_dict(), path)
    except OSError as exc:
        return VerifyReport.error(f"cannot write {path}: {exc.strerror or exc}",
                                  report.onnx_path, report.mat, report.tolerance["rtol"])
    return report


def _unwritable(path: str | None) -> str | None:
    """Why the output file ``path`` cannot be written, or None (also for no path)."""
    if path is None:
        return None
    target = Path(path)
    parent = target.parent
    if target.is_dir():
        return f"cannot write {path}: it is a directory"
    if not parent.is_dir():
        return f"cannot write {path}: no such directory {parent}"
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        return f"cannot write {path}: permission denied or read-only"
    return None


def _exported(args: argparse.Namespace) -> nn.Module:
    """Convert the network (as ``verify`` would) and write it to ``args.export_onnx``."""
    from matport.network import read_network
    from matport.verify.export import export_onnx
    from matport.verify.torch_run import convert

    model = convert(read_network(args.mat, args.variable), args.family)
    export_onnx(model, args.export_onnx)
    return model
