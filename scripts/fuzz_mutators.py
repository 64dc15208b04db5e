"""Structure-aware mutators for MAT-files, used by ``scripts/fuzz.py``.

- v7: each top-level element is inflated and parsed into a tree of data elements (a miMATRIX's
  body is a sequence of tagged elements: flags, dimensions, name, then the data or the nested
  matrices); a node's type, declared size, numbers or place in the tree changes; the tree is
  written back with consistent sizes (or with one size that lies) and deflated again;
- the MCOS subsystem: words of the FileWrapper__ metadata (version, counts, region offsets, class
  and object tables, property records), and the tree of the subsystem's own MAT stream;
- v7.3: with h5py, MATLAB's attributes, object references, links (soft, external, cycles) and
  dataset shapes and types; then raw bytes (bit flips, truncation) of either container.

Every mutator takes the file's bytes and a seeded ``random.Random`` and returns new bytes.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import h5py
import numpy as np

MI_MATRIX, MI_COMPRESSED, MI_DOUBLE, MI_UINT8 = 14, 15, 9, 2
INTERESTING_WORDS = [0, 1, 2, 3, 7, 8, 31, 32, 33, 64, 65, 255, 4096, 0x7FFF, 0xFFFF, 0x10000,
                     0x7FFFFFF8, 0x7FFFFFFF, 0x80000000, 0xDD000000, 0xFFFFFFFE, 0xFFFFFFFF]
INTERESTING_FLOATS = [float("nan"), float("inf"), float("-inf"), 1e300, -1.0, 0.5, 2.0**53,
                      2.0**63, 4.0e9]

MAX_GROWN_LEAF = 64 << 20  # bytes a lengthened leaf may reach


@dataclass
class Node:
    """One data element: a matrix holds child elements, any other element raw bytes."""

    mtype: int
    data: bytes = b""
    kids: list[Node] | None = None
    small: bool = False
    lie: int | None = None  # a declared size that does not match the data

    def walk(self) -> list[Node]:
        out = [self]
        for kid in self.kids or []:
            out += kid.walk()
        return out


def parse_sequence(buf: bytes, pos: int, end: int, depth: int = 0) -> list[Node]:
    """The elements in ``buf[pos:end]``; ValueError where they do not parse."""
    nodes = []
    while pos + 8 <= end:
        w0, w1 = struct.unpack_from("<II", buf, pos)
        if w0 >> 16:
            n = w0 >> 16
            if n > 4:
                raise ValueError("bad small element")
            nodes.append(Node(w0 & 0xFFFF, buf[pos + 4 : pos + 4 + n], small=True))
            pos += 8
            continue
        if w1 > end - pos - 8:
            raise ValueError("element beyond its parent")
        data = buf[pos + 8 : pos + 8 + w1]
        node = Node(w0, data)
        if w0 == MI_MATRIX and depth < 40:
            try:
                node.kids = parse_sequence(data, 0, len(data), depth + 1)
            except ValueError:
                node.kids = None
        nodes.append(node)
        pos += 8 + (w1 if w0 == MI_COMPRESSED else (w1 + 7) & ~7)
    return nodes


def dump(nodes: list[Node]) -> bytes:
    out = bytearray()
    for node in nodes:
        data = dump(node.kids) if node.kids is not None else node.data
        size = len(data) if node.lie is None else node.lie
        if node.small and len(data) <= 4 and node.lie is None:
            out += struct.pack("<HH", node.mtype, len(data)) + data.ljust(4, b"\0")
            continue
        out += struct.pack("<II", node.mtype & 0xFFFFFFFF, size & 0xFFFFFFFF) + data
        out += b"\0" * (-len(data) % 8)
    return bytes(out)


def _mutate_tree(nodes: list[Node], rng: random.Random) -> None:
    """One structure-aware change somewhere in the tree."""
    everything = [n for top in nodes for n in top.walk()]
    node = rng.choice(everything)
    parents = [n for n in everything if n.kids]
    kind = rng.randrange(9)
    if kind == 0:  # element type
        node.mtype = rng.choice([0, 1, 2, 5, 6, 7, 9, 12, 13, 14, 15, 16, 17, 18, 19, 255, 0xFFFF])
    elif kind == 1:  # declared size that lies
        node.lie = rng.choice([0, 1, len(node.data) + 1, len(node.data) + 8, 0x7FFFFFFF,
                               0xFFFFFFFF, max(len(node.data) - 1, 0)])
    elif kind == 2 and len(node.data) >= 8 and node.kids is None:  # integers become NaN/Inf
        count = len(node.data) // 8
        node.mtype, node.small = MI_DOUBLE, False
        node.data = struct.pack(f"<{count}d", *(rng.choice(INTERESTING_FLOATS)
                                                for _ in range(count)))
    elif kind == 3 and len(node.data) >= 4 and node.kids is None:  # an interesting word
        i = rng.randrange(len(node.data) // 4) * 4
        data = bytearray(node.data)
        data[i : i + 4] = struct.pack("<I", rng.choice(INTERESTING_WORDS))
        node.data = bytes(data)
    elif kind == 4 and node.kids is None and node.data:  # bit flips
        data = bytearray(node.data)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        node.data = bytes(data)
    elif kind == 5 and parents:  # duplicate, drop or swap children
        parent = rng.choice(parents)
        kids = parent.kids or []
        i = rng.randrange(len(kids))
        op = rng.randrange(3)
        if op == 0:
            kids.insert(i, _copy(kids[i]))
        elif op == 1:
            del kids[i]
        else:
            j = rng.randrange(len(kids))
            kids[i], kids[j] = kids[j], kids[i]
    elif kind == 6 and parents:  # graft a subtree elsewhere (deep nesting, cycles of shape)
        donor = _copy(rng.choice(parents))
        rng.choice(parents).kids.append(donor)  # type: ignore[union-attr]
    elif kind == 7 and node.kids is None:  # more dimensions / a longer array
        times = rng.choice([2, 16, 65])
        if len(node.data) * times <= MAX_GROWN_LEAF:  # a ResNet-50's weights stay one copy
            node.data = node.data * times
    else:  # flags: class byte and flag bits of a matrix's first child
        matrices = [n for n in everything if n.kids]
        if matrices and matrices[0].kids:
            target = rng.choice(matrices).kids
            if target and len(target[0].data) >= 4:
                word = struct.unpack_from("<I", target[0].data)[0]
                word = (word & ~0xFF) | rng.randrange(20) if rng.random() < 0.6 else \
                    word ^ rng.choice([0x200, 0x400, 0x800])
                target[0].data = struct.pack("<I", word) + target[0].data[4:]


def _copy(node: Node) -> Node:
    return Node(node.mtype, node.data, None if node.kids is None else
                [_copy(k) for k in node.kids], node.small, node.lie)


@dataclass
class V5File:
    """A v7 file as header plus top-level elements (inflated where compressed)."""

    header: bytes
    elements: list[tuple[int, bytes]] = field(default_factory=list)  # (type, payload)
    subsystem: int = -1  # the index of the element the header points at

    @classmethod
    def parse(cls, data: bytes) -> V5File:
        f = cls(data[:128])
        offset = struct.unpack_from("<Q", data, 116)[0] if len(data) >= 124 else 0
        pos = 128
        while pos + 8 <= len(data):
            if pos == offset:
                f.subsystem = len(f.elements)
            mtype, nbytes = struct.unpack_from("<II", data, pos)
            payload = data[pos + 8 : pos + 8 + nbytes]
            if mtype == MI_COMPRESSED:
                try:
                    payload = zlib.decompressobj().decompress(payload, 1 << 26)
                except zlib.error:
                    pass
                pos += 8 + nbytes
            else:
                payload = data[pos : pos + 8 + nbytes]
                pos += 8 + ((nbytes + 7) & ~7)
            f.elements.append((mtype, payload))
        return f

    def dump(self, rng: random.Random) -> bytes:
        out = bytearray(self.header)
        for i, (mtype, payload) in enumerate(self.elements):
            if i == self.subsystem and len(out) >= 124:
                out[116:124] = struct.pack("<Q", len(out))
            if mtype == MI_COMPRESSED:
                packed = zlib.compress(payload, rng.choice([1, 6, 9]))
                out += struct.pack("<II", MI_COMPRESSED, len(packed)) + packed
            else:
                out += payload + b"\0" * (-len(payload) % 8)
        return bytes(out)


def v5_tree(data: bytes, rng: random.Random) -> bytes:
    """Mutate one variable's element tree, then deflate it again (zlib-rewrapped)."""
    f = V5File.parse(data)
    if not f.elements:
        return raw_bytes(data, rng)
    i = rng.randrange(len(f.elements))
    mtype, payload = f.elements[i]
    try:
        nodes = parse_sequence(payload, 0, len(payload))
    except ValueError:
        return raw_bytes(data, rng)
    if not nodes:
        return raw_bytes(data, rng)
    for _ in range(rng.choice([1, 1, 2, 3])):
        _mutate_tree(nodes, rng)
    f.elements[i] = (mtype, dump(nodes))
    return f.dump(rng)


