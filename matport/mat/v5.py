"""The v7 container (MAT 5 layout): a 128-byte header, then tagged data elements.

Parsing is bounds-checked throughout: every declared size is checked against the bytes actually
present before anything is allocated, inflation is capped, and nesting depth is limited.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from matport.errors import MatFileError
from matport.mat.arena import Arena
from matport.mat.format import (
    ENDIAN_OFFSET,
    FILEWRAPPER,
    FLAG_COMPLEX,
    FLAG_LOGICAL,
    HEADER_BYTES,
    HEADER_TEXT_BYTES,
    INFLATE_RATIO,
    MAX_DIMS,
    MAX_ELEMENTS,
    MCOS_TYPE_SYSTEM,
    MI_COMPRESSED,
    MI_DTYPES,
    MI_INT8,
    MI_INT32,
    MI_MATRIX,
    MI_UINT8,
    MI_UINT16,
    MI_UINT32,
    MI_UTF8,
    MI_UTF16,
    MI_UTF32,
    MX_CELL,
    MX_CHAR,
    MX_FUNCTION,
    MX_NUMERIC,
    MX_OBJECT,
    MX_OPAQUE,
    MX_SPARSE,
    MX_STRUCT,
    MX_UINT8,
)
from matport.mat.limits import ELEMENT_COST, EXPANSION, EXPANSION_FLOOR, Budget
from matport.mat.raw import MAX_DEPTH, ObjectRef, one_line
from matport.mat.streamed import Inflated, Stored, flat_bytes
from matport.mat.values import FunctionHandle, MatObject, Struct, StructArray, sparse_matrix

MAX_FIELDLESS = 1 << 16  # elements of a struct array without fields (they occupy no bytes)
MAX_TEXT = 4096  # bytes of a name (MATLAB's names have 63 characters, class names a few more)
BYTE_TYPES = frozenset(t for t, code in MI_DTYPES.items() if code[1] == "1")
NATIVE = {mclass: np.dtype(code) for mclass, code in MX_NUMERIC.items()}
LOGICAL = np.dtype(bool)
DTYPES = {order: {t: np.dtype(order + code) for t, code in MI_DTYPES.items()} for order in "<>"}

# Where an element is, for error messages: a string, or (parent, piece) where the piece is text
# or a 0-based cell index. Built as tuples while parsing and rendered only when something fails.
Place: TypeAlias = "str | tuple[Place, str | int]"


def render(where: Place) -> str:
    """The text of a place, kept to one line."""
    pieces: list[str] = []
    while isinstance(where, tuple):
        where, piece = where
        pieces.append(f"{{{piece + 1}}}" if isinstance(piece, int) else piece)
    pieces.append(where)
    return one_line("".join(reversed(pieces)))


@dataclass
class V5Contents:
    header: str
    variables: dict[str, Any]
    subsystem: Any  # the subsystem variable parsed (None: the file has none)


PAD = 8  # bytes an inflated element may hold beyond what its tag declares (padding)


def parse(f: io.BufferedIOBase, size: int, path: str, budget: Budget) -> V5Contents:
    """Parse a v7 (or uncompressed v6) file, streaming one top-level element at a time so that
    peak memory stays near the largest inflated variable."""
    head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        raise MatFileError(path, f"truncated MAT header (file shorter than {HEADER_BYTES} bytes)")
    endian_mark = head[ENDIAN_OFFSET:HEADER_BYTES]
    if endian_mark == b"IM":
        order = "<"
    elif endian_mark == b"MI":
        order = ">"
    else:
        raise MatFileError(path, "not a MAT 5/7 file: no endian indicator at byte 126")
    header = head[:HEADER_TEXT_BYTES].decode("latin-1").rstrip(" \x00")
    (subsys_offset,) = struct.unpack_from(order + "Q", head, HEADER_TEXT_BYTES)
    if head[HEADER_TEXT_BYTES : HEADER_TEXT_BYTES + 8] in (b"\x20" * 8, b"\x00" * 8):
        subsys_offset = 0
    reader = _Reader(path, order, budget)
    variables: dict[str, Any] = {}
    subsystem: Any = None
    pos = HEADER_BYTES
    while pos < size:
        start = pos
        where = f"variable at byte {start}"
        tag = f.read(8)
        if len(tag) < 8:
            raise MatFileError(path, "truncated data element tag", where)
        mtype, nbytes = reader.u4.unpack(tag)
        if nbytes > size - pos - 8:
            raise MatFileError(path, f"element declares {nbytes} bytes but only "
                               f"{size - pos - 8} remain", where)
        active = reader
        if mtype == MI_COMPRESSED:
            src = Inflated(f, nbytes, path, where)
            arena = src.start(lambda head: reader.inflate_buffer(head, nbytes, where))  # noqa: B023
            if arena.releasing:  # inflated as it is parsed (see streamed.py)
                active = streamed = _Streamed(reader, src)
                inner = arena.array.data[: arena.array.size - PAD]
            else:
                inner = arena.array.data[: src.finish()]
            pos += 8 + nbytes
        elif mtype == MI_MATRIX:
            padded = min((nbytes + 7) & ~7, size - pos - 8)
            budget.charge(padded, where)
            arena = Arena(8 + padded)
            if arena.releasing:  # read as it is parsed
                active = streamed = _Streamed(reader, Stored(f, padded, path, where, tag, arena))
            else:
                arena.array[:8] = np.frombuffer(tag, np.uint8)
                nbytes = min(nbytes, f.readinto(arena.array[8:].data))
            inner = arena.array.data[: 8 + nbytes]
            pos += 8 + padded
        else:
            raise MatFileError(path, f"unexpected top-level element type {mtype}", where)
        active.arena = arena if arena.releasing else None  # else its arrays stay views of it
        itype, inbytes, idpos, _ = active.tag(inner, 0, len(inner), where)
        if itype != MI_MATRIX:
            raise MatFileError(path, f"element holds type {itype}, not a matrix", where)
        if start == subsys_offset:
            subsystem = active.subsystem(inner, idpos, idpos + inbytes, where)
        else:
            name, value = active.matrix(inner, idpos, idpos + inbytes, 0, where)
            variables[name] = value
        if active is not reader:
            streamed.src.finish()
    return V5Contents(header, variables, subsystem)


def parse_subsystem(buf: memoryview, lo: int, hi: int, path: str,
                    reader_for: Callable[[str], _Reader]) -> Any:
    """Parse the subsystem variable's bytes ``buf[lo:hi]``: an 8-byte stream header, then one
    matrix (a struct whose field ``MCOS`` holds the FileWrapper__ object), read by
    ``reader_for(byte order)``."""
    if hi - lo < 16:
        raise MatFileError(path, "subsystem data is truncated")
    mark = bytes(buf[lo + 2 : lo + 4])
    order = "<" if mark == b"IM" else ">" if mark == b"MI" else None
    if order is None:
        raise MatFileError(path, "subsystem data has no endian indicator")
    reader = reader_for(order)
    mtype, nbytes, dpos, _ = reader.tag(buf, lo + 8, hi, "subsystem")
    if mtype != MI_MATRIX:
        raise MatFileError(path, f"subsystem holds element type {mtype}, not a matrix")
    return reader.matrix(buf, dpos, dpos + nbytes, 0, "subsystem")[1]


class _Reader:
    def __init__(self, path: str, order: str, budget: Budget) -> None:
        self.path = path
        self.order = order
        self.budget = budget
        self.u4 = struct.Struct(order + "II")
        # MATLAB's usual matrix header: array flags (type, size, flags word, class-specific),
        # two dimensions (type, size, rows, columns), then the name's tag
        self.head = struct.Struct(order + "IIIIIIiiII")
        # a struct's field-name length (packed into its tag) then the names' tag
        self.names_head = struct.Struct(order + "IiII")
        self.dtypes = DTYPES[order]
        self.fields: dict[tuple[bytes, int], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.arena: Arena | None = None  # the buffer being parsed, where arrays leave it

    def like(self, order: str, arena: Arena | None) -> _Reader:
        """A reader of data in memory in byte ``order``, whose arrays leave ``arena``."""
        reader = _Reader(self.path, order, self.budget)
        reader.fields, reader.arena = self.fields, arena
        return reader

    def subsystem(self, buf: memoryview, pos: int, end: int, where: str) -> Any:
        """The subsystem variable, the body of a matrix at ``buf[pos:end]``: a uint8 array (any
        other class is refused before it is built), its bytes parsed."""
        flags, _ = self.integers(buf, pos, end, "array flags", where)
        if flags.size < 2 or int(flags[0]) & 0xFF != MX_UINT8:
            raise self.fail("subsystem data is not a uint8 array", where)
        arena, self.arena = self.arena, None  # its bytes stay where they are to be parsed
        value = self.matrix(buf, pos, end, 0, where)[1]
        if not (isinstance(value, np.ndarray) and value.dtype == np.uint8):
            raise self.fail("subsystem data is not a uint8 array", where)
        data = value.reshape(-1, order="F").data
        return parse_subsystem(data, 0, len(data), self.path, lambda o: self.like(o, arena))

    def fail(self, message: str, where: Place) -> MatFileError:
        return MatFileError(self.path, one_line(message), render(where))

    def expand(self, nbytes: int, where: Place) -> None:
        """:meth:`Budget.expand`, its arithmetic done here where the limits hold (most calls)."""
        b = self.budget
        used, expanded = b.used + nbytes, b.expanded + nbytes
        if used <= b.limit and expanded <= EXPANSION * (b.used - b.expanded) + EXPANSION_FLOOR:
            b.used, b.expanded = used, expanded
        else:
            b.expand(nbytes, lambda: render(where))

    def inflate_buffer(self, head: bytes, nbytes: int, where: str) -> Arena:
        """The output buffer for an inflated element whose first 8 bytes are ``head``."""
        mtype, size = self.u4.unpack_from(head, 0)
        if mtype >> 16:
            size = 0
        total = 8 + size
        if total > INFLATE_RATIO * nbytes + 4096:
            raise self.fail(f"compressed element of {nbytes} bytes claims to inflate to "
                            f"{total} bytes (decompression bomb)", where)
        self.budget.charge(total + PAD, where)
        return Arena(total + PAD)

    def tag(self, buf: memoryview, pos: int, end: int, where: Place) -> tuple[int, int, int, int]:
        """Read a tag at ``pos``: returns (type, nbytes, data position, next element position)."""
        if pos + 8 > end:
            raise self.fail("truncated data element tag", (where, f", byte {pos}"))
        w0, w1 = self.u4.unpack_from(buf, pos)
        if w0 >> 16:  # small data element: data packed into the tag
            nbytes, mtype = w0 >> 16, w0 & 0xFFFF
            if nbytes > 4:
                raise self.fail(f"small data element claims {nbytes} bytes",
                                (where, f", byte {pos}"))
            return mtype, nbytes, pos + 4, pos + 8
        mtype, nbytes = w0, w1
        dpos = pos + 8
        if nbytes > end - dpos:
            raise self.fail(f"element declares {nbytes} bytes but only {end - dpos} remain",
                            (where, f", byte {pos}"))
        nxt = dpos + (nbytes if mtype == MI_COMPRESSED else (nbytes + 7) & ~7)
        return mtype, nbytes, dpos, nxt if nxt < end else end

    def array(self, buf: memoryview, pos: int, end: int, where: Place) -> tuple[np.ndarray, int]:
        mtype, nbytes, dpos, nxt = self.tag(buf, pos, end, where)
        dt = self.dtypes.get(mtype)
        if dt is None or nbytes % dt.itemsize:
            raise self.not_numeric(mtype, nbytes, where)
        return np.frombuffer(buf, dt, nbytes // dt.itemsize, dpos), nxt

    def not_numeric(self, mtype: int, nbytes: int, where: Place) -> MatFileError:
        """The error for an element that holds no whole number of numeric values."""
        if mtype not in MI_DTYPES:
            return self.fail(f"element type {mtype} where numeric data was expected", where)
        return self.fail(f"{nbytes} bytes is not a whole number of {MI_DTYPES[mtype]} values",
                         where)

    def integers(self, buf: memoryview, pos: int, end: int, what: str,
                 where: Place) -> tuple[np.ndarray, int]:
        """An element MATLAB always stores as integers (flags, dimensions, lengths, indices)."""
        arr, nxt = self.array(buf, pos, end, where)
        if arr.dtype.kind not in "iu":
            raise self.fail(f"{what} stored as {arr.dtype} values instead of integers", where)
        return arr, nxt

    def text(self, buf: memoryview, pos: int, end: int, where: Place) -> tuple[str, int]:
        """A name: of a variable or field (MATLAB allows 63 characters), a class or a type
        system."""
        mtype, nbytes, dpos, nxt = self.tag(buf, pos, end, where)
        if mtype in BYTE_TYPES and nbytes <= MAX_TEXT:
            return str(buf[dpos : dpos + nbytes], "latin-1"), nxt
        arr, _ = self.array(buf, pos, end, where)  # says why the element is no name
        if arr.size > MAX_TEXT:
            raise self.fail(f"a name of {arr.size} bytes (at most {MAX_TEXT} expected)", where)
        raise self.fail(f"a name stored as {arr.dtype} instead of bytes", where)

    def header(self, buf: memoryview, pos: int, end: int,
               where: Place) -> tuple[int, tuple[int, ...] | None, str, int]:
        """A matrix's array flags word, dimensions and name, and the position after them; an
        opaque object has no dimensions (None) and its name is read after. MATLAB's usual
        layout (uint32 flags, two int32 dimensions, an int8 name or one packed into its tag) is
        read in one step."""
        if pos + 40 <= end:
            ftype, fbytes, word, _, dtag, dbytes, rows, cols, ntag, nbytes = (
                self.head.unpack_from(buf, pos))
            if (ftype == MI_UINT32 and fbytes == 8 and dtag == MI_INT32 and dbytes == 8
                    and rows >= 0 and cols >= 0 and word & 0xFF != MX_OPAQUE):
                if ntag == MI_INT8 and nbytes <= MAX_TEXT and nbytes <= end - pos - 40:
                    nxt = pos + 40 + ((nbytes + 7) & ~7)
                    name = str(buf[pos + 40 : pos + 40 + nbytes], "latin-1") if nbytes else ""
                    return word, (rows, cols), name, nxt if nxt < end else end
                small = ntag >> 16
                if 0 < small <= 4 and ntag & 0xFFFF in BYTE_TYPES:
                    name = str(buf[pos + 36 : pos + 36 + small], "latin-1")
                    return word, (rows, cols), name, pos + 40
        flags, pos = self.integers(buf, pos, end, "array flags", where)
        if flags.size < 2:
            raise self.fail("array flags element is too short", where)
        word = int(flags[0])
        if word & 0xFF == MX_OPAQUE:
            return word, None, "", pos
        dims_arr, pos = self.integers(buf, pos, end, "dimensions", where)
        if not 2 <= dims_arr.size <= MAX_DIMS:
            raise self.fail(f"{dims_arr.size} dimensions (2 to {MAX_DIMS} expected)", where)
        dims = tuple(int(d) for d in dims_arr)
        if min(dims) < 0:
            raise self.fail(f"invalid dimensions {dims}", where)
        if math.prod(d for d in dims if d) > MAX_ELEMENTS:  # numpy cannot shape even an empty one
            raise self.fail(f"dimensions {dims} are beyond MATLAB's {MAX_ELEMENTS} elements",
                            where)
        name, pos = self.text(buf, pos, end, where)
        return word, dims, name, pos

    def matrix(self, buf: memoryview, pos: int, end: int, depth: int,
               where: Place) -> tuple[str, Any]:
        """Parse the body of a miMATRIX element occupying ``buf[pos:end]``."""
        if depth > MAX_DEPTH:
            raise self.fail(f"values nested deeper than {MAX_DEPTH} levels", where)
        if pos == end:  # an empty matrix element: MATLAB writes [] this way inside cells
            return "", np.zeros((0, 0))
        if pos + 40 <= end:  # most values: an unnamed 2-D numeric array, in MATLAB's layout
            ftype, fbytes, word, _, dtag, dbytes, rows, cols, ntag, nbytes = (
                self.head.unpack_from(buf, pos))
            mclass = word & 0xFF
            if (mclass in MX_NUMERIC and ftype == MI_UINT32 and fbytes == 8 and dtag == MI_INT32
                    and dbytes == 8 and rows >= 0 and cols >= 0 and ntag == MI_INT8
                    and nbytes == 0):
                return "", self.numeric(buf, pos + 40, end, mclass, word, (rows, cols),
                                        rows * cols, where)
        word, dims, name, pos = self.header(buf, pos, end, where)
        if dims is None:
            return self.opaque(buf, pos, end, depth, where)
        mclass = word & 0xFF
        inner = (where, f" > {name}") if name else where
        count = math.prod(dims)
        if mclass in MX_NUMERIC:
            return name, self.numeric(buf, pos, end, mclass, word, dims, count, inner)
        if mclass == MX_CHAR:
            return name, self.char(buf, pos, end, dims, count, inner)
        if mclass == MX_CELL:
            return name, self.cell(buf, pos, end, dims, count, depth, inner)
        if mclass in (MX_STRUCT, MX_OBJECT):
            class_name = ""
            if mclass == MX_OBJECT:
                class_name, pos = self.text(buf, pos, end, inner)
            value = self.struct(buf, pos, end, dims, count, depth, inner)
            if mclass == MX_OBJECT:
                props = value if isinstance(value, Struct) else Struct()
                return name, MatObject(class_name, dict(props), legacy=True)
            return name, value
        if mclass == MX_SPARSE:
            return name, self.sparse(buf, pos, end, word, dims, inner)
        if mclass == MX_FUNCTION:
            if pos >= end:
                return name, FunctionHandle(None)
            mtype, nbytes, dpos, _ = self.tag(buf, pos, end, inner)
            if mtype != MI_MATRIX:
                raise self.fail("function handle without a data matrix", inner)
            return name, FunctionHandle(self.matrix(buf, dpos, dpos + nbytes, depth + 1, inner)[1])
        raise self.fail(f"unsupported array class {mclass}", inner)

    def opaque(self, buf: memoryview, pos: int, end: int, depth: int,
               where: Place) -> tuple[str, Any]:
        """An opaque object's name, type system, class and content (after its array flags)."""
        name, pos = self.text(buf, pos, end, where)
        system, pos = self.text(buf, pos, end, where)
        class_name, pos = self.text(buf, pos, end, where)
        mtype, nbytes, dpos, _ = self.tag(buf, pos, end, where)
        if mtype != MI_MATRIX:
            raise self.fail("opaque object without a data matrix", where)
        _, content = self.matrix(buf, dpos, dpos + nbytes, depth + 1, (where, f" > {name}"))
        if (system != MCOS_TYPE_SYSTEM or class_name == FILEWRAPPER
                or isinstance(content, Struct)):
            # FileWrapper__ payload, enumeration struct, or a java/handle-graphics object
            return name, content if system == MCOS_TYPE_SYSTEM else MatObject(
                class_name, {"TypeSystem": system, "Data": content}, legacy=True)
        if not isinstance(content, np.ndarray) or content.dtype.kind != "u":
            raise self.fail(f"object reference for class {class_name} is malformed", where)
        return name, ObjectRef(class_name, content.astype(np.uint32, copy=False))

    def numeric(self, buf: memoryview, pos: int, end: int, mclass: int, word: int,
                dims: tuple[int, ...], count: int, where: Place) -> np.ndarray:
        mtype, nbytes = self.u4.unpack_from(buf, pos) if pos + 8 <= end else (0, 0)
        if mtype >> 16 and mtype >> 16 <= 4:  # values packed into the tag
            mtype, nbytes, dpos, nxt = mtype & 0xFFFF, mtype >> 16, pos + 4, pos + 8
        elif 0 < mtype and nbytes <= end - pos - 8:
            dpos = pos + 8
            nxt = min(dpos + ((nbytes + 7) & ~7), end)
        else:  # says what is wrong
            mtype, nbytes, dpos, nxt = self.tag(buf, pos, end, where)
        dt = self.dtypes.get(mtype)
        if dt is None or nbytes % dt.itemsize:
            raise self.not_numeric(mtype, nbytes, where)
        if nbytes != count * dt.itemsize:
            raise self.fail(f"array of size {dims} holds {nbytes // dt.itemsize} values", where)
        target = LOGICAL if word & FLAG_LOGICAL else NATIVE[mclass]
        real = np.ndarray(dims, dt, buf, dpos, None, "F")  # a view of the file's bytes
        arena = self.arena  # None: arrays stay views of the buffer (see Arena)
        if dt == target and not word & FLAG_COMPLEX:
            return real if arena is None else arena.own(real)
        if not word & FLAG_LOGICAL and dt.kind == "f" and target.kind != "f":
            # MATLAB stores values in a smaller type only when that is exact
            raise self.fail(f"{target} array stored as {dt}", where)
        if not word & FLAG_COMPLEX:
            self.expand(count * target.itemsize, where)
            widened = real.astype(target, order="F")
            if arena is not None:  # its pages under the values converted
                arena.release(real)
            return widened
        imag, _ = self.array(buf, nxt, end, where)
        if imag.size != count:
            raise self.fail("complex array with mismatched imaginary part", where)
        ctype = np.complex64 if target == np.float32 else np.complex128
        self.expand(count * np.dtype(ctype).itemsize, where)
        complex_values = np.empty(dims, dtype=ctype, order="F")
        complex_values.real = real  # each part widened as it is written: no copy in between
        complex_values.imag = imag.reshape(dims, order="F")
        if arena is not None:
            arena.release(real)
            arena.release(imag)
        return complex_values

    def char(self, buf: memoryview, pos: int, end: int, dims: tuple[int, ...], count: int,
             where: Place) -> Any:
        if count == 0:
            return ""
        mtype, nbytes, dpos, _ = self.tag(buf, pos, end, where)
        self.expand(5 * nbytes, where)  # the bytes, then up to 4 per character
        raw = buf[dpos : dpos + nbytes]
        if mtype == MI_UTF8:
            chars = str(raw, "utf-8", "replace")
        elif mtype in (MI_UINT16, MI_UTF16):
            chars = str(raw, "utf-16-be" if self.order == ">" else "utf-16-le", "replace")
        elif mtype in (MI_UINT8, MI_INT8):
            chars = str(raw, "latin-1")
        elif mtype == MI_UTF32:
            chars = str(raw, "utf-32-be" if self.order == ">" else "utf-32-le", "replace")
        else:
            raise self.fail(f"char data stored as element type {mtype}", where)
        if len(chars) != count:
            raise self.fail(f"char array of size {dims} holds {len(chars)} characters", where)
        if len(dims) == 2 and dims[0] == 1:
            return chars
        self.expand(count * ELEMENT_COST, where)
        return np.array(list(chars), dtype="<U1").reshape(dims, order="F")

    def matrix_tag(self, buf: memoryview, pos: int, end: int,
                   where: Place) -> tuple[int, int, int, int]:
        """The tag of an element where a matrix is expected, as :meth:`tag` gives it: MATLAB's
        matrix tag read directly, anything else through :meth:`tag`, which says what is wrong."""
        mtype, nbytes = self.u4.unpack_from(buf, pos) if pos + 8 <= end else (0, 0)
        dpos = pos + 8
        if mtype == MI_MATRIX and nbytes <= end - dpos:
            return mtype, nbytes, dpos, min(dpos + ((nbytes + 7) & ~7), end)
        return self.tag(buf, pos, end, where)

    def cell(self, buf: memoryview, pos: int, end: int, dims: tuple[int, ...], count: int,
             depth: int, where: Place) -> np.ndarray:
        if count * 8 > end - pos:
            raise self.fail(f"cell array of size {dims} cannot fit in its element", where)
        self.expand(count * ELEMENT_COST, where)
        out = np.empty(count, dtype=object)
        matrix_tag, matrix = self.matrix_tag, self.matrix
        for i in range(count):
            mtype, nbytes, dpos, pos = matrix_tag(buf, pos, end, where)
            if mtype != MI_MATRIX:
                raise self.fail(f"cell element {i + 1} is not a matrix", where)
            out[i] = matrix(buf, dpos, dpos + nbytes, depth + 1, (where, i))[1]
        return out.reshape(dims, order="F")

    def struct(self, buf: memoryview, pos: int, end: int, dims: tuple[int, ...], count: int,
               depth: int, where: Place) -> Struct | StructArray:
        flen, raw, pos = self.field_block(buf, pos, end, where)
        if len(raw) % flen:
            raise self.fail("struct field names do not fill whole slots", where)
        fields, places = self.field_names(raw, flen, where)
        if count * max(len(fields), 1) * 8 > end - pos + (0 if fields else MAX_FIELDLESS * 8):
            raise self.fail(f"struct array of size {dims} cannot fit in its element", where)
        self.expand(count * max(len(fields), 1) * ELEMENT_COST, where)
        matrix_tag, matrix = self.matrix_tag, self.matrix
        elements = []
        for _ in range(count):
            s = Struct()
            for fname, place in zip(fields, places, strict=True):
                mtype, nbytes, dpos, pos = matrix_tag(buf, pos, end, where)
                if mtype != MI_MATRIX:
                    raise self.fail(f"struct field {fname} is not a matrix", where)
                s[fname] = matrix(buf, dpos, dpos + nbytes, depth + 1, (where, place))[1]
            elements.append(s)
        if dims == (1, 1):
            return elements[0]
        return StructArray(dims, fields, elements)

    def field_block(self, buf: memoryview, pos: int, end: int,
                    where: Place) -> tuple[int, bytes, int]:
        """A struct's field-name length, the bytes of its names, and the position after them.
        MATLAB's layout (an int32 length packed into its tag, int8 names) is read in one step."""
        if pos + 16 <= end:
            ltag, flen, ntag, nbytes = self.names_head.unpack_from(buf, pos)
            if (ltag == 4 << 16 | MI_INT32 and 0 < flen <= 4096 and ntag == MI_INT8
                    and nbytes <= end - pos - 16):
                nxt = pos + 16 + ((nbytes + 7) & ~7)
                return flen, bytes(buf[pos + 16 : pos + 16 + nbytes]), nxt if nxt < end else end
        flen_arr, pos = self.integers(buf, pos, end, "struct field-name length", where)
        if flen_arr.size != 1 or not 0 < int(flen_arr[0]) <= 4096:
            raise self.fail("invalid struct field-name length", where)
        names_arr, pos = self.integers(buf, pos, end, "struct field names", where)
        return int(flen_arr[0]), names_arr.astype(np.uint8, copy=False).tobytes(), pos

    def field_names(self, raw: bytes, flen: int,
                    where: Place) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """A struct's field names from their ``flen``-byte slots, and the places of its fields
        (``.name``); cached, since the structs of one class repeat them. Each distinct name is
        charged as an element: names are the file's bytes made Python objects, so a block of a
        million 1-byte slots costs."""
        found = self.fields.get((raw, flen))
        if found is None:
            self.expand(len(raw) // flen * ELEMENT_COST, where)
            names = tuple([raw[i : i + flen].split(b"\0", 1)[0].decode("latin-1")
                           for i in range(0, len(raw), flen)])
            found = self.fields[raw, flen] = names, tuple(["." + n for n in names])
        return found

    def sparse(self, buf: memoryview, pos: int, end: int, word: int, dims: tuple[int, ...],
               where: Place) -> Any:
        if len(dims) != 2:
            raise self.fail("sparse arrays must be 2-D", where)
        ir, pos = self.integers(buf, pos, end, "sparse row indices", where)
        jc, pos = self.integers(buf, pos, end, "sparse column indices", where)
        pr, pos = self.array(buf, pos, end, where)
        nnz = int(jc[-1]) if jc.size else 0
        if jc.size != dims[1] + 1 or not 0 <= nnz <= ir.size or (pr.size and pr.size < nnz):
            raise self.fail("sparse array index data is inconsistent", where)
        self.expand(32 * nnz + 8 * jc.size, where)
        data = pr[:nnz].astype(bool if word & FLAG_LOGICAL else np.float64)
        if word & FLAG_COMPLEX:
            pi, pos = self.array(buf, pos, end, where)
            data = data + 1j * pi[:nnz].astype(np.float64)
        try:
            return sparse_matrix(data, ir[:nnz], jc, dims)
        except (ValueError, OverflowError) as exc:
            raise self.fail(f"invalid sparse array ({exc})", where) from None



WHOLE = 1 << 16  # parts of a streamed element this small are read whole, by the plain reader


class _Streamed(_Reader):
    """The reader of one large top-level element, inflated (:class:`Inflated`) or read from the
    file (:class:`Stored`) as far as it has read: each read first makes its bytes readable, and
    the values of a numeric array that needs no conversion go straight into its own memory."""

    def __init__(self, reader: _Reader, src: Inflated | Stored) -> None:
        super().__init__(reader.path, reader.order, reader.budget)
        self.fields = reader.fields
        self.src = src
        self.plain = _Reader(reader.path, reader.order, reader.budget)  # for small elements
        self.plain.fields = reader.fields

    def subsystem(self, buf: memoryview, pos: int, end: int, where: str) -> Any:
        """The subsystem's bytes parsed where they are read, its arrays taken like any
        (MATLAB's layout: a uint8 row; anything else is read whole and checked)."""
        word, dims, _, at = self.header(buf, pos, end, where)
        mtype, nbytes, dpos, _ = self.tag(buf, at, end, where)
        if (dims is not None and word & 0xFF == MX_UINT8 and not word & FLAG_COMPLEX
                and mtype == MI_UINT8 and nbytes == math.prod(dims)):
            self.src.need(dpos, min(dpos + 16, end))
            return parse_subsystem(buf, dpos, dpos + nbytes, self.path, self.streamed_like)
        return super().subsystem(buf, pos, end, where)  # its bytes in memory: plain readers

    def streamed_like(self, order: str) -> _Streamed:
        """A reader of this element's data in byte ``order``."""
        reader = _Streamed(self.like(order, self.arena), self.src)
        reader.arena = self.arena
        return reader

    def tag(self, buf: memoryview, pos: int, end: int, where: Place) -> tuple[int, int, int, int]:
        self.src.need(pos, min(pos + 8, end))
        return super().tag(buf, pos, end, where)

    def matrix_tag(self, buf: memoryview, pos: int, end: int,
                   where: Place) -> tuple[int, int, int, int]:
        self.src.need(pos, min(pos + 8, end))
        return super().matrix_tag(buf, pos, end, where)

    def array(self, buf: memoryview, pos: int, end: int, where: Place) -> tuple[np.ndarray, int]:
        _, nbytes, dpos, _ = self.tag(buf, pos, end, where)
        self.src.need(dpos, dpos + nbytes)
        return super().array(buf, pos, end, where)

    def text(self, buf: memoryview, pos: int, end: int, where: Place) -> tuple[str, int]:
        _, nbytes, dpos, _ = self.tag(buf, pos, end, where)
        if nbytes <= MAX_TEXT:  # else no name: :meth:`array` reads it to say why
            self.src.need(dpos, dpos + nbytes)
        return super().text(buf, pos, end, where)

    def header(self, buf: memoryview, pos: int, end: int,
               where: Place) -> tuple[int, tuple[int, ...] | None, str, int]:
        self.src.need(pos, min(pos + 40 + MAX_TEXT, end))  # MATLAB's layout; others read on
        return super().header(buf, pos, end, where)

    def matrix(self, buf: memoryview, pos: int, end: int, depth: int,
               where: Place) -> tuple[str, Any]:
        if end - pos <= WHOLE:  # read whole and parsed as any (its arrays copied out)
            self.src.need(pos, end)
            plain = self.plain
            plain.arena = self.arena
            return plain.matrix(buf, pos, end, depth, where)
        self.src.need(pos, min(pos + 40, end))
        return super().matrix(buf, pos, end, depth, where)

    def numeric(self, buf: memoryview, pos: int, end: int, mclass: int, word: int,
                dims: tuple[int, ...], count: int, where: Place) -> np.ndarray:
        src = self.src
        src.need(pos, min(pos + 8, end))
        mtype, nbytes = self.u4.unpack_from(buf, pos) if pos + 8 <= end else (0, 0)
        dt = self.dtypes.get(mtype)
        if (self.arena is not None and dt is not None and dt == NATIVE[mclass]
                and not word & (FLAG_COMPLEX | FLAG_LOGICAL) and nbytes == count * dt.itemsize
                and nbytes <= end - pos - 8):
            values = np.empty(dims, dt, order="F")
            src.take(pos + 8, flat_bytes(values))
            return values
        src.need(pos, end)  # converted, complex, or wrong: read as it is in the arena
        return super().numeric(buf, pos, end, mclass, word, dims, count, where)

    def char(self, buf: memoryview, pos: int, end: int, dims: tuple[int, ...], count: int,
             where: Place) -> Any:
        self.src.need(pos, end)
        return super().char(buf, pos, end, dims, count, where)

    def field_block(self, buf: memoryview, pos: int, end: int,
                    where: Place) -> tuple[int, bytes, int]:
        self.src.need(pos, min(pos + 16, end))
        if pos + 16 <= end:  # the names' tag in MATLAB's layout; others read on
            self.src.need(pos, min(pos + 16 + self.names_head.unpack_from(buf, pos)[3], end))
        return super().field_block(buf, pos, end, where)
