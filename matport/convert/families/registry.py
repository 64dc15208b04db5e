"""The model-family registry: which MATLAB networks become which stock torchvision models.

Each :class:`Family` declares how it recognises a MATLAB network (``match``: a walk of the layer
graph returning a :class:`FamilyMatch` -- the transplant table of slots -- or raising
ConversionError naming the layers), how it builds the torchvision model from an architecture dict
(``build``: on the meta device, no random initialisation) and its preprocessing. One function,
:func:`build_model`, turns a match into the model: build, assign the transplanted state
(:func:`assign_state`), eval, and attach the :class:`~matport.convert.info.ModelInfo`
(:func:`info_of` reads it back).

Families MATLAB ships that torchvision cannot express exactly are registered as refusals
(:class:`Refusal`): recognised, and refused with a message pointing to ``matport.load``.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from matport.convert.collector import collector_paused
from matport.convert.families.transplant import Slot, transplant
from matport.convert.families.walk import shared_links
from matport.convert.head import postprocess_of
from matport.convert.info import ModelInfo, attach_info
from matport.convert.modes import eval_mode
from matport.errors import ArgumentError, ConversionError
from matport.network.checks import require_consistent
from matport.network.model import Layer, Network, Normalization

#: The modules that register families, imported on first use of the registry.
FAMILY_MODULES = ("resnet", "squeezenet", "vgg", "densenet", "inception", "unsupported")
GENERIC_HINT = "use matport.load for matport's general graph module"


@dataclass
class FamilyMatch:
    """What matching found: the slots to fill, the MATLAB facts, the architecture to build."""

    family: str
    input: Layer
    input_size: tuple[int, ...]
    slots: list[Slot]
    layer_map: dict[str, str]
    architecture: dict[str, Any]
    class_names: list[str] | None


def input_normalization(found: FamilyMatch) -> Normalization:
    """The preprocessing of every family so far: the input layer's own normalization."""
    return found.input.normalization or Normalization("none")


@dataclass(frozen=True)
class Family:
    """A torchvision architecture MATLAB networks are transplanted into.

    ``name`` is torchvision's builder name, the ``family`` word of the API, the command line and
    checkpoints; ``matlab`` names MATLAB's pretrained network of that family; ``model_class`` is
    the class :func:`load_torchvision` returns.
    """

    name: str
    matlab: str
    model_class: type[nn.Module]
    match: Callable[[Network], FamilyMatch]
    build: Callable[[dict[str, Any]], nn.Module]
    preprocessing: Callable[[FamilyMatch], Normalization] = input_normalization


@dataclass(frozen=True)
class Refusal:
    """A MATLAB family with no exact torchvision counterpart: ``recognise`` tells it from its
    layer graph, ``reason`` says why it stays a graph module."""

    name: str
    recognise: Callable[[Network], bool]
    reason: str


_FAMILIES: dict[str, Family] = {}
_REFUSALS: dict[str, Refusal] = {}


def register_family(entry: Family | Refusal) -> Family | Refusal:
    """Add a family (or a refusal) to the registry; a name registered twice is refused.

    Args:
        entry: the :class:`Family` or :class:`Refusal`.

    Returns:
        ``entry``.
    """
    if entry.name in _FAMILIES or entry.name in _REFUSALS or entry.name in ("auto", "graph"):
        raise ArgumentError(f"family {entry.name!r} is already registered")
    if isinstance(entry, Family):
        _FAMILIES[entry.name] = entry
    else:
        _REFUSALS[entry.name] = entry
    return entry


def families() -> dict[str, Family]:
    """Every registered family by name (importing the family modules on first use)."""
    for module in FAMILY_MODULES:
        importlib.import_module(f"matport.convert.families.{module}")
    return _FAMILIES


def refusals() -> dict[str, Refusal]:
    """Every recognised-but-refused MATLAB family by name."""
    families()
    return _REFUSALS


