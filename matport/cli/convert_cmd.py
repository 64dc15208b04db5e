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

HELP = ("convert a MATLAB network to a PyTorch checkpoint (a torchvision resnet50 for ResNet-50s) "
        "with its class names and preprocessing")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a .mat file (v7 or v7.3) holding the network")
    p.add_argument("-o", "--output", required=True, help="the checkpoint to write (e.g. model.pt)")
    p.add_argument("--variable", help="the network's variable path when the file holds several")
    p.add_argument("--family", choices=FAMILIES, default="auto",
                   help="resnet50: a torchvision resnet50 or fail; graph: matport's general "
                        "module; auto (default): resnet50 when the network fits, else graph")
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
    if arch["family"] == "resnet50":
        where = "1x1 conv (MATLAB)" if arch["stride_on"] == "conv1" else "3x3 conv"
        return model, (f"torchvision resnet50, MATLAB variant (stride on the {where}, "
                       f"BatchNorm eps {arch['bn_eps']})")
    return model, "matport graph module" + (f" ({fallback})" if fallback else "")


def _info(model: nn.Module) -> ModelInfo:
    from matport.convert.info import ModelInfo

    info = getattr(model, "matport")  # noqa: B009 (set by matport, not declared on the class)
    assert isinstance(info, ModelInfo)
    return info
