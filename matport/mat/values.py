"""Python values for what a MATLAB file holds.

Mapping from MATLAB to Python (the same for v7 and v7.3 files):

- numeric and logical arrays -> ``numpy.ndarray`` in MATLAB's shape (at least 2-D, column-major
  data respected); sparse -> ``scipy.sparse.csc_array``;
- ``char`` -> ``str`` (a single row) or a ``numpy`` array of one-character strings;
- cell arrays -> ``numpy`` object arrays in MATLAB's shape;
- a 1x1 struct -> :class:`Struct` (a dict); other struct arrays -> :class:`StructArray`;
- class objects -> :class:`MatObject`, object arrays -> :class:`ObjectArray` (each element keeps
  its own class);
- ``string`` -> ``str`` (1x1) or an object array of ``str``;
  ``categorical`` -> :class:`Categorical`;
  ``table`` -> :class:`Table`; ``dlarray`` / ``gpuArray`` -> their ``numpy`` array;
- function handles -> :class:`FunctionHandle` (kept as data, never evaluated);
- enumerations -> :class:`Enumeration`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matport.mat.format import MATLAB_CLASS


def sparse_matrix(values: np.ndarray, rows: np.ndarray, starts: np.ndarray,
                  shape: tuple[int, ...]) -> Any:
    """A MATLAB sparse matrix as ``scipy.sparse.csc_array`` (``values`` and ``rows`` cut to its
    non-zeros, ``starts`` its column starts). scipy is imported here, on the first sparse value:
    networks hold none, and importing ``scipy.sparse`` costs more than reading a small file.
    Raises ValueError or OverflowError on inconsistent index data."""
    import scipy.sparse

    return scipy.sparse.csc_array((values, rows.astype(np.int64), starts.astype(np.int64)),
                                  shape=shape)


class Struct(dict[str, Any]):
    """A 1x1 MATLAB struct: field name -> value, in the stored field order."""


@dataclass(eq=False)
class StructArray:
    """A MATLAB struct array of any shape other than 1x1 (elements in column-major order)."""

    shape: tuple[int, ...]
    fields: tuple[str, ...]
    elements: list[Struct]

    def __len__(self) -> int:
        return len(self.elements)


@dataclass(eq=False)
class MatObject:
    """One MATLAB class object.

    ``props`` holds its properties after merging the class defaults under the object's own values.
    ``saveobj`` is true when the class saved a replacement value (then ``props`` is ``{"any": v}``).
    ``legacy`` marks objects of MATLAB's old class system (``mxOBJECT_CLASS``, e.g. ``network``).
    """

    class_name: str
    props: dict[str, Any] = field(default_factory=dict)
    saveobj: bool = False
    legacy: bool = False

    @property
    def short_name(self) -> str:
        return self.class_name.rsplit(".", 1)[-1]


@dataclass(eq=False)
class ObjectArray:
    """An array of class objects (not 1x1). ``class_name`` is the declared class; every element
    carries its own concrete class."""

    class_name: str
    shape: tuple[int, ...]
    elements: list[MatObject]

    def __len__(self) -> int:
        return len(self.elements)

    def __iter__(self) -> Iterator[MatObject]:
        return iter(self.elements)


@dataclass(eq=False)
class Categorical:
    """A ``categorical`` array: ``codes`` index ``categories`` 1-based; 0 means <undefined>."""

    categories: list[str]
    codes: np.ndarray
    ordinal: bool = False
    protected: bool = False

    def labels(self) -> list[str | None]:
        """Each element's category name in column-major order (None for <undefined>)."""
        return [self.categories[c - 1] if c else None for c in self.codes.ravel(order="F")]


@dataclass(eq=False)
class Table:
    """A MATLAB ``table``: columns by variable name, in order."""

    columns: dict[str, Any]
    row_names: list[str] = field(default_factory=list)
    nrows: int = 0


@dataclass(eq=False)
class FunctionHandle:
    """A stored function handle. Its text is kept as data and never evaluated."""

    raw: Any


