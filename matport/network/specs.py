"""One :class:`LayerSpec` per MATLAB layer class: the torch-free facts matport knows about it.

A spec says which ports a layer has, the format of its output, which arrays it stores (with their
MATLAB dimensions), the gate order of a recurrent layer, whether it is an input or output layer,
and how MATLAB saves it. :func:`spec_of` looks a class up by its full name; a class without a
spec (a user-defined layer, a MathWorks class matport does not know) gives None, and every caller
has to decide what that means: nothing falls through to a default silently.

Array dimensions are written as MATLAB stores them, one symbol per dimension: ``"1"`` for a
singleton, a name bound by the layer's hyper-parameters or inputs (``H``, ``W`` filter size,
``C`` input channels, ``F`` filters, ``O`` outputs, ``N`` hidden units, ...), optionally with a
multiplier (``"4N"``: four gate blocks of ``N`` rows).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from matport.network.model import Layer

Format = Literal["image", "vector", "sequence"]
Role = Literal["input", "output", "hidden"]

IMAGE: Format = "image"
VECTOR: Format = "vector"
SEQUENCE: Format = "sequence"

LAYER_PACKAGE = "nnet.cnn.layer."


@dataclass(frozen=True)
class ArraySpec:
    """An array a layer class stores.

    ``dims`` are its MATLAB dimensions (see the module docstring); ``state`` says it is training
    state (``Layer.state``) rather than a learnable; ``required`` that conversion needs it (absent
    or empty means an untrained layer); ``restore_ndim`` that MATLAB drops trailing singleton
    dimensions of it when saving, so the reader pads it back to ``len(dims)`` dimensions.
    """

    name: str
    dims: tuple[str, ...]
    required: bool = True
    state: bool = False
    restore_ndim: bool = False


def _one_output(layer: Layer) -> tuple[str, ...]:
    return ("out",)


def _first_format(layer: Layer, first: Format) -> Format:
    return first


@dataclass(frozen=True)
class LayerSpec:
    """The facts about one MATLAB layer class.

    ``input_ports`` is None where the inputs are ``in1, in2, ...`` (or a single unnamed one);
    ``output_ports(layer)`` names the outputs (they may depend on the layer's settings);
    ``output_format(layer, first)`` is the format of the main output given the first input's
    format; ``gate_order`` lists MATLAB's gate blocks in the order ONNX stores them (recurrent
    layers) and ``directions`` how many directions the weights hold; ``keeps_size`` says the
    output has the first input's size; ``version`` and ``plain`` say how MATLAB saves the class
    (the struct ``Version``; a plain property map instead of a ``saveobj`` struct);
    ``not_learnable`` lists fields named like learnable arrays that are hyper-parameters here.
    """

    class_name: str
    role: Role = "hidden"
    arrays: tuple[ArraySpec, ...] = ()
    input_ports: tuple[str, ...] | None = None
    output_ports: Callable[[Layer], tuple[str, ...]] = _one_output
    output_format: Callable[[Layer, Format], Format] = _first_format
    gate_order: tuple[int, ...] | None = None
    directions: int = 1
    keeps_size: bool = False
    version: int = 1
    plain: bool = False
    not_learnable: frozenset[str] = field(default_factory=frozenset)

    @functools.cached_property
    def type(self) -> str:
        """The short class name (``"Convolution2DLayer"``)."""
        return self.class_name.rsplit(".", 1)[-1]

    @functools.cached_property
    def required_arrays(self) -> tuple[str, ...]:
        """The arrays conversion needs, in spec order."""
        return tuple(a.name for a in self.arrays if a.required)

    def array(self, name: str) -> ArraySpec | None:
        """The spec of the array ``name`` (None when the class stores no such array)."""
        return self._arrays_by_name.get(name)

    @functools.cached_property
    def _arrays_by_name(self) -> dict[str, ArraySpec]:
        by_name: dict[str, ArraySpec] = {}
        for a in self.arrays:
            by_name.setdefault(a.name, a)
        return by_name


def returns_sequence(layer: Layer) -> bool:
    """A recurrent layer's output mode: True for 'sequence', False for 'last'.

    Args:
        layer: an LSTM, BiLSTM, projected LSTM or GRU layer.

    Returns:
        Whether it returns every time step.
    """
    if "OutputMode" in layer.params:
        return str(layer.params["OutputMode"]) == "sequence"
    return bool(layer.params.get("ReturnSequence", True))


def _fixed(fmt: Format) -> Callable[[Layer, Format], Format]:
    return lambda layer, first: fmt


def _flattens(layer: Layer, first: Format) -> Format:
    return VECTOR if first == IMAGE else first


def _recurrent_format(layer: Layer, first: Format) -> Format:
    return SEQUENCE if returns_sequence(layer) else VECTOR


def _pooling_outputs(layer: Layer) -> tuple[str, ...]:
    return ("out", "indices", "size") if layer.params.get("HasUnpoolingOutputs") else ("out",)


def _a(name: str, *dims: str, required: bool = True, restore: bool = False) -> ArraySpec:
    return ArraySpec(name, dims, required=required, restore_ndim=restore)


def _s(name: str, *dims: str, required: bool = True) -> ArraySpec:
    return ArraySpec(name, dims, required=required, state=True)


def _states(rows: str) -> tuple[ArraySpec, ...]:
    """A recurrent layer's optional stored states, ``rows`` long."""
    return tuple(_s(name, rows, required=False) for name in (
        "HiddenState", "CellState", "InitialHiddenState", "InitialCellState"))



