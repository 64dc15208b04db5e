"""``matport convert NET.mat -o MODEL.pt``: write a matport checkpoint of a MATLAB network."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from matport.options import FAMILIES

if TYPE_CHECKING:
    from torch import nn

    from matport.convert.info import ModelInfo
    from matport.network.model import Network

HELP = ("convert a MATLAB network to a PyTorch checkpoint (the stock torchvision model of its "
        "family when one fits) with its class names and preprocessing")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a .mat file (v7 or v7.3) holding the network")
    p.add_argument("-o", "--output", required=True, help="the checkpoint to write (e.g. model.pt)")
    p.add_argument("--variable", help="the network's variable path when the file holds several")
    p.add_argument("--family", choices=FAMILIES, default="auto",
                   help="auto (default): the torchvision model of the family the network fits, "
                        "else matport's general graph module; graph: the general module; a "
                        "family (e.g. resnet50, squeezenet1_1): its torchvision model or fail")
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")


def run(args: argparse.Namespace) -> int:
    from matport.checkpoint import save
    from matport.network import read_network

    if os.path.exists(args.output) and not args.force:
        print(f"matport convert: error: {args.output} exists (use --force to overwrite)",
              file=sys.stderr)
        return 2
    net = read_network(args.file, args.variable)
    model, note = _convert(net, args.family)
    tmp = f"{args.output}.tmp-{os.getpid()}"
    try:
        save(model, tmp)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    info = _info(model)
    params = sum(p.numel() for p in model.parameters())
    lines = [
        f"wrote {args.output}: {note}",
        f"source:        {net.source}:{net.path} ({net.kind}, {len(net.layers)} layers)",
        info.summary(),
        f"parameters:    {params:,}",
        f"load with:     matport.checkpoint.load_checkpoint({args.output!r})",
    ]
    print("\n".join(lines))
    return 0


def _convert(net: Network, family: str) -> tuple[nn.Module, str]:
    """The module for ``net`` and a note saying which kind it is."""
    from matport.convert.api import convert_network

    model, fallback = convert_network(net, family)
    arch = _info(model).architecture
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


def _info(model: nn.Module) -> ModelInfo:
    from matport.convert.families.registry import info_of

    return info_of(model)
