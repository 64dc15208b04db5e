"""The inputs both sides are fed: given arrays, random draws, a folder's images; and the same
raw batch shaped the way an ONNX export declares its input."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from matport.convert.preprocess import normalization_tensors, to_layout
from matport.errors import ConversionError, VerificationError
from matport.verify.onnx_run import OnnxExport
from matport.verify.shapes import fit

if TYPE_CHECKING:
    from matport.convert.info import ModelInfo

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")


def raw_inputs(
    info: ModelInfo,
    export: OnnxExport,
    given: np.ndarray | None,
    num_random: int,
    images_dir: str | Path | None,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The raw data both sides are fed: given or random, then the folder's images.

    Args:
        info: the model's `ModelInfo` (input size, layout, normalization).
        export: the export (a sequence's fixed length).
        given: raw inputs given by the caller, or None for ``num_random`` random ones.
        num_random: how many random inputs to draw.
        images_dir: a folder of images to add, or None.
        seed: seed of the random inputs.

    Returns:
        The batch (the model's layout, batch first, float32) and the report's ``inputs`` entry.
    """
    parts: list[np.ndarray] = []
    distribution = None
    if given is not None:
        parts.append(_as_batch(info, given))
    elif num_random > 0:
        drawn, distribution = random_raw(info, num_random, np.random.default_rng(seed), export)
        parts.append(drawn)
    n_images = 0
    if images_dir is not None:
        images = _load_images(Path(images_dir), info)
        n_images = len(images)
        parts.append(images)
    if not parts or sum(len(p) for p in parts) == 0:
        raise VerificationError("no inputs to compare: give num_random > 0, inputs or images")
    n_given = len(parts[0]) if given is not None else 0
    described = {
        "random": 0 if distribution is None else num_random,
        "given": n_given,
        "images": n_images,
        "images_dir": None if images_dir is None else str(images_dir),
        "seed": seed,
        "distribution": distribution,
    }
    return np.concatenate(parts).astype(np.float32), described


def _as_batch(info: ModelInfo, x: np.ndarray) -> np.ndarray:
    return to_layout(x, info.input_size, info.layout).numpy()


def random_raw(
    info: ModelInfo, n: int, rng: np.random.Generator, export: OnnxExport | None
) -> tuple[np.ndarray, str]:
    """Random raw inputs drawn from the input layer's own statistics.

    ``rescale-*``: uniform between its Min and Max; ``zscore``: normal with its Mean and
    StandardDeviation; ``zerocenter``: MATLAB's 0-255 pixels when the mean lies in 0-255 (pixel
    data), uniform 0-1 when it lies in 0-1, else normal around the mean with unit deviation;
    no statistics: uniform 0-1 for images, standard normal for features and sequences.

    Args:
        info: the model's `ModelInfo`.
        n: how many inputs.
        rng: the random generator.
        export: the export (a sequence's fixed length), or None.

    Returns:
        The batch (the model's layout, batch first, float32) and how it was drawn, in words.
    """
    size = tuple(int(s) for s in info.input_size)
    shape: tuple[int, ...]
    if info.layout == "NCHW":
        h, w, c = (size + (1, 1, 1))[:3] if len(size) < 3 else size[:3]
        shape = (n, c, h, w)
    elif info.layout == "NC":
        shape = (n, int(np.prod(size)))
    else:
        shape = (n, _sequence_length(export, size[-1]) if export is not None else 8, size[-1])
    kind = info.normalization.type
    try:
        stats = {k: t.numpy() for k, t in
                 normalization_tensors(info.normalization, info.input_size, info.layout).items()}
    except ConversionError:  # a stored function or missing statistics: nothing to go by
        stats = {}
    if "min" in stats and "max" in stats:
        lo, hi = stats["min"], stats["max"]
        x = lo + (hi - lo) * rng.random(shape)
        how = f"uniform between the input layer's Min and Max ({kind})"
    elif "std" in stats:
        x = stats["mean"] + stats["std"] * rng.standard_normal(shape)
        how = f"normal with the input layer's Mean and StandardDeviation ({kind})"
    elif "mean" in stats:
        x, how = _around_mean(stats["mean"], shape, rng)
    elif info.layout == "NCHW":
        x, how = rng.random(shape), f"uniform 0-1 (normalization {kind}: no stats)"
    else:
        x, how = rng.standard_normal(shape), f"standard normal (normalization {kind}: no stats)"
    return x.astype(np.float32), how


def _around_mean(
    mean: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """Inputs for a ``zerocenter`` layer: the data range its mean implies."""
    lo, hi = float(mean.min()), float(mean.max())
    if 0 <= lo and hi <= 1:
        return rng.random(shape), "uniform 0-1 (zerocenter, mean within 0-1)"
    if 0 <= lo and hi <= 255:
        return 255 * rng.random(shape), "uniform 0-255 pixels (zerocenter, mean within 0-255)"
    return mean + rng.standard_normal(shape), "normal around the zerocenter mean, unit deviation"


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


def onnx_input(export: OnnxExport, info: ModelInfo, raw: np.ndarray) -> np.ndarray:
    """``raw`` as the export wants it: raw or preprocessed, permuted to the declared shape."""

    x = raw
    if export.input_contract == "preprocessed":
        x = info.preprocess(torch.from_numpy(raw)).numpy()
    declared = export.sample_shape
    if not export.input_shape or (
        len(declared) == x.ndim - 1
        and all(d is None or d == s for d, s in zip(declared, x.shape[1:], strict=True))
    ):
        return x
    fitted = [fit(sample, declared) for sample in x]
    if any(f is None for f in fitted) or not len(x):
        raise VerificationError(
            f"{export.path}: input {export.input_name} is declared {list(export.input_shape)}, "
            f"but "
            f"the model's InputSize {list(info.input_size)} gives {list(x.shape)} "
            "(batch first): they are not the same network or input"
        )
    return np.stack(fitted)  # type: ignore[arg-type]

