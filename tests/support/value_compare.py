"""Exact comparison of values read from MATLAB files (see matport/mat/values.py).

Numeric arrays must match bit for bit, with the same dtype and shape; containers must match in
order, shape and class names. A mismatch is reported with the MATLAB-style path where it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse

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
from matport.network.model import Network


def values_equal(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are identical values."""
    return first_difference(a, b) is None


def assert_values_equal(a: Any, b: Any, path: str = "value") -> None:
    """Raise AssertionError naming the first place where ``a`` and ``b`` differ."""
    diff = first_difference(a, b, path)
    if diff is not None:
        raise AssertionError(diff)


def first_difference(a: Any, b: Any, path: str = "value") -> str | None:
    """A description of the first difference between ``a`` and ``b``, or None."""
    return _Comparer().diff(a, b, path)


def network_difference(a: Network, b: Network, path: str = "network") -> str | None:
    """The first difference between two network models (everything but ``source``), or None."""
    for attr in ("kind", "class_names", "output_names", "connections"):
        if getattr(a, attr) != getattr(b, attr):
            return f"{path}.{attr}: {getattr(a, attr)!r} != {getattr(b, attr)!r}"
    if len(a.layers) != len(b.layers):
        return f"{path}: {len(a.layers)} layers != {len(b.layers)}"
    for x, y in zip(a.layers, b.layers, strict=True):
        where = f"{path}.{x.name or '?'}"
        if (x.name, x.class_name, x.supported) != (y.name, y.class_name, y.supported):
            return f"{where}: {x.class_name} {x.name!r} != {y.class_name} {y.name!r}"
        for attr in ("params", "learnables", "state", "raw"):
            diff = first_difference(getattr(x, attr), getattr(y, attr), f"{where}.{attr}")
            if diff is not None:
                return diff
        if (x.normalization is None) != (y.normalization is None):
            return f"{where}.normalization: present in one network only"
        if x.normalization is not None and y.normalization is not None:
            diff = first_difference(vars(x.normalization), vars(y.normalization),
                                    f"{where}.normalization")
            if diff is not None:
                return diff
    return None


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.size == 0:
        return True
    return bool(np.array_equal(np.ascontiguousarray(a).view(np.uint8).ravel(),
                               np.ascontiguousarray(b).view(np.uint8).ravel()))


