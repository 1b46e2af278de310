"""A file planned into windows: what each window covers and what the file was when planned."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of a file's records planned once: bytes [start, end), its lines, its digest.

    `repeated` lists the lines in it whose id appeared on an earlier line of the file (the
    duplicate-id rule, decided at plan time for the whole file), usually none.
    """

    start: int
    end: int
    first_line: int
    last_line: int
    rows: int
    digest: str
    repeated: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class FilePlan:
    """A file cut into windows, with what it was when planned (every window checks it)."""

    path: str
    size: int
    fingerprint: str  # SHA-256 of the window digests, in order: the whole file's content
    windows: tuple[Window, ...]

    @property
    def rows(self) -> int:
        return sum(window.rows for window in self.windows)