_ATTENTION = (_a("QueryWeights", "K", "C"), _a("KeyWeights", "K", "C"),
              _a("ValueWeights", "V", "C"), _a("OutputWeights", "O", "V"),
              _a("QueryBias", "K", "1", required=False), _a("KeyBias", "K", "1", required=False),
              _a("ValueBias", "V", "1", required=False),
              _a("OutputBias", "O", "1", required=False))
_LSTM_GATES = (0, 3, 1, 2)  # MATLAB [i; f; g; o] -> ONNX (i, o, f, g)
_GRU_GATES = (1, 0, 2)  # MATLAB [r; z; h] -> ONNX (z, r, h)


def _specs() -> list[LayerSpec]:
    conv = (_a("Weights", "H", "W", "C", "F", restore=True),
            _a("Bias", "1", "1", "F", required=False, restore=True))
    norm = (_a("Offset", "C"), _a("Scale", "C"))
    lstm_arrays = (_a("InputWeights", "4N", "D"), _a("RecurrentWeights", "4N", "N"),
                   _a("Bias", "4N", "1"))
    return [
        LayerSpec("ImageInputLayer", "input", output_format=_fixed(IMAGE), version=5),
        LayerSpec("FeatureInputLayer", "input", output_format=_fixed(VECTOR), version=2),
        LayerSpec("SequenceInputLayer", "input", output_format=_fixed(SEQUENCE), version=5),
        LayerSpec("Image3dInputLayer", "input", output_format=_fixed(IMAGE)),
        LayerSpec("Convolution2DLayer", arrays=conv, version=8),
        LayerSpec("GroupedConvolution2DLayer",
                  arrays=(_a("Weights", "H", "W", "Cg", "Fg", "G", restore=True),
                          _a("Bias", "1", "1", "Fg", "G", required=False, restore=True))),
        LayerSpec("TransposedConvolution2DLayer",
                  arrays=(_a("Weights", "H", "W", "F", "C", restore=True),
                          _a("Bias", "1", "1", "F", required=False, restore=True)), version=2),
        LayerSpec("BatchNormalizationLayer", keeps_size=True, version=3,
                  arrays=norm + (_s("TrainedMean", "C"), _s("TrainedVariance", "C"))),
        LayerSpec("LayerNormalizationLayer", arrays=norm, keeps_size=True),
        *(LayerSpec(kind, keeps_size=True) for kind in (
            "ReLULayer", "ClippedReLULayer", "DropoutLayer")),
        *(LayerSpec(kind, keeps_size=True, plain=True) for kind in (
            "ELULayer", "TanhLayer", "SigmoidLayer", "SwishLayer", "GELULayer")),
        LayerSpec("LeakyReLULayer", keeps_size=True, not_learnable=frozenset({"Scale"})),
        LayerSpec("CrossChannelNormalizationLayer", keeps_size=True),
        LayerSpec("SoftmaxLayer", keeps_size=True, version=4),
        LayerSpec("MaxPooling2DLayer", output_ports=_pooling_outputs, version=3),
        LayerSpec("AveragePooling2DLayer"),
        LayerSpec("GlobalAveragePooling2DLayer"),
        LayerSpec("GlobalMaxPooling2DLayer"),
        LayerSpec("MaxUnpooling2DLayer", input_ports=("in", "indices", "size")),
        LayerSpec("FullyConnectedLayer", output_format=_flattens, version=3,
                  arrays=(_a("Weights", "O", "I"), _a("Bias", "O", "1", required=False))),
        LayerSpec("AdditionLayer"),
        LayerSpec("DepthConcatenationLayer"),
        LayerSpec("ConcatenationLayer"),
        LayerSpec("FlattenLayer", output_format=_flattens),
        LayerSpec("Resize2DLayer", not_learnable=frozenset({"Scale"}), version=3),
        LayerSpec("LSTMLayer", arrays=lstm_arrays + _states("N"), gate_order=_LSTM_GATES,
                  output_format=_recurrent_format, version=5),
        LayerSpec("LSTMProjectedLayer", gate_order=_LSTM_GATES, output_format=_recurrent_format,
                  arrays=(_a("InputWeights", "4N", "P"), _a("RecurrentWeights", "4N", "Q"),
                          _a("Bias", "4N", "1"), _a("InputProjector", "D", "P"),
                          _a("OutputProjector", "N", "Q")) + _states("N")),
        LayerSpec("BiLSTMLayer", gate_order=_LSTM_GATES, directions=2,
                  arrays=(_a("InputWeights", "8N", "D"), _a("RecurrentWeights", "8N", "N"),
                          _a("Bias", "8N", "1")) + _states("2N"),
                  output_format=_recurrent_format, version=3),
        LayerSpec("GRULayer", gate_order=_GRU_GATES, output_format=_recurrent_format, version=2,
                  arrays=(_a("InputWeights", "3N", "D"), _a("RecurrentWeights", "3N", "N"),
                          _a("Bias", "B", "1")) + _states("N")),
        LayerSpec("SelfAttentionLayer", arrays=_ATTENTION),
        LayerSpec("PositionEmbeddingLayer", arrays=(_a("Weights", "O", "P"),)),
        LayerSpec("Indexing1DLayer", output_format=_fixed(VECTOR), plain=True),
        LayerSpec("FunctionLayer", plain=True),
        LayerSpec("ClassificationOutputLayer", "output", keeps_size=True, version=4),
        LayerSpec("RegressionOutputLayer", "output", keeps_size=True, version=2),
        LayerSpec("PixelClassificationLayer", "output", keeps_size=True, version=3),
    ]


