"""Whole folders of MATLAB networks migrated to PyTorch in one resumable, loss-free run.

:func:`migrate` (``runner``) finds the sources and their ONNX exports (``sources``), converts
them in worker processes (``pool``; one file's work and its artifacts: ``artifact``), records
what is done (``state``), shows progress (``progress``) and reports every file (``report``,
``html``). Importing this package loads no torch.
"""

from matport.migrate.runner import migrate

__all__ = ["migrate"]
