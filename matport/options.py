"""Choices shared by the PyTorch-side API and the command line (importing this loads no torch)."""

#: How a network becomes a module: torchvision's resnet50 (or fail), matport's general graph
#: module, or resnet50 when the network fits and the graph module otherwise.
FAMILIES = ("auto", "resnet50", "graph")