def _other_packages() -> list[LayerSpec]:
    """MathWorks layer classes outside ``nnet.cnn.layer`` (toolboxes, pretrained networks, the
    ONNX and Keras importers), by full name; they save as plain property maps. Their fixed
    ``Scale``/``Bias``/``Offset`` arrays are not learnable: they are kept as state."""
    def fixed(*names: str) -> tuple[ArraySpec, ...]:
        return tuple(ArraySpec(n, (n,), required=False, state=True) for n in names)

    def plain(name: str, **kw: Any) -> LayerSpec:
        return LayerSpec(name, plain=True, **kw)

    return [
        plain("rl.layer.ScalingLayer", keeps_size=True, arrays=fixed("Scale", "Bias")),
        plain("rl.layer.SoftplusLayer", keeps_size=True),
        plain("rl.layer.QuadraticLayer", output_format=_flattens),
        plain(LAYER_PACKAGE + "QuadraticLayer", output_format=_flattens),
        plain("nnet.shufflenet.layer.ChannelShufflingLayer", keeps_size=True),
        plain("nnet.inceptionresnetv2.layer.ScalingFactorLayer", keeps_size=True,
              arrays=fixed("Scale")),
        plain("nnet.onnx.layer.ElementwiseAffineLayer", keeps_size=True,
              arrays=fixed("Scale", "Offset")),
        plain("nnet.onnx.layer.IdentityLayer", keeps_size=True),
        plain("nnet.onnx.layer.VerifyBatchSizeLayer", keeps_size=True),
        plain("nnet.onnx.layer.GlobalAveragePooling2dLayer"),
        plain("nnet.keras.layer.GlobalAveragePooling2dLayer"),
        plain("nnet.keras.layer.FlattenCStyleLayer", output_format=_flattens),
        plain("nnet.keras.layer.ZeroPadding2dLayer"),
    ]


