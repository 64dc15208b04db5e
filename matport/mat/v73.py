"""The v7.3 container: a 512-byte MATLAB user block in front of an HDF5 file.

Values come out exactly as :mod:`matport.mat.v5` gives them, so that the shared
:class:`~matport.mat.mcos.Subsystem` resolves both alike. h5py shows every dataset transposed
(dims reversed); cells and struct arrays are datasets of HDF5 references into ``/#refs#``.
Every dataset's declared size is checked against the file before it is read, references are
followed with cycle detection, and nesting depth is limited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from matport.errors import MatFileError
from matport.mat.format import (
    DECODE_FUNCTION,
    DECODE_LEGACY,
    DECODE_OBJECT,
    FILEWRAPPER,
    HEADER_TEXT_BYTES,
    INFLATE_RATIO,
    MAX_DIMS,
    MAX_ELEMENTS,
    NUMERIC_CLASSES,
    USER_BLOCK,
)
from matport.mat.h5chunks import read_chunks, read_contiguous
from matport.mat.h5heap import corrupt_heap
from matport.mat.h5safe import (
    DATASET_ATTRIBUTES,
    GROUP_ATTRIBUTES,
    Types,
    attr_int,
    attr_text,
    check_storage,
    header_messages,
    key_of,
    member_name,
    name_of,
    open_member,
    open_members,
    read_attributes,
    text,
)
from matport.mat.limits import ELEMENT_COST, VLEN_HEADROOM, Budget, capped_address_space
from matport.mat.raw import MAX_DEPTH, ObjectRef, one_line
from matport.mat.values import FunctionHandle, MatObject, Struct, StructArray, sparse_matrix

UNSTORED_SLACK = 1 << 16  # bytes a dataset may declare beyond INFLATE_RATIO x what it stores
# HDF5's metadata cache grows to 32 MiB over a file of many small objects (MATLAB's #refs#), and
# what it evicts stays with the process (HDF5's free lists): ResNet-50's 3,700 objects left 24 MB
# at 1 MiB, 5 MB at 64 KiB, 35 MB by default, in equal time. A network's file is read once,
# object by object, so the cache is kept small; nor is any chunk cached (every dataset is read
# whole, each chunk once).
METADATA_CACHE = 1 << 16
SKIPPED = ("#refs#", "#subsystem#")
_NUMERIC_DTYPES = {cls: np.dtype(code) for cls, code in NUMERIC_CLASSES.items()}
Typed = tuple[h5py.h5t.TypeID, np.dtype]  # a dataset's stored type and its numpy type


@dataclass
class V73Contents:
    header: str
    variables: dict[str, Any]
    subsystem: list[Any] | None


def parse(path: str, budget: Budget) -> V73Contents:
    """Read every variable of a v7.3 file as raw values (object references not yet resolved)."""
    try:
        with open(path, "rb") as fh:
            block = fh.read(USER_BLOCK)
        f = h5py.File(path, "r", rdcc_nbytes=0)
    except (OSError, ValueError) as exc:
        raise MatFileError(path, f"not a readable HDF5 (v7.3) file ({exc})") from None
    _small_metadata_cache(f)
    mark = block[:HEADER_TEXT_BYTES].split(b"\0", 1)[0] if block.startswith(b"MATLAB") else b""
    header = mark.decode("latin-1").strip()
    with f:
        reader = _Reader(f, path, budget)
        try:
            heap = corrupt_heap(f, path)
            if heap:
                raise MatFileError(path, heap)
            variables = {text(name): reader.top(name) for name in reader.variable_names()}
            cells = reader.subsystem()
        except MatFileError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError, TypeError, OverflowError,
                MemoryError) as exc:
            raise MatFileError(path, f"corrupt HDF5 data ({exc})", reader.where()) from None
    subsystem = None
    if cells is not None:
        if not isinstance(cells, np.ndarray) or cells.dtype != object:
            raise MatFileError(path, "FileWrapper__ payload is not a cell array",
                               "/#subsystem#/MCOS")
        subsystem = list(cells.ravel(order="F"))
    return V73Contents(header, variables, subsystem)


def _small_metadata_cache(f: h5py.File) -> None:
    """Keep ``f``'s metadata cache at :data:`METADATA_CACHE` bytes."""
    config = f.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size = config.min_size = config.max_size = METADATA_CACHE
    config.incr_mode = config.flash_incr_mode = config.decr_mode = 0  # no resizing
    f.id.set_mdc_config(config)