@dataclass(eq=False)
class Enumeration:
    """An enumeration array: member names per element, in MATLAB's shape."""

    class_name: str
    names: np.ndarray


class MatFile(Mapping[str, Any]):
    """The variables of one MATLAB file, in stored order."""

    def __init__(self, path: str, fmt: str, header: str, variables: dict[str, Any],
                 object_counts: dict[str, int] | None = None) -> None:
        self.path = path
        self.format = fmt
        self.header = header
        self._variables = variables
        #: class name -> number of objects of that class in the file's object table
        self.object_counts = object_counts or {}

    def __getitem__(self, name: str) -> Any:
        return self._variables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._variables)

    def __len__(self) -> int:
        return len(self._variables)

    def __repr__(self) -> str:
        names = ", ".join(f"{k}: {describe(v)}" for k, v in self._variables.items())
        return f"<MatFile {self.path!r} ({self.format}) {{{names}}}>"

    def walk(self, descend: Callable[[Any], bool] | None = None
             ) -> Iterator[tuple[str, Any]]:
        """Yield ``(path, value)`` for every value in the file, depth first.

        Paths read like MATLAB: ``agent.Critic.Layers(3)``, ``c{2}``, ``s(1,2).x``.
        ``descend(value)`` false keeps the walk out of that value's contents.
        """
        for name, value in self._variables.items():
            yield from walk(value, name, descend)


def walk(value: Any, path: str, descend: Callable[[Any], bool] | None = None
         ) -> Iterator[tuple[str, Any]]:
    """Yield ``(path, value)`` for ``value`` and everything nested in it (where ``descend``
    allows). Shared objects are visited once, so reference cycles end."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        p, v = stack.pop()
        if isinstance(v, MatObject | ObjectArray | StructArray | Struct | Table | np.ndarray):
            if id(v) in seen:
                continue
            seen.add(id(v))
        yield p, v
        if descend is None or descend(v):
            stack.extend(reversed(_children(p, v)))


def _children(p: str, v: Any) -> list[tuple[str, Any]]:
    if isinstance(v, Struct):
        return [(f"{p}.{k}", x) for k, x in v.items()]
    if isinstance(v, MatObject):
        return [(f"{p}.{k}", x) for k, x in v.props.items()]
    if isinstance(v, StructArray | ObjectArray):
        return [(f"{p}({i + 1})", x) for i, x in enumerate(v.elements)]
    if isinstance(v, Table):
        return [(f"{p}.{k}", x) for k, x in v.columns.items()]
    if isinstance(v, np.ndarray) and v.dtype == object:
        return [(f"{p}{{{i + 1}}}", x) for i, x in enumerate(v.ravel(order="F"))]
    return []


def describe(value: Any) -> str:
    """A short MATLAB-like description: ``224x224x3 single``, ``1x1 DAGNetwork``."""
    if isinstance(value, MatObject):
        return f"1x1 {value.class_name}"
    if isinstance(value, ObjectArray):
        return f"{_dims(value.shape)} {value.class_name}"
    if isinstance(value, Struct):
        return "1x1 struct"
    if isinstance(value, StructArray):
        return f"{_dims(value.shape)} struct"
    if isinstance(value, str):
        return f"1x{len(value)} char" if "\n" not in value else "char"
    if isinstance(value, Categorical):
        return f"{_dims(value.codes.shape)} categorical"
    if isinstance(value, Table):
        return f"{value.nrows}x{len(value.columns)} table"
    if isinstance(value, FunctionHandle):
        return "function_handle"
    if isinstance(value, Enumeration):
        return f"{_dims(value.names.shape)} {value.class_name}"
    if isinstance(value, np.ndarray):
        if value.dtype == object and value.size and all(isinstance(x, str) for x in value.flat):
            return f"{_dims(value.shape)} string"
        kind = "cell" if value.dtype == object else _MATLAB_CLASS.get(value.dtype.str[1:], "char")
        return f"{_dims(value.shape)} {kind}"
    return type(value).__name__


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


_MATLAB_CLASS = {**MATLAB_CLASS, "c16": "double (complex)", "c8": "single (complex)"}
