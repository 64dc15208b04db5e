"""The inputs both sides are fed: given arrays, random draws, a folder's images; and the same
raw batch shaped the way an ONNX export declares its input."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from matport.errors import VerificationError
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
) -> tuple[np.ndarray, int]:
    """Raw data in the model's layout, batch first: given or random, then the folder's images."""
    parts: list[np.ndarray] = []
    if given is not None:
        parts.append(_as_batch(info, given))
    elif num_random > 0:
        parts.append(random_raw(info, num_random, np.random.default_rng(seed), export))
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


def random_raw(
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

