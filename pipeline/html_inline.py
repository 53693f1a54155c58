"""A page whose images live beside it, made into one self-contained file (images as `data:` URIs).

MLflow's artifact preview shows an HTML artifact on its own, without the files beside it, so a report
logged as a folder showed broken images there; the inlined page shows them anywhere it is opened.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

# `src` of the elements that show media, in either quote style.
_MEDIA_SRC = re.compile(r"""(<(?:img|source|video|audio)\b[^>]*?\bsrc\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
_TYPES = {".webp": "image/webp", ".svg": "image/svg+xml", ".avif": "image/avif", ".mp4": "video/mp4"}


def data_uri(path: Path) -> str:
    mime = _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def inline_media(page: str | Path) -> str:
    """The HTML of `page` with every relative media `src` inside its folder replaced by the file's data.

    Absolute URLs, `data:` URIs, and paths leaving the page's folder or naming no file are left as they are.
    """
    page = Path(page)
    root = page.parent.resolve()

    def replace(match: re.Match[str]) -> str:
        prefix, quote, src = match.groups()
        parts = urlsplit(src)
        if parts.scheme or parts.netloc or not parts.path:
            return match.group(0)
        target = (root / unquote(parts.path)).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return match.group(0)
        return f"{prefix}{quote}{data_uri(target)}{quote}"

    return _MEDIA_SRC.sub(replace, page.read_text(encoding="utf8"))
