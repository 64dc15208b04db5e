"""What the v7.3 reader lets HDF5 do, and nothing more.

A MAT-file is self-contained, but HDF5 can point outside the file: soft and external links,
virtual datasets, external raw storage, filters loaded as plugins. MATLAB writes none of them, so
each is refused before any byte of it is read. So is every stored type MATLAB never writes (region
references, variable-length data of anything but characters, nested compounds): h5py's converters
trust the file, and a corrupt region reference inside a variable-length attribute crashes the
process. Attributes are read only after their type and size are checked and charged to the file's
memory budget; variable-length ones under a capped address space.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import h5py
import numpy as np

from matport.errors import MatFileError
from matport.mat.limits import VLEN_HEADROOM, Budget, capped_address_space

Fail = Callable[[str], MatFileError]

# deflate, and the built-in shuffle and checksum filters; any other (szip, n-bit, scale-offset, a
# plugin loaded from HDF5_PLUGIN_PATH) is refused
ALLOWED_FILTERS = (h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32)
# the attributes the reader uses, of groups and of datasets (a dataset's MATLAB_fields only when
# it is an empty struct): looked up in this order until all the object has are found
GROUP_ATTRIBUTES = ("MATLAB_class", "MATLAB_fields", "MATLAB_object_decode", "MATLAB_sparse")
DATASET_ATTRIBUTES = ("MATLAB_class", "MATLAB_empty", "MATLAB_object_decode")
MAX_ATTRIBUTE_BYTES = 1 << 20  # MATLAB's attributes are a class name, a flag or field names
_KEYS = {name: name.encode() for name in GROUP_ATTRIBUTES + DATASET_ATTRIBUTES}
_NUMBER_CLASSES = (h5py.h5t.INTEGER, h5py.h5t.FLOAT)
_NUMBER_SIZES = (1, 2, 4, 8)
_IEEE = {2: ((15, 10, 5, 0, 10), 15), 4: ((31, 23, 8, 0, 23), 127),  # (fields, exponent bias)
         8: ((63, 52, 11, 0, 52), 1023)}
# object header message types (HDF5 file format, section IV.A.2), as bits of header_messages()
_DATASET_MESSAGES = 1 << 0x1 | 1 << 0x3 | 1 << 0x8  # dataspace, datatype, layout: every dataset
_EXTERNAL_FILES = 1 << 0x7
_FILTERS = 1 << 0xB
_LINK_KINDS = {h5py.h5l.TYPE_SOFT: "a soft link", h5py.h5l.TYPE_EXTERNAL: "an external link"}


def open_member(g: h5py.h5g.GroupID, key: bytes, fail: Fail) -> Any:
    """Open a group member, only through a hard link: MATLAB writes no other kind, and a soft or
    external link can lead out of the file (to any file on the machine)."""
    _check_link(g, key, g.links.get_info(key).type, fail)
    return h5py.h5o.open(g, key)


def open_members(g: h5py.h5g.GroupID, fail: Fail) -> list[tuple[bytes, Any]]:
    """Every member of a group (by name), opened as :func:`open_member` does; the links are
    listed with their kinds in one pass."""
    links: list[tuple[bytes, int]] = []
    g.links.iterate(lambda key, info: links.append((key, info.type)), info=True)
    for key, kind in links:
        _check_link(g, key, kind, fail)
    return [(key, h5py.h5o.open(g, key)) for key, _ in links]


def _check_link(g: h5py.h5g.GroupID, key: bytes, kind: int, fail: Fail) -> None:
    if kind != h5py.h5l.TYPE_HARD:
        what = _LINK_KINDS.get(kind, f"a link of type {kind}")
        raise fail(f"{name_of(g).rstrip('/')}/{member_name(key)} is {what} (MATLAB writes none; "
                   "a MAT-file must not point outside itself)")


class Storage(NamedTuple):
    """How a dataset checked by :func:`check_storage` keeps its data in the file."""

    chunk: tuple[int, ...] | None  # in chunks of this shape, each deflated (no other filter)
    address: int | None  # contiguous from this byte of the file, unfiltered


def check_storage(ds: h5py.h5d.DatasetID, present: int, fail: Fail) -> Storage:
    """Refuse a dataset whose data would come from outside the file, or through a filter MATLAB
    never uses (a plugin filter is code loaded from elsewhere), before reading it. ``present``:
    the message types in its object header (:func:`header_messages`)."""
    if present & _EXTERNAL_FILES:  # HDF5 uses an external file list exactly when this is there
        raise fail(f"{name_of(ds)} keeps its data in an external file (MATLAB never does)")
    # a header with no filter pipeline and an address for contiguous storage (HDF5 gives one for
    # no other layout) is all that MATLAB's many small arrays need checked: the creation
    # property list, a copy of every setting, costs more than reading such an array
    if present & _DATASET_MESSAGES == _DATASET_MESSAGES and not present & _FILTERS:
        address = ds.get_offset()
        if address is not None:
            return Storage(None, address)
    plist = ds.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise fail(f"{name_of(ds)} is a virtual dataset (its data lives in other files; MATLAB "
                   "writes none)")
    if plist.get_external_count():
        raise fail(f"{name_of(ds)} keeps its data in an external file (MATLAB never does)")
    codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    for code in codes:
        if code not in ALLOWED_FILTERS:
            raise fail(f"{name_of(ds)} uses HDF5 filter {code} (MATLAB uses only deflate)")
    if layout == h5py.h5d.CHUNKED and codes == [h5py.h5z.FILTER_DEFLATE]:
        return Storage(tuple(plist.get_chunk()), None)
    return Storage(None, ds.get_offset() if layout == h5py.h5d.CONTIGUOUS and not codes else None)


def header_messages(info: h5py.h5o.ObjInfo) -> int:
    """The types of message in an object's header (``1 << type`` each), as HDF5 counts them
    for :func:`h5py.h5o.get_info`; 0 where h5py does not say."""
    hdr = getattr(info, "hdr", None)
    return int(hdr.mesg.present) if hdr is not None else 0


def check_type(stored: h5py.h5t.TypeID, what: Callable[[], str], fail: Fail) -> None:
    """Refuse a stored type MATLAB never writes, before HDF5 or h5py converts a byte of it.
    MATLAB writes numbers, fixed-length text, complex numbers as a compound of two numbers,
    object references, and field names as variable-length sequences of one-byte characters."""
    problem = _type_problem(stored)
    if problem:
        raise fail(f"{what()} is stored as {problem} (MATLAB writes no such data)")


class Types:
    """The numpy types of stored types, each checked (:func:`check_type`) and translated once:
    a MATLAB file stores thousands of datasets and attributes in a handful of types, and
    h5py's translation of a type costs more than reading a small dataset. Types are told
    apart by HDF5's encoding of them."""

    def __init__(self) -> None:
        self._seen: dict[bytes, np.dtype] = {}

    def dtype(self, stored: h5py.h5t.TypeID, what: Callable[[], str], fail: Fail) -> np.dtype:
        """``stored``'s numpy type, after :func:`check_type`."""
        try:
            key = stored.encode()
        except (ValueError, RuntimeError, TypeError):  # no encoding: checked every time
            key = None
        found = self._seen.get(key) if key is not None else None
        if found is None:
            check_type(stored, what, fail)
            found = stored.dtype
            if key is not None:
                self._seen[key] = found
        return found


