"""``matport migrate SRC... --out DIR``: convert every network under folders of .mat files.

Resumable and loss-free (see :mod:`matport.migrate.runner`): re-running the same command skips
what is done and redoes what failed or changed. Exit status: 0 when no file failed, 1 when some
did (the summary names them), 2 when the migration could not start or could not write its
output folder. On a terminal a progress bar shows on stderr, else one line per file.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import get_args

from matport.options import FAMILIES, CheckpointFormat

HELP = ("convert every network in the .mat files under folders into PyTorch artifacts (weights + "
        "metadata), resumably, in parallel, with a report (exit 1 when a file failed)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``migrate``'s options to ``p``.

    Args:
        p: the sub-command's parser.
    """
    from matport.migrate.artifact import NUM_RANDOM
    from matport.migrate.runner import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S
    from matport.migrate.sources import DEFAULT_ONNX_PATTERN

    p.add_argument("sources", nargs="+", metavar="SRC",
                   help=".mat files or folders (searched recursively for .mat files)")
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="the output folder (artifacts mirror the source tree; report and state "
                        "files go here)")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="worker processes (default 1)")
    p.add_argument("--format", choices=get_args(CheckpointFormat), default="pt",
                   help="weights as a matport .pt checkpoint (default) or .safetensors")
    p.add_argument("--family", choices=FAMILIES, default="auto",
                   help="resnet50: a torchvision resnet50 or fail; graph: matport's general "
                        "module; auto (default): resnet50 when the network fits, else graph")
    p.add_argument("--onnx-pattern", default=DEFAULT_ONNX_PATTERN, metavar="PATTERN",
                   help="MATLAB's ONNX export of x.mat, relative to its folder, {stem} standing "
                        f"for x (default {DEFAULT_ONNX_PATTERN!r})")
    p.add_argument("--onnx-map", metavar="FILE",
                   help="a JSON object or CSV file pairing .mat files with their ONNX exports "
                        "(paths relative to FILE; wins over --onnx-pattern)")
    p.add_argument("--num-random", type=int, default=NUM_RANDOM, metavar="N",
                   help=f"random inputs each ONNX check runs through both sides (default "
                        f"{NUM_RANDOM}; every weight is compared with the export whatever N)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the files on a Dask cluster (its scheduler's address, e.g. "
                        "tcp://host:8786; --jobs is then unused); sources and DIR must be on "
                        "storage every worker sees. Needs pip install 'matport[cluster]'")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON (as migration-report.json) instead of the "
                        "summary")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds per file before it is stopped and failed (default "
                        f"{DEFAULT_TIMEOUT_S:g}; 0: no limit)")
    p.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, metavar="M",
                   help=f"memory (address space, MB) a worker may add for one file (default "
                        f"{DEFAULT_MEMORY_MB}; 0: no limit)")


def run(args: argparse.Namespace) -> int:
    """Run ``matport migrate``.

    Args:
        args: the parsed options.

    Returns:
        The exit status: 0 when no file failed, 1 otherwise.
    """
    from matport.migrate.runner import migrate

    # a bar on a terminal, else one INFO line per file (shown by the command's log handler)
    report = migrate(
        args.sources, args.out, jobs=args.jobs, format=args.format, family=args.family,
        onnx_pattern=args.onnx_pattern, onnx_map=args.onnx_map, progress=sys.stderr.isatty(),
        timeout=args.timeout or None, memory_mb=args.memory_mb or None, cluster=args.cluster,
        num_random=args.num_random,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0 if report.ok else 1
