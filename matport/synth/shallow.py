"""Synthetic shallow networks (Deep Learning Toolbox's ``network`` class, old class system),
laid out property by property as MATLAB saves them (the layout of a real ``fitnet`` file of
2016): ``fitnet``, ``patternnet``, ``cascadeforwardnet`` and variants, with random weights and
processing settings computed from random training data as MATLAB's ``create`` step does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from matport.mat.values import MatObject, Struct


def _num(x: float) -> np.ndarray:
    return np.array([[float(x)]])


def _cells(items: Sequence[Any], shape: tuple[int, int]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    flat = list(items)
    for k in range(out.size):
        out[np.unravel_index(k, shape, order="F")] = flat[k] if k < len(flat) else np.zeros(
            (0, 0))
    return out


def _note(what: str) -> Struct:
    return Struct(note=f"Put your custom {what} information here.")


def mapminmax_settings(x: np.ndarray, ymin: float = -1.0, ymax: float = 1.0) -> Struct:
    """``mapminmax`` settings for training data ``x`` (features x samples)."""
    xmin, xmax = x.min(1, keepdims=True), x.max(1, keepdims=True)
    xrange = xmax - xmin
    gain = (ymax - ymin) / np.where(xrange == 0, np.inf, xrange)
    fix = xrange == 0
    return Struct(name="mapminmax", xrows=_num(len(x)), xmax=xmax, xmin=xmin, xrange=xrange,
                  yrows=_num(len(x)), ymax=_num(ymax), ymin=_num(ymin), yrange=_num(ymax - ymin),
                  gain=np.where(fix, 1.0, gain), xoffset=np.where(fix, ymin, xmin),
                  no_change=np.array([[False]]))


def mapstd_settings(x: np.ndarray, ymean: float = 0.0, ystd: float = 1.0) -> Struct:
    """``mapstd`` settings for ``x``."""
    xmean, xstd = x.mean(1, keepdims=True), x.std(1, ddof=1, keepdims=True)
    return Struct(name="mapstd", xrows=_num(len(x)), yrows=_num(len(x)), xmean=xmean, xstd=xstd,
                  ymean=_num(ymean), ystd=_num(ystd), gain=ystd / xstd, xoffset=xmean,
                  no_change=np.array([[False]]))


def removeconstantrows_settings(x: np.ndarray, max_range: float = 0.0) -> Struct:
    """``removeconstantrows`` settings for ``x`` (rows whose range is at most ``max_range``)."""
    rng = x.max(1) - x.min(1)
    remove = np.flatnonzero(rng <= max_range)
    keep = np.flatnonzero(rng > max_range)
    value = ((x.max(1) + x.min(1)) / 2)[remove].reshape(-1, 1)
    return Struct(max_range=_num(max_range), keep=(keep + 1.0).reshape(1, -1),
                  remove=(remove + 1.0).reshape(1, -1), value=value, xrows=_num(len(x)),
                  yrows=_num(len(keep)), constants=value.copy(),
                  no_change=np.array([[remove.size == 0]]))


def fixunknowns_settings(x: np.ndarray) -> Struct:
    """``fixunknowns`` settings for ``x`` (rows holding NaN get a flag row after them)."""
    unknown_rows = np.isnan(x).any(1)
    finite = np.where(np.isfinite(x), x, 0.0)
    counts = np.isfinite(x).sum(1)
    xmeans = np.where(counts > 0, finite.sum(1) / np.maximum(counts, 1), 0.0).reshape(-1, 1)
    shift = np.concatenate([[0], np.cumsum(unknown_rows[:-1])]).astype(float).reshape(1, -1)
    unknown = np.flatnonzero(unknown_rows) + 1.0
    known = np.flatnonzero(~unknown_rows) + 1.0
    return Struct(name="fixunknowns", xrows=_num(len(x)),
                  yrows=_num(len(x) + unknown_rows.sum()), unknown=unknown.reshape(1, -1),
                  known=known.reshape(1, -1), shift=shift, xmeans=xmeans,
                  no_change=np.array([[unknown.size == 0]]))


def processpca_settings(x: np.ndarray, maxfrac: float = 0.0) -> Struct:
    """``processpca`` settings for ``x`` (components whose variance fraction exceeds
    ``maxfrac``)."""
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    var = s**2 / (x.shape[1] - 1)
    keep = var / var.sum() > maxfrac
    transform = u[:, keep].T
    return Struct(name="processpca", xrows=_num(len(x)), maxfrac=_num(maxfrac),
                  yrows=_num(int(keep.sum())), transform=transform,
                  inverseTransform=np.linalg.pinv(transform), no_change=np.array([[False]]))


SETTINGS: dict[str, Callable[[np.ndarray], Struct]] = {
    "mapminmax": mapminmax_settings,
    "mapstd": mapstd_settings,
    "removeconstantrows": removeconstantrows_settings,
    "fixunknowns": fixunknowns_settings,
    "processpca": processpca_settings,
}


def _process(x: np.ndarray, fcns: Sequence[str]) -> tuple[list[Struct], np.ndarray]:
    """Settings for each function in turn and the processed data (``create`` then ``apply``)."""
    settings = []
    for fcn in fcns:
        s = SETTINGS[fcn](x)
        settings.append(s)
        if fcn in ("mapminmax", "mapstd"):
            x = (x - s["xoffset"]) * s["gain"] + s["ymin" if fcn == "mapminmax" else "ymean"]
        elif fcn == "removeconstantrows":
            x = x[s["keep"].ravel().astype(int) - 1]
        elif fcn == "processpca":
            x = s["transform"] @ x
        else:
            rows = np.arange(len(x)) + s["shift"].ravel().astype(int)
            unknown = s["unknown"].ravel().astype(int) - 1
            y = np.zeros((int(s["yrows"].item()), x.shape[1]))
            y[rows] = np.where(np.isnan(x), s["xmeans"], x)
            y[rows[unknown] + 1] = ~np.isnan(x[unknown])
            x = y
    return settings, x


def _io(kind: str, name: str, fcns: Sequence[str], settings: list[Struct], size: int,
        processed: int) -> Struct:
    fields: dict[str, Any] = {"name": name}
    if kind == "input":
        fields["feedbackOutput"] = np.zeros((0, 0))
    else:
        fields.update(feedbackInput=np.zeros((0, 0)), feedbackDelay=_num(0),
                      feedbackMode="none")
    fields.update(
        processFcns=_cells(list(fcns), (1, len(fcns))),
        processParams=_cells([Struct() for _ in fcns], (1, len(fcns))),
        processSettings=_cells(settings, (1, len(fcns))),
        processedRange=np.tile([[-1.0, 1.0]], (processed, 1)),
        processedSize=_num(processed),
        range=np.tile([[0.0, 1.0]], (size, 1)),
        size=_num(size),
        userdata=_note(kind),
    )
    fields["example" + kind.capitalize()] = np.zeros((0, 0))
    return Struct(fields)


def _layer(name: str, size: int, transfer: str, net_input: str) -> Struct:
    return Struct(dimensions=_num(size), distanceFcn="", distanceParam=Struct(),
                  distances=np.zeros((0, 0)), initFcn="initnw", name=name,
                  netInputFcn=net_input, netInputParam=Struct(), positions=np.zeros((0, 0)),
                  range=np.tile([[-1.0, 1.0]], (size, 1)), size=_num(size), topologyFcn="",
                  transferFcn=transfer, transferParam=Struct(), userdata=_note("layer"))


def _weight_info(rows: int, cols: int, delays: Sequence[int], weight_fcn: str) -> Struct:
    learn = Struct(lr=_num(0.01), mc=_num(0.9))
    return Struct(delays=np.array([list(map(float, delays))]), initFcn="",
                  initSettings=Struct(range=np.tile([[-1.0, 1.0]], (cols, 1))), learn=_num(1),
                  learnFcn="learngdm", learnParam=learn, size=np.array([[rows, cols]], float),
                  userdata=_note("weight"), weightFcn=weight_fcn, weightParam=Struct())


def shallow_network(
    train_inputs: Sequence[np.ndarray],
    layers: Sequence[tuple[str, int, str, str]],
    *,
    input_connect: np.ndarray,
    layer_connect: np.ndarray,
    outputs: Sequence[tuple[int, Sequence[str], np.ndarray]],
    input_processing: Sequence[Sequence[str]],
    title: str = "Custom Neural Network",
    input_weight_fcn: str = "dotprod",
    delays: int = 0,
    seed: int = 0,
) -> MatObject:
    """A ``network`` object as MATLAB saves it.

    Args:
        train_inputs: training data per input (features x samples), to compute the inputs'
            processing settings.
        layers: ``(name, size, transferFcn, netInputFcn)`` per layer.
        input_connect: layers x inputs logical matrix; ``layer_connect``: layers x layers.
        outputs: ``(0-based layer, processFcns, training targets size x samples)`` per output.
        input_processing: ``processFcns`` per input.
        title: ``net.name``; ``input_weight_fcn``: the input weights' ``weightFcn`` (layer
            weights use ``dotprod``).
        delays: when positive, every layer weight has delays ``1:delays`` (a dynamic network).
        seed: random weights.

    Returns:
        The :class:`MatObject` (``legacy=True``, class ``network``).
    """
    rng = np.random.default_rng(seed)
    nl, ni = len(layers), len(train_inputs)
    ins, in_sizes = [], []
    for j, (x, fcns) in enumerate(zip(train_inputs, input_processing, strict=True)):
        settings, px = _process(x, fcns)
        in_sizes.append(len(px))
        ins.append(_io("input", "Input" if ni == 1 else f"Input {j + 1}", fcns, settings,
                       len(x), len(px)))
    outs: list[Any] = [np.zeros((0, 0))] * nl
    output_connect = np.zeros((1, nl), bool)
    for i, fcns, t in outputs:
        settings, pt = _process(t, fcns)
        output_connect[0, i] = True
        outs[i] = _io("output", layers[i][0], fcns, settings, len(t), len(pt))
    sizes = [lay[1] for lay in layers]
    lay_delays = list(range(1, delays + 1)) or [0]
    iw = np.empty((nl, ni), object)
    iw_info = np.empty((nl, ni), object)
    lw = np.empty((nl, nl), object)
    lw_info = np.empty((nl, nl), object)
    for i in range(nl):
        for j in range(ni):
            cols = in_sizes[j]
            on = bool(input_connect[i, j])
            iw[i, j] = rng.standard_normal((sizes[i], cols)) if on else np.zeros((0, 0))
            iw_info[i, j] = (_weight_info(sizes[i], cols, [0], input_weight_fcn) if on
                             else np.zeros((0, 0)))
        for k in range(nl):
            cols = sizes[k] * len(lay_delays)
            on = bool(layer_connect[i, k])
            lw[i, k] = rng.standard_normal((sizes[i], cols)) / np.sqrt(cols) if on else \
                np.zeros((0, 0))
            lw_info[i, k] = _weight_info(sizes[i], cols, lay_delays, "dotprod") if on else \
                np.zeros((0, 0))
    biases = _cells([rng.standard_normal((s, 1)) for s in sizes], (nl, 1))
    bias_info = _cells([Struct(initFcn="", learn=np.array([[True]]), learnFcn="learngdm",
                               learnParam=Struct(lr=_num(0.01), mc=_num(0.9)), size=_num(s),
                               userdata=_note("layer")) for s in sizes], (nl, 1))
    num_weights = sum(a.size for a in [*iw.ravel(), *lw.ravel()]) + sum(sizes)
    props: dict[str, Any] = {
        "version": "8", "name": title,
        "efficiency": Struct(cacheDelayedInputs=np.array([[True]]),
                             flattenTime=np.array([[True]]), memoryReduction=_num(1),
                             flattenedTime=np.array([[True]])),
        "userdata": _note("custom network"),
        "numInputs": _num(ni), "numLayers": _num(nl), "numOutputs": _num(len(outputs)),
        "numInputDelays": _num(0), "numLayerDelays": _num(delays), "numFeedbackDelays": _num(0),
        "numWeightElements": _num(num_weights), "sampleTime": _num(1),
        "biasConnect": np.ones((nl, 1), bool), "inputConnect": np.asarray(input_connect, bool),
        "layerConnect": np.asarray(layer_connect, bool), "outputConnect": output_connect,
        "inputs": _cells(ins, (ni, 1)),
        "layers": _cells([_layer(*lay) for lay in layers], (nl, 1)),
        "biases": bias_info, "outputs": _cells(outs, (1, nl)),
        "inputWeights": iw_info, "layerWeights": lw_info,
        "adaptFcn": "adaptwb", "adaptParam": Struct(), "divideFcn": "dividerand",
        "divideParam": Struct(trainRatio=_num(0.7), valRatio=_num(0.15), testRatio=_num(0.15)),
        "divideMode": "sample", "initFcn": "initlay", "performFcn": "mse",
        "performParam": Struct(regularization=_num(0), normalization="none"),
        "plotFcns": _cells(["plotperform", "plottrainstate"], (1, 2)),
        "plotParams": _cells([Struct(), Struct()], (1, 2)),
        "derivFcn": "defaultderiv", "trainFcn": "trainlm",
        "trainParam": Struct(epochs=_num(1000), goal=_num(0), max_fail=_num(6)),
        "IW": iw, "LW": lw, "b": biases,
        "revert": Struct(IW=iw, LW=lw, b=biases),
        "gradientFcn": "defaultderiv", "gradientParam": Struct(),
    }
    return MatObject("network", props, legacy=True)


def chain(n: int) -> np.ndarray:
    """``layerConnect`` of a feedforward chain of ``n`` layers (layer i+1 takes layer i)."""
    return np.eye(n, k=-1, dtype=bool)


def cascade(n: int) -> np.ndarray:
    """``layerConnect`` of a cascade-forward network (every layer takes all earlier ones)."""
    return np.tril(np.ones((n, n), bool), k=-1)


def _data(rng: np.random.Generator, rows: int, samples: int = 40) -> np.ndarray:
    return rng.uniform(-3.0, 5.0, (rows, samples))


def shallow_cases() -> dict[str, MatObject]:
    """Variable name -> shallow network: ``fitnet``, ``patternnet``, ``cascadeforwardnet``,
    one small network per further transfer function (``tf_<name>``), a radial basis network
    (``dist``/``netprod``), two inputs and two outputs with every processing function, and two
    networks the converter refuses (``delays``: layer delays; ``unsupported``: functions it does
    not know)."""
    rng = np.random.default_rng(20261201)
    x = _data(rng, 6)
    x[2] = 0.25  # a constant row: removeconstantrows drops it
    t = _data(rng, 4)
    t[1] = -1.5
    cases = {
        "fitnet": shallow_network(
            [x], [("Hidden", 10, "tansig", "netsum"), ("Output", 3, "purelin", "netsum")],
            input_connect=np.array([[1], [0]]), layer_connect=chain(2),
            outputs=[(1, ("removeconstantrows", "mapminmax"), t)],
            input_processing=[("removeconstantrows", "mapminmax")],
            title="Function Fitting Neural Network", seed=1),
    }
    labels = np.eye(3)[:, rng.integers(0, 3, 40)]
    cases["patternnet"] = shallow_network(
        [_data(rng, 5)], [("Hidden", 8, "tansig", "netsum"), ("Output", 3, "softmax", "netsum")],
        input_connect=np.array([[1], [0]]), layer_connect=chain(2),
        outputs=[(1, ("removeconstantrows",), labels)],
        input_processing=[("removeconstantrows", "mapminmax")],
        title="Pattern Recognition Neural Network", seed=2)
    cases["cascadeforwardnet"] = shallow_network(
        [_data(rng, 4)], [("Hidden 1", 7, "logsig", "netsum"), ("Hidden 2", 5, "tansig", "netsum"),
                          ("Output", 2, "purelin", "netsum")],
        input_connect=np.ones((3, 1)), layer_connect=cascade(3),
        outputs=[(2, ("removeconstantrows", "mapminmax"), _data(rng, 2))],
        input_processing=[("removeconstantrows", "mapminmax")],
        title="Cascade-Forward Neural Network", seed=3)
    for k, fcn in enumerate(("poslin", "satlin", "satlins", "hardlim", "hardlims", "radbas",
                             "radbasn", "tribas", "elliotsig", "elliot2sig", "compet")):
        cases[f"tf_{fcn}"] = shallow_network(
            [_data(rng, 4)], [("Hidden", 6, fcn, "netsum"), ("Output", 2, "purelin", "netsum")],
            input_connect=np.array([[1], [0]]), layer_connect=chain(2),
            outputs=[(1, (), _data(rng, 2))], input_processing=[("mapminmax",)], seed=10 + k)
    cases["radial"] = shallow_network(
        [_data(rng, 3)], [("Radial", 9, "radbas", "netprod"), ("Output", 2, "purelin", "netsum")],
        input_connect=np.array([[1], [0]]), layer_connect=chain(2),
        outputs=[(1, ("mapminmax",), _data(rng, 2))], input_processing=[()],
        input_weight_fcn="dist", seed=30)
    unknown = _data(rng, 5)
    unknown[1, ::3] = np.nan
    unknown[3, 1] = np.nan
    cases["multi_io"] = shallow_network(
        [unknown, _data(rng, 4)],
        [("Hidden", 6, "tansig", "netsum"), ("Output", 3, "purelin", "netsum")],
        input_connect=np.array([[1, 1], [0, 1]]), layer_connect=chain(2),
        outputs=[(0, ("mapstd",), _data(rng, 6)), (1, ("processpca",), _data(rng, 3))],
        input_processing=[("fixunknowns", "mapstd"), ("processpca",)], seed=31)
    cases["delays"] = shallow_network(
        [_data(rng, 2)], [("Hidden", 4, "tansig", "netsum"), ("Output", 1, "purelin", "netsum")],
        input_connect=np.array([[1], [0]]), layer_connect=chain(2) | np.eye(2, dtype=bool),
        outputs=[(1, (), _data(rng, 1))], input_processing=[("mapminmax",)], delays=2,
        title="Layer-Recurrent Neural Network", seed=32)
    cases["unsupported"] = shallow_network(
        [_data(rng, 2)], [("Hidden", 4, "netinv", "netsum"), ("Output", 1, "purelin", "netsum")],
        input_connect=np.array([[1], [0]]), layer_connect=chain(2),
        outputs=[(1, (), _data(rng, 1))], input_processing=[("mapminmax",)], seed=33)
    cases["unsupported"].props["inputs"][0, 0]["processFcns"][0, 0] = "lvqoutputs"
    return cases
