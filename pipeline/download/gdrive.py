"""Recognising the HTML pages Google Drive serves in place of a file.

Two pages matter: the virus-scan warning for files too large to scan, which carries a form (or, on
older pages, a link) to the real download, and the quota page shown once a file has been downloaded too
often that day, which no retry within minutes will get past.
"""

from __future__ import annotations

import html.parser
import urllib.parse

QUOTA_MARKERS = (
    "Google Drive - Quota exceeded",
    "Too many users have viewed or downloaded this file recently",
)


def is_quota_page(page: str) -> bool:
    return any(marker in page for marker in QUOTA_MARKERS)


class _ConfirmFinder(html.parser.HTMLParser):
    """Collects the download form (action + hidden inputs) and any ``export=download`` link."""

    def __init__(self) -> None:
        super().__init__()
        self.form_action: str | None = None
        self.form_fields: list[tuple[str, str]] = []
        self.links: list[str] = []
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "form" and self.form_action is None and "download" in attributes.get("action", ""):
            self.form_action = attributes["action"]
            self._in_form = True
        elif tag == "input" and self._in_form and attributes.get("type") == "hidden" and "name" in attributes:
            self.form_fields.append((attributes["name"], attributes.get("value", "")))
        elif tag == "a" and "export=download" in attributes.get("href", ""):
            self.links.append(attributes["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def confirm_url(page: str, page_url: str) -> str | None:
    """The URL that confirms the download on a virus-scan warning page, or None if `page` is not one."""
    finder = _ConfirmFinder()
    finder.feed(page)
    if finder.form_action is not None:
        action = urllib.parse.urljoin(page_url, finder.form_action)
        query = urllib.parse.urlencode(finder.form_fields)
        return f"{action}{'&' if '?' in action else '?'}{query}" if query else action
    if len(finder.links) == 1:
        return urllib.parse.urljoin(page_url, finder.links[0])
    return None