def fit(network: Network, family: str | None = None) -> tuple[Family, FamilyMatch]:
    """The family ``network`` fits (``family``, or the first registered that fits).

    Args:
        network: the MATLAB network.
        family: a registered family name, or None to try them all.

    Returns:
        The family and its match.

    Raises:
        ConversionError: naming, for each family tried, why it does not fit (with the layers),
            the refused family the network was recognised as, and ``matport.load``; or listing
            the layers whose arrays contradict their settings or inputs.
    """
    require_consistent(network)
    known = families()
    if family in refusals():
        refused = _REFUSALS[str(family)]
        raise ConversionError(f"no torchvision model computes a MATLAB {refused.name} exactly: "
                              f"{refused.reason}; {GENERIC_HINT}")
    if family is not None:
        if family not in known:
            raise ArgumentError(f"unknown family {family!r}: expected one of {sorted(known)}")
        return known[family], known[family].match(network)
    reasons: list[tuple[str, str, str]] = []
    with shared_links(network):
        for fam in known.values():
            try:
                return fam, fam.match(network)
            except ConversionError as exc:
                first = exc.layers[0] if exc.layers else ("", "", "")
                reasons.append((fam.name, first[0], f"{str(exc).splitlines()[0]}; {first[2]}"))
    where = f"{network.source}:{network.path}" if network.source or network.path else "network"
    recognised = [r for r in refusals().values() if r.recognise(network)]
    what = (f"a MATLAB {recognised[0].name}, which no torchvision model computes exactly: "
            f"{recognised[0].reason}" if recognised else "no registered torchvision family fits")
    raise ConversionError(f"{where}: {what}; {GENERIC_HINT}", reasons)


def build_model(family: Family, found: FamilyMatch, network: Network,
                own: bool = False) -> nn.Module:
    """The one place a family model is made: build the architecture on the meta device, assign
    the transplanted tensors, set eval mode and attach the :class:`ModelInfo`, with the cyclic
    garbage collector paused (:func:`~matport.convert.collector.collector_paused`: a model of
    hundreds of modules is thousands of containers, all alive).

    Args:
        family: the family ``found`` was matched by.
        found: the match.
        network: the MATLAB network (its source and variable path go into the ModelInfo).
        own: whether the caller read ``network`` itself and drops it afterwards: its large
            arrays then become the model's tensors (overwritten where reordered), not copies.

    Returns:
        The ``family.model_class`` instance, with ``model.matport``; like every converted
        classifier it returns logits (MATLAB's final softmax is ``model.matport.postprocess``).
    """
    with collector_paused():
        model = family.build(found.architecture)
        assign_state(model, transplant(found.slots, own))
        eval_mode(model)
        attach_info(model, ModelInfo(
            class_names=found.class_names,
            input_size=found.input_size,
            layout="NCHW",
            normalization=family.preprocessing(found),
            source=network.source,
            variable=network.path,
            layer_map=found.layer_map,
            architecture=found.architecture,
            postprocess=postprocess_of(network),
        ))
    return model


def assign_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``model.load_state_dict(state, strict=True, assign=True)`` in one pass over the modules.

    torch's version hands every submodule the entries of the whole dict under its prefix,
    filtering them anew at each level (0.1 s on DenseNet-201's 700 modules). Here every key is
    looked up once; when anything would take torch's other paths (a key missing or left over,
    a shape that differs, a module with its own loading or hooks, swapping tensors turned on),
    torch's ``load_state_dict`` does it all instead, with its own errors.

    Args:
        model: a module (on the meta device).
        state: module path + tensor name -> tensor.
    """
    plan = _assignments(model, state)
    if plan is None:
        model.load_state_dict(state, strict=True, assign=True)
        return
    for module, name, old, new in plan:  # what nn.Module.__setattr__ would call
        if isinstance(old, nn.Parameter):
            module.register_parameter(name, nn.Parameter(new, old.requires_grad))
        else:
            module.register_buffer(name, new)  # persistent: the plan has persistent ones only


def _assignments(model: nn.Module, state: dict[str, torch.Tensor]
                 ) -> list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] | None:
    if torch.__future__.get_swap_module_params_on_conversion():
        return None
    plan: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
    for prefix, module in _named_modules(model):
        kind = type(module)
        if (kind._load_from_state_dict not in _PLAIN_LOADING
                or module._load_state_dict_pre_hooks or module._load_state_dict_post_hooks
                or kind.set_extra_state is not nn.Module.set_extra_state
                or kind.register_buffer is not nn.Module.register_buffer):
            return None
        for name, old in module._parameters.items():
            if old is not None:
                new = state.get(prefix + name)
                if type(new) is not torch.Tensor or new.shape != old.shape:
                    return None
                plan.append((module, name, old, new))
        skip = module._non_persistent_buffers_set
        for name, buffer in module._buffers.items():
            if buffer is not None and name not in skip:
                new = state.get(prefix + name)
                if type(new) is not torch.Tensor or new.shape != buffer.shape:
                    return None
                plan.append((module, name, buffer, new))
    return plan if len(plan) == len(state) else None


def _named_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``model.named_modules(remove_duplicate=False)`` with each path's trailing dot, as a list
    (torch's recursive generator costs more than the loops that use it)."""
    found: list[tuple[str, nn.Module]] = []
    todo: list[tuple[str, nn.Module]] = [("", model)]
    while todo:
        prefix, module = todo.pop()
        found.append((prefix, module))
        subs = module._modules
        if subs:
            todo.extend((f"{prefix}{name}.", sub) for name, sub in reversed(subs.items())
                        if sub is not None)
    return found


