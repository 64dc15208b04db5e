"""``matport inspect FILE.mat [--json]``: what MATLAB's analyzeNetwork would show."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, cast

from matport.errors import ConversionError
from matport.mat import read
from matport.network.model import Network

if TYPE_CHECKING:
    from matport.convert.info import ModelInfo

HELP = "show the variables and networks of a MATLAB file (layers, connections, inputs, classes)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a .mat file (v7 or v7.3)")
    p.add_argument("--json", action="store_true",
                   help="print the matport.inspect/1 JSON description instead of text")


def run(args: argparse.Namespace) -> int:
    from matport.network.summary import describe_file

    info = describe_file(read(args.file), judge=conversion)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(render_text(info))
    return 0


def conversion(network: Network) -> dict[str, Any]:
    """Whether ``network`` converts and with which family: it is converted as ``matport convert``
    would (``family="auto"``), and the layers that cannot be are listed with the reason.

    Args:
        network: a network of the inspected file.

    Returns:
        ``{"converts", "family", "reason", "problems": [{"layer", "class", "reason"}]}`` (the
        ``conversion`` entry of ``matport.inspect/1``).
    """
    from matport.convert.api import convert_network

    try:
        model, _ = convert_network(network)
    except ConversionError as exc:
        reason = (f"{len(exc.layers)} layer(s) cannot be converted to PyTorch" if exc.layers
                  else str(exc).splitlines()[0])
        return {"converts": False, "family": None, "reason": reason,
                "problems": [{"layer": n, "class": c, "reason": r} for n, c, r in exc.layers]}
    info = cast("ModelInfo", model.matport)
    return {"converts": True, "family": info.architecture["family"], "reason": None,
            "problems": []}


def render_text(info: dict[str, Any]) -> str:
    from matport.network.summary import KEY_PARAMS

    lines = [f"{info['file']} ({info['format']})", "", "Variables:"]
    width = max((len(v["name"]) for v in info["variables"]), default=0)
    lines += [f"  {v['name']:<{width}}  {v['description']}" for v in info["variables"]]
    if not info["networks"] and not info["errors"]:
        lines += ["", "No network in this file."]
    for net in info["networks"]:
        lines += ["", f"Network {net['path']}: {net['kind']}, {net['num_layers']} layers, "
                  f"{net['num_parameters']:,} learnable parameters"
                  + ("" if net["trained"] else " (untrained: an architecture)"),
                  "  " + _verdict(net["conversion"], net["path"] == info["chosen"])]
        rows = [("#", "name", "type", "hyper-parameters", "learnables", "params")]
        for lay in net["layers"]:
            hp = " ".join(
                f"{k}={_fmt(lay['params'][k])}" for k in KEY_PARAMS
                if lay["params"].get(k) not in (None, "")
            )
            shapes = " ".join(f"{k}[{'x'.join(map(str, s))}]" for k, s in lay["learnables"].items())
            kind = lay["type"] + ("" if lay["supported"] else " (unsupported)")
            kind += f"  <- {lay['problem']}" if lay["problem"] else ""
            rows.append((str(lay["index"]), lay["name"], kind, hp, shapes,
                         f"{lay['num_parameters']:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
        if net["kind"] not in ("SeriesNetwork", "LayerArray"):
            lines += ["", "  Connections:"]
            for c in net["connections"]:
                s = c["source"] + (f"/{c['source_port']}" if c["source_port"] else "")
                d = c["dest"] + (f"/{c['dest_port']}" if c["dest_port"] else "")
                lines.append(f"    {s} -> {d}")
        for inp in net["inputs"]:
            norm = inp["normalization"] or {"type": "none"}
            size = "x".join(map(str, inp["input_size"] or [])) or "?"
            lines += ["", f"  Input {inp['name']}: {size}, normalization {norm['type']}"]
            for key in ("mean", "std", "min", "max"):
                if norm.get(f"{key}_shape"):
                    shape = "x".join(map(str, norm[f"{key}_shape"]))
                    lines.append(f"    {key} {shape}, per channel {norm[f'{key}_per_channel']}")
        if net["class_names"]:
            names = net["class_names"]
            shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20
                                             else "")
            lines += ["", f"  Classes ({len(names)}): {shown}"]
    for err in info["errors"]:
        lines += ["", f"Network {err['path']}: could not be read: {err['message']}"]
    return "\n".join(lines)


def _verdict(conv: dict[str, Any] | None, chosen: bool) -> str:
    picked = "; matport.load takes it when no variable is named" if chosen else ""
    if conv is None:
        return "Conversion: not checked" + picked
    if conv["converts"]:
        return f"Converts: yes, family {conv['family']}{picked}"
    marked = " (marked <- below)" if conv["problems"] else ""
    return f"Converts: no: {conv['reason']}{marked}{picked}"


def _fmt(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, list) else str(v)
