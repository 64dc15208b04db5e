"""Layer converters: a :class:`~matport.network.model.Layer` -> ``nn.Module``, one module per
layer family (``conv``, ``pooling``, ``normalization``, ``activation``, ``recurrent``,
``attention``, ``shape``, ``io``; ``toolbox`` for MathWorks classes outside
``nnet.cnn.layer``), registered in :mod:`.registry` with ``@converts``.

Tensor layouts on the PyTorch side (the *format* of a layer's input and output):

- ``image``: ``N x C x H x W`` (MATLAB ``H x W x C x N``);
- ``vector``: ``N x C`` (MATLAB ``C x N``);
- ``sequence``: ``N x T x C`` (batch first; MATLAB ``C x N x T``).

Standard ``torch.nn`` modules are used wherever one computes exactly what MATLAB does; small
modules cover the rest (asymmetric or 'same' padding, flatten in MATLAB's order, recurrent
layers with stored initial states and 'last' output mode, max unpooling, self-attention, ...).
A converter is ``fn(layer, context) -> nn.Module``; :func:`register_converter` adds or replaces
a user converter for a MATLAB class (full name ``"nnet.cnn.layer.Convolution2DLayer"``, short
name ``"Convolution2DLayer"``, or a user-defined class such as ``"myproject.ScaleLayer"``).
"""

from matport.convert.layers import (  # noqa: F401  (registers the built-in converters)
    activation,
    attention,
    conv,
    io,
    normalization,
    pooling,
    recurrent,
    shape,
    toolbox,
)
from matport.convert.layers.registry import (
    ConversionContext,
    Converter,
    builtin_classes,
    find_converter,
    register_converter,
    unregister_converter,
)
from matport.errors import LayerNotConvertible
from matport.network.specs import IMAGE, SEQUENCE, VECTOR, Format


def layout_of(fmt: Format) -> str:
    """The PyTorch layout string of a format.

    Args:
        fmt: ``image``, ``vector`` or ``sequence``.

    Returns:
        ``NCHW``, ``NC`` or ``NTC``.
    """
    return {IMAGE: "NCHW", VECTOR: "NC", SEQUENCE: "NTC"}[fmt]


__all__ = [
    "ConversionContext",
    "Converter",
    "LayerNotConvertible",
    "builtin_classes",
    "find_converter",
    "layout_of",
    "register_converter",
    "unregister_converter",
]
