"""The v7.3 container: a 512-byte MATLAB user block in front of an HDF5 file.

Values come out exactly as :mod:`matport.mat.v5` gives them, so that the shared
:class:`~matport.mat.mcos.Subsystem` resolves both alike. h5py shows every dataset transposed
(dims reversed); cells and struct arrays are datasets of HDF5 references into ``/#refs#``.
Every dataset's declared size is checked against the file before it is read, references are
followed with cycle detection, and nesting depth is limited.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import scipy.sparse

from matport.errors import MatFileError
from matport.mat.raw import MAX_DEPTH, ObjectRef
from matport.mat.v5 import MAX_INFLATE_RATIO
from matport.mat.values import FunctionHandle, MatObject, Struct, StructArray

USER_BLOCK = 512
TEXT_BYTES = 116  # the header text; the rest of the user block holds version and endian marks
NUMERIC = {
    "double": "f8", "single": "f4", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
    "int32": "i4", "uint32": "u4", "int64": "i8", "uint64": "u8", "logical": "?",
}
# MATLAB_object_decode: 1 function handle, 2 old-style class object, 3 class object (MCOS etc.)
DECODE_FUNCTION, DECODE_LEGACY, DECODE_OBJECT = 1, 2, 3
SKIPPED = ("#refs#", "#subsystem#")
# deflate, and the built-in shuffle and checksum filters; any other (szip, n-bit, scale-offset, a
# plugin loaded from HDF5_PLUGIN_PATH) is refused
ALLOWED_FILTERS = (h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32)


@dataclass
class V73Contents:
    header: str
    variables: dict[str, Any]
    subsystem: list[Any] | None


def parse(path: str) -> V73Contents:
    """Read every variable of a v7.3 file as raw values (object references not yet resolved)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            block = fh.read(USER_BLOCK)
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise MatFileError(path, f"not a readable HDF5 (v7.3) file ({exc})") from None
    text = block[:TEXT_BYTES].split(b"\0", 1)[0] if block.startswith(b"MATLAB") else b""
    header = text.decode("latin-1").strip()
    with f:
        reader = _Reader(f, path, MAX_INFLATE_RATIO * size + 2**20)
        try:
            variables = {_text(name): reader.top(name) for name in reader.variable_names()}
            cells = reader.subsystem()
        except MatFileError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise MatFileError(path, f"corrupt HDF5 data ({exc})", reader.where()) from None
    subsystem = None
    if cells is not None:
        if not isinstance(cells, np.ndarray) or cells.dtype != object:
            raise MatFileError(path, "FileWrapper__ payload is not a cell array",
                               "/#subsystem#/MCOS")
        subsystem = list(cells.ravel(order="F"))
    return V73Contents(header, variables, subsystem)


