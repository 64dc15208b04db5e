"""Load and run ONNX files written by MATLAB's ``exportONNXNetwork`` (opsets 6-17) in onnxruntime.

MATLAB's exports trip the usual tools: opset-6 files carry attributes later opsets dropped, IR-3
files list every initializer as a graph input, the batch is often fixed at 1, and unsupported
layers become ``com.mathworks`` custom operators or ``Placeholder`` nodes. `load_export` smooths
the first three and refuses the last with a `VerificationError` naming the nodes. `run` feeds
a batch (one sample at a time when the batch is fixed) and can return intermediate tensors, which
`layer_tensors` maps back to MATLAB layer names: MATLAB names each layer's main node and its
output tensor after the layer, and helper nodes ``<layer>_<suffix>``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from onnx.external_data_helper import load_external_data_for_model

from matport.errors import VerificationError
from matport.verify import onnx_weights

MATLAB_PRODUCERS = (
    "MATLAB Deep Learning Toolbox Converter",
    "MATLAB Neural Network Toolbox Converter",
)
RUNNABLE_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
# producer_version "YY.R.x" -> MATLAB release name (R20YYa for R=1, R20YYb for R=2)
_RELEASE_LETTER = {"1": "a", "2": "b"}
_MIN_RUNNABLE_OPSET = 7
_LEGAL = re.compile(r"[^A-Za-z0-9_]")
CONTRACT_KEY = "matport.input_contract"  # metadata written by export_onnx: "raw" | "preprocessed"


@dataclass(eq=False)
class OnnxExport:
    """An ONNX file ready for onnxruntime, with what verification needs to know about it."""

    path: str
    #: the graph; initializers marked as kept at ``onnx_weights.IN_MEMORY`` hold no data: their
    #: values are in ``initializers`` (views of the file's bytes)
    model: onnx.ModelProto
    producer: str
    producer_version: str
    opset: int
    input_name: str
    input_shape: tuple[int | None, ...]
    output_name: str
    ends_in_softmax: bool
    initializers: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    batch_axis: int = 0  # 1 for sequence inputs, which MATLAB declares [T, N, C] like ONNX's LSTM
    #: onnxruntime's view of the initializers ``model`` keeps outside (:mod:`onnx_weights`)
    ort_values: dict[str, Any] | None = field(default=None, repr=False)
    #: onnxruntime sessions built for it, by (extra outputs, instrumented): each is built once
    sessions: dict[tuple[tuple[str, ...], bool], Any] = field(default_factory=dict, repr=False)

    @property
    def is_matlab(self) -> bool:
        return self.producer.startswith(MATLAB_PRODUCERS)

    @property
    def release(self) -> str | None:
        """MATLAB release that wrote the file (``R2019a``), from ``producer_version``."""
        parts = self.producer_version.split(".")
        if not self.is_matlab or len(parts) < 2 or parts[1] not in _RELEASE_LETTER:
            return None
        return f"R20{parts[0]}{_RELEASE_LETTER[parts[1]]}"

    @property
    def batch_fixed(self) -> bool:
        shape = self.input_shape
        return len(shape) > self.batch_axis and shape[self.batch_axis] == 1

    @property
    def sample_shape(self) -> tuple[int | None, ...]:
        """The declared input shape without the batch axis."""
        return tuple(d for i, d in enumerate(self.input_shape) if i != self.batch_axis)

    @property
    def input_contract(self) -> str:
        """``raw`` (MATLAB pixels, normalization inside the graph) or ``preprocessed``."""
        meta = {p.key: p.value for p in self.model.metadata_props}
        return meta.get(CONTRACT_KEY, "raw")


def load_export(path: str | Path, data: bytes | None = None) -> OnnxExport:
    """Read an ONNX file and prepare it for onnxruntime.

    Args:
        path: the file.
        data: its content, when the caller has read it already (it is not read again).

    Returns:
        The export.

    Raises:
        VerificationError: the file cannot be read, uses operators onnxruntime cannot run
            (``com.mathworks`` custom domain, ``Placeholder``), or has no single data input.
    """
    path = str(path)
    if data is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise VerificationError(f"{path}: cannot read as an ONNX file: {exc}") from exc
    split = onnx_weights.split_weights(data)
    model = _parse(path, split[0] if split else data)
    _refuse_unrunnable(path, model)
    opset = _default_opset(model)
    notes: list[str] = []
    initializers = None
    if split and opset >= _MIN_RUNNABLE_OPSET:
        with _bad_initializers(path):
            initializers = onnx_weights.attach_weights(model, data, split[1])
    if split and initializers is None:  # onnx reads the weights too (the converter rewrites them)
        model = _parse(path, data)
    if opset < _MIN_RUNNABLE_OPSET:
        model = _upgrade_old_opset(path, model, notes)
    _drop_initializer_inputs(model)
    graph = model.graph
    if len(graph.input) != 1:
        names = ", ".join(i.name for i in graph.input) or "none"
        raise VerificationError(f"{path}: expected one data input, found {names}")
    if not graph.output:
        raise VerificationError(f"{path}: the graph has no output")
    inp = graph.input[0]
    shape = tuple(
        d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim
    )
    last = _producer_of(graph, graph.output[0].name)
    if initializers is None:
        with _bad_initializers(path):
            initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return OnnxExport(
        path=path,
        model=model,
        producer=model.producer_name,
        producer_version=model.producer_version,
        opset=opset,
        input_name=inp.name,
        input_shape=shape,
        output_name=graph.output[0].name,
        ends_in_softmax=_ends_in_softmax(graph, last),
        initializers=initializers,
        notes=notes,
    )


@contextlib.contextmanager
def _bad_initializers(path: str) -> Iterator[None]:
    """Turn an initializer numpy cannot make (dims that do not fit its data, an unknown element
    type) into a VerificationError naming the file."""
    try:
        yield
    except (ValueError, TypeError, KeyError) as exc:
        raise VerificationError(f"{path}: an initializer cannot be read: {exc}") from exc


def _parse(path: str, data: bytes) -> onnx.ModelProto:
    """What ``onnx.load`` does after reading the file (external data read from its folder)."""
    try:
        model = onnx.load_from_string(data)
        load_external_data_for_model(model, os.path.dirname(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise VerificationError(f"{path}: cannot read as an ONNX file: {exc}") from exc
    return model


def run(
    export: OnnxExport, x: np.ndarray, tensors: Sequence[str] = (), *, instrumented: bool = False
) -> dict[str, np.ndarray]:
    """Run ``x`` through the export; return the output and the named ``tensors``, batch first.

    A batch fixed at 1, or a batch axis other than the first, is fed one sample at a time; the
    results are then concatenated (batch axis 0) or stacked on a new first axis.

    Args:
        export: the loaded export.
        x: the batch, each sample shaped like ``export.sample_shape``.
        tensors: intermediate tensors to return as well.
        instrumented: compute the graph exactly as written (no operator fusion), so that
            intermediate tensors are the layers' own outputs; the default is onnxruntime's
            fully optimized session, for checking the final outputs fast.

    Returns:
        Tensor name -> value, for the output and ``tensors``.
    """
    session = session_for(export, tensors, instrumented)
    names = [export.output_name, *[t for t in tensors if t != export.output_name]]
    x = np.ascontiguousarray(x, dtype=np.float32)
    axis = export.batch_axis
    if not export.batch_fixed and axis == 0:
        return dict(zip(names, session.run(names, {export.input_name: x}), strict=True))
    runs = [session.run(names, {export.input_name: np.expand_dims(s, axis)}) for s in x]
    join = np.concatenate if axis == 0 else np.stack
    return {n: join([r[k] for r in runs]) for k, n in enumerate(names)}


def layer_tensors(export: OnnxExport, layer_names: Iterable[str]) -> dict[str, str]:
    """Map MATLAB layer names to the ONNX tensor holding each layer's output.

    A node belongs to its `owner` layer; a layer's output is the first output of its last node.
    An input layer whose only node is the mean ``Sub`` maps to that node's output; an input
    layer with no node at all maps to the graph input.
    """
    owner_of = owners(layer_names)
    found: dict[str, str] = {}
    for node in export.model.graph.node:
        layer = owner_of(node.name)
        if layer is not None and node.output:
            found[layer] = node.output[0]
    layer = owner_of(export.input_name)
    if layer is not None and layer not in found:
        found[layer] = export.input_name
    return found


def owner(onnx_name: str, layer_names: Iterable[str]) -> str | None:
    """The MATLAB layer an ONNX node or initializer name belongs to: the longest layer name
    ``L`` with ``onnx_name == L`` or ``onnx_name.startswith(L + "_")``. Names are compared after
    replacing characters other than letters, digits and ``_`` by ``_`` (MATLAB legalizes layer
    names that way when it writes them; unverified beyond plain names)."""
    return owners(layer_names)(onnx_name)


def owners(layer_names: Iterable[str]) -> Callable[[str], str | None]:
    """`owner` for many ONNX names against the same layers: the layers are indexed once, and
    each name is looked up by its prefixes that end before a ``_``, longest first.

    Args:
        layer_names: the MATLAB layer names.

    Returns:
        ONNX name -> its layer, or None.
    """
    by_legal: dict[str, str] = {}
    for name in layer_names:  # legalizing keeps the length: the first of equal names wins
        by_legal.setdefault(_legal(name), name)

    def owner_of(onnx_name: str) -> str | None:
        end = len(onnx_name)
        while end >= 0:
            if onnx_name[:end] in by_legal:
                return by_legal[onnx_name[:end]]
            end = onnx_name.rfind("_", 0, end)
        return None

    return owner_of


@functools.lru_cache(maxsize=4096)
def _legal(name: str) -> str:
    return _LEGAL.sub("_", name)


def node_output_names(export: OnnxExport) -> list[str]:
    """Every node output of the graph, in node order."""
    return [o for node in export.model.graph.node for o in node.output if o]


def session_for(export: OnnxExport, tensors: Sequence[str] = (), instrumented: bool = False):
    """The onnxruntime session that computes the export's output and ``tensors`` (built on
    first use, then kept with the export; see `run` for ``instrumented``). Building the plain
    session of a large export takes a while: a caller may build it ahead, in another thread.

    Raises:
        VerificationError: onnxruntime cannot load the export, or no node computes a tensor.
    """
    key = (tuple(dict.fromkeys(tensors)), instrumented)
    if key not in export.sessions:
        export.sessions[key] = _session(export, key[0], instrumented)
    return export.sessions[key]


def _session(export: OnnxExport, tensors: Sequence[str], instrumented: bool):  # -> ort session
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # instrumented: the graph as written (no fusions), so intermediate tensors are the layers'
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL if instrumented
        else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    # as many threads as torch uses: parallel workers (matport migrate) share the cores out
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    if export.ort_values is None:  # the views of the file's bytes, not copied
        export.ort_values = {n: ort.OrtValue.ortvalue_from_numpy(export.initializers[n])
                             for n in onnx_weights.in_memory(export.model)}
    if export.ort_values:
        options.add_external_initializers(list(export.ort_values),
                                          list(export.ort_values.values()))
    try:
        return ort.InferenceSession(
            _serialized(export, tensors, instrumented), options,
            providers=["CPUExecutionProvider"],
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise VerificationError(f"{export.path}: onnxruntime cannot load it: {exc}") from exc


def _serialized(export: OnnxExport, tensors: Sequence[str], infer_types: bool) -> bytes:
    """The export's model with ``tensors`` as extra graph outputs, serialized (the outputs are
    added for the serialization only: no copy of the model; without the weights `load_export`
    left in the file's bytes, a few KB). Their element types come from shape inference with
    ``infer_types`` (helper tensors of a layer may be integers), else float."""
    model = export.model
    outputs = model.graph.output
    extra = [t for t in dict.fromkeys(tensors) if t not in {o.name for o in outputs}]
    known = {o for n in model.graph.node for o in n.output}
    missing = [t for t in extra if t not in known]
    if missing:
        raise VerificationError(f"no node computes tensor(s): {', '.join(missing)}")
    elem_types = _inferred_elem_types(model) if extra and infer_types else {}
    values = [helper.make_tensor_value_info(t, elem_types.get(t, onnx.TensorProto.FLOAT), None)
              for t in extra]
    kept = len(outputs)
    outputs.extend(values)
    try:
        return model.SerializeToString()
    finally:
        del outputs[kept:]


def _inferred_elem_types(model: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # old or odd graphs: fall back to float for everything
        return {}
    return {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}


def _refuse_unrunnable(path: str, model: onnx.ModelProto) -> None:
    bad = [
        n
        for n in model.graph.node
        if n.domain not in RUNNABLE_DOMAINS or n.op_type == "Placeholder"
    ]
    if not bad:
        return
    ops = sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in bad})
    nodes = ", ".join(n.name or n.op_type for n in bad)
    raise VerificationError(
        f"{path}: onnxruntime cannot run this export: it uses operator(s) {', '.join(ops)} "
        f"(nodes {nodes}); MATLAB writes these for layers that have no standard ONNX "
        "equivalent, so the file can only run in MATLAB"
    )


def _default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def _upgrade_old_opset(path: str, model: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto:
    """Opset 6 (R2018a/b) -> 8: drop BatchNormalization's stale ``consumed_inputs``, flatten
    ``Gemm``'s input (Gemm-6 wants 2-D), then let onnx's version converter do the rest."""
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            kept = [a for a in node.attribute if a.name != "consumed_inputs"]
            del node.attribute[:]
            node.attribute.extend(kept)
        if node.op_type == "Gemm":
            flat = helper.make_node(
                "Flatten", [node.input[0]], [node.name + "_matportFlatten"],
                name=node.name + "_matportFlatten", axis=1,
            )
            nodes.append(flat)
            node.input[0] = flat.output[0]
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    try:
        upgraded = onnx.version_converter.convert_version(model, 8)
    except Exception as exc:  # the converter raises its own error types
        raise VerificationError(
            f"{path}: cannot upgrade opset {_default_opset(model)} to one onnxruntime runs: {exc}"
        ) from exc
    notes.append(f"upgraded from opset {_default_opset(model)} to 8 for onnxruntime")
    return upgraded


def _drop_initializer_inputs(model: onnx.ModelProto) -> None:
    """Drop the graph inputs that are initializers (IR 3 lists every initializer as an input:
    onnxruntime holds them constant, as dropping them does). The IR version becomes at least 4,
    which allows that."""
    inits = {t.name for t in model.graph.initializer}
    data = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(data)
    model.ir_version = max(model.ir_version, 4)


def _producer_of(graph: onnx.GraphProto, tensor: str) -> onnx.NodeProto | None:
    return next((n for n in graph.node if tensor in n.output), None)


SHAPE_ONLY_OPS = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


def _ends_in_softmax(graph: onnx.GraphProto, node: onnx.NodeProto | None) -> bool:
    while node is not None and node.op_type in SHAPE_ONLY_OPS:
        node = _producer_of(graph, node.input[0])
    return node is not None and node.op_type == "Softmax"
