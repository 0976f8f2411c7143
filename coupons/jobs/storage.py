"""Files jobs keep in the default storage (uploads, exports): finding the ones no job
refers to any more (a worker stopped between storing a file and recording it, a
transaction rolled back after an upload was stored)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone


def stored_files(folder: str) -> Iterator[str]:
    """Every file under ``folder`` of the default storage, as storage names."""
    if not default_storage.exists(folder):
        return
    folders, files = default_storage.listdir(folder)
    for name in files:
        yield f"{folder}/{name}"
    for sub in folders:
        yield from stored_files(f"{folder}/{sub}")


def purge_unreferenced(folder: str, referenced: set[str], *, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete the files under ``folder`` that are not ``referenced`` and older than
    ``older_than`` (a younger one may be in the middle of being recorded)."""
    removed = 0
    cutoff = timezone.now() - older_than
    for name in stored_files(folder):
        if name not in referenced and default_storage.get_modified_time(name) < cutoff:
            default_storage.delete(name)
            removed += 1
    return removed
