"""Model families: MATLAB networks recognised through their layer graph and transplanted into the
stock torchvision model of the same architecture."""