class _Comparer:
    def __init__(self) -> None:
        self._seen: set[tuple[int, int]] = set()

    def diff(self, a: Any, b: Any, path: str) -> str | None:
        if type(a) is not type(b):
            return f"{path}: type {type(a).__name__} != {type(b).__name__}"
        key = (id(a), id(b))
        if isinstance(a, MatObject | ObjectArray):
            if key in self._seen:
                return None
            self._seen.add(key)
        if isinstance(a, np.ndarray):
            return self._array(a, b, path)
        if scipy.sparse.issparse(a):
            if a.shape != b.shape or a.dtype != b.dtype:
                return f"{path}: sparse {a.shape} {a.dtype} != {b.shape} {b.dtype}"
            return self._array(a.toarray(), b.toarray(), path)
        if isinstance(a, dict):
            if list(a) != list(b):
                return f"{path}: fields {list(a)} != {list(b)}"
            return self._all((a[k], b[k], f"{path}.{k}") for k in a)
        if isinstance(a, StructArray):
            if tuple(a.shape) != tuple(b.shape) or tuple(a.fields) != tuple(b.fields):
                return f"{path}: struct array {a.shape} {a.fields} != {b.shape} {b.fields}"
            return self._elements(a.elements, b.elements, path)
        if isinstance(a, MatObject):
            if (a.class_name, a.saveobj, a.legacy) != (b.class_name, b.saveobj, b.legacy):
                return (f"{path}: object {a.class_name} saveobj={a.saveobj} legacy={a.legacy} != "
                        f"{b.class_name} saveobj={b.saveobj} legacy={b.legacy}")
            if list(a.props) != list(b.props):
                return f"{path}: properties {list(a.props)} != {list(b.props)}"
            return self._all((a.props[k], b.props[k], f"{path}.{k}") for k in a.props)
        if isinstance(a, ObjectArray):
            if a.class_name != b.class_name or tuple(a.shape) != tuple(b.shape):
                return f"{path}: {a.shape} {a.class_name} != {b.shape} {b.class_name}"
            return self._elements(a.elements, b.elements, path)
        if isinstance(a, Categorical):
            if (a.categories, a.ordinal, a.protected) != (b.categories, b.ordinal, b.protected):
                return f"{path}: categorical {a.categories} != {b.categories}"
            return self._array(a.codes, b.codes, f"{path}.codes")
        if isinstance(a, Table):
            if list(a.columns) != list(b.columns) or (a.row_names, a.nrows) != (
                    b.row_names, b.nrows):
                return f"{path}: table {list(a.columns)} != {list(b.columns)}"
            return self._all((a.columns[k], b.columns[k], f"{path}.{k}") for k in a.columns)
        if isinstance(a, FunctionHandle):
            return self.diff(a.raw, b.raw, f"{path}(handle)")
        if isinstance(a, Enumeration):
            if a.class_name != b.class_name:
                return f"{path}: enumeration {a.class_name} != {b.class_name}"
            return self._array(a.names, b.names, path)
        if isinstance(a, list | tuple):
            if len(a) != len(b):
                return f"{path}: length {len(a)} != {len(b)}"
            return self._elements(list(a), list(b), path)
        if not isinstance(a, str | bytes | int | float | complex | type(None) | np.generic):
            return f"{path}: cannot compare values of type {type(a).__name__}"
        if a != b and not (a != a and b != b):
            return f"{path}: {a!r} != {b!r}"
        return None

    def _array(self, a: np.ndarray, b: np.ndarray, path: str) -> str | None:
        if a.dtype != b.dtype or a.shape != b.shape:
            return f"{path}: array {a.shape} {a.dtype} != {b.shape} {b.dtype}"
        if a.dtype == object:
            items = zip(a.ravel(order="F"), b.ravel(order="F"), strict=True)
            return self._all((x, y, f"{path}{{{i + 1}}}") for i, (x, y) in enumerate(items))
        if not _same_bits(a, b):
            return f"{path}: {a.dtype} array contents differ"
        return None

    def _elements(self, a: list[Any], b: list[Any], path: str) -> str | None:
        if len(a) != len(b):
            return f"{path}: {len(a)} elements != {len(b)}"
        pairs = enumerate(zip(a, b, strict=True))
        return self._all((x, y, f"{path}({i + 1})") for i, (x, y) in pairs)

    def _all(self, triples: Any) -> str | None:
        for x, y, p in triples:
            d = self.diff(x, y, p)
            if d is not None:
                return d
        return None


MATIO_NATIVE = frozenset({"datetime", "duration", "calendarDuration", "timetable",
                          "containers.Map"})
"""Classes mat-io turns into Python types of its own (pandas, numpy datetime64, dict)."""


def matio_difference(value: Any, decoded: Any, path: str = "value") -> str | None:
    """The first place where mat-io's reading (``decoded``) disagrees with a matport value, or
    None. Not compared: the class of object-array elements (mat-io labels them with the array's
    class), legacy objects, function handles and the classes in ``MATIO_NATIVE``."""
    return _MatioComparer().diff(value, decoded, path, False)


class _MatioComparer:
    def __init__(self) -> None:
        self._seen: set[tuple[int, int]] = set()

    def diff(self, value: Any, decoded: Any, path: str, in_array: bool) -> str | None:
        if isinstance(value, MatObject | ObjectArray):
            if (id(value), id(decoded)) in self._seen or value.class_name in MATIO_NATIVE:
                return None
            self._seen.add((id(value), id(decoded)))
        return _matio_diff(self, value, decoded, path, in_array)