class _Reader:
    """Walks the file through h5py's low-level object identifiers (GroupID, DatasetID): its
    Group and Dataset wrappers cost more per object than reading most of MATLAB's small
    datasets does."""

    def __init__(self, f: h5py.File, path: str, limit: int) -> None:
        self.f = f
        self.path = path
        self.limit = limit  # largest number of bytes one dataset may inflate to
        self.cache: dict[int, Any] = {}
        self.active: set[int] = set()
        self.variable = "/"
        self.current: Any = "/"  # a path, or the HDF5 object being read

    def fail(self, message: str) -> MatFileError:
        return MatFileError(self.path, message, self.where())

    def where(self) -> str:
        """The top-level variable being read and, when deeper, the HDF5 object inside it."""
        current = self.current if isinstance(self.current, str) else _name(self.current)
        return current if current == self.variable else f"{self.variable} > {current}"

    def variable_names(self) -> list[str | bytes]:
        """Top-level names in the order their object headers lie in the file (MATLAB writes
        variables in save order; HDF5 itself only keeps them sorted by name)."""
        names = [n for n in self.f if n not in SKIPPED]
        addr = {n: h5py.h5o.get_info(self.member(self.f.id, _key(n))).addr for n in names}
        return sorted(names, key=addr.__getitem__)

    def top(self, name: str | bytes) -> Any:
        """Read one top-level object."""
        self.variable = self.current = "/" + _text(name)
        return self.value(self.member(self.f.id, _key(name)), 0)

    def subsystem(self) -> Any:
        """The ``FileWrapper__`` cells at ``/#subsystem#/MCOS`` (None: no subsystem)."""
        root = self.f.id
        if not root.links.exists(b"#subsystem#"):
            return None
        group = self.member(root, b"#subsystem#")
        if not isinstance(group, h5py.h5g.GroupID) or not group.links.exists(b"MCOS"):
            return None
        self.variable = self.current = "/#subsystem#/MCOS"
        return self.value(self.member(group, b"MCOS"), 0)

    def member(self, g: h5py.h5g.GroupID, key: bytes) -> Any:
        """Open a group member, only through a hard link: MATLAB writes no other kind, and a soft
        or external link can lead out of the file (to any file on the machine)."""
        kind = g.links.get_info(key).type
        if kind != h5py.h5l.TYPE_HARD:
            what = {h5py.h5l.TYPE_SOFT: "a soft link", h5py.h5l.TYPE_EXTERNAL: "an external link"}
            raise self.fail(f"{_text(h5py.h5i.get_name(g) or b'')}/{_member_name(key)} is "
                            f"{what.get(kind, f'a link of type {kind}')} (MATLAB writes none; "
                            "refused, a MAT-file must not point outside itself)")
        return h5py.h5o.open(g, key)

    def check_storage(self, ds: h5py.h5d.DatasetID) -> None:
        """Refuse a dataset whose data would come from outside the file, or through a filter
        MATLAB never uses (a plugin filter is code loaded from elsewhere), before reading it."""
        plist = ds.get_create_plist()
        name = _name(ds)
        if plist.get_layout() == h5py.h5d.VIRTUAL:
            raise self.fail(f"{name} is a virtual dataset (its data lives in other files; "
                            "MATLAB writes none)")
        if plist.get_external_count():
            raise self.fail(f"{name} keeps its data in an external file (MATLAB never does)")
        for i in range(plist.get_nfilters()):
            code = plist.get_filter(i)[0]
            if code not in ALLOWED_FILTERS:
                raise self.fail(f"{name} uses HDF5 filter {code} (MATLAB uses only deflate)")

    def value(self, obj: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"values nested deeper than {MAX_DEPTH} levels")
        info = h5py.h5o.get_info(obj)
        addr = info.addr
        if addr in self.cache:  # a shared value (MATLAB shares the canonical empty [])
            hit = self.cache[addr]
            return hit.view() if isinstance(hit, np.ndarray) else hit
        if addr in self.active:
            raise self.fail(f"{_name(obj)} contains itself (reference cycle)")
        self.active.add(addr)
        outer, self.current = self.current, obj  # its name is slow to get: only on failure
        try:
            if isinstance(obj, h5py.h5g.GroupID):
                out = self.group(obj, _attrs(obj, info.num_attrs), depth)
            elif isinstance(obj, h5py.h5d.DatasetID):
                out = self.dataset(obj, _attrs(obj, info.num_attrs), depth)
            else:
                raise self.fail("is neither a group nor a dataset")
        finally:
            self.active.discard(addr)
        self.current = outer
        self.cache[addr] = out
        return out

    # -- datasets ------------------------------------------------------------------------------

    def read(self, ds: h5py.h5d.DatasetID) -> np.ndarray:
        """The dataset's data in MATLAB's shape (h5py's dims reversed, at least 2-D)."""
        self.check_storage(ds)
        space = ds.get_space()
        if space.get_simple_extent_type() == h5py.h5s.NULL:
            raise self.fail("has a null dataspace (no data at all)")
        shape = space.get_simple_extent_dims()
        dtype = ds.dtype
        nbytes = _prod(shape) * dtype.itemsize
        if nbytes > self.limit:
            raise self.fail(f"declares {nbytes} bytes of data, far beyond what the file holds")
        data = np.empty(shape, dtype=dtype)
        if data.size:  # the low-level read: h5py's indexing costs more than small reads do
            ds.read(h5py.h5s.ALL, h5py.h5s.ALL, data)
        if data.ndim < 2:
            return data.reshape((-1, 1) if data.ndim else (1, 1))
        return data.T

    def dataset(self, ds: h5py.h5d.DatasetID, attrs: dict[str, Any], depth: int) -> Any:
        cls = _attr_text(attrs, "MATLAB_class")
        decode = int(attrs.get("MATLAB_object_decode", 0))
        if attrs.get("MATLAB_empty", 0):
            return self.empty(ds, cls, attrs.get("MATLAB_fields"))
        is_ref = h5py.check_dtype(ref=ds.dtype) is not None
        if cls == "char":
            return self.char(self.read(ds))
        if is_ref:
            cells = self.cells(ds, depth)
            if decode == DECODE_OBJECT and cls != "FileWrapper__":
                return MatObject(cls, {"TypeSystem": "handle", "Data": cells}, legacy=True)
            return cells
        data = self.read(ds)
        if decode == DECODE_OBJECT:
            if data.dtype == np.uint32:
                return ObjectRef(cls, data.reshape(-1, 1, order="F"))
            return MatObject(cls, {"TypeSystem": "java", "Data": data}, legacy=True)
        return self.numeric(data, cls)

    def numeric(self, data: np.ndarray, cls: str) -> np.ndarray:
        code = NUMERIC.get(cls)
        if code is None:
            raise self.fail(f"unsupported MATLAB class {cls!r}")
        target = np.dtype(code)
        if data.dtype.names:  # complex: compound (real, imag)
            if "real" not in data.dtype.names or "imag" not in data.dtype.names:
                raise self.fail(f"compound data with fields {data.dtype.names}")
            ctype = np.complex64 if target == np.float32 else np.complex128
            out = np.empty(data.shape, ctype, order="F")
            out.real, out.imag = data["real"], data["imag"]
            return out
        if data.dtype.kind not in "biuf" or (data.dtype != target and target.kind != "b"):
            raise self.fail(f"{cls} data stored as {data.dtype}")
        return data.astype(target, copy=False)

    def char(self, data: np.ndarray) -> Any:
        if data.dtype.kind not in "ui":
            raise self.fail(f"char data stored as {data.dtype}")
        units = data.astype("<u2").tobytes(order="F")
        chars = units.decode("utf-16-le", "replace")
        if len(chars) != data.size:
            raise self.fail(f"char array of size {data.shape} holds {len(chars)} characters")
        if data.ndim == 2 and data.shape[0] == 1:
            return chars
        return np.array(list(chars), dtype="<U1").reshape(data.shape, order="F")

    def cells(self, ds: h5py.h5d.DatasetID, depth: int) -> np.ndarray:
        refs = self.read(ds)
        out = np.empty(refs.size, dtype=object)
        for i, ref in enumerate(refs.ravel(order="F")):
            out[i] = self.deref(ref, depth)
        return out.reshape(refs.shape, order="F")

    def deref(self, ref: Any, depth: int) -> Any:
        return self.value(self.target(ref), depth + 1)

    def target(self, ref: Any) -> Any:
        """The object a reference points at."""
        if not isinstance(ref, h5py.Reference) or not ref:
            raise self.fail("holds an invalid object reference")
        obj = h5py.h5r.dereference(ref, self.f.id)
        if obj is None:
            raise self.fail("holds an invalid object reference")
        return obj

    def empty(self, ds: h5py.h5d.DatasetID, cls: str, fields: Any) -> Any:
        dims = tuple(int(d) for d in self.read(ds).ravel())
        count = _prod(dims)
        if not 2 <= len(dims) <= 32 or min(dims) < 0 or (count and cls != "struct"):
            raise self.fail(f"empty {cls} value with invalid dimensions {dims}")
        if cls == "canonical empty":
            return np.zeros((0, 0))
        if cls == "char":
            return ""
        if cls == "cell":
            return np.empty(dims, dtype=object)
        if cls == "struct":  # no fields; a struct with dims (1,1) reads as an empty Struct
            if count * 8 > self.limit:
                raise self.fail(f"struct array of size {dims} is beyond what the file holds")
            if dims == (1, 1):
                return Struct()
            return StructArray(dims, self.field_names(fields), [Struct() for _ in range(count)])
        if cls in NUMERIC:
            return np.zeros(dims, dtype=NUMERIC[cls])
        raise self.fail(f"unsupported empty value of class {cls!r}")

    # -- groups --------------------------------------------------------------------------------

    def group(self, g: h5py.h5g.GroupID, attrs: dict[str, Any], depth: int) -> Any:
        cls = _attr_text(attrs, "MATLAB_class")
        if "MATLAB_sparse" in attrs:
            return self.sparse(g, int(attrs["MATLAB_sparse"]), cls)
        decode = int(attrs.get("MATLAB_object_decode", 0))
        value = self.struct(g, attrs.get("MATLAB_fields"), depth)
        if decode == DECODE_FUNCTION or cls == "function_handle":
            return FunctionHandle(value)
        if decode == DECODE_LEGACY:
            props = value if isinstance(value, Struct) else Struct()
            return MatObject(cls, dict(props), legacy=True)
        return value  # a struct, or an enumeration's struct (resolved by the subsystem)

    def struct(self, g: h5py.h5g.GroupID, fields: Any, depth: int) -> Struct | StructArray:
        """The group's members, those MATLAB_fields lists first and in its order."""
        order = {n: i for i, n in enumerate(self.field_names(fields))}
        names = sorted((_member_name(key) for key in g), key=lambda n: order.get(n, len(order)))
        members = [(n, self.member(g, _key(n))) for n in names]
        if members and all(_is_struct_array_field(m) for _, m in members):
            return self.struct_array(members, depth)
        return Struct((n, self.value(m, depth + 1)) for n, m in members)

    def struct_array(self, members: list[tuple[str, Any]], depth: int) -> Struct | StructArray:
        columns = [(n, self.read(m)) for n, m in members]
        dims = columns[0][1].shape
        if any(refs.shape != dims for _, refs in columns):
            raise self.fail("struct array fields have different sizes")
        flat = [(n, refs.ravel(order="F")) for n, refs in columns]
        elements = [Struct((n, self.deref(refs[k], depth)) for n, refs in flat)
                    for k in range(_prod(dims))]
        if dims == (1, 1):
            return elements[0]
        return StructArray(dims, tuple(n for n, _ in members), elements)

    def field_names(self, raw: Any) -> tuple[str, ...]:
        """The names a MATLAB_fields attribute holds (None: no such attribute)."""
        if raw is None:
            return ()
        if isinstance(raw, h5py.Reference):  # many fields: the names sit in a dataset
            target = self.target(raw)
            if not isinstance(target, h5py.h5d.DatasetID):
                raise self.fail("MATLAB_fields points at a group")
            raw = self.read(target).ravel(order="F")
        return tuple(b"".join(np.asarray(n, dtype="S1").ravel()).decode("utf-8", "replace")
                     for n in np.asarray(raw, dtype=object).ravel())

    def sparse(self, g: h5py.h5g.GroupID, nrows: int, cls: str) -> Any:
        jc = self.part(g, "jc")
        if jc is None or jc.size == 0:
            raise self.fail("sparse array without column indices")
        ir, data = self.part(g, "ir"), self.part(g, "data")
        nnz = int(jc[-1])
        ir = np.zeros(0, np.int64) if ir is None else ir
        if nnz > ir.size or (data is not None and data.size < nnz):
            raise self.fail("sparse array index data is inconsistent")
        if data is None:
            values = np.zeros(0, bool if cls == "logical" else np.float64)
        elif data.dtype.names:
            values = self.numeric(data, "double")[:nnz]
        else:
            values = data[:nnz].astype(bool if cls == "logical" else np.float64)
        try:
            return scipy.sparse.csc_array((values, ir[:nnz].astype(np.int64), jc.astype(np.int64)),
                                          shape=(nrows, jc.size - 1))
        except (ValueError, OverflowError) as exc:
            raise self.fail(f"invalid sparse array ({exc})") from None

    def part(self, g: h5py.h5g.GroupID, name: str) -> np.ndarray | None:
        key = name.encode()
        if not g.links.exists(key):
            return None
        ds = self.member(g, key)
        if not isinstance(ds, h5py.h5d.DatasetID):
            raise self.fail(f"sparse part {name} is not a dataset")
        return self.read(ds).ravel(order="F")


