"""How a migration shows its progress: a tqdm bar on a terminal, else one log line per file."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

    from matport.migrate.report import FileResult

log = logging.getLogger("matport.migrate")


class Progress:
    """Reports each finished file.

    Args:
        total: the number of files.
        bar: a tqdm bar on stderr (files done/total, failures, rate, ETA); else one ``logging``
            INFO line per file on the ``matport.migrate`` logger.
    """

    def __init__(self, total: int, bar: bool) -> None:
        self.total, self.done, self.failed = total, 0, 0
        self.bar: tqdm[None] | None = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="matport migrate", unit="file", file=sys.stderr,
                            dynamic_ncols=True, postfix={"failed": 0})

    def update(self, result: FileResult) -> None:
        """Count one finished file.

        Args:
            result: its result.
        """
        self.done += 1
        self.failed += result.outcome == "failed"
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(1)
            return
        reason = f": {result.reason}" if result.reason else ""
        first = reason.splitlines()[0] if reason else ""
        log.info("%d/%d %s: %s%s (%.2f s)", self.done, self.total, result.relative,
                 result.outcome, first, result.seconds)

    def close(self) -> None:
        """End the bar (no-op for log lines)."""
        if self.bar is not None:
            self.bar.close()