_PLAIN_LOADING = (nn.Module._load_from_state_dict, _NormBase._load_from_state_dict)


def module_from_architecture(arch: dict[str, Any]) -> nn.Module:
    """The empty family module (meta device) an ``architecture`` dict describes.

    Args:
        arch: ``ModelInfo.architecture`` of a family model.

    Returns:
        The module, ready for ``load_state_dict(..., assign=True)``.
    """
    known = families()
    name = arch.get("family")
    if name not in known:
        raise ConversionError(f"architecture family {name!r} is none of {sorted(known)}")
    return known[str(name)].build(arch)


def meta_copy(builder: str, num_classes: int, **options: bool) -> nn.Module:
    """A fresh ``torchvision.models.<builder>(num_classes=...)`` on the meta device (no memory,
    no random initialisation), copied from a cached template.

    The copy is structural, not ``copy.deepcopy`` (which took 30-130 ms on a 150-700 module
    model): every module's attribute dict is copied with its containers (submodules copied
    alike, parameters and buffers dicts, hooks), other values are shared. The template's meta
    tensors are shared until ``load_state_dict(..., assign=True)`` replaces them in the copy's
    own dicts; a copy's attributes (strides, epsilons) are set on the copy alone.

    Args:
        builder: torchvision's builder name (``resnet50``, ``squeezenet1_1`` ...).
        num_classes: the classifier's outputs.
        options: further keyword arguments of the builder (``aux_logits=False`` ...).

    Returns:
        The empty module.
    """
    return _meta_template(builder, num_classes, tuple(sorted(options.items()))).copy()


class _Template:
    """A model on the meta device and how to copy it (:func:`meta_copy`): its modules in
    post-order (a module registered twice is one), each as its class, its attribute dict, the
    names of the containers in that dict (copied for each copy) and its submodules (name, index
    of the module in this list, -1 for a None entry). Copying is then a loop over the list,
    without looking at any value's type again."""

    def __init__(self, model: nn.Module) -> None:
        self.modules: list[tuple[type[nn.Module], dict[str, Any], tuple[str, ...],
                                 tuple[tuple[str, int], ...]]] = []
        self._add(model, {})

    def _add(self, module: nn.Module, index: dict[int, int]) -> int:
        done = index.get(id(module))
        if done is not None:
            return done
        subs = tuple((name, -1 if sub is None else self._add(sub, index))
                     for name, sub in module._modules.items())
        attrs = module.__dict__
        containers = tuple(name for name, value in attrs.items()
                           if type(value) in _CONTAINERS and name != "_modules")
        self.modules.append((type(module), attrs, containers, subs))
        index[id(module)] = len(self.modules) - 1
        return index[id(module)]

    def copy(self) -> nn.Module:
        """A copy of the model, as :func:`meta_copy` says."""
        copies: list[nn.Module] = []
        for kind, attrs, containers, subs in self.modules:
            state = attrs.copy()
            for name in containers:
                state[name] = state[name].copy()
            modules = state["_modules"] = state["_modules"].copy()
            for name, i in subs:
                if i >= 0:
                    modules[name] = copies[i]
            clone = kind.__new__(kind)
            clone.__dict__.update(state)
            copies.append(clone)
        return copies[-1]


