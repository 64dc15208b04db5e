"""Choices shared by the PyTorch-side API and the command line (importing this loads no torch)."""

from typing import Literal, get_args

#: A registered model family: torchvision's builder name of the stock model a MATLAB network
#: becomes (matport.convert.families.registry holds what each one matches and builds).
Family = Literal["resnet18", "resnet50", "resnet101", "squeezenet1_1", "vgg16", "vgg19",
                 "densenet201", "inception_v3"]

#: How a network becomes a module: ``auto`` (the family it fits, else the general graph module),
#: ``graph`` (matport's general graph module) or one family (its torchvision model, or fail).
FamilyChoice = Literal["auto", "graph", Family]
FAMILY_NAMES: tuple[str, ...] = get_args(Family)
FAMILIES: tuple[str, ...] = ("auto", "graph", *FAMILY_NAMES)

#: The file format of a checkpoint (``matport.save``, ``matport convert``, ``matport migrate``).
CheckpointFormat = Literal["pt", "safetensors"]
