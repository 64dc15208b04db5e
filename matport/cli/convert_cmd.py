"""``matport convert NET.mat -o MODEL.pt``: write a matport checkpoint of a MATLAB network."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, get_args

from matport.options import FAMILIES, CheckpointFormat

if TYPE_CHECKING:
    from torch import nn

    from matport.network.model import Network

HELP = ("convert a MATLAB network to a PyTorch checkpoint (the stock torchvision model of its "
        "family when one fits) with its class names and preprocessing")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a .mat file (v7 or v7.3) holding the network")
    p.add_argument("-o", "--out", "--output", dest="out", required=True, metavar="FILE",
                   help="the checkpoint to write: model.pt, or model.safetensors (with its "
                        "config beside it, model.config.json)")
    p.add_argument("--format", choices=get_args(CheckpointFormat),
                   help="pt or safetensors (default: from the extension of --out)")
    p.add_argument("--variable", help="the network's variable path when the file holds several")
    p.add_argument("--family", choices=FAMILIES, default="auto",
                   help="auto (default): the torchvision model of the family the network fits, "
                        "else matport's general graph module; graph: the general module; a "
                        "family (e.g. resnet50, squeezenet1_1): its torchvision model or fail")
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")


def run(args: argparse.Namespace) -> int:
    from matport.checkpoint import save
    from matport.convert.info import info_of
    from matport.network import read_network

    if os.path.exists(args.out) and not args.force:
        print(f"matport convert: error: {args.out} exists (use --force to overwrite)",
              file=sys.stderr)
        return 2
    net = read_network(args.file, args.variable)
    model, note = _convert(net, args.family)
    written = save(model, args.out, format=args.format)
    info = info_of(model)
    params = sum(p.numel() for p in model.parameters())
    lines = [
        f"wrote {', '.join(map(str, written))}: {note}",
        f"source:        {net.source}:{net.path} ({net.kind}, {len(net.layers)} layers)",
        info.summary(),
        f"parameters:    {params:,}",
        f"load with:     matport.load_checkpoint({args.out!r})",
    ]
    print("\n".join(lines))
    return 0


def _convert(net: Network, family: str) -> tuple[nn.Module, str]:
    """The module for ``net`` and a note saying which kind it is."""
    from matport.convert.api import convert_network
    from matport.convert.info import info_of

    model, fallback = convert_network(net, family)
    arch = info_of(model).architecture
    if arch["family"] == "graph":
        return model, "matport graph module" + (f" ({fallback})" if fallback else "")
    details = []
    if "stride_on" in arch:
        where = "1x1 conv (MATLAB)" if arch["stride_on"] == "conv1" else "3x3 conv"
        details.append(f"stride on the {where}")
    if "bn_eps" in arch:
        details.append(f"BatchNorm eps {arch['bn_eps']}")
    return model, f"torchvision {arch['family']}" + (
        f", MATLAB variant ({', '.join(details)})" if details else "")


