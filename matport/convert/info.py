"""What a converted model remembers about the MATLAB network it came from.

Every module matport builds carries a :class:`ModelInfo` as its ``matport`` attribute::

    model = matport.load_resnet50("net.mat")
    model.matport.class_names        # ['cat', 'dog', ...] or None
    model(model.matport.preprocess(images))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from matport.errors import ArgumentError
from matport.network.model import Normalization

if TYPE_CHECKING:
    import torch
    from torch import nn

LAYOUTS = ("NCHW", "NC", "NTC")

#: Post-processing that turns a model's outputs into MATLAB's: ``"softmax"`` over the class axis
#: (MATLAB's terminal softmax, taken out so that the model returns logits).
Postprocess = Literal["softmax"]
_NORMALIZATION_ARRAYS = ("mean", "std", "min", "max")


@dataclass(eq=False)
class ModelInfo:
    """The MATLAB facts a converted model needs beside its weights.

    - ``class_names``: the output layer's classes in output order (None when the network has none);
    - ``input_size``: MATLAB's InputSize (``(224, 224, 3)``, ``(C,)`` for features ...);
    - ``layout``: the tensor layout the model takes: ``"NCHW"``, ``"NC"`` or ``"NTC"``;
    - ``normalization``: the input layer's normalization, applied by :meth:`preprocess` (never by
      the model itself);
    - ``source`` / ``variable``: the file and the variable path the network was read from;
    - ``layer_map``: MATLAB layer name -> dotted path of the submodule whose output equals that
      layer's output (layers without such a module are absent; torchvision's ReLUs work in
      place, so a forward hook must clone what it keeps);
    - ``architecture``: a JSON-able description the model can be rebuilt from
      (``{"family": "resnet50", ...}`` or ``{"family": "graph", "spec": ...}``);
    - ``postprocess``: what MATLAB applied after the model's outputs (``"softmax"``: the model
      returns logits, :meth:`postprocess_outputs` gives MATLAB's probabilities), or None when the
      model's outputs are MATLAB's.
    """

    class_names: list[str] | None
    input_size: tuple[int, ...]
    layout: str
    normalization: Normalization = field(default_factory=Normalization)
    source: str = ""
    variable: str = ""
    layer_map: dict[str, str] = field(default_factory=dict)
    architecture: dict[str, Any] = field(default_factory=dict)
    postprocess: Postprocess | None = None

    def preprocess(self, x: Any) -> torch.Tensor:
        """MATLAB's input layer applied to ``x`` (see :mod:`matport.convert.preprocess`)."""
        from matport.convert.preprocess import preprocess

        return preprocess(x, self.normalization, self.input_size, self.layout)

    def postprocess_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """MATLAB's outputs from the model's: the recorded :attr:`postprocess` applied.

        Args:
            outputs: what the model returned (logits ``N x C``, ``N x C x H x W`` or
                ``N x T x C``).

        Returns:
            The softmax over the class axis (1 for ``N x C`` and ``N x C x H x W``, the last for
            ``N x T x C``) when ``postprocess`` is ``"softmax"``; ``outputs`` itself otherwise.
        """
        if self.postprocess is None:
            return outputs
        return outputs.softmax(dim=-1 if outputs.dim() == 3 else 1)

    @property
    def num_classes(self) -> int | None:
        """The number of classes (None when the network has no class names)."""
        return None if self.class_names is None else len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """Plain values and tensors only (loadable with ``torch.load(weights_only=True)``)."""
        import torch

        norm = self.normalization
        arrays = {k: getattr(norm, k) for k in _NORMALIZATION_ARRAYS}
        return {
            "class_names": None if self.class_names is None else list(self.class_names),
            "input_size": list(self.input_size),
            "layout": self.layout,
            "normalization": {
                "type": norm.type,
                "dimension": norm.dimension,
                **{k: None if a is None else torch.from_numpy(np.array(a))
                   for k, a in arrays.items()},
            },
            "source": self.source,
            "variable": self.variable,
            "layer_map": dict(self.layer_map),
            "architecture": self.architecture,
            "postprocess": self.postprocess,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        """The inverse of :meth:`to_dict`."""
        n = d["normalization"]
        arrays = {k: None if n.get(k) is None else n[k].numpy() for k in _NORMALIZATION_ARRAYS}
        return cls(
            class_names=None if d["class_names"] is None else list(d["class_names"]),
            input_size=tuple(int(s) for s in d["input_size"]),
            layout=d["layout"],
            normalization=Normalization(type=n["type"], dimension=n["dimension"], **arrays),
            source=d.get("source", ""),
            variable=d.get("variable", ""),
            layer_map=dict(d.get("layer_map", {})),
            architecture=d.get("architecture", {}),
            postprocess=d.get("postprocess"),
        )

    def summary(self) -> str:
        """A few lines for reports: classes, input size, normalization."""
        if self.class_names is None:
            classes = "none (no output layer)"
        else:
            shown = ", ".join(self.class_names[:5]) + (", ..." if len(self.class_names) > 5 else "")
            classes = f"{len(self.class_names)} ({shown})"
        lines = [
            f"classes:       {classes}",
            f"input:         {'x'.join(map(str, self.input_size))} (MATLAB InputSize), "
            f"tensor layout {self.layout}",
            f"normalization: {describe_normalization(self.normalization)}",
        ]
        if self.postprocess is not None:
            lines.append(f"outputs:       logits (MATLAB's {self.postprocess}: "
                         "model.matport.postprocess_outputs)")
        return "\n".join(lines)


def describe_normalization(norm: Normalization) -> str:
    """``zerocenter (mean image 224x224x3)``, ``none`` ..."""
    parts = []
    for name in _NORMALIZATION_ARRAYS:
        a = getattr(norm, name)
        if a is not None:
            a = np.asarray(a)
            kind = "per-channel" if a.ndim >= 3 and a.shape[0] == a.shape[1] == 1 else "array"
            if a.ndim >= 3 and a.shape[0] * a.shape[1] > 1:
                kind = "image"
            parts.append(f"{name} {kind} {'x'.join(map(str, a.shape))}")
    return norm.type + (f" ({', '.join(parts)})" if parts else "")


def attach_info(model: nn.Module, info: ModelInfo) -> None:
    """Set ``model.matport``: the one place a converted model gets its :class:`ModelInfo`.

    Args:
        model: the converted module.
        info: what it remembers of its MATLAB network.
    """
    setattr(model, "matport", info)  # noqa: B010 (not a declared attribute of torch's classes)


def info_of(model: nn.Module) -> ModelInfo:
    """``model.matport``: the one place a converted model's :class:`ModelInfo` is read.

    Args:
        model: a module built by matport.

    Returns:
        Its ModelInfo.

    Raises:
        ArgumentError: ``model`` was not built by matport.
    """
    info = getattr(model, "matport", None)
    if not isinstance(info, ModelInfo):
        raise ArgumentError(f"{type(model).__name__} was not built by matport (it has no "
                            "ModelInfo, model.matport): convert it with matport.load, "
                            "matport.load_torchvision or matport.load_checkpoint")
    return info
