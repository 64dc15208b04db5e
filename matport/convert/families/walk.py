"""Matching a MATLAB layer graph to a torchvision architecture, one layer at a time.

A :class:`GraphWalk` follows the connections from the input layer (never layer names), checks
each layer against what the torchvision module needs and remembers what it accepted; whatever does
not fit raises :class:`~matport.errors.ConversionError` naming the layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NoReturn

import numpy as np

from matport.errors import ConversionError
from matport.network.model import Connection, Layer, Network


class _Links:
    """The lookups a walk makes in a layer graph (read only)."""

    def __init__(self, net: Network) -> None:
        self.layers = {lay.name: lay for lay in net.layers}
        self.succ: dict[str, list[str]] = {}
        self.incoming: dict[str, list[Connection]] = {}
        for c in net.connections:
            self.succ.setdefault(c.source, []).append(c.dest)
            self.incoming.setdefault(c.dest, []).append(c)
        self.pred = {name: [c.source for c in cons] for name, cons in self.incoming.items()}
        self.inputs = net.input_layers


_SHARED: ContextVar[tuple[Network, _Links] | None] = ContextVar("matport_walk_links",
                                                                default=None)


@contextmanager
def shared_links(net: Network) -> Iterator[None]:
    """Within the block, the walks of ``net`` share one index of its graph (trying every family
    on one network, which nothing changes meanwhile, indexed it once per family)."""
    token = _SHARED.set((net, _Links(net)))
    try:
        yield
    finally:
        _SHARED.reset(token)


class GraphWalk:
    """Follows the layer graph of one network for ``family``, remembering every layer it took."""

    def __init__(self, net: Network, family: str) -> None:
        self.net = net
        self.family = family
        self.where = f"{net.source}:{net.path}" if net.source or net.path else "network"
        shared = _SHARED.get()
        links = shared[1] if shared is not None and shared[0] is net else _Links(net)
        self.layers, self.succ, self.incoming = links.layers, links.succ, links.incoming
        self.pred, self.inputs = links.pred, links.inputs
        self.seen: set[str] = set()

    def fail(self, problems: Sequence[tuple[Layer, str]], what: str = "") -> NoReturn:
        """Raise the ConversionError that names ``problems`` (layer, reason)."""
        raise ConversionError(
            f"{self.where}: not a {self.family} that torchvision's {self.family} can hold"
            + (f" ({what})" if what else ""),
            [(lay.name, lay.type, reason) for lay, reason in problems],
        )

    def take(self, name: str, kind: str, after: Layer | None) -> Layer:
        """Accept layer ``name`` as a ``kind`` (one input unless it merges branches)."""
        lay = self.layers[name]
        if lay.type != kind:
            where = f" after {after.name}" if after else ""
            self.fail([(lay, f"expected a {kind}{where}")])
        merges = kind in ("AdditionLayer", "DepthConcatenationLayer")
        if not merges and len(self.pred.get(name, [])) > 1:
            self.fail([(lay, f"has {len(self.pred[name])} inputs: {', '.join(self.pred[name])}")])
        self.seen.add(name)
        return lay

    def successors(self, lay: Layer) -> list[Layer]:
        """The layers ``lay`` feeds."""
        names = self.succ.get(lay.name, [])
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            self.fail([(lay, f"connected to {', '.join(unknown)}, which is no layer")])
        return [self.layers[n] for n in names]

    def next(self, lay: Layer, kind: str) -> Layer:
        """Accept the one successor of ``lay`` as a ``kind``."""
        succ = self.successors(lay)
        if len(succ) != 1:
            found = ", ".join(s.name for s in succ) or "none"
            self.fail([(lay, f"expected one successor ({kind}), found: {found}")])
        return self.take(succ[0].name, kind, lay)

    def inputs_in_order(self, lay: Layer) -> list[str]:
        """The layers feeding a merging layer, in port order (in1, in2, ...)."""
        cons = self.incoming.get(lay.name, [])
        return [c.source for c in sorted(cons, key=lambda c: _port_number(c.dest_port))]

    def image_input(self) -> tuple[Layer, tuple[int, ...]]:
        """The one RGB image input layer and its InputSize."""
        inputs = self.inputs
        if len(inputs) != 1 or inputs[0].type != "ImageInputLayer":
            names = ", ".join(f"{i.name} ({i.type})" for i in inputs) or "none"
            raise ConversionError(
                f"{self.where}: {self.family} has one image input layer; found {names}",
                [(i.name, i.type, "input layer") for i in inputs])
        inp = self.take(inputs[0].name, "ImageInputLayer", None)
        size = tuple(int(s) for s in inp.params.get("InputSize", ()))
        if len(size) != 3 or size[2] != 3:
            self.fail([(inp, f"input size {list(size)}: torchvision's {self.family} takes 3 "
                             "channels")])
        return inp, size

    def finish(self) -> None:
        """Refuse the layers the walk never reached."""
        rest = [lay for lay in self.net.layers if lay.name not in self.seen]
        if rest:
            self.fail([(lay, f"not on {self.family}'s path") for lay in rest], "extra layers")


def _port_number(port: str | None) -> int:
    return int(port[2:]) if port and port.startswith("in") and port[2:].isdigit() else 0


def size2(v: Any, default: int) -> tuple[int, int]:
    """A MATLAB size parameter (scalar or pair) as a pair."""
    if v is None:
        return (default, default)
    if type(v) is tuple and len(v) == 2 and type(v[0]) is int and type(v[1]) is int:
        return v
    t = _ints(v)
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


def _ints(v: Any) -> tuple[int, ...]:
    """A parameter's values as ints (the model keeps sizes as tuples of ints: those as they are)."""
    if type(v) is tuple and all([type(x) is int for x in v]):
        return v
    return tuple(int(x) for x in np.ravel(v))


