"""Model families: MATLAB networks recognised through their layer graph and transplanted into the
stock torchvision model of the same architecture. ``registry`` (what each family declares, the one
build function, ``load_torchvision``), ``walk`` (graph matching), ``transplant`` (the table of
named tensor transforms), one module per family (``resnet``, ``squeezenet``, ``vgg``,
``densenet``, ``inception``; ``resnet50`` keeps ``load_resnet50``) and ``unsupported`` (MATLAB
families recognised and refused)."""
