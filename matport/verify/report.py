"""What `verify` found: the report's dataclasses, its JSON form and its text summary.

Importing this module loads neither torch nor onnx.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from matport.verify.schema import REPORT_SCHEMA, SCHEMA_VERSION

__all__ = ["REPORT_SCHEMA", "VerifyReport", "DEFAULT_RTOL"]

#: Default relative tolerance of ``matport verify`` (float32 arithmetic).
DEFAULT_RTOL = 1e-4
TOLERANCE_RULE = "max|torch - onnx| <= rtol * max|onnx|, for outputs and (when present) logits"

Status = Literal["verified", "failed", "error"]
#: what the model returns: logits (the ONNX export's Softmax input), probabilities (its output),
#: or outputs of a network without a final softmax
ModelOutput = Literal["logits", "probabilities", "outputs"]


@dataclass
class Comparison:
    """Errors of one compared pair of tensors (batch first)."""

    max_abs_error: float
    max_rel_error: float
    min_cosine_similarity: float
    holds: bool


@dataclass
class OutputCheck:
    """How the model's outputs compare with the export's: ``probabilities`` holds the comparison
    of the final outputs (probabilities when the export ends in Softmax), ``logits`` the
    comparison of the logits with the ONNX Softmax's input (None when there is none)."""

    compared: Literal["probabilities", "outputs"]
    model_output: ModelOutput
    softmax_applied_to_torch: bool
    probabilities: Comparison
    logits: Comparison | None
    top1_agreement: float | None
    top5_agreement: float | None
    holds: bool


@dataclass
class WeightEntry:
    """One tensor of the model in the weights certificate (only differing / missing ones are
    listed): a ``state_dict`` key or ``matport.normalization.<statistic>``."""

    layer: str | None
    tensor: str
    shape: list[int]
    onnx_initializer: str | None = None
    layout: str | None = None
    max_abs_diff: float | None = None


@dataclass
class WeightsCertificate:
    """Every floating-point tensor of the model checked against the ONNX initializers."""

    checked: int = 0
    identical: int = 0
    differing: list[WeightEntry] = field(default_factory=list)
    missing: list[WeightEntry] = field(default_factory=list)


@dataclass
class LayerError:
    """One MATLAB layer's activation against the ONNX tensor of the same layer."""

    layer: str
    onnx_tensor: str
    torch_module: str | None
    max_abs_error: float
    max_rel_error: float
    holds: bool


@dataclass
class LayerErrors:
    """Every layer compared, in topological order, on one input (the worst one), and the
    network's layer graph (every layer in topological order, edges as ``[source, dest]``)."""

    sample: int
    compared: list[LayerError]
    graph_layers: list[str] = field(default_factory=list)
    graph_edges: list[list[str]] = field(default_factory=list)


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

    status: Status
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
    layers: LayerErrors | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def error(
        cls, reason: str, onnx_path: str | Path, mat: str | Path | None = None,
        rtol: float = DEFAULT_RTOL,
    ) -> VerifyReport:
        """The report of a check that could not run."""
        return cls(
            status="error", passed=False, reason=reason, onnx_path=str(onnx_path),
            tolerance=tolerance(rtol), mat=None if mat is None else str(mat),
        )

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON (see `REPORT_SCHEMA`)."""
        return json.dumps(self.to_dict(), indent=indent)

    def summary(self) -> str:
        """A few human-readable lines (see `summary_lines`)."""
        return "\n".join(summary_lines(self.to_dict()))


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A report's summary, from its JSON form (what a migrate artifact stores).

    Args:
        report: ``VerifyReport.to_dict()`` or the same read back from JSON.

    Returns:
        The lines: a headline, then indented details.
    """
    head = {"verified": "VERIFIED", "failed": "FAILED", "error": "COULD NOT VERIFY"}
    lines = [f"{head.get(report['status'], report['status'])}: {report.get('mat') or 'model'} "
             f"against {report['onnx_path']}"]
    if report.get("reason"):
        lines.append(f"  reason: {report['reason']}")
    o = report.get("onnx")
    if o:
        lines.append(
            f"  onnx: {o['producer']} {o['producer_version']}"
            f"{' (' + o['release'] + ')' if o['release'] else ''}, opset {o['opset']}, "
            f"input {o['input_name']} {o['input_shape']}"
        )
    i = report.get("inputs")
    if i:
        drawn = f", {i['distribution']}" if i["distribution"] else ""
        lines.append(f"  inputs: {i['random']} random{drawn}; {i['given']} given; "
                     f"{i['images']} images")
    if report.get("outputs"):
        lines.extend(_output_lines(report["outputs"], report["tolerance"]["rtol"]))
    w = report.get("weights")
    if w:
        lines.append(
            f"  weights: {w['identical']}/{w['checked']} tensors of the model identical to the "
            f"ONNX initializers, {len(w['differing'])} differ, {len(w['missing'])} not in the "
            "export"
        )
        lines += [f"    differs: {e['tensor']} ({e['layer']}) vs {e['onnx_initializer']} "
                  f"(max abs diff {_num(e['max_abs_diff'])})" for e in w["differing"]]
        lines += [f"    not in the export: {e['tensor']} {e['shape']}" for e in w["missing"]]
    d = report.get("divergence")
    if d and d["layer"]:
        between = (f" (after {', '.join(d['unmapped_between'])}, which have no module to "
                   "compare)" if d["unmapped_between"] else "")
        lines.append(f"  first layer that parts: {d['layer']}{between}; last agreeing: "
                     f"{d['last_agreeing_layer'] or 'none'}")
    return lines


