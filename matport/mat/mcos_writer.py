"""Encoding of values for writing: class objects into MATLAB's MCOS subsystem, everything else into
the plain forms that the v7 and v7.3 container writers store.

The subsystem is laid out as MATLAB lays it out (``FileWrapper__`` format version 4): object ids
are given parent first, while property cells, class ids, names and dependency ids are given when an
object is complete (its nested objects first). See ``shared/docs/mat-format.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse

from matport.errors import WriteError
from matport.mat.format import ENUMERATION_TAG, FILEWRAPPER_VERSION, PROPERTY_CELL, REFERENCE_MAGIC
from matport.mat.values import (
    Categorical,
    Enumeration,
    FunctionHandle,
    MatObject,
    ObjectArray,
    Struct,
    StructArray,
    Table,
)


@dataclass(eq=False)
class String:
    """A MATLAB ``string`` (not ``char``): one ``str`` or an object array of ``str`` in MATLAB's
    shape. Plain ``str`` values are written as ``char``."""

    value: str | np.ndarray


@dataclass(eq=False)
class CharArray:
    """A ``char`` array as UTF-16 code units in MATLAB's shape."""

    units: np.ndarray


@dataclass(eq=False)
class TopObject:
    """A variable that holds class objects, with the class named for it: reference words (a
    uint32 column), or the struct of an enumeration."""

    class_name: str
    words: np.ndarray | Struct


@dataclass(eq=False)
class HandleData:
    """A function handle's stored description (kept as data)."""

    raw: Any


@dataclass(eq=False)
class LegacyObject:
    """An object of MATLAB's old class system (``mxOBJECT_CLASS``): class name and fields."""

    class_name: str
    fields: Struct


class CanonicalEmpty:
    """The bare empty value MATLAB writes as the second ``FileWrapper__`` cell."""


CANONICAL_EMPTY = CanonicalEmpty()
EMPTY_STRUCT_1X0 = StructArray(shape=(1, 0), fields=(), elements=[])


def _table_props() -> Struct:
    """The ``props`` struct of a MATLAB table, as saved by recent releases."""
    empty_cell = np.empty((0, 0), dtype=object)
    dim_names = np.empty((1, 2), dtype=object)
    dim_names[0, 0], dim_names[0, 1] = "Row", "Variables"
    return Struct(
        useVariableNamesOriginal=np.array([[False]]),
        useDimensionNamesOriginal=np.array([[False]]),
        CustomProps=Struct(),
        VariableCustomProps=Struct(),
        versionSavedFrom=np.array([[4.0]]),
        minCompatibleVersion=np.array([[1.0]]),
        incompatibilityMsg="",
        VersionSavedFrom=np.array([[4.0]]),
        Description="",
        VariableNamesOriginal=empty_cell,
        DimensionNames=dim_names,
        DimensionNamesOriginal=empty_cell,
        UserData=np.zeros((0, 0)),
        VariableDescriptions=empty_cell,
        VariableUnits=empty_cell,
        VariableContinuity=empty_cell,
    )


BUILTIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "categorical": {
        "categoryNames": np.empty((0, 0), dtype=object),
        "codes": np.zeros((0, 0), dtype=np.uint8),
        "isProtected": np.array([[False]]),
        "isOrdinal": np.array([[False]]),
    },
    "table": {"data": np.empty((1, 0), dtype=object)},
}
"""Class default property values MATLAB stores for built-in classes (seen in real files)."""


def as_matlab_array(value: np.ndarray) -> np.ndarray:
    """``value`` with at least two dimensions (1-D becomes a row), little-endian."""
    if value.ndim < 2:
        value = value.reshape((1, -1) if value.ndim == 1 else (1, 1))
    if value.dtype.byteorder == ">":
        value = value.astype(value.dtype.newbyteorder("<"))
    return value


def char_array(value: str | np.ndarray) -> CharArray:
    """A ``str`` (row) or an array of one-character strings as UTF-16 code units."""
    if isinstance(value, str):
        units = np.frombuffer(value.encode("utf-16-le"), dtype="<u2")
        return CharArray(units.reshape(1, -1) if units.size else units.reshape(0, 0))
    value = as_matlab_array(value)
    flat = [ord(c) if c else 0 for c in value.ravel()]
    return CharArray(np.array(flat, dtype="<u2").reshape(value.shape))