SPECS: dict[str, LayerSpec] = {
    **{LAYER_PACKAGE + s.class_name: replace(s, class_name=LAYER_PACKAGE + s.class_name)
       for s in _specs()},
    **{s.class_name: s for s in _other_packages()},
}
# Packages of MathWorks classes (the rest are classes users wrote).
MATHWORKS_PACKAGES = ("nnet.", "rl.", "images.", "vision.", "audio.", "signal.", "lidar.",
                      "deep.", "dltargets.", "matlab.")


def is_mathworks_class(class_name: str) -> bool:
    """Whether a class belongs to one of MathWorks' packages (rather than to a user).

    Args:
        class_name: the full class name.

    Returns:
        True for ``nnet.*``, ``rl.*`` and the other MathWorks packages.
    """
    return class_name.startswith(MATHWORKS_PACKAGES)


def spec_of(class_name: str) -> LayerSpec | None:
    """The spec of a MATLAB layer class.

    Args:
        class_name: the full class name (``"nnet.cnn.layer.Convolution2DLayer"``).

    Returns:
        Its :class:`LayerSpec`, or None for a class matport has no spec for (user-defined, or a
        MathWorks class it does not know): the caller decides what that means.
    """
    return SPECS.get(class_name)


def types_with_role(role: Role) -> frozenset[str]:
    """The short names of the classes whose spec has ``role``.

    Args:
        role: ``input``, ``output`` or ``hidden``.

    Returns:
        The set of short class names.
    """
    return frozenset(s.type for s in SPECS.values() if s.role == role)


def array_names(state: bool) -> frozenset[str]:
    """The array field names some spec lists as learnable (``state=False``), or as state and
    none as learnable (``state=True``): how to read such a field of a class without a spec.

    Args:
        state: which kind of array.

    Returns:
        The field names.
    """
    learnable = frozenset(a.name for s in SPECS.values() for a in s.arrays if not a.state)
    if not state:
        return learnable
    return frozenset(a.name for s in SPECS.values() for a in s.arrays if a.state) - learnable


def output_ports(layer: Layer) -> tuple[str, ...]:
    """The names of a layer's outputs (``("out",)`` for a class without a spec).

    Args:
        layer: the layer.

    Returns:
        Its output port names, the main output first.
    """
    spec = spec_of(layer.class_name)
    return spec.output_ports(layer) if spec is not None else ("out",)


def output_index(layer: Layer, port: str | None) -> int:
    """The index of an output port among the layer's outputs (0 for an unnamed or unknown one).

    Args:
        layer: the layer.
        port: the port name of a connection (``"indices"``), or None.

    Returns:
        The index into :func:`output_ports`.
    """
    ports = output_ports(layer)
    return ports.index(port) if port in ports else 0


def input_ports(layer: Layer) -> tuple[str, ...] | None:
    """The names of a layer's inputs where they are not ``in1, in2, ...`` (else None).

    Args:
        layer: the layer.

    Returns:
        The port names in call order, or None.
    """
    spec = spec_of(layer.class_name)
    return spec.input_ports if spec is not None else None


def output_format(layer: Layer, input_formats: Sequence[Format]) -> Format:
    """The format of a layer's main output.

    Args:
        layer: the layer.
        input_formats: the formats of its inputs, in port order.

    Returns:
        The spec's rule applied to the first input's format (``vector`` without inputs); a
        class without a spec (converted by a user converter) keeps its first input's format.
    """
    first = input_formats[0] if input_formats else VECTOR
    spec = spec_of(layer.class_name)
    return spec.output_format(layer, first) if spec is not None else first
