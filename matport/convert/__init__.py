"""MATLAB networks become PyTorch modules: one converter per layer class (``layers``), the general
graph module (``graph``), native torchvision models per family (``families``), and the input
preprocessing MATLAB's input layers apply (``preprocess``)."""
