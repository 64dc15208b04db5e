"""``matport migrate SRC... --out DIR``: convert every network under folders of .mat files.

Resumable and loss-free (see :mod:`matport.migrate.runner`): re-running the same command skips
what is done and redoes what failed or changed. Exit status: 0 when no file failed, 1 when some
did (the summary names them), 2 when the migration could not start.
"""

from __future__ import annotations

import argparse

HELP = ("convert every network in the .mat files under folders into PyTorch artifacts (weights + "
        "metadata), resumably, in parallel, with a report (exit 1 when a file failed)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from matport.migrate.runner import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, FORMATS

    p.add_argument("sources", nargs="+", metavar="SRC",
                   help=".mat files or folders (searched recursively for .mat files)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the output folder (artifacts mirror the source tree; report and state "
                        "files go here)")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="worker processes (default 1)")
    p.add_argument("--format", choices=sorted(FORMATS), default="pt",
                   help="weights as a matport checkpoint (pt, default) or safetensors")
    family = p.add_mutually_exclusive_group()
    family.add_argument("--resnet50", dest="mode", action="store_const", const="resnet50",
                        help="convert to torchvision resnet50 only; other networks fail")
    family.add_argument("--auto", dest="mode", action="store_const", const="auto",
                        help="torchvision resnet50 when a network fits, else matport's general "
                             "module (default)")
    p.set_defaults(mode="auto")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds per file before it is stopped and failed (default "
                        f"{DEFAULT_TIMEOUT_S:g}; 0: no limit)")
    p.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB, metavar="M",
                   help=f"memory (address space, MB) a worker may add for one file (default "
                        f"{DEFAULT_MEMORY_MB}; 0: no limit)")


def run(args: argparse.Namespace) -> int:
    from matport.migrate.runner import migrate

    report = migrate(
        args.sources, args.out, jobs=args.jobs, format=args.format, mode=args.mode,
        timeout=args.timeout or None, memory_mb=args.memory_mb or None,
    )
    print(report.summary())
    return 0 if report.ok else 1
