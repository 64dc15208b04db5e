"""Setting a converted model's mode without ``nn.Module.train``'s per-module dispatch."""

from __future__ import annotations

from torch import nn


def eval_mode(module: nn.Module) -> None:
    """``module.eval()``: every module's ``training`` set to False, the attribute written
    directly where no module type has its own ``train`` (``nn.Module.train`` would call itself
    on every submodule and set the flag through ``nn.Module.__setattr__``)."""
    modules = []
    stack = [module]
    while stack:
        m = stack.pop()
        if type(m).train is not _MODULE_TRAIN:
            module.eval()
            return
        modules.append(m)
        stack.extend(sub for sub in m._modules.values() if sub is not None)
    for m in modules:
        m.__dict__["training"] = False


_MODULE_TRAIN = nn.Module.train
