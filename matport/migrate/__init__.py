"""Whole folders of ``.mat`` files migrated resumably in worker processes (``runner``): one
artifact per network (``artifact``) and a report of every file (``report``)."""

from matport.migrate.runner import migrate

__all__ = ["migrate"]
