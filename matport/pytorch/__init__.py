"""Layer 3: typed MATLAB networks -> PyTorch modules, the ResNet-50 transplant, checkpoints and
verification against MATLAB's ONNX exports."""