_CONTAINERS = (dict, OrderedDict, set, list)


@functools.lru_cache(maxsize=16)
def _meta_template(builder: str, num_classes: int,
                   options: tuple[tuple[str, bool], ...]) -> _Template:
    with _MetaConstruction():
        model: nn.Module = getattr(torchvision.models, builder)(num_classes=num_classes,
                                                                **dict(options))
    return _Template(model)


class _MetaConstruction(TorchFunctionMode):
    """While a template is built: tensor factories make meta tensors (as ``torch.device("meta")``
    does, without a second mode: every torch call of the constructors reaches Python once), and
    an initialiser (``torch.nn.init``'s, or the in-place fills they call) given a meta tensor
    returns it at once, whether the tensor comes positionally or, as ``torch.nn.init`` hands
    it to a mode, by keyword. A meta tensor has no values to set, and running meta kernels for
    them (some in Python) took half of building ResNet-50 (a torch function mode is per thread:
    nothing else is affected)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if kwargs is None:
            kwargs = {}
        if func in _FACTORIES:
            if kwargs.get("device") is None:
                kwargs["device"] = _META
        elif getattr(func, "__name__", None) in _INITIALISERS:
            tensor = args[0] if args else kwargs.get("tensor")
            if isinstance(tensor, torch.Tensor) and tensor.is_meta:
                return tensor
        return func(*args, **kwargs)


_FACTORIES = _device_constructors()
_META = torch.device("meta")
_INITIALISERS = frozenset(
    {name for name in dir(nn.init) if name.endswith("_") and not name.startswith("_")}
    | {"uniform_", "normal_", "fill_", "zero_"})


def set_bn_eps(model: nn.Module, bn_eps: float | dict[str, float]) -> None:
    """Set every BatchNorm's epsilon: one value, or module path -> value."""
    done: set[int] = set()  # a module registered twice: by its first path, as named_modules
    for path, module in _named_modules(model):
        if isinstance(module, nn.BatchNorm2d) and id(module) not in done:
            done.add(id(module))
            module.eps = float(bn_eps[path[:-1]] if isinstance(bn_eps, dict) else bn_eps)


def compact_eps(eps: dict[str, float]) -> float | dict[str, float]:
    """The architecture's ``bn_eps``: the one value all BatchNorms share, else the dict."""
    values = set(eps.values())
    return values.pop() if len(values) == 1 else dict(eps)


def _network(path_or_network: str | os.PathLike[str] | Network, variable: str | None) -> Network:
    """The network itself, or the one network of a file (``variable`` picks one)."""
    if isinstance(path_or_network, Network):
        return path_or_network
    from matport.network import read_network

    return read_network(path_or_network, variable)


def load_torchvision(path_or_network: str | os.PathLike[str] | Network,
                     variable: str | None = None, family: str | None = None) -> nn.Module:
    """A MATLAB network as the stock torchvision model of whichever registered family fits.

    Args:
        path_or_network: a ``.mat`` file (v7 or v7.3) or a read :class:`Network`.
        variable: the network's variable path when the file holds several.
        family: force one family (see :func:`families`); None tries them all.

    Returns:
        The torchvision model (e.g. ``torchvision.models.SqueezeNet``) in eval mode, with
        ``model.matport`` (class names, input size, ``preprocess``).

    Raises:
        ConversionError: when no family fits, listing why each did not and pointing to
            ``matport.load``.
    """
    with collector_paused():  # reading makes thousands of containers too, all alive till the end
        network = _network(path_or_network, variable)
        fam, found = fit(network, family)
        model = build_model(fam, found, network, own=network is not path_or_network)
        del network, found  # gone before the collector runs again: it then sees the model alone
    return model
