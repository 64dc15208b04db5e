"""The JSON schema of a verify report (``VerifyReport.to_json()``, ``matport verify --json``)."""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 2

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
_WEIGHT_ENTRY = {
    "type": "object",
    "required": ["layer", "tensor", "shape", "onnx_initializer", "layout", "max_abs_diff"],
    "properties": {
        "layer": {**_STR_OR_NULL, "description": "MATLAB layer name, null when unknown"},
        "tensor": {
            "type": "string",
            "description": "state_dict key, or matport.normalization.<mean|std|min|max>",
        },
        "shape": {"type": "array", "items": {"type": "integer"}, "description": "PyTorch shape"},
        "onnx_initializer": {**_STR_OR_NULL, "description": "closest initializer, null if none"},
        "layout": {**_STR_OR_NULL, "description": "arrangement of the initializer compared"},
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
_LAYER_ERROR = {
    "type": "object",
    "required": ["layer", "onnx_tensor", "torch_module", "max_abs_error", "max_rel_error",
                 "holds"],
    "properties": {
        "layer": {"type": "string"},
        "onnx_tensor": {"type": "string"},
        "torch_module": _STR_OR_NULL,
        "max_abs_error": _NUM_OR_NULL,
        "max_rel_error": _NUM_OR_NULL,
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
        "inputs", "tolerance", "outputs", "weights", "divergence", "layers",
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
            "required": ["random", "given", "images", "images_dir", "seed", "distribution"],
            "properties": {
                "random": {"type": "integer", "minimum": 0},
                "given": {"type": "integer", "minimum": 0},
                "images": {"type": "integer", "minimum": 0},
                "images_dir": _STR_OR_NULL,
                "seed": {"type": "integer"},
                "distribution": {
                    **_STR_OR_NULL,
                    "description": "how the random inputs were drawn and why (from the input "
                                   "layer's statistics); null without random inputs",
                },
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
                "top1_agreement", "top5_agreement", "holds", "model_output",
            ],
            "properties": {
                "compared": {"enum": ["probabilities", "outputs"]},
                "model_output": {
                    "enum": ["logits", "probabilities", "outputs"],
                    "description": "what the model returns: logits (compared with the ONNX "
                                   "Softmax's input, and through a softmax with its output), "
                                   "probabilities, or outputs of a network without softmax",
                },
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
            "description": "the model's own tensors against the ONNX initializers; null unless "
                           "the export was written by MATLAB",
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
        "layers": {
            "type": ["object", "null"],
            "description": "per-layer errors: present when the outputs disagree or when asked "
                           "for (verify(per_layer=True), matport verify --html)",
            "required": ["sample", "compared", "graph_layers", "graph_edges"],
            "properties": {
                "sample": {"type": "integer", "minimum": 0},
                "compared": {"type": "array", "items": _LAYER_ERROR},
                "graph_layers": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "every layer, in topological order (the compared ones "
                                   "when the MATLAB network is unknown)",
                },
                "graph_edges": {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "string"},
                              "minItems": 2, "maxItems": 2},
                    "description": "[source, dest] layer pairs",
                },
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

