"""Benchmark (issue 14, generic path): ``matport.load`` against ``matport.read``, converted models
against hand-written torch modules, compiled models against onnxruntime.

Every figure is a ratio against a baseline measured in the same run, on the same file,
interleaved (A B A B ...), the median of ``--repeat`` rounds:
- load: ``matport.load`` / ``matport.read`` of the same file (corpus CNNs, when the corpus is
  beside the project, and a larger synthetic CNN written by matport's writer, v7 and v7.3);
  the conversion alone (``matport.load`` of the network already read) / ``matport.read``; the
  floor, what the least conversion could cost, as (``matport.read`` + floor) / ``matport.read``:
  the hand-written ``nn.Sequential`` equivalent (below; chains of stock layers only) constructed
  on the meta device and given tensors already made by ``load_state_dict(assign=True)``; and
  the first call in a fresh process (torch imported, matport's own imports and first-use work
  included) against the best warm call after it, and the same in a process that touched and
  freed memory first (``baselines.first_call``: this VM's hypervisor charges for memory touched
  first);
- inference: the converted model / a hand-written ``nn.Sequential`` of stock layers holding the
  same weights, batch 1, one thread (per-call overhead shows there);
- compiled: ``torch.compile(model, fullgraph=True)`` (with ``model.matport.preprocess``, as
  MATLAB's export normalizes inside its graph) / onnxruntime on MATLAB's own ONNX export
  (corpus pairs) or, for the recurrent corpus networks, which come without one, on a MATLAB-style
  export written by ``matport.synth.onnx_export`` (``SEQ_STEPS`` time steps), batch 1, one
  thread, under ``torch.inference_mode``.
Run: ``python scripts/bench_generic.py [--repeat N] [--markdown BENCHMARKS.md] [--no-compile]
[--load-only]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from baselines import first_call, paired, pretouch_mb
from bench_read import publish
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
CNNS = [  # (file, variable)
    ("ccnmaastricht__Object_recognition/net.mat", None),
    ("JaumeSanCol__Computer_Vision-RAG_for_recycling/CV__ModeloReciclarIA_Entrenado.mat", None),
    ("Nisitka__AllMatLab/newNet.mat", None),
    ("georgeb20__georgeb20/squeezenet.mat", None),
    ("Fuma28__speech_commands/trainedNet.mat", None),
    ("spectrum-sensing__cnn-spectrum-sensing/trainedNet.mat", None),
    ("TomBennett2202__NeuroOrganoidAnalysis/trainedNetwork.mat", None),
    ("HarkiratG__Neural-Net-Face-Recognition/convnet.mat", None),
    ("igreen1__digit_learning/trainedNet.mat", "trainedNet"),
]
RNNS = ["AgoroAkorede__LSTM/net.mat", "AgoroAkorede__LSTM/lstm_ph_model.mat",
        "AgoroAkorede__LSTM/gru_ph_model.mat"]
ONNX_PAIRS = [
    ("ccnmaastricht__Object_recognition/net.mat", "ccnmaastricht__Object_recognition/net.onnx"),
    ("JaumeSanCol__Computer_Vision-RAG_for_recycling/CV__ModeloReciclarIA_Entrenado.mat",
     "JaumeSanCol__Computer_Vision-RAG_for_recycling/CV__cv_reciclaria.onnx"),
]
SEQ_STEPS = 50


def synthetic_cnn() -> Any:
    """A VGG-like SeriesNetwork: 8 conv/BN/ReLU blocks (32 to 256 channels), 3 max pools, two
    fully connected layers (6.5 M parameters)."""
    from matport.synth.networks import batch_norm, chain, conv, fc, image_input, simple

    layers = [image_input("input", (64, 64, 3))]
    cin, size = 3, 64
    for i, (cout, pool) in enumerate([(32, False), (64, True), (128, False), (128, True),
                                      (256, False), (256, True), (256, False), (256, False)]):
        layers += [conv(f"conv{i}", (3, 3), cin, cout, PaddingSize=(1, 1, 1, 1)),
                   batch_norm(f"bn{i}", cout), simple("ReLULayer", f"relu{i}")]
        if pool:
            layers.append(simple("MaxPooling2DLayer", f"pool{i}", PoolSize=(2, 2),
                                 Stride=(2, 2), PaddingSize=(0, 0, 0, 0)))
            size //= 2
        cin = cout
    layers += [fc("fc1", (size, size, cin), 256), simple("ReLULayer", "relu_fc"),
               fc("fc2", 256, 10), simple("SoftmaxLayer", "softmax")]
    return chain(*layers)


class _SequenceOutput(nn.Module):
    """A stock ``nn.LSTM`` / ``nn.GRU`` holding the weights of ``rnn`` (matport's stand-in),
    returning its output sequence (zero initial state)."""

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        stock = nn.LSTM if rnn.mode == "LSTM" else nn.GRU
        self.rnn = stock(rnn.input_size, rnn.hidden_size, batch_first=True,
                         bidirectional=rnn.bidirectional)
        self.rnn.load_state_dict(rnn.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def hand_written(model: Any) -> nn.Module | None:
    """The converted chain as an ``nn.Sequential`` of stock layers sharing its weights (None
    when the model is not a chain of layers with a stock equivalent)."""
    from matport.convert.layers.conv import FullyConnected
    from matport.convert.layers.recurrent import _Recurrent

    class Layers(torch.fx.Tracer):
        def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
            return True

    nodes = list(Layers().trace(model).nodes)  # placeholders, one call per layer, output
    calls = [n for n in nodes if n.op not in ("placeholder", "output")]
    layers: list[nn.Module] = []
    for node, previous in zip(calls, [nodes[0], *calls], strict=False):
        if node.op != "call_module" or node.args != (previous,) or node.kwargs:
            return None
        m = model.get_submodule(str(node.target))
        if isinstance(m, (nn.Identity, nn.Dropout)):
            continue
        if isinstance(m, FullyConnected):
            linear = nn.Linear(m.in_features, m.out_features)
            linear.weight, linear.bias = m.weight, m.bias
            layers += [nn.Flatten(), linear]
        elif isinstance(m, _Recurrent):
            zero = not m.initial_hidden.any() and (m.initial_cell is None
                                                    or not m.initial_cell.any())
            if not (zero and m.return_sequence):
                return None
            layers.append(_SequenceOutput(m.rnn))
        elif type(m).__module__.startswith("torch.nn"):
            layers.append(m)
        else:
            return None
    return nn.Sequential(*layers).eval()


def meta_rebuild(module: nn.Module) -> Callable[[], nn.Module]:
    """A function constructing ``module`` again on the meta device, each layer from its
    constructor's arguments (read back from the attributes torch.nn keeps under their names),
    and assigning it ``module``'s tensors (made once, here): the least a conversion does."""
    import inspect

    recipes = []
    for m in module.children():
        kinds = inspect.signature(type(m).__init__).parameters
        args = {k: getattr(m, k) is not None if k == "bias" else getattr(m, k)
                for k in kinds if k not in ("self", "device", "dtype") and hasattr(m, k)}
        recipes.append((type(m), args))
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def build() -> nn.Module:
        with torch.device("meta"):
            rebuilt = nn.Sequential(*[kind(**args) for kind, args in recipes])
        rebuilt.load_state_dict(state, assign=True)
        return rebuilt.eval()

    built = build()
    if repr(built) != repr(module) or built.state_dict().keys() != state.keys():
        raise AssertionError(f"the rebuilt module differs:\n{built}\n{module}")
    return build


def example_input(model: Any) -> torch.Tensor:
    size = model.matport.input_size
    if model.matport.layout == "NCHW":
        return torch.randn(1, size[2], size[0], size[1])
    if model.matport.layout == "NTC":
        return torch.randn(1, SEQ_STEPS, *size)
    return torch.randn(1, *size)


# label, read s, load / read, conversion / read, (read + floor) / read (None: no hand-written
# equivalent), first - warm call s of load, the same with memory touched first
# (baselines.first_call), first - warm call s of read
LoadRow = tuple[str, float, float, float, float | None, float, float, float]


def load_rows(repeat: int, tmp: Path) -> list[LoadRow]:
    import matport
    from matport.network import read_network

    rows = []
    files = [(f"corpus: {f.split('/')[0].split('__')[0]}/{f.split('/')[-1]}", CORPUS / f, v)
             for f, v in CNNS if (CORPUS / f).exists()]
    net = synthetic_cnn()
    for fmt in ("v7", "v7.3"):
        from matport.network.encode import write_network

        path = tmp / f"cnn_{fmt}.mat"
        write_network(path, net, format=fmt)  # type: ignore[arg-type]
        files.append((f"synthetic VGG-like CNN, {fmt} ({path.stat().st_size / 1e6:.0f} MB)",
                      path, None))
    for label, path, variable in files:
        t_load, t_read, ratio = paired(lambda p=path, v=variable: matport.load(p, v),
                                       lambda p=path: matport.read(p), repeat)
        network = read_network(path, variable)
        _, _, conversion = paired(lambda n=network: matport.load(n),
                                  lambda p=path: matport.read(p), repeat)
        hand = hand_written(matport.load(path, variable))
        floor = None
        if hand is not None:
            _, _, floor_ratio = paired(meta_rebuild(hand), lambda p=path: matport.read(p),
                                       repeat)
            floor = 1 + floor_ratio
        first, read_first = first_call("load", path, variable), first_call("read", path)
        touched = first_call("load", path, variable, pretouch_mb=pretouch_mb(path))
        rows.append((label, t_read, ratio, conversion, floor,
                     first["first_s"] - first["warm_s"],
                     touched["first_s"] - touched["warm_s"],
                     read_first["first_s"] - read_first["warm_s"]))
    return rows


def inference_rows(repeat: int) -> list[tuple[str, float, float]]:
    rows = []
    for f in [f for f, _ in CNNS] + RNNS:
        if (CORPUS / f).exists():
            row = _inference_row(f, repeat)
            if row is not None:
                rows.append(row)
    return rows


def _inference_row(f: str, repeat: int) -> tuple[str, float, float] | None:
    import matport

    model = matport.load(CORPUS / f, dict(CNNS).get(f))
    hand = hand_written(model)
    if hand is None:
        return None
    x = example_input(model)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), hand(x))
        calls = max(1, int(0.05 / max(_once(lambda: hand(x)), 1e-6)))
        _, t_hand, ratio = paired(lambda: model(x), lambda: hand(x), repeat, calls)
    return f.split("/")[0].split("__")[0] + "/" + f.split("/")[-1], t_hand, ratio


