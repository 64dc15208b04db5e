"""The ResNet-50 entry of the family registry: a MATLAB ResNet-50 as a native
``torchvision.models.ResNet`` that computes what MATLAB computed (see
:mod:`matport.convert.families.resnet` for the matching and the transplant).

MATLAB's ResNet-50 differs from torchvision's in what a ``state_dict`` does not hold: the stride
of stages 3-5 sits on the first 1x1 convolution (torchvision: on the 3x3) and BatchNorm epsilon is
0.001 (torchvision: 1e-5). Rebuild with :func:`matlab_resnet50` or use
:mod:`matport.checkpoint`; a stock ``torchvision.models.resnet50()`` silently differs.
"""

from __future__ import annotations

import os

import torch
import torchvision

from matport.convert.families.registry import load_torchvision
from matport.convert.families.resnet import StrideOn, matlab_resnet
from matport.network.model import Network

FAMILY = "resnet50"
MATLAB_EPSILON = 0.001


def matlab_resnet50(
    num_classes: int = 1000,
    *,
    stride_on: StrideOn = "conv1",
    bn_eps: float | dict[str, float] = MATLAB_EPSILON,
    device: torch.device | str | None = None,
) -> torchvision.models.ResNet:
    """torchvision's resnet50 with MATLAB's hyper-parameters.

    Args:
        num_classes: outputs of ``fc``.
        stride_on: the conv of stages 2-4's first block that strides: ``"conv1"`` (the 1x1,
            MATLAB) or ``"conv2"`` (the 3x3, torchvision).
        bn_eps: BatchNorm epsilon, one value or module path -> value.
        device: where to build; randomly initialised like torchvision's unless ``"meta"``.

    Returns:
        The ``torchvision.models.ResNet``.
    """
    return matlab_resnet(FAMILY, num_classes, stride_on=stride_on, bn_eps=bn_eps,
                         device="cpu" if device is None else device)


def load_resnet50(
    path_or_network: str | os.PathLike[str] | Network, variable: str | None = None
) -> torchvision.models.ResNet:
    """Load a MATLAB ResNet-50 (DAGNetwork, dlnetwork, LayerGraph or Designer parameters struct,
    v7 or v7.3) as a ``torchvision.models.ResNet`` in eval mode.

    The model takes what MATLAB's first convolution takes: 0-255 RGB images *after* the input
    layer's normalization; ``model.matport.preprocess(images)`` does that normalization
    (:class:`~matport.convert.info.ModelInfo`). Weights are not copied where the layouts allow:
    read from a file, the model's tensors are the arrays the reader made (square kernels
    reordered in place), so loading peaks little above the weights' size; given a ``Network``,
    the model shares the arrays that need no reordering (1x1 convolutions, BatchNorm scale,
    offset, variance) with it and never writes them (pass ``copy.deepcopy(net)`` to keep them
    apart).

    Args:
        path_or_network: a ``.mat`` file or a read :class:`Network`.
        variable: the network's variable path when the file holds several.

    Returns:
        The ``torchvision.models.ResNet``.

    Raises:
        ConversionError: naming the layers when the network does not fit torchvision's resnet50.
    """
    model = load_torchvision(path_or_network, variable, family=FAMILY)
    assert isinstance(model, torchvision.models.ResNet)
    return model