def mcos_metadata(data: bytes, rng: random.Random) -> bytes:
    """Change words of the FileWrapper__ metadata inside the (inflated) subsystem element, or
    mutate the element tree of the subsystem's own MAT stream."""
    f = V5File.parse(data)
    for i, (mtype, payload) in enumerate(f.elements):
        start = _metadata_start(payload)
        if start is None:
            continue
        buf = bytearray(payload)
        if rng.random() < 0.7:
            end = start + struct.unpack_from("<I", buf, start + 28)[0]  # end of region 5
            for _ in range(rng.randint(1, 3)):
                pos = start + 4 * rng.randrange(max((min(end, len(buf)) - start) // 4, 1))
                old = struct.unpack_from("<I", buf, pos)[0]
                new = rng.choice(INTERESTING_WORDS + [old + 1, old - 1 & 0xFFFFFFFF, old * 2])
                buf[pos : pos + 4] = struct.pack("<I", new & 0xFFFFFFFF)
            f.elements[i] = (mtype, bytes(buf))
        else:  # the tree of the subsystem stream, which sits inside a uint8 element
            inner = payload.find(b"\x00\x01IM")
            if inner < 0:
                continue
            try:
                nodes = parse_sequence(payload, inner + 8, len(payload))
            except ValueError:
                continue
            if not nodes:
                continue
            _mutate_tree(nodes, rng)
            body = dump(nodes)
            f.elements[i] = (mtype, payload[: inner + 8] + body + payload[inner + 8 + len(body):]
                             if len(body) <= len(payload) - inner - 8 else payload)
        return f.dump(rng)
    return v5_tree(data, rng)


def _metadata_start(payload: bytes) -> int | None:
    """Where the FileWrapper__ metadata blob starts in an inflated element (None: absent)."""
    for pos in range(0, len(payload) - 40, 8):
        version, _, o0, o1, o2, o3, o4, o5 = struct.unpack_from("<8I", payload, pos)
        if version in (2, 3, 4) and 40 <= o0 <= o1 <= o2 <= o3 <= o4 <= o5 < len(payload) \
                and o5 - o0 < 1 << 20:
            return pos
    return None


def raw_bytes(data: bytes, rng: random.Random) -> bytes:
    """Bit flips, interesting words or truncation of the file as it is on disk."""
    buf = bytearray(data)
    kind = rng.randrange(3)
    if kind == 0 or len(buf) < 16:
        return bytes(buf[: rng.randrange(max(len(buf), 1))])
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(buf) - 4) & ~3
        if kind == 1:
            buf[pos] ^= 1 << rng.randrange(8)
        else:
            buf[pos : pos + 4] = struct.pack("<I", rng.choice(INTERESTING_WORDS))
    return bytes(buf)


# -- v7.3 ---------------------------------------------------------------------------------------

CLASSES = ["double", "single", "uint8", "uint32", "int64", "char", "logical", "cell", "struct",
           "function_handle", "FileWrapper__", "canonical empty", "string", "table", "Foo"]


def v73_structure(data: bytes, rng: random.Random) -> bytes:
    """One change to MATLAB's attributes, references, links or dataset shapes, through h5py."""
    bio = io.BytesIO(data)
    try:
        with h5py.File(bio, "r+") as f:
            names: list[str] = []
            f.visit(names.append)
            if not names:
                return raw_bytes(data, rng)
            name = rng.choice(names)
            obj = f[name]
            rng.choice([_attribute, _reference, _link, _shape])(f, name, obj, rng)
    except Exception:  # noqa: BLE001 - h5py refuses some changes: mutate the bytes instead
        return raw_bytes(data, rng)
    return bio.getvalue()


def _attribute(f: h5py.File, name: str, obj: h5py.HLObject, rng: random.Random) -> None:
    key = rng.choice(["MATLAB_class", "MATLAB_empty", "MATLAB_object_decode", "MATLAB_sparse",
                      "MATLAB_fields", "MATLAB_int_decode"])
    choice = rng.randrange(6)
    if choice == 0 and key in obj.attrs:
        del obj.attrs[key]
    elif choice == 1:
        obj.attrs[key] = np.bytes_(rng.choice(CLASSES))
    elif choice == 2:
        obj.attrs[key] = rng.choice(INTERESTING_FLOATS)
    elif choice == 3:
        obj.attrs[key] = np.uint64(rng.choice(INTERESTING_WORDS) * rng.choice([1, 1 << 32]))
    elif choice == 4:
        vlen = h5py.vlen_dtype(np.dtype("S1"))
        names = np.empty(rng.randint(0, 5), dtype=object)
        for i in range(names.size):
            names[i] = np.array(list(rng.choice(["a", "bb", "", "x" * 70])), dtype="S1")
        obj.attrs.create(key, names, dtype=vlen)
    else:
        obj.attrs[key] = np.int32(rng.choice([0, 1, 2, 3, 4, -1]))


def _reference(f: h5py.File, name: str, obj: h5py.HLObject, rng: random.Random) -> None:
    refs = [n for n in _names(f) if isinstance(f[n], h5py.Dataset)
            and h5py.check_dtype(ref=f[n].dtype) is not None]
    if not refs:
        raise ValueError("no reference dataset")
    ds = f[rng.choice(refs)]
    values = ds[()]
    flat = values.reshape(-1)
    if flat.size:
        target = rng.choice([f, ds, obj, f[rng.choice(_names(f))]])
        flat[rng.randrange(flat.size)] = h5py.Reference() if rng.random() < 0.2 else target.ref
        ds[()] = values


def _link(f: h5py.File, name: str, obj: h5py.HLObject, rng: random.Random) -> None:
    groups = [n for n in _names(f) if isinstance(f[n], h5py.Group)] + ["/"]
    parent = f[rng.choice(groups)]
    member = rng.choice(list(parent) or ["x"])
    if member in parent:
        del parent[member]
    kind = rng.randrange(4)
    if kind == 0:
        parent[member] = h5py.SoftLink("/" + rng.choice(_names(f) or [""]))
    elif kind == 1:
        parent[member] = h5py.ExternalLink("/etc/hostname", "/x")
    elif kind == 2:
        parent[member] = parent  # a hard-link cycle
    else:
        parent[member] = h5py.SoftLink("/no/such/object")


def _shape(f: h5py.File, name: str, obj: h5py.HLObject, rng: random.Random) -> None:
    if not isinstance(obj, h5py.Dataset):
        raise ValueError("not a dataset")
    attrs = dict(obj.attrs)
    parent, base = obj.parent, name.rsplit("/", 1)[-1]
    del parent[base]
    kind = rng.randrange(5)
    if kind == 0:  # declared huge, stores nothing
        new = parent.create_dataset(base, (1 << 20, 1 << 14), dtype="f8", chunks=(1, 1024))
    elif kind == 1:
        new = parent.create_dataset(base, data=np.zeros((0,) * rng.randint(1, 3)))
    elif kind == 2:
        new = parent.create_dataset(base, data=np.zeros((1,) * rng.randint(3, 32), "u1"))
    elif kind == 3:
        new = parent.create_dataset(base, data=np.float64(rng.choice(INTERESTING_FLOATS)))
    else:
        new = parent.create_dataset(base, data=np.array([b"text", b"more"], dtype=object),
                                    dtype=h5py.string_dtype())
    for k, v in attrs.items():
        new.attrs[k] = v


def _names(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visit(names.append)
    return names


V5_MUTATORS: list[Callable[[bytes, random.Random], bytes]] = [
    v5_tree, v5_tree, v5_tree, mcos_metadata, mcos_metadata, raw_bytes]
V73_MUTATORS: list[Callable[[bytes, random.Random], bytes]] = [
    v73_structure, v73_structure, v73_structure, raw_bytes]


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """A mutant of ``data`` (a v7 or v7.3 file) and the mutator's name."""
    is_hdf5 = data[:19] == b"MATLAB 7.3 MAT-file" or data[:8] == b"\x89HDF\r\n\x1a\n"
    mutator = rng.choice(V73_MUTATORS if is_hdf5 else V5_MUTATORS)
    out = data
    for _ in range(rng.choice([1, 1, 1, 2])):
        out = mutator(out, rng)
    return mutator.__name__, out