def _once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compiled_rows(repeat: int, tmp: Path) -> list[tuple[str, float, float, float, float]]:
    from matport.network import read_network
    from matport.synth.onnx_export import export

    pairs = [(mat, CORPUS / onnx_file, mat.split("__")[0]) for mat, onnx_file in ONNX_PAIRS
             if (CORPUS / mat).exists()]
    for i, mat in enumerate(f for f in RNNS if (CORPUS / f).exists()):
        onnx_file = export(read_network(CORPUS / mat), tmp / f"rnn{i}.onnx", SEQ_STEPS)
        pairs.append((mat, onnx_file, f"{mat.split('__')[0]}/{mat.split('/')[-1]} "
                                      "(MATLAB-style export by matport.synth)"))
    return [_compiled_row(mat, onnx_file, label, repeat) for mat, onnx_file, label in pairs]


def _compiled_row(mat: str, onnx_file: Path, label: str,
                  repeat: int) -> tuple[str, float, float, float, float]:
    import onnxruntime as ort

    import matport

    model = matport.load(CORPUS / mat, output="probabilities")
    raw = example_input(model)
    if model.matport.layout == "NCHW":
        raw.uniform_(0, 255)  # MATLAB's export normalizes inside the graph
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    onnx_raw = raw.transpose(0, 1) if model.matport.layout == "NTC" else raw  # ONNX: T x N x C
    feed = {session.get_inputs()[0].name: onnx_raw.contiguous().numpy()}
    compiled = torch.compile(model, fullgraph=True)
    preprocess = model.matport.preprocess
    with torch.inference_mode():
        compile_s = _once(lambda: compiled(preprocess(raw)))
        np.testing.assert_allclose(compiled(preprocess(raw)).numpy().ravel(),
                                   session.run(None, feed)[0].ravel(), atol=1e-4)
        calls = max(1, int(0.05 / max(_once(lambda: compiled(preprocess(raw))), 1e-6)))
        _, t_ort, ratio = paired(lambda: compiled(preprocess(raw)),
                                 lambda: session.run(None, feed), repeat, calls)
        _, _, eager = paired(lambda: model(preprocess(raw)), lambda: session.run(None, feed),
                             repeat, calls)
    return label, t_ort, ratio, eager, compile_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--markdown", type=Path, help="replace this script's section in the file")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile vs ORT")
    ap.add_argument("--load-only", action="store_true", help="only the load table")
    args = ap.parse_args()
    if args.load_only and args.markdown:
        ap.error("--markdown writes the whole section: run without --load-only")
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        loads = load_rows(args.repeat, Path(tmp))
        infer = [] if args.load_only else inference_rows(args.repeat)
        compiled = ([] if args.no_compile or args.load_only
                    else compiled_rows(args.repeat, Path(tmp)))
    load_after = os.getloadavg()[0]
    lines = [
        "## Generic `matport.load`: loading, inference, compile (`scripts/bench_generic.py`)",
        "",
        f"Medians of {args.repeat} interleaved rounds; torch with 1 thread; load average "
        f"{load_before:.1f} before / {load_after:.1f} after the runs (2 cores shared).",
        "",
        "| file | `matport.read` s | `matport.load` / `matport.read` (target <= 1.1) "
        "| conversion of the read network / `matport.read` | floor: (`matport.read` + "
        "hand-written module on meta, assigned) / `matport.read` | first call - warm call s "
        "(target <= 0.2) | the same, memory touched first s | the same for `matport.read` s |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {label} | {t:.4f} | {r:.2f} | {c:.2f} | {'-' if fl is None else f'{fl:.2f}'} "
          f"| {f:.3f} | {ft:.3f} | {fr:.3f} |" for label, t, r, c, fl, f, ft, fr in loads],
    ]
    if infer:
        lines += [
            "",
            "| inference, batch 1 | hand-written `nn.Sequential` s | converted / hand-written "
            "(target <= 1.05) |",
            "|---|---|---|",
            *[f"| {label} | {t * 1e3:.3f} ms | {r:.3f} |" for label, t, r in infer],
        ]
    if compiled:
        lines += [
            "",
            "| ONNX export, batch 1 | onnxruntime s | `torch.compile(fullgraph=True)` / "
            "onnxruntime | eager / onnxruntime | compile s |",
            "|---|---|---|---|---|",
            *[f"| {label} | {t * 1e3:.3f} ms | {r:.3f} | {e:.3f} | {c:.1f} |"
              for label, t, r, e, c in compiled],
        ]
    publish(lines, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
