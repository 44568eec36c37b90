"""Conditional requests (RFC 9110 section 13), pure: entity tags and their checks.

A resource's entity tag is its row version, `"<version>"` (strong: every change to the
resource changes it). `Preconditions` holds what a request asked for; `holds(etag,
last_modified)` is called by a use case on the row it holds locked, so the check and
the update are one atomic step.

- `If-Match: *` holds for any existing resource; otherwise one of the listed tags must
  equal the current one by the strong comparison (a weak tag `W/"..."` never matches).
- `If-Unmodified-Since` (ignored when If-Match is present, or when it is not an
  HTTP-date) holds when the resource did not change after that second.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def entity_tag(version: int | str) -> str:
    """The strong entity tag of a resource version: `"<version>"`."""
    return f'"{version}"'


def parse_if_match(value: str | None) -> tuple[str, ...] | None:
    """The entity tags of an `If-Match` value (`("*",)` for `*`), None when absent.

    A member that is not a well-formed tag is kept as it was sent: it matches nothing.
    """
    if value is None:
        return None
    tags: list[str] = []
    current = ""
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            tags.append(current.strip())
            current = ""
            continue
        current += char
    tags.append(current.strip())
    return tuple(tag for tag in tags if tag) or ("",)


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date (IMF-fixdate and the obsolete forms), None when absent or invalid."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def http_date(moment: datetime) -> str:
    """`moment` as an IMF-fixdate (for Last-Modified)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%a, %d %b %Y %H:%M:%S GMT")


def _strong_match(sent: str, current: str) -> bool:
    return not sent.startswith("W/") and not current.startswith("W/") and sent == current


@dataclass(frozen=True)
class Preconditions:
    """What a request's `If-Match` / `If-Unmodified-Since` ask for."""

    if_match: tuple[str, ...] | None = None
    if_unmodified_since: datetime | None = None

    @property
    def given(self) -> bool:
        return self.if_match is not None or self.if_unmodified_since is not None

    def holds(self, etag: str, last_modified: datetime | None) -> bool:
        """Whether the request may go on against the resource as it is now."""
        if self.if_match is not None:
            return "*" in self.if_match or any(_strong_match(t, etag) for t in self.if_match)
        if self.if_unmodified_since is not None and last_modified is not None:
            changed = last_modified.astimezone(UTC).replace(microsecond=0)
            return changed <= self.if_unmodified_since.astimezone(UTC)
        return True


NONE = Preconditions()
