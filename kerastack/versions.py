"""Version strings of TensorFlow, Python and CUDA, parsed with semver."""

from __future__ import annotations

import re
from functools import total_ordering

import semver

# No leading zeros: "2.21.00" would otherwise be a second spelling of 2.21.0. ASCII digits only
# (`\d` would take any Unicode digit), at most 9 per component and 4 components: every version
# ends up in a Docker tag (128 characters for TF, Python and CUDA together with the stamp).
_DOTTED = re.compile(r"(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}")
MAX_LENGTH = 24


@total_ordering
class Version:
    """A dotted release version (`3.11`, `12.5`, `2.21.0`) that keeps how it was written.

    semver orders it; `parts` keeps the written components so that `2.21` can select `2.21.0`.
    """

    __slots__ = ("text", "parts", "_semver")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or len(text) > MAX_LENGTH or not _DOTTED.fullmatch(text):
            shown = repr(text[:40] + "...") if isinstance(text, str) and len(text) > 40 else repr(text)
            raise ValueError(f"{shown} is not a version like 2.21.0, 3.11 or 12.5 (ASCII digits, at most {MAX_LENGTH} characters)")
        self.text = text
        self.parts = tuple(int(p) for p in text.split("."))
        major, minor, patch = (self.parts + (0, 0))[:3]
        self._semver = semver.Version(major, minor, patch)

    @property
    def major_minor(self) -> str:
        return ".".join(str(p) for p in (self.parts + (0,))[:2])

    def startswith(self, prefix: Version) -> bool:
        """True when every written component of `prefix` matches: 2.21 selects 2.21.0, not 2.210."""
        return self.parts[: len(prefix.parts)] == prefix.parts

    def _key(self) -> tuple[semver.Version, tuple[int, ...]]:
        return (self._semver, self.parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self.parts)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Version({self.text!r})"


def parse_semver_tag(text: str) -> semver.Version:
    """A release tag such as `v1.2.3`: strict semver after an optional `v`."""
    return semver.Version.parse(text[1:] if text.startswith("v") else text)
