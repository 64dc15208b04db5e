"""Writing the v7.3 container: an HDF5 file behind a 512-byte MATLAB user block.

Values come already encoded by :mod:`matport.mat.mcos_writer`. HDF5 sees every array transposed
(dimensions reversed), so a column-major MATLAB array is stored as its C-ordered transpose.
Cell elements, struct-array fields and the ``FileWrapper__`` cells live under ``/#refs#``.

Readers recover the save order of variables from the file addresses of their object headers, so
every top-level node is created (in order) before any content is written: later allocations
may reuse freed space, but never ahead of a variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import scipy.sparse

from matport.mat.format import (
    DECODE_FUNCTION,
    DECODE_LEGACY,
    DECODE_OBJECT,
    FILEWRAPPER,
    MATLAB_CLASS,
    USER_BLOCK,
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

REF_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
COMPRESS_ABOVE = 4096  # bytes; MATLAB leaves small datasets unfiltered
MAX_FIELDS_ATTRIBUTE = 60_000  # bytes of field names an object header can hold
PLACEHOLDER = "#placeholder#"


def user_block(header_text: bytes) -> bytes:
    """The 512 bytes before the HDF5 data: text, subsystem offset (unused), version 2, 'IM'."""
    return (header_text + b"\0" * 8 + b"\x00\x02IM").ljust(USER_BLOCK, b"\0")


def write_v73(path: str, header_text: bytes, variables: dict[str, Any],
              filewrapper: list[Any] | None, compress: bool, level: int) -> None:
    """Write a whole v7.3 file at ``path``."""
    with h5py.File(path, "w", userblock_size=USER_BLOCK, libver="earliest") as f:
        writer = _Writer(f, compress, level)
        top = dict(variables)
        if filewrapper is not None:
            cells = np.empty((len(filewrapper), 1), dtype=object)
            cells[:, 0] = filewrapper
            top["#subsystem#"] = _Subsystem(cells)
        # Grow the root group's name heap once, up front; a last placeholder name keeps the
        # heap from shrinking (and later moving) while the real names take the freed places.
        reserved = [*top, "#refs#"]
        for name in [*reserved, PLACEHOLDER]:
            f[name] = h5py.SoftLink("/")
        for name in reserved:
            del f[name]
        nodes = [(writer.create(f, name, value), value) for name, value in top.items()]
        for node, value in nodes:
            writer.fill(node, value)
        del f[PLACEHOLDER]
    with open(path, "r+b") as raw:
        raw.write(user_block(header_text))


@dataclass(eq=False)
class _Subsystem:
    """The ``/#subsystem#`` group: a bare group holding the ``FileWrapper__`` dataset ``MCOS``."""

    cells: np.ndarray


def ref_name(index: int) -> str:
    """MATLAB's names for ``/#refs#`` members: base 62, least significant digit first."""
    digits = REF_ALPHABET[index % 62]
    index //= 62
    while index:
        digits += REF_ALPHABET[index % 62]
        index //= 62
    return digits


def _attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    for key, val in attrs.items():
        if isinstance(val, str):
            obj.attrs[key] = np.bytes_(val)
        elif key == "MATLAB_empty":
            obj.attrs[key] = np.uint8(val)
        elif key == "MATLAB_sparse":
            obj.attrs[key] = np.uint64(val)
        else:
            obj.attrs[key] = np.int32(val)


def _struct_parts(value: Struct | StructArray | LegacyObject | HandleData | TopObject) -> tuple[
        tuple[int, ...], list[str], list[Struct], dict[str, Any]]:
    """Shape, field names, elements and attributes of anything stored as a struct group."""
    if isinstance(value, TopObject):  # an enumeration variable: its struct, named by class
        fields = value.words if isinstance(value.words, Struct) else Struct()
        return (1, 1), list(fields), [fields], {
            "MATLAB_class": value.class_name, "MATLAB_object_decode": DECODE_OBJECT}
    if isinstance(value, HandleData):
        raw = value.raw if isinstance(value.raw, Struct) else Struct()
        return (1, 1), list(raw), [raw], {
            "MATLAB_class": "function_handle", "MATLAB_object_decode": DECODE_FUNCTION}
    if isinstance(value, LegacyObject):
        return (1, 1), list(value.fields), [value.fields], {
            "MATLAB_class": value.class_name, "MATLAB_object_decode": DECODE_LEGACY}
    if isinstance(value, Struct):
        return (1, 1), list(value), [value], {"MATLAB_class": "struct"}
    return tuple(value.shape), list(value.fields), value.elements, {"MATLAB_class": "struct"}


