"""The export layer's user-facing error."""
from __future__ import annotations


class ExportError(ValueError):
    """A node cannot be exported (no successful model, unknown id, no way to rebuild its task)."""
