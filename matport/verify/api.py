"""Prove that a converted PyTorch model computes what MATLAB's own ONNX export computes.

`verify` feeds the same inputs to both sides under each side's contract: the ONNX graph takes raw
MATLAB data (0-255 pixels; the input normalization is a ``Sub`` inside it), the PyTorch model
takes ``model.matport.preprocess(raw)``. When the export ends in ``Softmax`` its output is
probabilities, so the model's logits go through a softmax before they are compared, and the
logits are compared with the ONNX ``Softmax`` node's input as well.

The check **holds** when, for every compared pair (probabilities, and logits where both exist),
``max|torch - onnx| <= rtol * max|onnx|`` (default ``rtol`` 1e-4, a float32 tolerance), and no
learnable array of the MATLAB network differs from its ONNX initializer (the *weights
certificate*). When the outputs disagree, the report names the first layer, in topological order,
whose activation parts from the ONNX tensor of the same MATLAB layer.

`export_onnx` goes the other way: it writes a converted model as ONNX with ``torch.onnx`` (with
MATLAB's input normalization inside by default, so it takes raw data like MATLAB's export), and
``verify(model, that_file)`` checks it the same way.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from matport.errors import MatportError, VerificationError
from matport.network.model import INPUT_LAYER_TYPES, Layer, Network
from matport.options import DEFAULT_RTOL, FAMILIES
from matport.verify import onnx_run
from matport.verify.onnx_run import OnnxExport

if TYPE_CHECKING:
    import torch
    from torch import nn

    from matport.convert.info import ModelInfo

SCHEMA_VERSION = 1
TOLERANCE_RULE = "max|torch - onnx| <= rtol * max|onnx|, for outputs and (when present) logits"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
_TOPK = 5

# ---------------------------------------------------------------------------------------------
# The report and its JSON schema
# ---------------------------------------------------------------------------------------------

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
_WEIGHT_ENTRY = {
    "type": "object",
    "required": ["layer", "array", "shape", "onnx_initializer", "layout", "max_abs_diff"],
    "properties": {
        "layer": {"type": "string", "description": "MATLAB layer name"},
        "array": {"type": "string", "description": "MATLAB property (Weights, TrainedMean, ...)"},
        "shape": {"type": "array", "items": {"type": "integer"}, "description": "MATLAB layout"},
        "onnx_initializer": {**_STR_OR_NULL, "description": "closest initializer, null if none"},
        "layout": {**_STR_OR_NULL, "description": "permutation applied to the MATLAB array"},
        "max_abs_diff": {**_NUM_OR_NULL, "description": "null when no initializer fits"},
    },
    "additionalProperties": False,
}
_COMPARISON = {
    "type": "object",
    "required": ["max_abs_error", "max_rel_error", "min_cosine_similarity", "holds"],
    "properties": {
        "max_abs_error": {**_NUM_OR_NULL, "description": "null when not finite (NaN, inf)"},
        "max_rel_error": {**_NUM_OR_NULL, "description": "max_abs_error / max|onnx|"},
        "min_cosine_similarity": {**_NUM_OR_NULL, "description": "lowest over the inputs"},
        "holds": {"type": "boolean"},
    },
    "additionalProperties": False,
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "matport verify report",
    "description": "Result of comparing a converted PyTorch model with an ONNX export.",
    "type": "object",
    "required": [
        "schema_version", "status", "passed", "reason", "mat", "onnx_path", "model", "onnx",
        "inputs", "tolerance", "outputs", "weights", "divergence",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "status": {
            "enum": ["verified", "failed", "error"],
            "description": "verified: exit 0; failed: exit 1; error: could not run, exit 2",
        },
        "passed": {"type": "boolean"},
        "reason": {**_STR_OR_NULL, "description": "why it failed or could not run"},
        "mat": {**_STR_OR_NULL, "description": "the MATLAB file the model came from"},
        "onnx_path": {"type": "string"},
        "model": {
            "type": ["object", "null"],
            "required": ["variable", "layout", "input_size", "architecture"],
            "properties": {
                "variable": {"type": "string"},
                "layout": {"enum": ["NCHW", "NC", "NTC"]},
                "input_size": {"type": "array", "items": {"type": "integer"}},
                "architecture": _STR_OR_NULL,
            },
            "additionalProperties": False,
        },
        "onnx": {
            "type": ["object", "null"],
            "required": [
                "producer", "producer_version", "release", "opset", "input_name",
                "input_shape", "batch_axis", "batch_fixed", "ends_in_softmax", "input_contract",
                "notes",
            ],
            "properties": {
                "producer": {"type": "string"},
                "producer_version": {"type": "string"},
                "release": {**_STR_OR_NULL, "description": "MATLAB release, e.g. R2019a"},
                "opset": {"type": "integer"},
                "input_name": {"type": "string"},
                "input_shape": {"type": "array", "items": {"type": ["integer", "null"]}},
                "batch_axis": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "0, or 1 for sequences declared [T, N, C]",
                },
                "batch_fixed": {"type": "boolean"},
                "ends_in_softmax": {"type": "boolean"},
                "input_contract": {"enum": ["raw", "preprocessed"]},
                "notes": {"type": "array", "items": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "inputs": {
            "type": ["object", "null"],
            "required": ["random", "images", "images_dir", "seed"],
            "properties": {
                "random": {"type": "integer", "minimum": 0},
                "images": {"type": "integer", "minimum": 0},
                "images_dir": _STR_OR_NULL,
                "seed": {"type": "integer"},
            },
            "additionalProperties": False,
        },
        "tolerance": {
            "type": "object",
            "required": ["rtol", "rule"],
            "properties": {"rtol": _NUM, "rule": {"type": "string"}},
            "additionalProperties": False,
        },
        "outputs": {
            "type": ["object", "null"],
            "required": [
                "compared", "softmax_applied_to_torch", "probabilities", "logits",
                "top1_agreement", "top5_agreement", "holds",
            ],
            "properties": {
                "compared": {"enum": ["probabilities", "outputs"]},
                "softmax_applied_to_torch": {"type": "boolean"},
                "probabilities": {**_COMPARISON, "description": "the final outputs compared"},
                "logits": {
                    "oneOf": [{"type": "null"}, _COMPARISON],
                    "description": "the ONNX Softmax's input against the model's logits",
                },
                "top1_agreement": {
                    **_NUM_OR_NULL,
                    "description": "fraction of inputs; null unless the outputs are class scores",
                },
                "top5_agreement": {
                    **_NUM_OR_NULL,
                    "description": "fraction of inputs whose top-5 class sets are equal",
                },
                "holds": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "weights": {
            "type": ["object", "null"],
            "description": "null when there is no MATLAB network or no MATLAB export to compare",
            "required": ["checked", "identical", "differing", "missing"],
            "properties": {
                "checked": {"type": "integer", "minimum": 0},
                "identical": {"type": "integer", "minimum": 0},
                "differing": {"type": "array", "items": _WEIGHT_ENTRY},
                "missing": {"type": "array", "items": _WEIGHT_ENTRY},
            },
            "additionalProperties": False,
        },
        "divergence": {
            "type": ["object", "null"],
            "description": "present when the outputs disagree",
            "required": [
                "layer", "onnx_tensor", "torch_module", "max_abs_error", "max_rel_error",
                "sample", "last_agreeing_layer", "unmapped_between", "layers_compared",
            ],
            "properties": {
                "layer": {**_STR_OR_NULL, "description": "first MATLAB layer that parts"},
                "onnx_tensor": _STR_OR_NULL,
                "torch_module": _STR_OR_NULL,
                "max_abs_error": _NUM_OR_NULL,
                "max_rel_error": _NUM_OR_NULL,
                "sample": {"type": "integer", "minimum": 0},
                "last_agreeing_layer": _STR_OR_NULL,
                "unmapped_between": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "layers feeding `layer` with no PyTorch module to compare",
                },
                "layers_compared": {"type": "integer", "minimum": 0},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


@dataclass
class Comparison:
    """Errors of one compared pair of tensors (batch first)."""

    max_abs_error: float
    max_rel_error: float
    min_cosine_similarity: float
    holds: bool


@dataclass
class OutputCheck:
    """How the model's outputs compare with the export's."""

    compared: str
    softmax_applied_to_torch: bool
    probabilities: Comparison
    logits: Comparison | None
    top1_agreement: float | None
    top5_agreement: float | None
    holds: bool


@dataclass
class WeightEntry:
    """One MATLAB array in the weights certificate (only differing / missing ones are listed)."""

    layer: str
    array: str
    shape: list[int]
    onnx_initializer: str | None = None
    layout: str | None = None
    max_abs_diff: float | None = None


@dataclass
class WeightsCertificate:
    """Every MATLAB array checked against the ONNX initializers."""

    checked: int = 0
    identical: int = 0
    differing: list[WeightEntry] = field(default_factory=list)
    missing: list[WeightEntry] = field(default_factory=list)


@dataclass
class Divergence:
    """The first MATLAB layer whose activation parts from the ONNX one."""

    layer: str | None
    onnx_tensor: str | None
    torch_module: str | None
    max_abs_error: float | None
    max_rel_error: float | None
    sample: int
    last_agreeing_layer: str | None
    unmapped_between: list[str]
    layers_compared: int


@dataclass
class VerifyReport:
    """The result of `verify`; ``to_json()`` follows `REPORT_SCHEMA`."""

    status: str
    passed: bool
    reason: str | None
    onnx_path: str
    tolerance: dict[str, Any]
    mat: str | None = None
    model: dict[str, Any] | None = None
    onnx: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    outputs: OutputCheck | None = None
    weights: WeightsCertificate | None = None
    divergence: Divergence | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def error(
        cls, reason: str, onnx_path: str | Path, mat: str | Path | None = None,
        rtol: float = DEFAULT_RTOL,
    ) -> VerifyReport:
        """The report of a check that could not run."""
        return cls(
            status="error", passed=False, reason=reason, onnx_path=str(onnx_path),
            tolerance=_tolerance(rtol), mat=None if mat is None else str(mat),
        )

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON (see `REPORT_SCHEMA`)."""
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self) -> str:
        """A few human-readable lines."""
        head = {"verified": "VERIFIED", "failed": "FAILED", "error": "COULD NOT VERIFY"}
        lines = [f"{head[self.status]}: {self.mat or 'model'} against {self.onnx_path}"]
        if self.reason:
            lines.append(f"  reason: {self.reason}")
        if self.onnx:
            o = self.onnx
            lines.append(
                f"  onnx: {o['producer']} {o['producer_version']}"
                f"{' (' + o['release'] + ')' if o['release'] else ''}, opset {o['opset']}, "
                f"input {o['input_name']} {o['input_shape']}"
            )
        if self.inputs:
            n_random, n_images = self.inputs["random"], self.inputs["images"]
            lines.append(f"  inputs: {n_random} random, {n_images} images")
        if self.outputs:
            out = self.outputs
            p = out.probabilities
            lines.append(
                f"  {out.compared}: max abs err {p.max_abs_error:.3g}, max rel err "
                f"{p.max_rel_error:.3g} (rtol {self.tolerance['rtol']:g}), "
                f"min cosine {p.min_cosine_similarity:.8f}"
            )
            if out.logits:
                lines.append(
                    f"  logits: max abs err {out.logits.max_abs_error:.3g}, max rel err "
                    f"{out.logits.max_rel_error:.3g}"
                )
            if out.top1_agreement is not None:
                lines.append(
                    f"  top-1 agreement {out.top1_agreement:.0%}, "
                    f"top-5 agreement {out.top5_agreement:.0%}"
                )
        if self.weights:
            w = self.weights
            lines.append(
                f"  weights: {w.identical}/{w.checked} arrays identical to the ONNX initializers"
                f", {len(w.differing)} differ, {len(w.missing)} not found"
            )
            for e in w.differing:
                lines.append(
                    f"    differs: {e.layer}.{e.array} vs {e.onnx_initializer} "
                    f"(max abs diff {e.max_abs_diff:.3g})"
                )
            for e in w.missing:
                lines.append(f"    not found: {e.layer}.{e.array} {e.shape}")
        if self.divergence and self.divergence.layer:
            d = self.divergence
            between = (
                f" (after {', '.join(d.unmapped_between)}, which have no module to compare)"
                if d.unmapped_between else ""
            )
            lines.append(
                f"  first layer that parts: {d.layer}{between}; last agreeing: "
                f"{d.last_agreeing_layer or 'none'}"
            )
        return "\n".join(lines)