class _Writer:
    def __init__(self, f: h5py.File, compress: bool, level: int) -> None:
        self._file = f
        self._compress = compress
        self._level = level
        self._refs: h5py.Group | None = None
        self._nrefs = 0

    def _ref_name(self) -> tuple[h5py.Group, str]:
        if self._refs is None:  # MATLAB's first member is always a canonical empty
            self._refs = self._file.create_group("#refs#")
            self._empty(self._refs, ref_name(0), (0, 0), "canonical empty")
            self._nrefs = 1
        self._nrefs += 1
        return self._refs, ref_name(self._nrefs - 1)

    def _ref(self, value: Any) -> h5py.Reference:
        """Store ``value`` under ``/#refs#`` and return a reference to it."""
        refs, name = self._ref_name()
        if isinstance(value, CanonicalEmpty):
            self._nrefs -= 1
            return refs[ref_name(0)].ref
        node = self.create(refs, name, value)
        self.fill(node, value)
        node.attrs["H5PATH"] = np.bytes_(f"/#refs#/{name}")
        return node.ref

    # ---- creating nodes (object headers) -------------------------------------------------------

    def create(self, parent: h5py.Group, name: str, value: Any) -> h5py.HLObject:
        """Create ``parent[name]`` for one encoded value, without its contents."""
        if isinstance(value, TopObject):
            if isinstance(value.words, Struct):
                return self._struct(parent, name, value)
            return self._dataset(parent, name, value.words, {
                "MATLAB_class": value.class_name, "MATLAB_object_decode": DECODE_OBJECT})
        if isinstance(value, CanonicalEmpty):
            return self._empty(parent, name, (0, 0), "canonical empty")
        if isinstance(value, CharArray):
            if value.units.size == 0:
                return self._empty(parent, name, value.units.shape, "char")
            return self._dataset(parent, name, value.units,
                                 {"MATLAB_class": "char", "MATLAB_int_decode": 2})
        if isinstance(value, Struct | StructArray | LegacyObject | HandleData):
            return self._struct(parent, name, value)
        if isinstance(value, _Subsystem):
            return parent.create_group(name)
        if scipy.sparse.issparse(value):
            return self._sparse(parent, name, value)
        if value.dtype == object:
            if value.size == 0:
                return self._empty(parent, name, value.shape, "cell")
            return self._refs_dataset(parent, name, value.shape, {"MATLAB_class": "cell"})
        key = value.dtype.str[1:]
        if key not in MATLAB_CLASS:
            raise WriteError(f"{name}: cannot write arrays of dtype {value.dtype}")
        if value.size == 0:
            return self._empty(parent, name, value.shape, MATLAB_CLASS[key])
        attrs: dict[str, Any] = {"MATLAB_class": MATLAB_CLASS[key]}
        if key == "b1":
            attrs["MATLAB_int_decode"] = 1
        return self._dataset(parent, name, _stored(value), attrs)

    def _dataset(self, parent: h5py.Group, name: str, value: np.ndarray,
                 attrs: dict[str, Any]) -> h5py.Dataset:
        shape = value.shape[::-1]
        filters: dict[str, Any] = {}
        if self._compress and value.nbytes > COMPRESS_ABOVE:
            filters = {"compression": "gzip", "compression_opts": self._level, "chunks": True}
        node = parent.create_dataset(name, shape=shape, dtype=value.dtype, **filters)
        _attrs(node, attrs)
        return node

    def _refs_dataset(self, parent: h5py.Group, name: str, shape: tuple[int, ...],
                      attrs: dict[str, Any]) -> h5py.Dataset:
        node = parent.create_dataset(name, shape=shape[::-1], dtype=h5py.ref_dtype)
        _attrs(node, attrs)
        return node

    def _empty(self, parent: h5py.Group, name: str, shape: tuple[int, ...],
               matlab_class: str) -> h5py.Dataset:
        node = parent.create_dataset(name, data=np.array(shape, dtype=np.uint64))
        _attrs(node, {"MATLAB_class": matlab_class, "MATLAB_empty": 1})
        return node

    def _struct(self, parent: h5py.Group, name: str,
                value: Struct | StructArray | LegacyObject | HandleData | TopObject,
                ) -> h5py.HLObject:
        shape, fields, elements, attrs = _struct_parts(value)
        names = self._field_names(fields)
        if not fields or not elements:
            node = self._empty(parent, name, shape, attrs["MATLAB_class"])
            if fields:
                node.attrs["MATLAB_fields"] = names
            return node
        group = parent.create_group(name)
        _attrs(group, attrs)
        if len(fields) > 1 or shape != (1, 1):  # MATLAB names a lone field by its member only
            group.attrs["MATLAB_fields"] = names
        return group

    def _sparse(self, parent: h5py.Group, name: str, value: Any) -> h5py.Group:
        group = parent.create_group(name)
        logical = value.dtype == np.bool_
        attrs: dict[str, Any] = {"MATLAB_class": "logical" if logical else "double"}
        if logical:
            attrs["MATLAB_int_decode"] = 1
        attrs["MATLAB_sparse"] = value.shape[0]
        _attrs(group, attrs)
        return group

    def _field_names(self, fields: list[str]) -> np.ndarray | h5py.Reference:
        """The ``MATLAB_fields`` attribute; when too long for an object header, as MATLAB does,
        a reference to a dataset of the names under ``/#refs#``."""
        names = np.empty(len(fields), dtype=h5py.vlen_dtype(np.dtype("S1")))
        for i, field in enumerate(fields):
            names[i] = np.frombuffer(field.encode("ascii"), dtype="S1")
        if sum(len(f) + 16 for f in fields) <= MAX_FIELDS_ATTRIBUTE:
            return names
        refs, name = self._ref_name()
        return refs.create_dataset(name, data=names).ref

    # ---- filling nodes -------------------------------------------------------------------------

    def fill(self, node: h5py.HLObject, value: Any) -> None:
        """Write the contents of a node made by :meth:`create`."""
        if isinstance(value, TopObject):
            if isinstance(value.words, Struct):
                self._fill_struct(node, value)
            else:
                node[...] = _stored(value.words).T
        elif isinstance(value, CharArray) and value.units.size:
            node[...] = np.asfortranarray(value.units).T
        elif isinstance(value, Struct | StructArray | LegacyObject | HandleData):
            self._fill_struct(node, value)
        elif isinstance(value, _Subsystem):
            mcos = self._refs_dataset(node, "MCOS", value.cells.shape, {
                "MATLAB_class": FILEWRAPPER, "MATLAB_object_decode": DECODE_OBJECT})
            self._fill_refs(mcos, value.cells)
        elif scipy.sparse.issparse(value):
            self._fill_sparse(node, value)
        elif isinstance(value, np.ndarray) and value.size:
            if value.dtype == object:
                self._fill_refs(node, value)
            else:
                node[...] = np.asfortranarray(_stored(value)).T

    def _fill_refs(self, node: h5py.Dataset, cells: np.ndarray) -> None:
        refs = np.empty(cells.size, dtype=h5py.ref_dtype)
        refs[:] = [self._ref(item) for item in cells.ravel(order="F")]
        node[...] = refs.reshape(cells.shape, order="F").T

    def _fill_struct(self, node: h5py.HLObject,
                     value: Struct | StructArray | LegacyObject | HandleData | TopObject,
                     ) -> None:
        shape, fields, elements, _ = _struct_parts(value)
        if not isinstance(node, h5py.Group):
            return
        if shape == (1, 1):
            for field in fields:
                child = self.create(node, field, elements[0][field])
                self.fill(child, elements[0][field])
            return
        for field in fields:
            refs = np.empty(len(elements), dtype=h5py.ref_dtype)
            refs[:] = [self._ref(e[field]) for e in elements]
            node.create_dataset(field, data=refs.reshape(shape, order="F").T)

    def _fill_sparse(self, group: h5py.Group, value: Any) -> None:
        csc = scipy.sparse.csc_array(value)
        csc.sort_indices()
        if csc.nnz:
            group.create_dataset("data", data=_stored(csc.data.reshape(1, -1)).ravel())
            group.create_dataset("ir", data=csc.indices.astype(np.uint64))
        group.create_dataset("jc", data=csc.indptr.astype(np.uint64))


def _stored(value: np.ndarray) -> np.ndarray:
    """``value`` with the element type HDF5 stores: logical as uint8, complex as (real, imag)."""
    if value.dtype == np.bool_:
        return value.view(np.uint8)
    if value.dtype.kind == "c":
        part = value.real.dtype
        out = np.empty(value.shape, dtype=[("real", part), ("imag", part)], order="F")
        out["real"] = value.real
        out["imag"] = value.imag
        return out
    return value
