"""Values the containers produce before the MCOS subsystem resolves them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_DEPTH = 64  # deepest nesting of cells/structs/objects a file may have


@dataclass(eq=False)
class ObjectRef:
    """A variable holding class objects: its declared class and uint32 reference array."""

    class_name: str
    ref: np.ndarray