def _is_struct_array_field(obj: Any) -> bool:
    """Fields of a struct array are bare reference datasets (no MATLAB_class of their own)."""
    return (isinstance(obj, h5py.h5d.DatasetID) and not h5py.h5a.exists(obj, b"MATLAB_class")
            and h5py.check_dtype(ref=obj.dtype) is not None)


_ATTRIBUTES = ("MATLAB_class", "MATLAB_empty", "MATLAB_object_decode", "MATLAB_sparse",
               "MATLAB_fields")


MAX_ATTRIBUTE_BYTES = 1 << 20  # MATLAB's attributes are a class name, a flag or field names


def _attrs(obj: Any, count: int) -> dict[str, Any]:
    """The MATLAB attributes among the ``count`` an HDF5 object has. Asks HDF5 which exist
    first (looking up an absent attribute through h5py raises and is slow; iterating a corrupt
    attribute list may never end) and how big each is before reading it."""
    out: dict[str, Any] = {}
    for name in _ATTRIBUTES:
        if len(out) == count:  # all found: the rest cannot exist
            break
        key = name.encode()
        if not h5py.h5a.exists(obj, key):
            continue
        attr = h5py.h5a.open(obj, key)
        size = attr.get_storage_size()
        if size > MAX_ATTRIBUTE_BYTES:
            raise ValueError(f"attribute {name} declares {size} bytes")
        out[name] = _attr_value(obj, attr, name)
    return out