def cell_array(items: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    """An object array of ``items`` (column-major order) in ``shape``."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape, order="F")


def string_payload(value: str | np.ndarray) -> np.ndarray:
    """The uint64 row MATLAB saves for a ``string`` array: version 1, ndims, dims, each element's
    length in UTF-16 code units, then all code units packed four to a word."""
    arr = np.array([[value]], dtype=object) if isinstance(value, str) else as_matlab_array(value)
    texts = [str(t) for t in arr.ravel(order="F")]
    units = np.frombuffer("".join(texts).encode("utf-16-le"), dtype="<u2")
    packed = np.zeros(-(-units.size // 4) * 4, dtype="<u2")
    packed[: units.size] = units
    head = [1, arr.ndim, *arr.shape] + [len(t.encode("utf-16-le")) // 2 for t in texts]
    words = np.concatenate([np.array(head, dtype="<u8"), packed.view("<u8")])
    return words.reshape(1, -1)


def _same(a: Any, b: Any) -> bool:
    """Whether a property value equals a class default (plain values only)."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype == object:
            return all(_same(x, y) for x, y in zip(a.flat, b.flat, strict=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, Struct) and isinstance(b, Struct):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, str | bool | int | float) and type(a) is type(b):
        return a == b
    return False


class ObjectEncoder:
    """Turns values into their writable forms, collecting class objects into one subsystem."""

    def __init__(self, defaults: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._defaults: dict[str, Mapping[str, Any]] = {**BUILTIN_DEFAULTS, **(defaults or {})}
        self._names: dict[str, int] = {}
        self._class_ids: dict[str, int] = {}
        self._class_rows: list[tuple[int, int]] = [(0, 0)]
        self._class_defaults: list[Any] = [EMPTY_STRUCT_1X0]
        self._object_rows: list[list[int]] = [[0] * 6]
        self._object_ids: dict[int, int] = {}
        self._as_object: dict[int, MatObject] = {}
        self._enums: dict[int, Struct] = {}
        self._pinned: list[Any] = []
        self._saveobj_records: list[list[int]] = []
        self._normal_records: list[list[int]] = []
        self._cells: list[Any] = []
        self._ndeps = 0

    # ---- public --------------------------------------------------------------------------------

    def encode_variable(self, value: Any, name: str) -> Any:
        """The writable form of a top-level variable (objects become a :class:`TopObject`)."""
        obj = self._mcos(value)
        if obj is not None or isinstance(value, Enumeration):
            class_name = value.class_name if obj is None else obj.class_name
            return TopObject(class_name, self._encode(value, name))
        return self._encode(value, name)

    def filewrapper_cells(self) -> list[Any] | None:
        """The cells of the ``FileWrapper__`` object, or None when no object was encoded."""
        if len(self._object_rows) == 1:
            return None
        nclasses = len(self._class_rows)
        unknown = cell_array([EMPTY_STRUCT_1X0] * nclasses, (nclasses, 1))
        aliases = np.zeros((nclasses, 1), dtype=np.int32)
        defaults = cell_array(list(self._class_defaults), (nclasses, 1))
        blob = np.frombuffer(self._metadata_blob(), dtype=np.uint8).reshape(-1, 1)
        return [blob, CANONICAL_EMPTY, *self._cells, unknown, aliases, defaults]

    # ---- values --------------------------------------------------------------------------------

    def _encode(self, value: Any, where: str) -> Any:
        obj = self._mcos(value)
        if obj is not None:
            if isinstance(obj, ObjectArray):
                ids = [self._object_id(e, f"{where}({i + 1})") for i, e in enumerate(obj)]
                if not ids:  # references to deleted objects: id 0 for every element
                    ids = [0] * int(np.prod(obj.shape))
                return self._ref_words(obj.shape, ids, self._class_id(obj.class_name))
            oid = self._object_id(obj, where)
            return self._ref_words((1, 1), [oid], self._class_id(obj.class_name))
        for kind, encode in self._PLAIN:
            if isinstance(value, kind):
                return encode(self, value, where)
        raise WriteError(f"{where}: cannot write a value of type {type(value).__name__}")

    def _mcos(self, value: Any) -> MatObject | ObjectArray | None:
        """The MCOS object (or object array) a value is written as, if any."""
        if isinstance(value, MatObject) and not value.legacy or isinstance(value, ObjectArray):
            return value
        make = self._BUILTIN_OBJECTS.get(type(value))
        if make is None:
            return None
        if id(value) not in self._as_object:
            self._pinned.append(value)
            self._as_object[id(value)] = make(value)
        return self._as_object[id(value)]

    def _encode_struct(self, value: Struct, where: str) -> Struct:
        return Struct((k, self._encode(v, f"{where}.{k}")) for k, v in value.items())

    def _encode_struct_array(self, value: StructArray, where: str) -> StructArray:
        elements = [
            self._encode_struct(e, f"{where}({i + 1})") for i, e in enumerate(value.elements)
        ]
        return StructArray(tuple(value.shape), tuple(value.fields), elements)

    def _encode_array(self, value: np.ndarray, where: str) -> Any:
        if value.dtype == object:
            value = as_matlab_array(value)
            items = value.ravel(order="F")
            encoded = [self._encode(x, f"{where}{{{i + 1}}}") for i, x in enumerate(items)]
            return cell_array(encoded, value.shape)
        if value.dtype.kind == "U":
            return char_array(value)
        if value.dtype.kind not in "biufc":
            raise WriteError(f"{where}: cannot write an array of dtype {value.dtype}")
        return as_matlab_array(value)

    def _encode_scalar(self, value: Any, where: str) -> np.ndarray:
        if isinstance(value, bool | np.bool_):
            return np.array([[bool(value)]])
        if isinstance(value, np.generic):
            return as_matlab_array(np.array(value))
        dtype = np.complex128 if isinstance(value, complex) else np.float64
        return np.array([[value]], dtype=dtype)

    def _encode_legacy(self, value: MatObject, where: str) -> LegacyObject:
        return LegacyObject(value.class_name, self._encode_struct(Struct(value.props), where))

    def _encode_list(self, value: list[Any] | tuple[Any, ...], where: str) -> np.ndarray:
        items = [self._encode(x, f"{where}{{{i + 1}}}") for i, x in enumerate(value)]
        return cell_array(items, (1, len(items)))

    def _encode_handle(self, value: FunctionHandle, where: str) -> HandleData:
        raw = value.raw
        return HandleData(None if raw is None else self._encode(raw, f"{where}(handle)"))

    def _encode_enumeration(self, value: Enumeration, where: str) -> Struct:
        """The struct MATLAB stores for an enumeration array: its class, the names of the
        members used, one (property-less) object per member, and each element's member index."""
        if id(value) in self._enums:
            return self._enums[id(value)]
        self._pinned.append(value)
        names = np.asarray(value.names, dtype=object)
        names = names.reshape((1, -1) if names.ndim < 2 else names.shape)
        flat = [str(n) for n in names.ravel(order="F")]
        members = list(dict.fromkeys(flat))
        class_id = self._class_id(value.class_name)
        name_ids = [self._name(m) for m in members]
        objects = [self._encode(MatObject(value.class_name), f"{where}.{m}") for m in members]
        indices = np.array([members.index(n) for n in flat], dtype=np.uint32)
        encoded = Struct(
            **{ENUMERATION_TAG: np.array([[REFERENCE_MAGIC]], dtype=np.uint32)},
            ClassName=np.array([[class_id]], dtype=np.uint32),
            ValueNames=np.array(name_ids, dtype=np.uint32).reshape(-1, 1),
            Values=cell_array(objects, (len(objects), 1)),
            ValueIndices=indices.reshape(names.shape, order="F"),
            BuiltinClassName=np.zeros((1, 1), dtype=np.uint32),
        )
        self._enums[id(value)] = encoded
        return encoded

    _PLAIN: tuple[tuple[Any, Callable[..., Any]], ...] = (
        (MatObject, _encode_legacy),
        (Struct, _encode_struct),
        (StructArray, _encode_struct_array),
        (np.ndarray, _encode_array),
        (str, lambda self, v, where: char_array(v)),
        (bool | int | float | complex | np.generic, _encode_scalar),
        (type(None), lambda self, v, where: np.zeros((0, 0))),
        (list | tuple, _encode_list),
        (scipy.sparse.sparray | scipy.sparse.spmatrix, lambda self, v, where: v.tocsc()),
        (FunctionHandle, _encode_handle),
        (Enumeration, _encode_enumeration),
    )

    # ---- built-in classes ----------------------------------------------------------------------

    @staticmethod
    def _string_object(value: String) -> MatObject:
        return MatObject("string", {"any": string_payload(value.value)}, saveobj=True)

    @staticmethod
    def _categorical_object(value: Categorical) -> MatObject:
        n = len(value.categories)
        codes = as_matlab_array(np.asarray(value.codes))
        if codes.dtype.kind != "u":
            codes = codes.astype(np.min_scalar_type(max(n, 1)))
        names = cell_array(list(value.categories), (n, 1) if n else (0, 0))
        return MatObject("categorical", {
            "categoryNames": names,
            "codes": codes,
            "isProtected": np.array([[value.protected]]),
            "isOrdinal": np.array([[value.ordinal]]),
        })

    @staticmethod
    def _table_object(value: Table) -> MatObject:
        columns = list(value.columns.values())
        names = list(value.columns)
        nrows = value.nrows
        if not nrows and columns and hasattr(columns[0], "shape"):
            nrows = int(columns[0].shape[0])
        rows = value.row_names
        return MatObject("table", {
            "data": cell_array(columns, (1, len(columns))),
            "ndims": np.array([[2.0]]),
            "nrows": np.array([[float(nrows)]]),
            "rownames": cell_array(list(rows), (len(rows), 1) if rows else (0, 0)),
            "nvars": np.array([[float(len(columns))]]),
            "varnames": cell_array(names, (1, len(names))),
            "props": _table_props(),
        })

    _BUILTIN_OBJECTS: dict[type, Callable[[Any], MatObject]] = {
        String: _string_object,
        Categorical: _categorical_object,
        Table: _table_object,
    }

    # ---- subsystem tables ----------------------------------------------------------------------

    def _name(self, name: str) -> int:
        if name not in self._names:
            if not name.isascii() or "\0" in name:
                raise WriteError(f"class or property name {name!r} is not plain ASCII")
            self._names[name] = len(self._names) + 1
        return self._names[name]

    def _class_id(self, class_name: str) -> int:
        if class_name in self._class_ids:
            return self._class_ids[class_name]
        package, _, short = class_name.rpartition(".")
        short_idx = self._name(short)
        package_idx = self._name(package) if package else 0
        class_id = len(self._class_rows)
        self._class_ids[class_name] = class_id
        self._class_rows.append((package_idx, short_idx))
        self._class_defaults.append(EMPTY_STRUCT_1X0)
        defaults = self._defaults.get(class_name)
        if defaults:
            for field in defaults:
                self._name(field)
            self._class_defaults[class_id] = self._encode_struct(Struct(defaults), class_name)
        return class_id

    def _object_id(self, obj: MatObject, where: str) -> int:
        if id(obj) in self._object_ids:
            return self._object_ids[id(obj)]
        oid = len(self._object_rows)
        self._object_ids[id(obj)] = oid
        self._pinned.append(obj)
        # The record slot is taken now (parent first); its cells once nested objects are done.
        records = self._saveobj_records if obj.saveobj else self._normal_records
        records.append([])
        record_id = len(records)
        self._object_rows.append([])
        defaults = self._defaults.get(obj.class_name, {})
        stored = [
            (name, self._encode(v, f"{where}.{name}"))
            for name, v in obj.props.items()
            if not (name in defaults and _same(v, defaults[name]))
        ]
        record = [len(stored)]
        for name, encoded in stored:
            record += [self._name(name), PROPERTY_CELL, len(self._cells)]
            self._cells.append(encoded)
        records[record_id - 1] = record + [0] * (len(record) % 2)
        class_id = self._class_id(obj.class_name)
        self._ndeps += 1
        slots = [record_id, 0] if obj.saveobj else [0, record_id]
        self._object_rows[oid] = [class_id, 0, 0, *slots, self._ndeps]
        return oid

    @staticmethod
    def _ref_words(shape: tuple[int, ...], ids: list[int], class_id: int) -> np.ndarray:
        words = [REFERENCE_MAGIC, len(shape), *shape, *ids, class_id]
        return np.array(words, dtype=np.uint32).reshape(-1, 1)

    def _metadata_blob(self) -> bytes:
        names = b"".join(n.encode("ascii") + b"\0" for n in self._names)
        names += b"\0" * (-len(names) % 8)
        saveobj = [0, 0] + _flatten(self._saveobj_records) if self._saveobj_records else []
        regions = [
            _flatten([[p, c, 0, 0] for p, c in self._class_rows]),
            saveobj,
            _flatten(self._object_rows),
            [0, 0] + _flatten(self._normal_records),
            [0, 0] * (self._ndeps + 1),
            [],
            [0, 0],
        ]
        offsets = [40 + len(names)]
        for region in regions:
            offsets.append(offsets[-1] + 4 * len(region))
        head = np.array([FILEWRAPPER_VERSION, len(self._names), *offsets], dtype="<u4")
        body = np.array(_flatten(regions), dtype="<u4")
        return head.tobytes() + names + body.tobytes()


def _flatten(rows: list[list[int]]) -> list[int]:
    return [w for row in rows for w in row]
