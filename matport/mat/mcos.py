"""MATLAB's MCOS subsystem: turns object references into :class:`MatObject` values.

Shared by both containers: each gives the FileWrapper__ cells (already decoded to values) and the
raw variables, in which object references appear as :class:`ObjectRef` (top level) or as uint32
column arrays starting with ``0xDD000000`` (nested). See ``shared/docs/mat-format.md``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from matport.errors import MatFileError
from matport.mat.builtins import convert_builtin
from matport.mat.format import (
    ENUMERATION_TAG,
    FILEWRAPPER_VERSIONS,
    PROPERTY_CELL,
    PROPERTY_INTEGER,
    PROPERTY_NAME,
    REFERENCE_MAGIC,
)
from matport.mat.raw import MAX_DEPTH, ObjectRef, one_line
from matport.mat.values import (
    Enumeration,
    FunctionHandle,
    MatObject,
    ObjectArray,
    Struct,
    StructArray,
)

_REGION_NAMES = ("class table", "saveobj records", "object table", "property records",
                 "dynamic properties")
_OBJECT = np.dtype(object)
_UINT32 = np.dtype(np.uint32)
_HOLDERS = "Ou"  # the kinds of arrays that may hold references: cells, uint32 (and other unsigned)


def is_reference(value: Any) -> bool:
    """True for a uint32 column ``[0xDD000000, ndims, dims..., ids..., classId]``."""
    if not (isinstance(value, np.ndarray) and value.dtype == _UINT32 and value.ndim == 2
            and value.shape[1] == 1 and value.shape[0] >= 3
            and int(value[0, 0]) == REFERENCE_MAGIC):
        return False
    ndims = int(value[1, 0])
    return 2 <= ndims <= 32 and value.shape[0] == 3 + ndims + math.prod(
        value[2 : 2 + ndims, 0].tolist())


def is_reference_tag(value: Any) -> bool:
    """True for the uint32 ``0xDD000000`` that marks an enumeration's struct (a struct that only
    has a field of that name is a struct)."""
    return (isinstance(value, np.ndarray) and value.dtype == _UINT32 and value.size == 1
            and int(value.ravel()[0]) == REFERENCE_MAGIC)


class Subsystem:
    """The decoded FileWrapper__ metadata plus its property cells."""

    def __init__(self, cells: list[Any] | None, path: str) -> None:
        self.path = path
        self.cache: dict[int, MatObject | None] = {}
        self.revisits = 0  # objects found in the cache (so possibly inside themselves)
        self.object_depth = 0  # objects being resolved, one inside the other
        if cells is None:
            self.names: list[str] = []
            self.classes: list[tuple[int, int]] = []
            self.objects: list[tuple[int, int, int, int]] = []
            self.saveobj_records: list[np.ndarray] = []
            self.records: list[np.ndarray] = []
            self.props: list[Any] = []
            self.defaults: list[Any] = []
            return
        if not cells:
            raise self.fail("FileWrapper__ holds no cells")
        meta = cells[0]
        if not isinstance(meta, np.ndarray) or meta.dtype != np.uint8:
            raise self.fail("FileWrapper__ metadata is not a uint8 array")
        self.parse_metadata(meta.tobytes(order="F"))
        # cells: metadata, an empty cell, the property cells, then the trailing cells: version 2
        # keeps the class defaults only (files of about 2014 hold just 3 cells), version 3 adds
        # the class aliases, version 4 one more before those
        tail = self.version - 1
        if len(cells) < 2 + tail:
            raise self.fail(f"FileWrapper__ version {self.version} holds {len(cells)} cells, at "
                            f"least {2 + tail} expected")
        self.props = list(cells[2 : len(cells) - tail])
        defaults = cells[-1]
        self.defaults = list(defaults.ravel(order="F")) if isinstance(defaults, np.ndarray) else []

    def object_counts(self) -> dict[str, int]:
        """How many objects of each class the object table lists."""
        counts: dict[str, int] = {}
        for class_id, *_ in self.objects[1:]:
            name = self.class_name(class_id)
            counts[name] = counts.get(name, 0) + 1
        return counts

    def fail(self, message: str) -> MatFileError:
        return MatFileError(self.path, one_line(message), "MCOS subsystem")

    def parse_metadata(self, blob: bytes) -> None:
        if len(blob) < 40:
            raise self.fail("metadata is truncated")
        words = np.frombuffer(blob[: len(blob) // 4 * 4], "<u4")
        self.version = int(words[0])
        if self.version not in FILEWRAPPER_VERSIONS:
            raise self.fail(f"unsupported FileWrapper__ version {self.version}")
        nnames = int(words[1])
        offsets = [int(x) for x in words[2:10]]
        bounds = offsets[:6]
        misplaced = any(b > len(blob) or b % 4 for b in bounds) or bounds[0] < 40
        if misplaced or bounds != sorted(bounds):
            raise self.fail("metadata region offsets are out of order or beyond the data")
        names = blob[40 : offsets[0]].split(b"\0")
        if nnames > len(names):
            raise self.fail(f"metadata declares {nnames} names but holds {len(names)}")
        self.names = [n.decode("utf-8", "replace") for n in names[:nnames]]

        def region(i: int) -> np.ndarray:
            return words[offsets[i] // 4 : offsets[i + 1] // 4]

        cls = region(0)
        self.classes = [(int(cls[i]), int(cls[i + 1])) for i in range(0, len(cls) - 3, 4)]
        obj = region(2)
        self.objects = [(int(obj[i]), int(obj[i + 3]), int(obj[i + 4]), int(obj[i + 5]))
                        for i in range(0, len(obj) - 5, 6)]
        self.saveobj_records = self.parse_records(region(1), _REGION_NAMES[1])
        self.records = self.parse_records(region(3), _REGION_NAMES[3])

    def parse_records(self, words: np.ndarray, what: str) -> list[np.ndarray]:
        """Property records: ``n`` then ``n`` triples (name, type, value), padded to even words.
        Record 0 is the leading placeholder."""
        out: list[np.ndarray] = []
        pos = 0
        while pos < len(words):
            n = int(words[pos])
            stop = pos + 1 + 3 * n
            if stop > len(words):
                raise self.fail(f"{what} region is truncated (record {len(out)})")
            out.append(words[pos + 1 : stop].reshape(n, 3))
            pos = stop + (stop % 2)
        return out

    def class_name(self, class_id: int) -> str:
        if not 0 < class_id < len(self.classes):
            raise self.fail(f"class id {class_id} is not in the class table")
        pkg, name = self.classes[class_id]
        return self.name(pkg) + "." + self.name(name) if pkg else self.name(name)

    def name(self, idx: int) -> str:
        if not 0 < idx <= len(self.names):
            raise self.fail(f"name index {idx} is not in the names table")
        return self.names[idx - 1]

    # -- resolution --------------------------------------------------------------------------

    def resolve(self, value: Any, depth: int = 0) -> Any:
        """Return ``value`` with every object reference inside it replaced by its object (a
        copy of each container that holds one; ``value`` itself when none does); ``depth``
        counts the values it is nested in."""
        if depth > 4 * MAX_DEPTH:
            raise self.fail(f"values nested deeper than {4 * MAX_DEPTH} levels")
        if isinstance(value, np.ndarray):
            dtype = value.dtype
            if dtype == _OBJECT:
                out: np.ndarray | None = None  # a copy, made at the first item that changes
                for i, item in enumerate(value.flat):
                    if type(item) is str or (type(item) is np.ndarray
                                             and item.dtype.kind not in _HOLDERS):
                        continue  # most items, seen here without a call
                    got = self.resolve(item, depth + 1)
                    if got is not item:
                        if out is None:
                            out = value.copy()
                        out.flat[i] = got
                return value if out is None else out
            if dtype == _UINT32 and is_reference(value):  # most arrays: no call
                return self.objects_from_ref(value, depth)
            return value
        if isinstance(value, Struct):
            if is_reference_tag(value.get(ENUMERATION_TAG)):
                return self.enumeration(value)
            resolved: Struct | None = None  # a copy, made at the first field that changes
            for k, v in value.items():  # a loop, not a generator: one frame less per level
                if type(v) is str or (type(v) is np.ndarray and v.dtype.kind not in _HOLDERS):
                    continue
                got = self.resolve(v, depth + 1)
                if got is not v:
                    if resolved is None:
                        resolved = Struct(value)
                    resolved[k] = got
            return value if resolved is None else resolved
        if isinstance(value, str):
            return value
        if isinstance(value, ObjectRef):
            return self.objects_from_ref(value.ref.reshape(-1, 1), depth)
        if isinstance(value, StructArray):
            return StructArray(value.shape, value.fields,
                               [self.resolve(e, depth) for e in value.elements])
        if isinstance(value, FunctionHandle):
            return FunctionHandle(self.resolve(value.raw, depth + 1))
        if isinstance(value, MatObject) and value.legacy:
            value.props = {k: self.resolve(v, depth + 1) for k, v in value.props.items()}
        return value

    def objects_from_ref(self, ref: np.ndarray, depth: int) -> Any:
        words: list[int] = ref[:, 0].tolist()
        if len(words) < 3 or words[0] != REFERENCE_MAGIC:
            raise self.fail("malformed object reference")
        ndims = words[1]
        if not 2 <= ndims <= 32 or len(words) < 3 + ndims:
            raise self.fail("object reference with invalid dimensions")
        dims = tuple(words[2 : 2 + ndims])
        count = math.prod(dims)
        if len(words) != 2 + ndims + count + 1:
            raise self.fail(f"object reference of size {dims} has {len(words)} words")
        ids = words[2 + ndims : 2 + ndims + count]
        declared = self.class_name(words[-1])
        elements = []
        for i in ids:  # a loop, not a comprehension: one frame less per level
            elements.append(self.object(i, depth + 1))
        if dims == (1, 1) and elements[0] is not None:
            return elements[0]
        return ObjectArray(declared, dims, [e for e in elements if e is not None])

    def object(self, object_id: int, depth: int) -> Any:
        if object_id == 0:
            return None  # MATLAB's placeholder for a deleted handle
        if object_id in self.cache:
            self.revisits += 1
            return self.cache[object_id]
        if not 0 < object_id < len(self.objects):
            raise self.fail(f"object id {object_id} is not in the object table")
        class_id, saveobj_id, normal_id, _ = self.objects[object_id]
        class_name = self.class_name(class_id)
        if self.object_depth >= MAX_DEPTH:
            raise self.fail(f"objects nested deeper than {MAX_DEPTH} levels")
        obj = MatObject(class_name, {}, saveobj=bool(saveobj_id))
        # Cached before its properties are read: handle objects may refer back to themselves.
        self.cache[object_id] = obj
        revisits = self.revisits
        self.object_depth += 1
        try:
            defaults = self.defaults[class_id] if class_id < len(self.defaults) else None
            if isinstance(defaults, Struct):
                obj.props.update((k, self.resolve(v, depth)) for k, v in defaults.items())
            if saveobj_id:
                record = self.record(self.saveobj_records, saveobj_id, class_name)
            else:
                record = self.record(self.records, normal_id, class_name)
            for name_idx, kind, val in record:
                obj.props[self.name(int(name_idx))] = self.property(class_name, name_idx, kind,
                                                                    val, depth)
        finally:
            self.object_depth -= 1
        result = convert_builtin(obj, self.path)
        if result is not obj:
            # obj can only be inside its own values if the cache handed it out meanwhile
            if self.revisits != revisits and self.referenced_while_active(obj):
                raise self.fail(f"a {class_name} value contains itself (reference cycle)")
            self.cache[object_id] = result
        return result

    def property(self, class_name: str, name_idx: int, kind: int, val: int, depth: int) -> Any:
        if kind == PROPERTY_CELL:
            if not 0 <= val < len(self.props):
                raise self.fail(f"{class_name}.{self.name(int(name_idx))} points at missing "
                                f"cell {val}")
            return self.resolve(self.props[int(val)], depth)
        if kind == PROPERTY_INTEGER:
            return int(val)
        if kind == PROPERTY_NAME:
            return self.name(int(val))
        raise self.fail(f"{class_name}.{self.name(int(name_idx))} has unknown property type {kind}")

    def referenced_while_active(self, obj: MatObject) -> bool:
        """Whether ``obj`` is inside its own properties (each walked afresh: a walk from ``obj``
        itself skips ``obj`` when it meets it again, as already seen)."""
        from matport.mat.values import walk

        return any(v is obj for value in obj.props.values() for _, v in walk(value, ""))

    def record(self, records: list[np.ndarray], idx: int, class_name: str) -> np.ndarray:
        if not 0 < idx < len(records):
            raise self.fail(f"object of class {class_name} points at missing property record {idx}")
        return records[idx]

    def enumeration(self, s: Struct) -> Enumeration:
        try:
            class_name = self.class_name(int(np.asarray(s["ClassName"]).ravel()[0]))
            value_names = [self.name(int(i)) for i in np.asarray(s["ValueNames"]).ravel()]
            idx = np.asarray(s["ValueIndices"])
            names = np.array([value_names[int(i)] for i in idx.ravel(order="F")], dtype=object)
        except (KeyError, IndexError, ValueError, TypeError, OverflowError) as exc:
            raise self.fail(f"malformed enumeration ({exc})") from None
        return Enumeration(class_name, names.reshape(idx.shape, order="F"))
