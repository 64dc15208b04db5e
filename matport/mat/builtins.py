"""MATLAB's own classes that read as plain Python values: string, categorical, table, dlarray,
gpuArray. Anything else stays a :class:`MatObject`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from matport.errors import MatFileError
from matport.mat.raw import one_line
from matport.mat.values import Categorical, MatObject, Struct, Table

MISSING_STRING = 0xFFFFFFFFFFFFFFFF


def convert_builtin(obj: MatObject, path: str) -> Any:
    """Return the Python value for a builtin class object, or ``obj`` itself."""
    convert = _CONVERTERS.get(obj.class_name)
    if convert is None:
        return obj
    try:
        return convert(obj)
    except (KeyError, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError) as exc:
        raise MatFileError(path, one_line(f"malformed {obj.class_name} object ({exc})"),
                           "MCOS subsystem") from None


def decode_string(obj: MatObject) -> Any:
    """``string``: uint64 words [version, ndims, dims..., lengths..., UTF-16 code units]."""
    words = np.asarray(obj.props["any"]).ravel(order="F").astype(np.uint64)
    if words.size < 2 or int(words[0]) != 1:
        raise ValueError("unknown string encoding")
    ndims = int(words[1])
    if not 2 <= ndims <= 32 or words.size < 2 + ndims:
        raise ValueError("bad string dimensions")
    dims = tuple(int(d) for d in words[2 : 2 + ndims])
    count = int(np.prod(dims, dtype=np.int64))
    if count < 0 or words.size < 2 + ndims + count:
        raise ValueError("string lengths missing")
    lengths = [int(n) for n in words[2 + ndims : 2 + ndims + count]]
    units = words[2 + ndims + count :].astype("<u8").tobytes()
    text_units = np.frombuffer(units, "<u2")
    out = np.empty(count, dtype=object)
    pos = 0
    for i, n in enumerate(lengths):
        if n == MISSING_STRING:
            out[i] = None
            continue
        if pos + n > text_units.size:
            raise ValueError("string characters missing")
        out[i] = text_units[pos : pos + n].tobytes().decode("utf-16-le", "replace")
        pos += n
    if dims == (1, 1):
        return out[0]
    return out.reshape(dims, order="F")


def decode_categorical(obj: MatObject) -> Categorical:
    names = np.asarray(obj.props["categoryNames"], dtype=object).ravel(order="F")
    codes = np.asarray(obj.props["codes"])
    if codes.dtype.kind != "u":
        raise ValueError("codes are not unsigned integers")
    if codes.size and int(codes.max()) > len(names):
        raise ValueError("a code points beyond the category list")
    return Categorical(
        categories=[str(n) for n in names],
        codes=codes,
        ordinal=bool(np.asarray(obj.props.get("isOrdinal", False)).any()),
        protected=bool(np.asarray(obj.props.get("isProtected", False)).any()),
    )


def decode_table(obj: MatObject) -> Table:
    data = np.asarray(obj.props["data"], dtype=object).ravel(order="F")
    names = [_text(n) for n in np.asarray(obj.props["varnames"], dtype=object).ravel(order="F")]
    if len(names) != len(data):
        raise ValueError(f"{len(names)} variable names for {len(data)} columns")
    rows = obj.props.get("rownames")
    row_names = ([_text(r) for r in np.asarray(rows, dtype=object).ravel(order="F")]
                 if isinstance(rows, np.ndarray) and rows.size else [])
    nrows = int(np.asarray(obj.props.get("nrows", 0)).ravel()[0])
    return Table(columns=dict(zip(names, data, strict=True)), row_names=row_names, nrows=nrows)


def decode_dlarray(obj: MatObject) -> Any:
    payload = obj.props["any"]
    if not isinstance(payload, Struct):
        raise ValueError("dlarray payload is not a struct")
    return payload["Data"]


def decode_gpuarray(obj: MatObject) -> Any:
    payload = np.asarray(obj.props["any"], dtype=object).ravel(order="F")
    return payload[-1]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        return "".join(value.ravel(order="F"))
    raise ValueError(f"expected text, found {type(value).__name__}")


_CONVERTERS: dict[str, Callable[[MatObject], Any]] = {
    "string": decode_string,
    "categorical": decode_categorical,
    "table": decode_table,
    "dlarray": decode_dlarray,
    "gpuArray": decode_gpuarray,
}
