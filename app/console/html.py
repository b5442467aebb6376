"""Small HTML values the console's templates show: escaping, times, JSON, links, tables, SVG.

Templates (:mod:`app.console.templating`) escape every value they print; what these helpers
return is :class:`markupsafe.Markup`, which templates print as is, so everything from data or the
request inside it goes through :func:`esc` first. (``esc`` writes ``&quot;`` like
``html.escape``; markupsafe's own escaping writes ``&#34;``: both are safe in text and attributes.)
"""

from __future__ import annotations

import html
import json
import time
from typing import Any, Sequence
from urllib.parse import quote, urlencode

from markupsafe import Markup

from app.console.templating import render

DAY_S = 86_400

def esc(value: Any) -> Markup:
    if hasattr(value, "__html__"):
        return Markup(value.__html__())
    return Markup(html.escape("" if value is None else str(value), quote=True))


def attr(value: Any) -> Markup:
    return esc(value)


def path_segment(value: str) -> str:
    """A path segment for a URL (``/`` and everything else outside unreserved escaped)."""
    return quote(value, safe="")


def url(path: str, **query: Any) -> str:
    params = {k: v for k, v in query.items() if v not in (None, "")}
    return path + ("?" + urlencode(params) if params else "")


# --- values -------------------------------------------------------------------------------------


def when(ts: int | float | None, *, empty: str = "—") -> Markup:
    """A Unix time as ``2026-11-01 14:03:22 UTC`` in a ``<time>`` element."""
    if ts is None:
        return esc(empty)
    try:
        moment = time.gmtime(int(ts))
    except (OverflowError, ValueError, OSError):
        return esc(str(ts))
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)
    text = time.strftime("%Y-%m-%d %H:%M:%S UTC", moment)
    return Markup(f'<time datetime="{iso}">{text}</time>')


def ago(ts: int | float | None, now_s: float) -> str:
    if ts is None:
        return ""
    delta = int(now_s - ts)
    if delta < 0:
        return "in the future"
    for size, unit in ((DAY_S, "day"), (3600, "hour"), (60, "minute")):
        if delta >= size:
            n = delta // size
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "just now"


def json_text(value: Any, *, pretty: bool = False) -> str:
    """JSON for people: keys sorted, spaced (``{"a": 1, "b": 2}``) or indented."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False,
                          indent=2 if pretty else None)
    except (TypeError, ValueError):
        return repr(value)


def json_block(value: Any, *, summary_chars: int = 60) -> Markup:
    """Short JSON inline; longer JSON in a disclosure with the pretty form inside."""
    compact = json_text(value)
    if len(compact) <= summary_chars:
        return Markup(f'<code class="json">{esc(compact)}</code>')
    return Markup(f'<details class="json"><summary><code>{esc(compact[:summary_chars])}…</code>'
                  f'</summary><pre>{esc(json_text(value, pretty=True))}</pre></details>')


def code_id(value: str) -> Markup:
    return Markup(f'<code class="id">{esc(value)}</code>')


# --- pieces -------------------------------------------------------------------------------------


def table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
          empty: str = "Nothing here yet.", numeric: Sequence[int] = (),
          cls: str = "", caption_hidden: bool = False) -> Markup:
    """A table with a caption (kept for screen readers when a heading already shows it); the
    first cell of each row is its header."""
    return render("parts/table", caption=caption, empty_text=empty, cls=cls,
                  caption_hidden=caption_hidden,
                  headers=[{"text": h, "num": i in numeric} for i, h in enumerate(headers)],
                  rows=[[{"text": cell, "num": i in numeric} for i, cell in enumerate(row)]
                        for row in rows])


def link(href: str, text: Any, **attrs: str) -> Markup:
    extra = "".join(f' {k.replace("_", "-")}="{attr(v)}"' for k, v in attrs.items())
    return Markup(f'<a href="{attr(href)}"{extra}>{esc(text)}</a>')


def sparkline(counts: Sequence[int], *, label: str, width: int = 120,
              height: int = 28) -> Markup:
    """An inline SVG line of daily counts (oldest first), described for screen readers."""
    if not counts:
        return Markup("")
    total, peak = sum(counts), max(counts)
    description = (f"{label}: {total} in the last {len(counts)} days, "
                   f"at most {peak} a day, {counts[-1]} today")
    step = width / max(1, len(counts) - 1)
    pad = 2
    scale = (height - 2 * pad) / peak if peak else 0

    def y(value: int) -> float:
        return round(height - pad - value * scale, 1)

    points = " ".join(f"{round(i * step, 1)},{y(v)}" for i, v in enumerate(counts))
    return render("parts/sparkline", width=width, height=height, description=description,
                  base=height - pad, points=points, last_x=round((len(counts) - 1) * step, 1),
                  last_y=y(counts[-1]))
