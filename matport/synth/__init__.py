"""Synthetic MATLAB networks for demos, benchmarks and tests, laid out as MATLAB stores them:
small networks per layer kind (``networks``, ``layer_cases``), a full-size ResNet-50
(``resnet50``), and a MATLAB-style ONNX export of a network built from its MATLAB arrays
(``onnx_export``). Weights are random; nothing here is used to convert real files."""
