"""Writing the v7 container (MAT 5 layout): tagged data elements, one zlib stream per variable.

Values come already encoded by :mod:`matport.mat.mcos_writer`. Array data is passed to zlib as
views of column-major buffers, never element by element.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse

from matport.mat.format import (
    COMPLEX_PARTS,
    FILEWRAPPER,
    FLAG_COMPLEX,
    FLAG_LOGICAL,
    HEADER_TEXT_BYTES,
    MAX_NAME,
    MCOS_TYPE_SYSTEM,
    MI_COMPRESSED,
    MI_DOUBLE,
    MI_INT8,
    MI_INT32,
    MI_MATRIX,
    MI_UINT8,
    MI_UINT32,
    MI_UTF8,
    MI_UTF16,
    MX_CELL,
    MX_CHAR,
    MX_FUNCTION,
    MX_OBJECT,
    MX_OPAQUE,
    MX_SPARSE,
    MX_STRUCT,
    NUMERIC_TYPES,
    SUBSYSTEM_STREAM_HEAD,
)
from matport.mat.mcos_writer import (
    CanonicalEmpty,
    CharArray,
    HandleData,
    LegacyObject,
    TopObject,
    WriteError,
)
from matport.mat.values import Struct, StructArray

MAX_ELEMENT = 2**31 - 1
DEFLATE_SLICE = 1 << 24

Chunks = list[bytes | memoryview]


def write_v7(out: BinaryIO, header_text: bytes, variables: dict[str, Any],
             filewrapper: list[Any] | None, compress: bool, level: int) -> None:
    """Write a whole v7 file: header, every variable, then the subsystem (when there are
    objects), whose position goes into the header."""
    out.write(header_text + b"\0" * 8 + b"\x00\x01IM")
    for name, value in variables.items():
        _write_element(out, matrix(value, name), compress, level)
    if filewrapper is not None:
        offset = out.tell()
        _write_element(out, subsystem_element(filewrapper), compress, level)
        out.seek(HEADER_TEXT_BYTES)
        out.write(struct.pack("<Q", offset))


def subsystem_element(filewrapper: list[Any]) -> Chunks:
    """The nameless uint8 row MATLAB stores as the subsystem. Its bytes are a small MAT stream
    holding the struct ``{MCOS: FileWrapper__ object}``, then a second such stream whose
    ``MCOS`` field is empty. Built from chunks, so array data is not copied."""
    cells = np.empty((len(filewrapper), 1), dtype=object)
    cells[:, 0] = filewrapper
    tail = SUBSYSTEM_STREAM_HEAD + _join(matrix(Struct(MCOS=CanonicalEmpty()), ""))
    stream = [SUBSYSTEM_STREAM_HEAD, *matrix(Struct(MCOS=TopObject(FILEWRAPPER, cells)), ""),
              *matrix(np.frombuffer(tail, dtype=np.uint8).reshape(1, -1), "")]
    n = _size(stream)
    body = (_header(NUMERIC_TYPES["u1"][0], 0, (1, n), "")
            + [struct.pack("<II", MI_UINT8, n), *stream, b"\0" * (-n % 8)])
    return _wrap(body)


def _write_element(out: BinaryIO, chunks: Chunks, compress: bool, level: int) -> None:
    """Write one element, deflated as it goes (the tag's length is patched in afterwards)."""
    if not compress:
        for chunk in chunks:
            out.write(chunk)
        return
    start = out.tell()
    out.write(struct.pack("<II", MI_COMPRESSED, 0))
    z = zlib.compressobj(level)
    for chunk in chunks:
        view = memoryview(chunk)
        for pos in range(0, len(view), DEFLATE_SLICE):  # bounded output per call
            out.write(z.compress(view[pos: pos + DEFLATE_SLICE]))
    out.write(z.flush())
    end = out.tell()
    if end - start - 8 > MAX_ELEMENT:
        raise WriteError("a variable does not fit a v7 file (over 2 GiB compressed); "
                         "write format='v7.3'")
    out.seek(start + 4)
    out.write(struct.pack("<I", end - start - 8))
    out.seek(end)


def _join(chunks: Chunks) -> bytes:
    return b"".join(bytes(c) for c in chunks)


def _size(chunks: Chunks) -> int:
    return sum(len(c) if isinstance(c, bytes) else c.nbytes for c in chunks)


def data_element(mi_type: int, data: bytes | memoryview) -> Chunks:
    """One tagged data element (small format for 1 to 4 bytes), padded to 8 bytes."""
    n = len(data) if isinstance(data, bytes) else data.nbytes
    if 0 < n <= 4:
        return [struct.pack("<HH", mi_type, n) + bytes(data) + b"\0" * (4 - n)]
    return [struct.pack("<II", mi_type, n), data, b"\0" * (-n % 8)]


def _column_major(array: np.ndarray) -> memoryview:
    """The bytes of ``array`` in column-major order, as a view where possible."""
    flat = np.asfortranarray(array).T.reshape(-1)
    return memoryview(flat.view(np.uint8).data)


def _header(mx_class: int, flags: int, shape: tuple[int, ...], name: str, nzmax: int = 0) -> Chunks:
    if len(name) > MAX_NAME:
        raise WriteError(f"name {name!r} is longer than {MAX_NAME} characters")
    return (
        data_element(MI_UINT32, struct.pack("<II", mx_class | flags, nzmax))
        + data_element(MI_INT32, np.array(shape, dtype="<i4").tobytes())
        + data_element(MI_INT8, name.encode("ascii"))
    )


def _wrap(body: Chunks) -> Chunks:
    size = _size(body)
    if size > MAX_ELEMENT:
        raise WriteError(f"a value of {size / 2**30:.1f} GiB does not fit a v7 file "
                         "(MATLAB's limit is 2 GiB per variable); write format='v7.3'")
    return [struct.pack("<II", MI_MATRIX, size), *body]


def matrix(value: Any, name: str) -> Chunks:
    """The miMATRIX element of one encoded value."""
    if isinstance(value, CanonicalEmpty):
        return [struct.pack("<II", MI_MATRIX, 0)]
    if isinstance(value, TopObject):
        body = (data_element(MI_UINT32, struct.pack("<II", MX_OPAQUE, 0))
                + data_element(MI_INT8, name.encode("ascii"))
                + data_element(MI_INT8, MCOS_TYPE_SYSTEM.encode("ascii"))
                + data_element(MI_INT8, value.class_name.encode("ascii"))
                + matrix(value.words, ""))
        return _wrap(body)
    if isinstance(value, HandleData):
        body = _header(MX_FUNCTION, 0, (1, 1), name)
        return _wrap(body if value.raw is None else body + matrix(value.raw, ""))
    if isinstance(value, CharArray):
        return _wrap(_header(MX_CHAR, 0, value.units.shape, name) + _char_data(value.units))
    if isinstance(value, Struct | StructArray | LegacyObject):
        return _wrap(_struct_body(value, name))
    if scipy.sparse.issparse(value):
        return _wrap(_sparse_body(value, name))
    if value.dtype == object:
        body = _header(MX_CELL, 0, value.shape, name)
        for item in value.ravel(order="F"):
            body += matrix(item, "")
        return _wrap(body)
    return _wrap(_numeric_body(value, name))


def _char_data(units: np.ndarray) -> Chunks:
    if units.size == 0 or int(units.max()) < 0x80:
        return data_element(MI_UTF8, _column_major(units.astype(np.uint8)))
    return data_element(MI_UTF16, _column_major(units))


def _numeric_body(value: np.ndarray, name: str) -> Chunks:
    key = value.dtype.str[1:]
    if key in COMPLEX_PARTS:
        part = np.dtype("<" + COMPLEX_PARTS[key])
        mx_class, mi_type = NUMERIC_TYPES[COMPLEX_PARTS[key]]
        return (_header(mx_class, FLAG_COMPLEX, value.shape, name)
                + data_element(mi_type, _column_major(value.real.astype(part)))
                + data_element(mi_type, _column_major(value.imag.astype(part))))
    if key not in NUMERIC_TYPES:
        raise WriteError(f"{name or 'value'}: cannot write arrays of dtype {value.dtype}")
    mx_class, mi_type = NUMERIC_TYPES[key]
    flags = FLAG_LOGICAL if key == "b1" else 0
    return _header(mx_class, flags, value.shape, name) + data_element(mi_type, _column_major(value))


def _sparse_body(value: Any, name: str) -> Chunks:
    csc = scipy.sparse.csc_array(value)
    csc.sort_indices()
    logical = csc.dtype == np.bool_
    flags = (FLAG_LOGICAL if logical else 0) | (FLAG_COMPLEX if csc.dtype.kind == "c" else 0)
    data = csc.data
    body = (_header(MX_SPARSE, flags, csc.shape, name, nzmax=max(csc.nnz, 1))
            + data_element(MI_INT32, csc.indices.astype("<i4").tobytes())
            + data_element(MI_INT32, csc.indptr.astype("<i4").tobytes()))
    if logical:
        return body + data_element(MI_UINT8, data.astype(np.uint8).tobytes())
    body += data_element(MI_DOUBLE, data.real.astype("<f8").tobytes())
    if csc.dtype.kind == "c":
        body += data_element(MI_DOUBLE, data.imag.astype("<f8").tobytes())
    return body


def _struct_elements(value: Struct | StructArray | LegacyObject) -> tuple[
        tuple[int, ...], list[str], list[Struct]]:
    if isinstance(value, LegacyObject):
        return (1, 1), list(value.fields), [value.fields]
    if isinstance(value, Struct):
        return (1, 1), list(value), [value]
    return tuple(value.shape), list(value.fields), value.elements


def _struct_body(value: Struct | StructArray | LegacyObject, name: str) -> Chunks:
    shape, fields, elements = _struct_elements(value)
    if any(len(f) > MAX_NAME for f in fields):
        raise WriteError(f"{name or 'struct'}: a field name is longer than {MAX_NAME} characters")
    width = max((len(f) for f in fields), default=0) + 1
    names = b"".join(f.encode("ascii").ljust(width, b"\0") for f in fields)
    is_object = isinstance(value, LegacyObject)
    body = _header(MX_OBJECT if is_object else MX_STRUCT, 0, shape, name)
    if isinstance(value, LegacyObject):
        body += data_element(MI_INT8, value.class_name.encode("ascii"))
    body += data_element(MI_INT32, struct.pack("<i", width)) + data_element(MI_INT8, names)
    for element in elements:
        for field in fields:
            body += matrix(element[field], "")
    return body