def _type_problem(stored: h5py.h5t.TypeID) -> str | None:
    """Why a stored type is not one MATLAB writes (None: it is)."""
    kind, size = stored.get_class(), stored.get_size()
    if kind in _NUMBER_CLASSES:
        if size not in _NUMBER_SIZES:
            return f"a {size}-byte number"
        return None if _standard_number(stored) else f"a {size}-byte number of unusual layout"
    if kind == h5py.h5t.STRING:
        return "variable-length text" if stored.is_variable_str() else None
    if kind == h5py.h5t.REFERENCE:
        return None if stored.equal(h5py.h5t.STD_REF_OBJ) else "a region or new-style reference"
    if kind == h5py.h5t.COMPOUND:
        members = [stored.get_member_type(i) for i in range(stored.get_nmembers())]
        if len(members) == 2 and all(m.get_class() in _NUMBER_CLASSES
                                     and m.get_size() in _NUMBER_SIZES for m in members):
            return None
        return f"a compound of {len(members)} members, not a complex number's two numbers"
    if kind == h5py.h5t.VLEN and isinstance(stored, h5py.h5t.TypeVlenID):
        base = stored.get_super()
        if base.get_size() == 1 and (base.get_class() == h5py.h5t.INTEGER or (
                base.get_class() == h5py.h5t.STRING and not base.is_variable_str())):
            return None
        return "variable-length data of something other than characters"
    return f"HDF5 type class {kind}"