def _attr_value(obj: Any, attr: h5py.h5a.AttrID, name: str) -> Any:
    """An attribute's value (its size already checked); a fixed-size string, as MATLAB's class
    names are, is read in its stored type, sparing h5py's type translations."""
    stored = attr.get_type()
    if (isinstance(stored, h5py.h5t.TypeStringID) and not stored.is_variable_str()
            and attr.get_space().get_simple_extent_npoints() == 1):  # a class name, as stored
        text = np.empty((), f"S{stored.get_size()}")
        attr.read(text, mtype=stored)
        return text[()]
    dtype = stored.dtype
    if dtype.kind in "SiufO":  # read directly (h5py's indexing is slow); O: field names
        value = np.empty(attr.shape, dtype)
        attr.read(value)
        return value[()] if value.ndim == 0 else value
    high = h5py.Group(obj) if isinstance(obj, h5py.h5g.GroupID) else h5py.Dataset(obj)
    return high.attrs[name]


def _attr_text(attrs: dict[str, Any], name: str) -> str:
    value = attrs.get(name, b"")
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else b""
    return _text(value)


def _name(obj: Any) -> str:
    """An HDF5 object's path (HDF5 finds one even for an object reached by reference)."""
    return _text(h5py.h5i.get_name(obj) or b"(unnamed)")


def _member_name(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def _key(name: str | bytes) -> bytes:
    return name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _prod(dims: tuple[int, ...]) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n
