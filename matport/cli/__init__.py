"""The ``matport`` command: one sub-command per module ``matport.cli.<name>_cmd``.

The library reports through :mod:`logging` (logger ``matport``); the command shows its INFO
messages on stderr (``-q``: warnings only, ``-v``: debug too).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence

from matport import __version__
from matport.errors import MatportError

COMMANDS = ("inspect", "convert", "verify", "migrate")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``matport`` command line.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when a check or a file failed, 2 on an error
        (printed as one line on stderr), 130 when interrupted, 141 when the output pipe closed.
    """
    parser = argparse.ArgumentParser(
        prog="matport", description="Move MATLAB networks into PyTorch, without MATLAB."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", dest="log_level", action="store_const",
                           const=logging.WARNING, default=logging.INFO,
                           help="show warnings only, not what matport chose or did")
    verbosity.add_argument("-v", "--verbose", dest="log_level", action="store_const",
                           const=logging.DEBUG, help="show debug messages too")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name in COMMANDS:
        module = importlib.import_module(f"matport.cli.{name}_cmd")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        modules[name] = module
    args = parser.parse_args(argv)
    logging.basicConfig(format=f"matport {args.command}: %(message)s", level=logging.WARNING)
    logging.getLogger("matport").setLevel(args.log_level)
    try:
        return int(modules[args.command].run(args))
    except MatportError as exc:
        print(f"matport {args.command}: error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):  # --json: stdout stays a JSON document
            print(json.dumps({"schema": "matport.error/1", "command": args.command,
                              "error": str(exc), "kind": type(exc).__name__}))
        return 2
    except KeyboardInterrupt:
        print(f"matport {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (``matport inspect net.mat | head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
