"""Values the containers produce before the MCOS subsystem resolves them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_DEPTH = 64  # deepest nesting of cells/structs/objects a file may have
MAX_SHOWN = 400  # characters of a name or place an error message shows


@dataclass(eq=False)
class ObjectRef:
    """A variable holding class objects: its declared class and uint32 reference array."""

    class_name: str
    ref: np.ndarray


def one_line(text: str) -> str:
    """``text`` as an error message shows it: names read from a file may hold newlines or other
    control characters, which are escaped so that a message stays one line, and may be long,
    which is cut (the file's bytes are no message)."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."
