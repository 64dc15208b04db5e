"""The ``matport`` command: one sub-command per module ``matport.cli.<name>_cmd``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from matport.errors import MatportError

COMMANDS = ("inspect", "convert", "verify", "migrate")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``matport`` command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="matport", description="Move MATLAB networks into PyTorch, without MATLAB."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name in COMMANDS:
        module = importlib.import_module(f"matport.cli.{name}_cmd")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        modules[name] = module
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args))
    except MatportError as exc:
        print(f"matport {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"matport {args.command}: interrupted", file=sys.stderr)
        return 130