def _output_lines(out: Mapping[str, Any], rtol: float) -> list[str]:
    p, logits = out["probabilities"], out["logits"]
    what = {"logits": "softmax of the model's logits", "probabilities": "the model's own",
            "outputs": "the model's outputs"}[out["model_output"]]
    lines = [
        f"  {out['compared']} ({what}): max abs err "
        f"{_num(p['max_abs_error'])}, max rel err {_num(p['max_rel_error'])} (rtol {rtol:g}), "
        f"min cosine {_num(p['min_cosine_similarity'], '.8f')}"
    ]
    if logits:
        lines.append(
            f"  logits (vs the ONNX Softmax's input): max abs err {_num(logits['max_abs_error'])}"
            f", max rel err {_num(logits['max_rel_error'])}"
        )
    elif out["compared"] == "probabilities":
        lines.append("  logits: not compared (no module of the model feeds its softmax)")
    if out["top1_agreement"] is not None:
        lines.append(f"  top-1 agreement {out['top1_agreement']:.0%}, "
                     f"top-5 agreement {out['top5_agreement']:.0%}")
    return lines


def _num(v: float | None, spec: str = ".3g") -> str:
    """A number of the JSON form: None stands for a non-finite one."""
    return "not finite" if v is None else format(v, spec)


def tolerance(rtol: float) -> dict[str, Any]:
    """The report's ``tolerance`` entry.

    Args:
        rtol: the relative tolerance.

    Returns:
        ``{rtol, rule}``.
    """
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


def failure_reason(
    outputs: OutputCheck, weights: WeightsCertificate | None, divergence: Divergence | None
) -> str:
    """Why a check failed, in one line.

    Args:
        outputs: the output comparison.
        weights: the weights certificate, if any.
        divergence: the first layer that parts, if any.

    Returns:
        The reasons, separated by ``;``.
    """
    parts = []
    if not outputs.holds:
        worst = outputs.probabilities
        if outputs.logits is not None and not outputs.logits.holds:
            worst = outputs.logits
        parts.append(f"outputs differ (max rel err {worst.max_rel_error:.3g})")
    if weights and weights.differing:
        names = ", ".join(f"{e.tensor} ({e.layer})" for e in weights.differing[:5])
        more = "" if len(weights.differing) <= 5 else f" and {len(weights.differing) - 5} more"
        parts.append(f"weights differ from the ONNX initializers: {names}{more}")
    if divergence and divergence.layer:
        parts.append(f"first layer that parts: {divergence.layer}")
    return "; ".join(parts)
