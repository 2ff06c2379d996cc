"""Links to where a commit came from — only ever http(s), so a declared URL can never run script.

A Release's `source.repository` and `source.ciRunUrl` are declared by CI and stored as the user typed
them: a `javascript:` or `data:` URL there must not become a clickable link on the dashboard.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote, urlsplit


def safe_url(url: str | None) -> str | None:
    """`url` when it is an absolute http(s) URL with a host, else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url.strip()):
        return None
    return url.strip()


def _repository(repository: str | None) -> str | None:
    base = safe_url(repository)
    if base is None:
        return None
    base = base.rstrip("/")
    return base[: -len(".git")] if base.endswith(".git") else base


def commit_url(repository: str | None, commit: str | None) -> str | None:
    """The commit's page (GitHub, GitLab, Gitea and Forgejo all serve `<repo>/commit/<sha>`)."""
    base = _repository(repository)
    if base is None or not commit:
        return None
    return f"{base}/commit/{quote(commit)}"


def compare_url(repository: str | None, older: str | None, newer: str | None) -> str | None:
    """The commit range older...newer on the repository's compare page."""
    base = _repository(repository)
    if base is None or not older or not newer or older == newer:
        return None
    return f"{base}/compare/{quote(older)}...{quote(newer)}"


def iso(t: datetime | None) -> str | None:
    """An instant as RFC 3339 UTC with milliseconds, for the page to format in the viewer's zone."""
    if t is None:
        return None
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
