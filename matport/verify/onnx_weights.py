"""An ONNX file's weights left in the file's bytes: the model is parsed without its
initializers' ``raw_data`` (kilobytes for a ResNet-50, not a 95 MB copy) and each initializer is
a read-only numpy view of the bytes, which onnxruntime takes as an external initializer (no
copy either). The protobuf wire format is walked along ``ModelProto.graph`` (field 7) ->
``GraphProto.initializer`` (5) -> ``TensorProto.raw_data`` (9); everything else is copied as it
is, and anything unexpected leaves the file to onnx's own parser.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import onnx
from onnx import helper

#: the location an initializer of `load_export`'s model has when its data is a view of the file
IN_MEMORY = "matport:in-memory"
#: smaller initializers go back into the model: onnxruntime's shape inference reads the values
#: of shape-like inputs (Reshape's shape, Split's sizes, Resize's scales) from the graph
MIN_KEPT = 1024
_PATH = (7, 5)  # ModelProto.graph, GraphProto.initializer
_RAW_DATA = 9
_LEN = 2
_PLAIN = frozenset({  # element types whose raw_data is the numpy array's bytes (little-endian)
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
    onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
    onnx.TensorProto.INT64, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
    onnx.TensorProto.UINT32, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL,
})

Span = tuple[int, int]  # offset and size of an initializer's raw_data in the file


def split_weights(data: bytes) -> tuple[bytes, list[Span | None]] | None:
    """The model ``data`` holds, without its initializers' raw data, and where each
    initializer's raw data lies in ``data`` (None: stored otherwise).

    Args:
        data: an ONNX file's content.

    Returns:
        ``(model bytes, spans)``, or None when ``data`` is not a plain protobuf message on a
        little-endian machine (onnx's parser then judges it).
    """
    if sys.byteorder != "little":
        return None
    spans: list[Span | None] = []
    try:
        return _copy(memoryview(data), 0, len(data), 0, spans), spans
    except (ValueError, IndexError):
        return None


def attach_weights(model: onnx.ModelProto, data: bytes,
                   spans: list[Span | None]) -> dict[str, np.ndarray] | None:
    """The initializers of ``model`` (parsed from `split_weights`' bytes), in graph order:
    views of ``data`` for plain numeric ones of at least :data:`MIN_KEPT` bytes, whose tensors
    in ``model`` are then marked as kept at :data:`IN_MEMORY`; the raw data of others is put
    back in ``model`` and read by onnx.

    Args:
        model: the model without raw data.
        data: the file's content.
        spans: `split_weights`' spans.

    Returns:
        Initializer name -> array; None (``model`` unchanged) when ``spans`` do not match its
        initializers.
    """
    from onnx import numpy_helper

    inits = model.graph.initializer
    if len(inits) != len(spans):
        return None
    arrays: dict[str, np.ndarray] = {}
    for t, span in zip(inits, spans, strict=True):
        if span is not None:
            offset, size = span
            count = math.prod(t.dims)
            if size >= MIN_KEPT and t.data_type in _PLAIN and not t.external_data:
                dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
                if count * dtype.itemsize == size:
                    arrays[t.name] = np.frombuffer(data, dtype, count, offset).reshape(
                        tuple(t.dims))
                    t.data_location = onnx.TensorProto.EXTERNAL
                    t.external_data.add(key="location", value=IN_MEMORY)
                    continue
            t.raw_data = data[offset:offset + size]
        arrays[t.name] = numpy_helper.to_array(t)
    return arrays


def in_memory(model: onnx.ModelProto) -> list[str]:
    """The initializers of ``model`` whose data `attach_weights` left in the file's bytes.

    Args:
        model: a model `load_export` made.

    Returns:
        Their names.
    """
    return [t.name for t in model.graph.initializer
            if any(e.key == "location" and e.value == IN_MEMORY for e in t.external_data)]


def _copy(buf: memoryview, start: int, end: int, depth: int, spans: list[Span | None]) -> bytes:
    """The message ``buf[start:end]`` (at ``depth`` along ``_PATH``) without raw data."""
    parts: list[bytes | memoryview] = []
    i = start
    while i < end:
        tag = i
        key, i = _varint(buf, i, end)
        head = i
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i, end)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == _LEN:
            size, body = _varint(buf, i, end)
            i = body + size
            if i > end:
                raise ValueError("a field runs past its message")
            if depth < len(_PATH) and field == _PATH[depth]:
                if depth == len(_PATH) - 1:
                    spans.append(None)
                inner = _copy(buf, body, i, depth + 1, spans)
                parts += [buf[tag:head], _encode(len(inner)), inner]
                continue
            if depth == len(_PATH) and field == _RAW_DATA:
                spans[-1] = (body, size)
                continue
        else:  # groups: not in ONNX
            raise ValueError(f"wire type {wire}")
        if i > end:
            raise ValueError("a field runs past its message")
        parts.append(buf[tag:i])
    return b"".join(parts)


def _varint(buf: memoryview, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 64:
        if i >= end:
            raise ValueError("a varint runs past its message")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
    raise ValueError("a varint longer than 10 bytes")


def _encode(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