def _standard_number(stored: Any) -> bool:
    """Whether a number's bytes are its value (an integer of all its bits, an IEEE float), so
    that it can be read as stored, without conversion."""
    if stored.get_precision() != 8 * stored.get_size() or stored.get_offset():
        return False
    if stored.get_class() == h5py.h5t.INTEGER:
        return True
    return (stored.get_fields(), stored.get_ebias(), stored.get_norm()) == \
        (*_IEEE.get(stored.get_size(), ((), 0)), h5py.h5t.NORM_IMPLIED)


def read_attributes(obj: Any, names: tuple[str, ...], count: int, budget: Budget, types: Types,
                    where: Callable[[], str], fail: Fail) -> dict[str, Any]:
    """The attributes ``names`` among the ``count`` an HDF5 object has. Asks HDF5 which exist
    first (looking up an absent attribute through h5py raises and is slow; iterating a corrupt
    attribute list may never end) and how big each is before reading it."""
    out: dict[str, Any] = {}
    for name in names:
        if len(out) == count:  # all found: the rest cannot exist
            break
        key = _KEYS[name]
        if not h5py.h5a.exists(obj, key):
            continue
        attr = h5py.h5a.open(obj, key)
        size = attr.get_storage_size()
        if size > MAX_ATTRIBUTE_BYTES:
            raise fail(f"attribute {name} declares {size} bytes (at most {MAX_ATTRIBUTE_BYTES} "
                       "expected)")
        budget.charge(size, where)
        out[name] = _attr_value(obj, attr, name, size, budget, types, fail)
    return out


def _attr_value(obj: Any, attr: h5py.h5a.AttrID, name: str, size: int, budget: Budget,
                types: Types, fail: Fail) -> Any:
    """An attribute's value (its ``size`` in bytes already checked); one fixed-size string, as
    MATLAB's class names are, is read in its stored type, sparing h5py's type translations."""
    stored = attr.get_type()
    dtype = types.dtype(stored, lambda: f"attribute {name}", fail)
    if dtype.kind == "S" and size == dtype.itemsize:  # one string (HDF5 has no empty ones)
        value = np.empty((), dtype)  # a class name, read in its stored type
        attr.read(value, mtype=stored)
        return value[()]
    if dtype.kind in "Siuf":  # read directly (h5py's indexing is slow); numbers in their type
        value = np.empty(attr.shape, dtype)
        attr.read(value, mtype=stored if dtype.kind != "S" else None)
        return value[()] if value.ndim == 0 else value
    # variable-length (MATLAB_fields) or anything else: HDF5 allocates what the data declares
    headroom = min(VLEN_HEADROOM, budget.remaining())
    try:
        with capped_address_space(headroom):
            if dtype.kind == "O":
                value = np.empty(attr.shape, dtype)
                attr.read(value)
                return value[()] if value.ndim == 0 else value
            high = h5py.Group(obj) if isinstance(obj, h5py.h5g.GroupID) else h5py.Dataset(obj)
            return high.attrs[name]
    except (OSError, ValueError, MemoryError) as exc:
        raise fail(f"attribute {name} cannot be read within {headroom:,} bytes of memory, the "
                   f"limit for one attribute ({exc})") from None


def attr_text(attrs: dict[str, Any], name: str) -> str:
    value = attrs.get(name, b"")
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else b""
    return text(value)


def attr_int(attrs: dict[str, Any], name: str) -> int:
    """An integer attribute (0 when absent); ValueError when it holds anything else."""
    if name not in attrs:
        return 0
    value = np.asarray(attrs[name])
    if value.dtype.kind not in "iub" or value.size != 1:
        raise ValueError(f"attribute {name} holds {value.dtype} {value.shape}, not an integer")
    return int(value.ravel()[0])


def name_of(obj: Any) -> str:
    """An HDF5 object's path (HDF5 finds one even for an object reached by reference)."""
    return text(h5py.h5i.get_name(obj) or b"(unnamed)")


def member_name(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def key_of(name: str | bytes) -> bytes:
    return name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