class _Reader:
    """Walks the file through h5py's low-level object identifiers (GroupID, DatasetID): its
    Group and Dataset wrappers cost more per object than reading most of MATLAB's small
    datasets does."""

    def __init__(self, f: h5py.File, path: str, budget: Budget) -> None:
        self.f = f
        self.path = path
        self.budget = budget
        self.cache: dict[int, Any] = {}
        self.types = Types()
        self.file_bytes = f.id.get_filesize()
        self.file = (f.id.get_vfd_handle(), self.file_bytes)  # numbers are read from it directly
        self.active: set[int] = set()
        self.variable = "/"
        self.current: Any = "/"  # a path, or the HDF5 object being read

    def fail(self, message: str) -> MatFileError:
        return MatFileError(self.path, one_line(message), self.where())

    def where(self) -> str:
        """The top-level variable being read and, when deeper, the HDF5 object inside it."""
        current = self.current if isinstance(self.current, str) else name_of(self.current)
        return one_line(current if current == self.variable else f"{self.variable} > {current}")

    def variable_names(self) -> list[str | bytes]:
        """Top-level names in the order their object headers lie in the file (MATLAB writes
        variables in save order; HDF5 itself only keeps them sorted by name)."""
        names = [n for n in self.f if n not in SKIPPED]
        addr = {n: h5py.h5o.get_info(self.member(self.f.id, key_of(n))).addr for n in names}
        return sorted(names, key=addr.__getitem__)

    def top(self, name: str | bytes) -> Any:
        """Read one top-level object."""
        self.variable = self.current = "/" + text(name)
        return self.value(self.member(self.f.id, key_of(name)), 0)

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
        return open_member(g, key, self.fail)

    def attrs(self, obj: Any, names: tuple[str, ...], count: int) -> dict[str, Any]:
        return read_attributes(obj, names, count, self.budget, self.types, self.where,
                               self.fail)

    def value(self, obj: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail(f"values nested deeper than {MAX_DEPTH} levels")
        info = h5py.h5o.get_info(obj)
        addr = info.addr
        if addr in self.cache:  # a shared value (MATLAB shares the canonical empty [])
            hit = self.cache[addr]
            return hit.view() if isinstance(hit, np.ndarray) else hit
        if addr in self.active:
            raise self.fail(f"{name_of(obj)} contains itself (reference cycle)")
        self.active.add(addr)
        outer, self.current = self.current, obj  # its name is slow to get: only on failure
        try:
            count = info.num_attrs
            if isinstance(obj, h5py.h5d.DatasetID):
                attrs = self.attrs(obj, DATASET_ATTRIBUTES, count)
                if "MATLAB_empty" in attrs:  # an empty struct's fields
                    attrs.update(self.attrs(obj, ("MATLAB_fields",), count - len(attrs)))
                out = self.dataset(obj, attrs, header_messages(info), depth)
            elif isinstance(obj, h5py.h5g.GroupID):
                out = self.group(obj, self.attrs(obj, GROUP_ATTRIBUTES, count), depth)
            else:
                raise self.fail("is neither a group nor a dataset")
        finally:
            self.active.discard(addr)
        self.current = outer
        self.cache[addr] = out
        return out

    # -- datasets ------------------------------------------------------------------------------

    def typed(self, ds: h5py.h5d.DatasetID) -> Typed:
        """The dataset's stored type, checked, and its numpy type."""
        stored = ds.get_type()
        return stored, self.types.dtype(stored, lambda: name_of(ds), self.fail)

    def read(self, ds: h5py.h5d.DatasetID, present: int | None = None,
             typed: Typed | None = None) -> np.ndarray:
        """The dataset's data in MATLAB's shape (h5py's dims reversed, at least 2-D);
        ``present``: its header's message types, ``typed``: :meth:`typed`'s, when known."""
        if present is None:
            present = header_messages(h5py.h5o.get_info(ds))
        storage = check_storage(ds, present, self.fail)
        stored, dtype = self.typed(ds) if typed is None else typed
        space = ds.get_space()
        if space.get_simple_extent_type() == h5py.h5s.NULL:
            raise self.fail("has a null dataspace (no data at all)")
        shape = space.get_simple_extent_dims()
        if len(shape) > MAX_DIMS:
            raise self.fail(f"has {len(shape)} dimensions (at most {MAX_DIMS} expected)")
        nbytes = _prod(shape) * dtype.itemsize
        kept = ds.get_storage_size()
        if kept > self.file_bytes:  # bounds every chunk's stored size before a chunk is read
            raise self.fail(f"stores {kept} bytes, more than the file's {self.file_bytes}")
        if nbytes > INFLATE_RATIO * kept + UNSTORED_SLACK:
            # fill values only, or more than deflate can give: MATLAB writes every array's data
            raise self.fail(f"declares {nbytes} bytes but stores only {kept}")
        self.budget.charge(nbytes, self.where)
        data = np.empty(shape, dtype=dtype)
        # numbers deflated or stored as they are read here (their bytes are their values), else
        # HDF5's low-level read (h5py's indexing costs more than small reads do)
        done = False
        if data.size and dtype.kind in "iuf":
            if storage.chunk:
                done = read_chunks(ds, storage.chunk, data, self.file, self.fail)
            elif storage.address is not None and kept == nbytes:
                done = read_contiguous(storage.address, data, self.file)
        if data.size and not done:
            if dtype.kind in "iuf":  # numbers: read in their stored type (no conversion)
                ds.read(h5py.h5s.ALL, h5py.h5s.ALL, data, mtype=stored)
            elif dtype.kind != "O":  # h5py's variable-length and reference types are objects
                ds.read(h5py.h5s.ALL, h5py.h5s.ALL, data)
            else:
                with capped_address_space(min(VLEN_HEADROOM, self.budget.remaining())):
                    ds.read(h5py.h5s.ALL, h5py.h5s.ALL, data)
        if data.ndim < 2:
            return data.reshape((-1, 1) if data.ndim else (1, 1))
        return data.T

    def dataset(self, ds: h5py.h5d.DatasetID, attrs: dict[str, Any], present: int,
                depth: int) -> Any:
        cls = attr_text(attrs, "MATLAB_class")
        decode = attr_int(attrs, "MATLAB_object_decode")
        if attr_int(attrs, "MATLAB_empty"):
            return self.empty(ds, present, cls, attrs.get("MATLAB_fields"))
        typed = self.typed(ds)
        if cls == "char":
            return self.char(self.read(ds, present, typed))
        # references are object dtypes (and h5py.check_dtype costs 3 us: asked of those alone)
        if typed[1].kind == "O" and h5py.check_dtype(ref=typed[1]) is not None:
            cells = self.cells(ds, present, depth, typed)
            if decode == DECODE_OBJECT and cls != FILEWRAPPER:
                return MatObject(cls, {"TypeSystem": "handle", "Data": cells}, legacy=True)
            return cells
        data = self.read(ds, present, typed)
        if decode == DECODE_OBJECT:
            if data.dtype == np.uint32:
                return ObjectRef(cls, data.reshape(-1, 1, order="F"))
            return MatObject(cls, {"TypeSystem": "java", "Data": data}, legacy=True)
        return self.numeric(data, cls)

    def numeric(self, data: np.ndarray, cls: str) -> np.ndarray:
        target = _NUMERIC_DTYPES.get(cls)
        if target is None:
            raise self.fail(f"unsupported MATLAB class {cls!r}")
        if data.dtype.names:  # complex: compound (real, imag)
            if "real" not in data.dtype.names or "imag" not in data.dtype.names:
                raise self.fail(f"compound data with fields {data.dtype.names}")
            ctype = np.complex64 if target == np.float32 else np.complex128
            self.budget.expand(data.size * np.dtype(ctype).itemsize, self.where)
            out = np.empty(data.shape, ctype, order="F")
            out.real, out.imag = data["real"], data["imag"]
            return out
        if data.dtype.kind not in "biuf" or (data.dtype != target and target.kind != "b"):
            raise self.fail(f"{cls} data stored as {data.dtype}")
        if data.dtype != target:
            self.budget.expand(data.size * target.itemsize, self.where)
        return data.astype(target, copy=False)

    def char(self, data: np.ndarray) -> Any:
        if data.dtype.kind not in "ui":
            raise self.fail(f"char data stored as {data.dtype}")
        self.budget.expand(8 * data.size, self.where)  # code units, then the text
        units = data.astype("<u2").tobytes(order="F")
        chars = units.decode("utf-16-le", "replace")
        if len(chars) != data.size:
            raise self.fail(f"char array of size {data.shape} holds {len(chars)} characters")
        if data.ndim == 2 and data.shape[0] == 1:
            return chars
        self.budget.expand(data.size * ELEMENT_COST, self.where)
        return np.array(list(chars), dtype="<U1").reshape(data.shape, order="F")

    def cells(self, ds: h5py.h5d.DatasetID, present: int, depth: int, typed: Typed
              ) -> np.ndarray:
        refs = self.read(ds, present, typed)
        self.budget.expand(refs.size * ELEMENT_COST, self.where)
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

    def empty(self, ds: h5py.h5d.DatasetID, present: int, cls: str, fields: Any) -> Any:
        stored = self.read(ds, present).ravel()
        if stored.dtype.kind not in "iu":
            raise self.fail(f"empty {cls} value with dimensions stored as {stored.dtype}")
        dims = tuple(int(d) for d in stored)
        count = _prod(dims)
        if not 2 <= len(dims) <= MAX_DIMS or min(dims) < 0 or (count and cls != "struct"):
            raise self.fail(f"empty {cls} value with invalid dimensions {dims}")
        if _prod(tuple(d for d in dims if d)) > MAX_ELEMENTS:  # numpy cannot shape even these
            raise self.fail(f"empty {cls} value with dimensions {dims}, beyond MATLAB's "
                            f"{MAX_ELEMENTS} elements")
        if cls == "canonical empty":
            return np.zeros((0, 0))
        if cls == "char":
            return ""
        if cls == "cell":
            return np.empty(dims, dtype=object)
        if cls == "struct":  # no fields; a struct with dims (1,1) reads as an empty Struct
            self.budget.expand(count * ELEMENT_COST, self.where)
            if dims == (1, 1):
                return Struct()
            return StructArray(dims, self.field_names(fields), [Struct() for _ in range(count)])
        if cls in NUMERIC_CLASSES:
            return np.zeros(dims, dtype=NUMERIC_CLASSES[cls])
        raise self.fail(f"unsupported empty value of class {cls!r}")

    # -- groups --------------------------------------------------------------------------------

    def group(self, g: h5py.h5g.GroupID, attrs: dict[str, Any], depth: int) -> Any:
        cls = attr_text(attrs, "MATLAB_class")
        if "MATLAB_sparse" in attrs:
            return self.sparse(g, attr_int(attrs, "MATLAB_sparse"), cls)
        decode = attr_int(attrs, "MATLAB_object_decode")
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
        members = sorted(((member_name(key), m) for key, m in open_members(g, self.fail)),
                         key=lambda member: order.get(member[0], len(order)))
        if members and all(_is_struct_array_field(m) for _, m in members):
            return self.struct_array(members, depth)
        return Struct((n, self.value(m, depth + 1)) for n, m in members)

    def struct_array(self, members: list[tuple[str, Any]], depth: int) -> Struct | StructArray:
        columns = [(n, self.read(m)) for n, m in members]
        dims = columns[0][1].shape
        if any(refs.shape != dims for _, refs in columns):
            raise self.fail("struct array fields have different sizes")
        self.budget.expand(_prod(dims) * len(columns) * ELEMENT_COST, self.where)
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
        ir = np.zeros(0, np.int64) if ir is None else ir
        if jc.dtype.kind not in "iu" or ir.dtype.kind not in "iu":
            raise self.fail("sparse array indices stored as non-integers")
        nnz = int(jc[-1])
        if not 0 <= nnz <= ir.size or (data is not None and data.size < nnz):
            raise self.fail("sparse array index data is inconsistent")
        self.budget.expand(32 * nnz + 8 * jc.size, self.where)
        if data is None:
            values = np.zeros(0, bool if cls == "logical" else np.float64)
        elif data.dtype.names:
            values = self.numeric(data, "double")[:nnz]
        else:
            values = data[:nnz].astype(bool if cls == "logical" else np.float64)
        try:
            return sparse_matrix(values, ir[:nnz], jc, (nrows, jc.size - 1))
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


def _prod(dims: tuple[int, ...]) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n
