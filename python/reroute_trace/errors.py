"""The one error type of the package, worded as the Swift suite words its input errors."""

from __future__ import annotations


class TraceError(ValueError):
    """A file that is not a valid trace or case.

    ``str(error)`` is ``FILE: OBJECT: KIND: DETAIL`` (``FILE: KIND: DETAIL`` without an
    object), the text ``reroute`` prints after ``reroute: error:`` for the same file, so a
    trace this package refuses is refused by the Swift reader with the same message.
    """

    def __init__(self, file: str, obj: str | None, kind: str, detail: str) -> None:
        self.file, self.object, self.kind, self.detail = file, obj, kind, detail
        super().__init__(f"{file}: {obj}: {kind}: {detail}" if obj else f"{file}: {kind}: {detail}")