def numel(a: Any) -> int:
    """``np.size(a)``, without its dispatch for the arrays a network holds."""
    return a.size if type(a) is np.ndarray else int(np.size(a))


def padding(lay: Layer, size: int) -> tuple[int, ...]:
    """A conv's or pool's padding ``(top, bottom, left, right)``; 'same' for odd ``size`` at stride
    1 is symmetric."""
    pad = lay.params.get("PaddingSize")
    p = _ints(pad) if pad is not None and (type(pad) is tuple or numel(pad) in (1, 2, 4)) else ()
    if len(p) == 4:
        return p
    if len(p) in (1, 2):
        return (p[0], p[0], p[-1], p[-1])
    mode = str(lay.params.get("PaddingMode", "manual"))
    return ((size - 1) // 2,) * 4 if mode == "same" else (0,) * 4


def check_conv(walk: GraphWalk, lay: Layer, k: int, cin: int, cout: int, stride: set[int],
               pad: int | None = None) -> int:
    """Check a convolution against torchvision's (padding ``pad``, by default ``(k - 1) // 2``);
    returns its stride."""
    problems = []
    want_pad = (k - 1) // 2 if pad is None else pad
    w = lay.learnables.get("Weights")
    if w is None or numel(w) == 0:
        walk.fail([(lay, "has no weights (an untrained layer graph?)")])
    shape = tuple(np.shape(w))
    filt = size2(lay.params.get("FilterSize"), k)
    if filt != (k, k) or shape[:2] != (k, k):
        problems.append(f"filter {filt[0]}x{filt[1]}, torchvision's is {k}x{k}")
    shape += (1,) * (4 - len(shape))
    if shape[2:4] != (cin, cout):
        problems.append(f"maps {shape[2]} -> {shape[3]} channels, torchvision's {cin} -> {cout}")
    s = size2(lay.params.get("Stride"), 1)
    if s[0] != s[1] or s[0] not in stride:
        problems.append(f"stride {s[0]}x{s[1]}, torchvision's is one of {sorted(stride)}")
    if size2(lay.params.get("DilationFactor"), 1) != (1, 1):
        problems.append("dilated")
    got = padding(lay, k)
    if got != (want_pad,) * 4:
        problems.append(f"padding {list(got)} [t b l r], torchvision's is {want_pad} all round")
    if problems:
        walk.fail([(lay, "; ".join(problems))])
    return s[0]


def check_bias(walk: GraphWalk, lay: Layer, c: int) -> None:
    """A convolution or FC whose bias torchvision keeps must hold ``c`` values."""
    if numel(lay.learnables.get("Bias", ())) != c:
        walk.fail([(lay, f"bias should hold {c} values")])


def check_bn(walk: GraphWalk, lay: Layer, c: int) -> None:
    """A BatchNorm of ``c`` channels with all four arrays."""
    bad = [k for k in _BN_ARRAYS if numel(lay.state[k] if k in lay.state
                                          else lay.learnables.get(k, ())) != c]
    if bad:
        walk.fail([(lay, f"{', '.join(bad)} should hold {c} values")])


_BN_ARRAYS = ("Offset", "Scale", "TrainedMean", "TrainedVariance")


def max_pool_setting(walk: GraphWalk, lay: Layer, k: int, s: int,
                     prefer_ceil: bool) -> tuple[int, bool]:
    """torchvision's ``MaxPool2d(k, s, padding, ceil_mode)`` that equals MATLAB's max pooling
    ``lay`` for every input size: returns ``(padding, ceil_mode)``, ``prefer_ceil`` first.

    MATLAB pads with -inf and counts ``floor((H + t + b - k) / s) + 1`` windows; torchvision pads
    ``padding`` all round and, with ``ceil_mode``, adds a last window that starts inside the
    input. They agree when the first window starts at the same place and the counts agree."""
    if (size2(lay.params.get("PoolSize"), 0), size2(lay.params.get("Stride"), 1)) != (
            (k, k), (s, s)):
        walk.fail([(lay, f"torchvision's max pooling here is {k}x{k}, stride {s}")])
    t, b, left, r = padding(lay, 0)
    if (t, b) != (left, r):
        walk.fail([(lay, f"padding {[t, b, left, r]} differs between rows and columns")])
    for ceil in (prefer_ceil, not prefer_ceil):
        if all(torch_pool_count(h, k, s, t, ceil) == (h + t + b - k) // s + 1
               for h in range(k, k + 2 * s)):
            return t, ceil
    walk.fail([(lay, f"padding {[t, b, left, r]}: no torchvision max pooling counts the same "
                     "windows")])


def torch_pool_count(h: int, k: int, s: int, p: int, ceil: bool) -> int:
    """How many windows torchvision's ``MaxPool2d(k, s, p, ceil_mode=ceil)`` has over ``h``."""
    span = h + 2 * p - k
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= h + p:
        out -= 1
    return out


def global_average_pool(walk: GraphWalk, after: Layer, hw: tuple[int, int]) -> Layer:
    """The global average pooling after ``after``: a GlobalAveragePooling2DLayer, or an
    AveragePooling2DLayer without padding whose window is the whole ``hw`` feature map (MATLAB's
    resnet101 has a 7x7 one), which torchvision's adaptive pooling to 1x1 equals."""
    succ = walk.successors(after)
    kind = succ[0].type if len(succ) == 1 else "GlobalAveragePooling2DLayer"
    if kind != "AveragePooling2DLayer":
        return walk.next(after, "GlobalAveragePooling2DLayer")
    pool = walk.next(after, kind)
    if size2(pool.params.get("PoolSize"), 0) != hw or any(padding(pool, 0)):
        walk.fail([(pool, f"averages {size2(pool.params.get('PoolSize'), 0)} windows; "
                          f"torchvision averages the whole {hw[0]}x{hw[1]} map (no padding)")])
    return pool


def classifier_head(walk: GraphWalk, after: Layer, features: int,
                    spatial: tuple[int, int, int] | None = None) -> tuple[Layer, int]:
    """The fully connected layer after ``after`` taking ``features`` inputs (from an H x W x C
    ``spatial`` input when given); returns it and its number of outputs."""
    fc = walk.next(after, "FullyConnectedLayer")
    w = fc.learnables.get("Weights", np.zeros(0))
    got = np.shape(w)[1] if np.ndim(w) == 2 else np.prod(np.shape(w)[:3], dtype=int)
    if numel(w) == 0 or got != features or (
            spatial is not None and np.ndim(w) == 4 and tuple(np.shape(w)[:3]) != spatial):
        walk.fail([(fc, f"weights {np.shape(w)}: the layer must map {features} features")])
    k = numel(w) // features
    if numel(fc.learnables.get("Bias", ())) not in (0, k):
        walk.fail([(fc, f"bias should hold {k} values")])
    return fc, k


def classification_end(walk: GraphWalk, last: Layer, k: int) -> list[str] | None:
    """Softmax and classification output after the logits ``last`` (either may be absent, as in
    a dlnetwork); returns the class names, checked against ``k`` outputs."""
    end = last
    for kind in ("SoftmaxLayer", "ClassificationOutputLayer"):
        after = walk.successors(end)
        if not after:
            break
        regression = [s for s in after if s.type == "RegressionOutputLayer"]
        if regression:
            walk.fail([(s, f"a regression head; torchvision's {walk.family} classifies")
                       for s in regression])
        end = walk.next(end, kind)
    if walk.successors(end):
        walk.fail([(s, f"after the output layer {end.name}") for s in walk.successors(end)])
    names = walk.net.class_names
    if names is not None and len(names) != k:
        walk.fail([(end, f"{len(names)} class names for {k} outputs")])
    return names