def _matio_diff(cmp: _MatioComparer, value: Any, decoded: Any, path: str,
                in_array: bool) -> str | None:
    if isinstance(value, FunctionHandle) or isinstance(value, MatObject) and value.legacy:
        return None
    if isinstance(value, str):
        text = "".join(str(t) for t in np.asarray(decoded).ravel())
        return None if text == value else f"{path}: text {text!r} != {value!r}"
    if isinstance(value, Struct | StructArray):
        shape = (1, 1) if isinstance(value, Struct) else tuple(value.shape)
        elements = [value] if isinstance(value, Struct) else value.elements
        fields = list(value) if isinstance(value, Struct) else list(value.fields)
        if not fields:
            return None
        if not isinstance(decoded, np.ndarray) or list(decoded.dtype.names or ()) != fields:
            return f"{path}: struct {fields} read as {type(decoded).__name__}"
        if decoded.shape != shape:
            return f"{path}: struct shape {shape} read as {decoded.shape}"
        for i, (element, got) in enumerate(zip(elements, decoded.ravel(order="F"),
                                               strict=True)):
            for field in fields:
                where = f"{path}.{field}" if shape == (1, 1) else f"{path}({i + 1}).{field}"
                diff = cmp.diff(element[field], got[field], where, False)
                if diff is not None:
                    return diff
        return None
    if isinstance(value, MatObject):
        got_class = getattr(decoded, "classname", type(decoded).__name__)
        if not in_array and got_class != value.class_name:
            return f"{path}: class {value.class_name} read as {got_class}"
        props = getattr(decoded, "properties", None) or {}
        if list(props) != list(value.props):
            return f"{path}: properties {list(value.props)} read as {list(props)}"
        for k in value.props:
            diff = cmp.diff(value.props[k], props[k], f"{path}.{k}", False)
            if diff is not None:
                return diff
        return None
    if isinstance(value, ObjectArray):
        if not value.elements:  # references to deleted objects
            return None
        if getattr(decoded, "shape", None) != tuple(value.shape):
            return f"{path}: object array {value.shape} read as {getattr(decoded, 'shape', '?')}"
        got = list(np.asarray(decoded).ravel(order="F"))
        for i, (obj, item) in enumerate(zip(value.elements, got, strict=True)):
            diff = cmp.diff(obj, item, f"{path}({i + 1})", True)
            if diff is not None:
                return diff
        return None
    if isinstance(value, Enumeration):  # mat-io tells members apart by their property values,
        # which the value model does not keep: compare class and shape only
        if getattr(decoded, "classname", None) != value.class_name:
            return f"{path}: enumeration {value.class_name} read as {decoded!r}"
        shape = np.asarray(value.names).shape
        return None if decoded.shape == shape else f"{path}: enumeration shape differs"
    if isinstance(value, Categorical):
        cats = [str(c) for c in decoded.categories]
        codes = np.asarray(decoded.codes).ravel().tolist()  # mat-io flattens row by row
        want = (np.asarray(value.codes).ravel().astype(int) - 1).tolist()
        if cats != value.categories or codes != want:
            return f"{path}: categorical {value.categories} {want} read as {cats} {codes}"
        return None
    if isinstance(value, Table):  # mat-io splits multi-column variables into name_1, name_2 ...
        names = list(value.columns)
        got = [str(c) for c in decoded.columns]
        unknown = [c for c in got if c not in names and c.rsplit("_", 1)[0] not in names]
        if unknown or not set(names) <= {c if c in names else c.rsplit("_", 1)[0] for c in got}:
            return f"{path}: table {names} read as {got}"
        return None if len(decoded) == value.nrows else f"{path}: table rows differ"
    if scipy.sparse.issparse(value):
        if not np.array_equal(value.toarray(), decoded.toarray()):
            return f"{path}: sparse contents differ"
        return None
    if isinstance(value, np.ndarray):
        if not isinstance(decoded, np.ndarray):
            return f"{path}: array read as {type(decoded).__name__}"
        if value.dtype.kind == "U":
            rows = ["".join(r) for r in value]
            got = [str(r) for r in decoded.ravel()]
            return None if rows == got else f"{path}: char rows {rows} read as {got}"
        if value.dtype == object:
            if decoded.shape != value.shape:
                return f"{path}: cell {value.shape} read as {decoded.shape}"
            for i, (x, y) in enumerate(zip(value.ravel(order="F"), decoded.ravel(order="F"),
                                           strict=True)):
                diff = cmp.diff(x, y, f"{path}{{{i + 1}}}", False)
                if diff is not None:
                    return diff
            return None
        if value.dtype != decoded.dtype or value.shape != decoded.shape:
            return f"{path}: {value.shape} {value.dtype} read as {decoded.shape} {decoded.dtype}"
        return None if _same_bits(value, decoded) else f"{path}: {value.dtype} contents differ"
    return f"{path}: cannot compare a {type(value).__name__}"
