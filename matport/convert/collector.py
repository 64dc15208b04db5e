"""Building a model without Python's cyclic garbage collector running in the middle of it."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a model is built; enable it again however the
    block ends.

    Building a torchvision model copies thousands of containers that all stay alive (each
    module's attribute, parameter, buffer and hook dicts: about 16 a module, 11,000 for
    DenseNet-201's 713 modules). Left running, the collector traverses them in a young
    collection every 700 new containers, finding nothing to free; every tenth of those moves
    the model's objects into the oldest generation, and every few loads that sets off a full
    collection of every object in the process, torch's included (measured at 0.4 s in a process
    holding a read DenseNet-201: longer than converting it). Paused, it runs once after the
    block, when the model's objects may already be released: a model loaded and dropped (a
    migration converting file after file) never reaches the oldest generation. Reference
    counting frees memory as usual meanwhile.

    The collector is process-wide: what other threads allocate meanwhile is collected after the
    block too. A collector the caller disabled stays disabled.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