def _tolerance(rtol: float) -> dict[str, Any]:
    return {"rtol": float(rtol), "rule": TOLERANCE_RULE}


def _finite(value: Any) -> Any:
    """JSON has no inf/nan: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------------


def run_verify(
    model_or_mat: nn.Module | Network | str | Path,
    onnx_path: str | Path,
    *,
    inputs: np.ndarray | None = None,
    num_random: int = 8,
    images_dir: str | Path | None = None,
    rtol: float = DEFAULT_RTOL,
    seed: int = 0,
    variable: str | None = None,
    network: Network | None = None,
    family: str = "auto",
) -> VerifyReport:
    """:func:`matport.verify.verify`'s work (see there).

    ``inputs``: raw data (MATLAB contract: 0-255 pixels, batch first, the model's layout) used
    instead of ``num_random`` random inputs; ``images_dir``: a folder of images added to them.
    ``network``: the MATLAB network for the weights certificate when ``model_or_mat`` is a
    model (by default it is re-read from ``model.matport.source``). ``family`` picks the
    conversion of a file or Network, as ``matport convert`` does: ``resnet50`` (torchvision),
    ``graph`` (matport's general module) or ``auto`` (resnet50 when the network fits).
    Raises `VerificationError` (or another `MatportError`) when the check cannot run.
    """
    export = onnx_run.load_export(onnx_path)
    model, network, mat = _resolve(model_or_mat, variable, network, family)
    info = _model_info(model)
    notes: list[str] = []
    if network is None:
        network = _network_of(info, notes)
    mat = mat or info.source or None
    if export.is_matlab and info.layout == "NTC" and len(export.input_shape) == 3:
        export.batch_axis = 1  # MATLAB declares sequences [T, N, C], like ONNX's LSTM
    raw, n_images = _raw_inputs(info, export, inputs, num_random, images_dir, seed)
    outputs, errors = _run_and_compare(model, info, network, export, raw, rtol)
    weights = _certificate(network, export) if network is not None and export.is_matlab else None
    divergence = None
    if not outputs.holds:
        sample = int(np.argmax(errors))
        divergence = _find_divergence(model, info, network, export, raw[sample : sample + 1], rtol)
        divergence.sample = sample
    passed = outputs.holds and (weights is None or not weights.differing)
    return VerifyReport(
        status="verified" if passed else "failed",
        passed=passed,
        reason=None if passed else _failure_reason(outputs, weights, divergence),
        onnx_path=str(onnx_path),
        tolerance=_tolerance(rtol),
        mat=mat,
        model={
            "variable": info.variable,
            "layout": info.layout,
            "input_size": [int(s) for s in info.input_size],
            "architecture": info.architecture.get("family"),
        },
        onnx=_describe_export(export, notes),
        inputs={
            "random": int(len(raw) - n_images),
            "images": n_images,
            "images_dir": None if images_dir is None else str(images_dir),
            "seed": seed,
        },
        outputs=outputs,
        weights=weights,
        divergence=divergence,
    )


def _resolve(
    model_or_mat: nn.Module | Network | str | Path,
    variable: str | None,
    network: Network | None,
    family: str,
) -> tuple[nn.Module, Network | None, str | None]:
    """The model to check, the MATLAB network behind it (when known) and its file."""
    if isinstance(model_or_mat, (str, Path)):
        network = _read_network(str(model_or_mat), variable)
        return convert(network, family), network, str(model_or_mat)
    if isinstance(model_or_mat, Network):
        return convert(model_or_mat, family), model_or_mat, model_or_mat.source or None
    return model_or_mat, network, None


def _run_and_compare(
    model: nn.Module,
    info: ModelInfo,
    network: Network | None,
    export: OnnxExport,
    raw: np.ndarray,
    rtol: float,
) -> tuple[OutputCheck, np.ndarray]:
    """Run both sides on ``raw``; compare outputs and, when the export ends in Softmax, logits
    (the Softmax's input against the model's output or the module feeding its own softmax)."""
    import torch

    logits_tensor = _softmax_input(export) if export.ends_in_softmax else None
    logits_layer = _layer_feeding(export, info, network, logits_tensor) if logits_tensor else None
    hooked = {logits_layer: info.layer_map[logits_layer]} if logits_layer else {}
    extra = [logits_tensor] if logits_tensor else []
    ran = onnx_run.run(export, _onnx_input(export, info, raw), extra)
    with torch.no_grad():
        torch_out, seen = _capture(model, info.preprocess(torch.from_numpy(raw)), hooked)
    torch_logits = seen[logits_layer][-1] if logits_layer and seen.get(logits_layer) else None
    return _compare_outputs(
        torch_out, torch_logits, ran[export.output_name], ran.get(logits_tensor or ""), export,
        _class_axis(info.layout), rtol, classes=export.ends_in_softmax or bool(info.class_names),
    )


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    include_preprocessing: bool = True,
    opset: int = 17,
) -> Path:
    """Write ``model`` as ONNX with ``torch.onnx`` (TorchScript exporter; the dynamo exporter
    needs ``onnxscript``), batch dynamic. With ``include_preprocessing`` the MATLAB input
    normalization is part of the graph, so the file takes raw data like MATLAB's own export.
    Check the file with ``verify(model, path)``."""
    import onnx
    import torch

    from matport.convert.preprocess import InputNormalization

    info = _model_info(model)
    net: nn.Module = model
    if include_preprocessing:
        norm = InputNormalization(info.normalization, info.input_size, info.layout)
        net = torch.nn.Sequential(norm, model)
    example = torch.from_numpy(_random_raw(info, 1, np.random.default_rng(0), None))
    if not include_preprocessing:
        example = info.preprocess(example)
    dynamic = {0: "batch", 1: "time"} if info.layout == "NTC" else {0: "batch"}
    path = Path(path)
    was_training = model.training
    net.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net, (example,), str(path), dynamo=False, opset_version=opset,
                input_names=["input"], output_names=["output"],
                dynamic_axes={"input": dynamic, "output": {0: "batch"}},
            )
    finally:
        model.train(was_training)
    proto = onnx.load(str(path))
    contract = "raw" if include_preprocessing else "preprocessed"
    onnx.helper.set_model_props(proto, {onnx_run.CONTRACT_KEY: contract})
    onnx.save(proto, str(path))
    return path


# ---------------------------------------------------------------------------------------------
# the model side
# ---------------------------------------------------------------------------------------------


def _read_network(path: str, variable: str | None) -> Network:
    from matport.network import read_network

    return read_network(path, variable)


def convert(network: Network, family: str = "auto") -> nn.Module:
    """The module :func:`verify` checks (see :func:`matport.convert.api.convert_network`)."""
    from matport.convert.api import convert_network

    if family not in FAMILIES:
        raise VerificationError(f"unknown family {family!r}: expected one of {FAMILIES}")
    return convert_network(network, family)[0]


def _model_info(model: Any) -> ModelInfo:
    info = getattr(model, "matport", None)
    if info is None or not hasattr(info, "preprocess"):
        raise VerificationError(
            "the model has no `matport` attribute (ModelInfo): verify needs a model converted "
            "by matport, or the .mat file"
        )
    return info


def _network_of(info: ModelInfo, notes: list[str]) -> Network | None:
    if not info.source or not Path(info.source).is_file():
        notes.append("no MATLAB network to certify the weights against")
        return None
    try:
        return _read_network(info.source, info.variable or None)
    except MatportError as exc:
        notes.append(f"weights not certified: {exc}")
        return None


def _run_torch(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    was_training = model.training
    model.eval()
    try:
        out = model(x)
    finally:
        model.train(was_training)
    return _first_tensor(out).detach().cpu().numpy().astype(np.float32)


def _first_tensor(out: Any) -> torch.Tensor:
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


def _raw_inputs(
    info: ModelInfo,
    export: OnnxExport,
    given: np.ndarray | None,
    num_random: int,
    images_dir: str | Path | None,
    seed: int,
) -> tuple[np.ndarray, int]:
    """Raw data in the model's layout, batch first: given or random, then the folder's images."""
    parts: list[np.ndarray] = []
    if given is not None:
        parts.append(_as_batch(info, given))
    elif num_random > 0:
        parts.append(_random_raw(info, num_random, np.random.default_rng(seed), export))
    n_images = 0
    if images_dir is not None:
        images = _load_images(Path(images_dir), info)
        n_images = len(images)
        parts.append(images)
    if not parts or sum(len(p) for p in parts) == 0:
        raise VerificationError("no inputs to compare: give num_random > 0, inputs or images")
    return np.concatenate(parts).astype(np.float32), n_images


def _as_batch(info: ModelInfo, x: np.ndarray) -> np.ndarray:
    from matport.convert.preprocess import to_layout

    return to_layout(x, info.input_size, info.layout).numpy()


def _random_raw(
    info: ModelInfo, n: int, rng: np.random.Generator, export: OnnxExport | None
) -> np.ndarray:
    """Uniform 0-255 pixels for images, standard normal values for features and sequences."""
    size = tuple(int(s) for s in info.input_size)
    if info.layout == "NCHW":
        h, w, c = (size + (1, 1, 1))[:3] if len(size) < 3 else size[:3]
        return rng.uniform(0, 255, (n, c, h, w)).astype(np.float32)
    if info.layout == "NC":
        return rng.standard_normal((n, int(np.prod(size)))).astype(np.float32)
    steps = _sequence_length(export, size[-1]) if export is not None else 8
    return rng.standard_normal((n, steps, size[-1])).astype(np.float32)


def _sequence_length(export: OnnxExport, channels: int) -> int:
    """The export's fixed sequence length (8 when it declares none)."""
    dims = [d for d in export.sample_shape if d is not None and d != channels]
    return dims[0] if dims else 8


def _load_images(folder: Path, info: ModelInfo) -> np.ndarray:
    from PIL import Image

    if info.layout != "NCHW":
        raise VerificationError(f"--images needs an image network; this one takes {info.layout}")
    if not folder.is_dir():
        raise VerificationError(f"{folder}: no such folder of images")
    h, w, c = (tuple(int(s) for s in info.input_size) + (1, 1, 1))[:3]
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise VerificationError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    batch = []
    for f in files:
        try:
            with Image.open(f) as opened:
                im = opened.convert("L" if c == 1 else "RGB")
                im = im.resize((w, h), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.float32)
        except OSError as exc:
            raise VerificationError(f"{f}: cannot read the image: {exc}") from exc
        batch.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return np.stack(batch)


def _onnx_input(export: OnnxExport, info: ModelInfo, raw: np.ndarray) -> np.ndarray:
    """``raw`` as the export wants it: raw or preprocessed, permuted to the declared shape."""
    import torch

    x = raw
    if export.input_contract == "preprocessed":
        x = info.preprocess(torch.from_numpy(raw)).numpy()
    declared = export.sample_shape
    if not export.input_shape or (
        len(declared) == x.ndim - 1
        and all(d is None or d == s for d, s in zip(declared, x.shape[1:], strict=True))
    ):
        return x
    fitted = [_fit(sample, declared) for sample in x]
    if any(f is None for f in fitted) or not len(x):
        raise VerificationError(
            f"{export.path}: input {export.input_name} is declared {list(export.input_shape)}, "
            f"but "
            f"the model's InputSize {list(info.input_size)} gives {list(x.shape)} "
            "(batch first): they are not the same network or input"
        )
    return np.stack(fitted)  # type: ignore[arg-type]


def _fit(a: np.ndarray, shape: Sequence[int | None]) -> np.ndarray | None:
    """``a`` with singleton axes dropped/added and its other axes permuted (stable order
    preferred) to match ``shape`` (None: any size); None when that is impossible."""
    core = [s for s in a.shape if s != 1]
    want = [s for s in shape if s != 1]
    if len(core) != len(want):
        return None
    perm: list[int] = []
    for w in want:
        j = next((j for j in range(len(core)) if j not in perm and w in (None, core[j])), None)
        if j is None:
            return None
        perm.append(j)
    moved = iter(a.reshape(core).transpose(perm).shape)
    out_shape = [1 if s == 1 else next(moved) for s in shape]
    return a.reshape(core).transpose(perm).reshape(out_shape)


# ---------------------------------------------------------------------------------------------
# output comparison
# ---------------------------------------------------------------------------------------------


def _softmax_input(export: OnnxExport) -> str | None:
    graph = export.model.graph
    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    return softmax[-1].input[0] if softmax else None


def _layer_feeding(
    export: OnnxExport, info: ModelInfo, network: Network | None, tensor: str
) -> str | None:
    """The MATLAB layer with a PyTorch module whose output reaches ``tensor`` through
    shape-only operators (Flatten, Transpose, ...), or None."""
    names = [lay.name for lay in network.layers] if network else list(info.layer_map)
    layer_of = {t: n for n, t in onnx_run.layer_tensors(export, names).items()}
    producers = {o: node for node in export.model.graph.node for o in node.output}
    while tensor not in layer_of or layer_of[tensor] not in info.layer_map:
        node = producers.get(tensor)
        if node is None or node.op_type not in onnx_run.SHAPE_ONLY_OPS:
            return None
        tensor = node.input[0]
    return layer_of[tensor]


def _compare_outputs(
    torch_out: np.ndarray,
    torch_logits: np.ndarray | None,
    onnx_out: np.ndarray,
    onnx_logits: np.ndarray | None,
    export: OnnxExport,
    class_axis: int,
    rtol: float,
    classes: bool,
) -> tuple[OutputCheck, np.ndarray]:
    """Outputs like with like: the model's logits go through a softmax when the export ends in
    one; logits (the model's output, or ``torch_logits`` captured before its own softmax) are
    compared with the ONNX Softmax's input. Also returns each input's largest error."""
    softmax_applied = export.ends_in_softmax and not _is_probability(torch_out, class_axis)
    if softmax_applied:
        torch_logits = torch_out
        torch_out = _softmax(torch_out, class_axis)
    t = _aligned(torch_out, onnx_out, "the model's output", export.output_name)
    logits = t_logits = None
    if torch_logits is not None and onnx_logits is not None:
        t_logits = _aligned(torch_logits, onnx_logits, "the model's logits", "softmax input")
        logits = _comparison(t_logits, onnx_logits, rtol)
    probs = _comparison(t, onnx_out, rtol)
    scores = (t, onnx_out)
    if t_logits is not None and onnx_logits is not None:
        scores = (t_logits, onnx_logits)
    top1, top5 = _topk_agreement(*scores) if classes else (None, None)
    check = OutputCheck(
        compared="probabilities" if export.ends_in_softmax else "outputs",
        softmax_applied_to_torch=softmax_applied,
        probabilities=probs,
        logits=logits,
        top1_agreement=top1,
        top5_agreement=top5,
        holds=probs.holds and (logits is None or logits.holds),
    )
    worst = scores if logits is not None and not logits.holds else (t, onnx_out)
    return check, _sample_errors(*worst)


def _aligned(t: np.ndarray, o: np.ndarray, t_name: str, o_name: str) -> np.ndarray:
    """``t`` (batch first) reshaped/permuted per sample to ``o``'s shape."""
    if t.shape == o.shape:
        return t
    if len(t) == len(o):
        fitted = [_fit(s, o.shape[1:]) for s in t]
        if all(f is not None for f in fitted):
            return np.stack(fitted)  # type: ignore[arg-type]
    raise VerificationError(
        f"{t_name} has shape {list(t.shape)} but the ONNX tensor {o_name} has {list(o.shape)}: "
        "they cannot be compared"
    )


def _class_axis(layout: str) -> int:
    """The class (channel) axis of a model output: last for sequences, else 1."""
    return -1 if layout == "NTC" else 1


def _is_probability(t: np.ndarray, axis: int) -> bool:
    if t.ndim < 2 or t.min() < 0 or t.max() > 1:
        return False
    return bool(np.allclose(t.sum(axis=axis), 1.0, atol=1e-4))


def _softmax(t: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(t - t.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _comparison(t: np.ndarray, o: np.ndarray, rtol: float) -> Comparison:
    t64, o64 = t.astype(np.float64), o.astype(np.float64)
    max_abs = float(np.max(np.abs(t64 - o64))) if t.size else 0.0
    scale = float(np.max(np.abs(o64))) if o.size else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    a, b = t64.reshape(len(t), -1), o64.reshape(len(o), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), np.where(dots == 0, 1.0, 0.0))
    finite = bool(np.isfinite(t64).all() and np.isfinite(o64).all())
    return Comparison(
        max_abs_error=max_abs,
        max_rel_error=rel,
        min_cosine_similarity=float(cos.min()) if len(cos) else 1.0,
        holds=finite and rel <= rtol,
    )


def _topk_agreement(t: np.ndarray, o: np.ndarray) -> tuple[float | None, float | None]:
    """Top-1 and top-5 agreement for class scores (one axis of K >= 2 per input); None for
    other outputs (regression, segmentation)."""
    if sum(s != 1 for s in o.shape[1:]) != 1:
        return None, None
    t2, o2 = t.reshape(len(t), -1), o.reshape(len(o), -1)
    k = min(_TOPK, o2.shape[1])
    top1 = float(np.mean(t2.argmax(1) == o2.argmax(1)))
    sets_t = np.sort(np.argsort(-t2, axis=1)[:, :k], axis=1)
    sets_o = np.sort(np.argsort(-o2, axis=1)[:, :k], axis=1)
    return top1, float(np.mean(np.all(sets_t == sets_o, axis=1)))


def _sample_errors(t: np.ndarray, o: np.ndarray) -> np.ndarray:
    """The largest absolute difference of each input (NaN counts as infinite)."""
    diff = np.abs(t.astype(np.float64) - o.astype(np.float64)).reshape(len(t), -1)
    return np.nan_to_num(diff.max(axis=1, initial=0), nan=np.inf)


def _failure_reason(
    outputs: OutputCheck, weights: WeightsCertificate | None, divergence: Divergence | None
) -> str:
    parts = []
    if not outputs.holds:
        worst = outputs.probabilities
        if outputs.logits is not None and not outputs.logits.holds:
            worst = outputs.logits
        parts.append(f"outputs differ (max rel err {worst.max_rel_error:.3g})")
    if weights and weights.differing:
        names = ", ".join(f"{e.layer}.{e.array}" for e in weights.differing[:5])
        more = "" if len(weights.differing) <= 5 else f" and {len(weights.differing) - 5} more"
        parts.append(f"weights differ from the ONNX initializers: {names}{more}")
    if divergence and divergence.layer:
        parts.append(f"first layer that parts: {divergence.layer}")
    return "; ".join(parts)


def _describe_export(export: OnnxExport, notes: list[str]) -> dict[str, Any]:
    return {
        "producer": export.producer,
        "producer_version": export.producer_version,
        "release": export.release,
        "opset": export.opset,
        "input_name": export.input_name,
        "input_shape": list(export.input_shape),
        "batch_axis": export.batch_axis,
        "batch_fixed": export.batch_fixed,
        "ends_in_softmax": export.ends_in_softmax,
        "input_contract": export.input_contract,
        "notes": [*export.notes, *notes],
    }


# ---------------------------------------------------------------------------------------------
# first layer that parts
# ---------------------------------------------------------------------------------------------


def _find_divergence(
    model: nn.Module,
    info: ModelInfo,
    network: Network | None,
    export: OnnxExport,
    raw: np.ndarray,
    rtol: float,
) -> Divergence:
    """Compare, in topological order, every MATLAB layer that has both an ONNX tensor and a
    PyTorch module (``info.layer_map``), plus the input layer against ``preprocess``; a module
    that runs several times (a shared ReLU) agrees when any of its calls does."""
    import torch

    order = [lay.name for lay in network.topological_order()] if network else []
    input_layers = (
        {lay.name for lay in network.layers if lay.type in INPUT_LAYER_TYPES} if network else set()
    )
    names = order or list(info.layer_map)
    tensors = onnx_run.layer_tensors(export, names)
    if not order:  # no network: ONNX node order is topological
        position = {t: i for i, t in enumerate(onnx_run.node_output_names(export))}
        order = sorted(tensors, key=lambda n: position.get(tensors[n], -1))
    compared = [
        n for n in order if n in tensors and (n in info.layer_map or n in input_layers)
    ]
    wanted = [tensors[n] for n in compared if tensors[n] != export.input_name]
    x_onnx = _onnx_input(export, info, raw)
    onnx_values = onnx_run.run(export, x_onnx, wanted)
    with torch.no_grad():
        x_torch = info.preprocess(torch.from_numpy(raw))
        _, activations = _capture(model, x_torch, {n: info.layer_map[n] for n in compared
                                                if n in info.layer_map})
    last_ok: str | None = None
    mapped = set(compared)
    for n in compared:
        ref = x_onnx if tensors[n] == export.input_name else onnx_values[tensors[n]]
        candidates = activations.get(n) or ([x_torch.numpy()] if n in input_layers else [])
        errors = [c for c in (_layer_error(a, ref) for a in candidates) if c is not None]
        if not errors:
            continue
        max_abs, rel = min(errors, key=lambda e: e[1])
        if rel <= rtol:
            last_ok = n
            continue
        return Divergence(
            layer=n, onnx_tensor=tensors[n], torch_module=info.layer_map.get(n),
            max_abs_error=max_abs, max_rel_error=rel, sample=0, last_agreeing_layer=last_ok,
            unmapped_between=_unmapped_between(network, n, mapped), layers_compared=len(compared),
        )
    return Divergence(
        layer=None, onnx_tensor=None, torch_module=None, max_abs_error=None, max_rel_error=None,
        sample=0, last_agreeing_layer=last_ok, unmapped_between=[], layers_compared=len(compared),
    )


def _capture(
    model: nn.Module, x: torch.Tensor, paths: dict[str, str]
) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """Run ``model`` on ``x``; return its output and every output of the modules at ``paths``
    (layer -> outputs: a module called several times, like a shared ReLU, records each call)."""
    seen: dict[str, list[np.ndarray]] = {}
    handles = []
    by_path: dict[str, list[str]] = {}
    for layer, path in paths.items():
        by_path.setdefault(path, []).append(layer)
    for path, layers in by_path.items():
        try:
            module = model.get_submodule(path) if path else model
        except AttributeError as exc:
            raise VerificationError(f"layer_map names a missing submodule {path!r}") from exc

        def hook(_m: Any, _i: Any, out: Any, layers: list[str] = layers) -> None:
            # copy: a later in-place op (ReLU(inplace=True)) would change a shared buffer
            value = _first_tensor(out).detach().cpu().numpy().copy()
            for layer in layers:
                seen.setdefault(layer, []).append(value)

        handles.append(module.register_forward_hook(hook))
    try:
        out = _run_torch(model, x)
    finally:
        for h in handles:
            h.remove()
    return out, seen


def _layer_error(t: np.ndarray, o: np.ndarray) -> tuple[float, float] | None:
    """(max abs error, max abs error / max|o|), or None when the shapes cannot be matched."""
    if t.shape != o.shape:
        fitted = _fit(t[0], o.shape[1:]) if len(t) == len(o) == 1 else None
        if fitted is None:
            return None
        t = fitted[None]
    c = _comparison(t.astype(np.float32), o.astype(np.float32), math.inf)
    return c.max_abs_error, c.max_rel_error


def _unmapped_between(network: Network | None, layer: str, mapped: set[str]) -> list[str]:
    """Layers feeding ``layer`` (transitively) until a compared layer: they have no module."""
    if network is None:
        return []
    found: list[str] = []
    stack = [c.source for c in network.predecessors(layer)]
    while stack:
        n = stack.pop()
        if n in mapped or n in found:
            continue
        found.append(n)
        stack.extend(c.source for c in network.predecessors(n))
    rank = {lay.name: i for i, lay in enumerate(network.topological_order())}
    return sorted(found, key=lambda n: rank.get(n, -1))


# ---------------------------------------------------------------------------------------------
# weights certificate
# ---------------------------------------------------------------------------------------------

# MATLAB gate order [i; f; c(g); o] -> ONNX LSTM (i, o, f, c); [r; z; h] -> ONNX GRU (z, r, h)
_GATE_ORDER = {"LSTMLayer": (0, 3, 1, 2), "BiLSTMLayer": (0, 3, 1, 2), "GRULayer": (1, 0, 2)}
_BIDIRECTIONAL = frozenset({"BiLSTMLayer"})


def _certificate(network: Network, export: OnnxExport) -> WeightsCertificate:
    """Compare every learnable/state array of ``network`` (and the input layer's normalization
    statistics) with the ONNX initializers of the same layer, up to MATLAB's layout changes."""
    owners = _initializer_owners(export.initializers, [lay.name for lay in network.layers])
    cert = WeightsCertificate()
    for layer in network.layers:
        mine = {k: export.initializers[k] for k in owners.get(layer.name, [])}
        for key, array in _matlab_arrays(layer):
            cert.checked += 1
            entry = _match(layer, key, np.asarray(array), mine)
            if entry is None:
                cert.identical += 1
            elif entry.max_abs_diff is None:
                cert.missing.append(entry)
            else:
                cert.differing.append(entry)
    return cert


def _matlab_arrays(layer: Layer) -> Iterator[tuple[str, np.ndarray]]:
    yield from layer.learnables.items()
    yield from layer.state.items()
    norm = layer.normalization
    if norm is not None:
        for key in ("mean", "std", "min", "max"):
            a = getattr(norm, key)
            if a is not None and np.asarray(a).size > 1:
                yield f"Normalization.{key}", np.asarray(a)


def _initializer_owners(
    inits: dict[str, np.ndarray], layers: Sequence[str]
) -> dict[str, list[str]]:
    """Layer name -> the initializers named after it (see `onnx_run.owner`)."""
    owners: dict[str, list[str]] = {}
    for name in inits:
        layer = onnx_run.owner(name, layers)
        if layer is not None:
            owners.setdefault(layer, []).append(name)
    return owners


def _match(
    layer: Layer, key: str, array: np.ndarray, inits: dict[str, np.ndarray]
) -> WeightEntry | None:
    """None when some layout of ``array`` equals an initializer bit for bit, else the closest
    size-compatible initializer (``max_abs_diff`` set) or a missing entry."""
    best: tuple[float, str, str] | None = None
    a32 = array.astype(np.float32)
    for layout, cand in _layouts(layer, a32):
        for name, init in inits.items():
            if init.size != cand.size or not np.issubdtype(init.dtype, np.floating):
                continue
            delta = cand.reshape(init.shape) - init.astype(np.float32)
            diff = float(np.max(np.abs(delta), initial=0))
            if diff == 0.0:
                return None
            if not np.isnan(diff) and (best is None or diff < best[0]):
                best = (diff, name, layout)
    entry = WeightEntry(layer=layer.name, array=key, shape=[int(s) for s in array.shape])
    if best is not None:
        entry.max_abs_diff, entry.onnx_initializer, entry.layout = best
    return entry


def _layouts(layer: Layer, a: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """The arrangements MATLAB's exporter writes an array in (reshaped to fit afterwards)."""
    yield "as stored", a
    if a.ndim == 4:
        yield "HxWxCxF -> FxCxHxW", a.transpose(3, 2, 0, 1)
    if a.ndim == 3:
        yield "HxWxC -> 1xCxHxW", a.transpose(2, 0, 1)
    if a.ndim == 2:
        yield "transposed (MatMul)", a.T
    gates = _GATE_ORDER.get(layer.type)
    if gates is not None:
        dirs = 2 if layer.type in _BIDIRECTIONAL else 1
        flat = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
        blocks = np.split(flat, dirs * len(gates))
        ordered = [
            blocks[d * len(gates) + g] for d in range(dirs) for g in gates
        ]
        reordered = np.concatenate(ordered).reshape(dirs, -1, *flat.shape[1:])
        yield "gates reordered to ONNX order", reordered
        if a.ndim == 1 or flat.shape[1] == 1:  # bias: ONNX B = [Wb, Rb] with Rb = 0
            with_rb = np.concatenate([reordered, np.zeros_like(reordered)], axis=1)
            yield "gates reordered, zero recurrent bias", with_rb
