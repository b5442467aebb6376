"""The console's HTML: escaping, the page layout and the few shared pieces (tables, dates, forms).

No template engine: every page is a Python function returning a string, and *everything* that
comes from data or the request goes through :func:`esc` (or :func:`attr`). Markup built here is
wrapped in :class:`Html` so it is not escaped twice; plain ``str`` is always escaped.
"""

from __future__ import annotations

import html
import json
import time
from typing import Any, Iterable, Sequence
from urllib.parse import quote, urlencode


DAY_S = 86_400


class Html(str):
    """Markup that is already safe to emit as is."""


def esc(value: Any) -> Html:
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def attr(value: Any) -> Html:
    return esc(value)


def join(parts: Iterable[Any]) -> Html:
    return Html("".join(esc(p) for p in parts))


def path_segment(value: str) -> str:
    """A path segment for a URL (``/`` and everything else outside unreserved escaped)."""
    return quote(value, safe="")


def url(path: str, **query: Any) -> str:
    params = {k: v for k, v in query.items() if v not in (None, "")}
    return path + ("?" + urlencode(params) if params else "")


# --- values -------------------------------------------------------------------------------------


def when(ts: int | float | None, *, empty: str = "—") -> Html:
    """A Unix time as ``2026-11-01 14:03:22 UTC`` in a ``<time>`` element."""
    if ts is None:
        return esc(empty)
    try:
        moment = time.gmtime(int(ts))
    except (OverflowError, ValueError, OSError):
        return esc(str(ts))
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)
    text = time.strftime("%Y-%m-%d %H:%M:%S UTC", moment)
    return Html(f'<time datetime="{iso}">{text}</time>')


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


def json_block(value: Any, *, summary_chars: int = 60) -> Html:
    """Short JSON inline; longer JSON in a disclosure with the pretty form inside."""
    compact = json_text(value)
    if len(compact) <= summary_chars:
        return Html(f'<code class="json">{esc(compact)}</code>')
    return Html(f'<details class="json"><summary><code>{esc(compact[:summary_chars])}…</code>'
                f'</summary><pre>{esc(json_text(value, pretty=True))}</pre></details>')


# --- pieces -------------------------------------------------------------------------------------


def table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
          empty: str = "Nothing here yet.", numeric: Sequence[int] = (),
          cls: str = "", caption_hidden: bool = False) -> Html:
    """A table with a caption (kept for screen readers when a heading already shows it)."""
    if not rows:
        return Html(f'<p class="empty">{esc(empty)}</p>')
    head = "".join(f'<th scope="col"{" class=num" if i in numeric else ""}>{esc(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            klass = ' class="num"' if i in numeric else ""
            tag = "th" if i == 0 else "td"
            scope = ' scope="row"' if i == 0 else ""
            cells.append(f"<{tag}{scope}{klass}>{esc(cell)}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    klass = f' class="{attr(cls)}"' if cls else ""
    caption_class = ' class="visually-hidden"' if caption_hidden else ""
    return Html(f'<div class="table-wrap"><table{klass}><caption{caption_class}>{esc(caption)}'
                f"</caption>"
                f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def link(href: str, text: Any, **attrs: str) -> Html:
    extra = "".join(f' {k.replace("_", "-")}="{attr(v)}"' for k, v in attrs.items())
    return Html(f'<a href="{attr(href)}"{extra}>{esc(text)}</a>')


def hidden(name: str, value: Any) -> Html:
    return Html(f'<input type="hidden" name="{attr(name)}" value="{attr(value)}">')


def errors_box(errors: Sequence[str], *, box_id: str = "form-errors") -> Html:
    if not errors:
        return Html(f'<div id="{box_id}" class="errors" role="alert" hidden></div>')
    items = "".join(f"<li>{esc(e)}</li>" for e in errors)
    return Html(f'<div id="{box_id}" class="errors" role="alert"><p>Not sent — please fix:</p>'
                f"<ul>{items}</ul></div>")


def sparkline(counts: Sequence[int], *, label: str, width: int = 120,
              height: int = 28) -> Html:
    """An inline SVG line of daily counts (oldest first), described for screen readers."""
    total, peak = sum(counts), max(counts, default=0)
    description = (f"{label}: {total} in the last {len(counts)} days, "
                   f"at most {peak} a day, {counts[-1] if counts else 0} today")
    if not counts:
        return Html("")
    step = width / max(1, len(counts) - 1)
    pad = 2
    scale = (height - 2 * pad) / peak if peak else 0

    def y(value: int) -> float:
        return round(height - pad - value * scale, 1)

    points = " ".join(f"{round(i * step, 1)},{y(v)}" for i, v in enumerate(counts))
    last_x, last_y = round((len(counts) - 1) * step, 1), y(counts[-1])
    return Html(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{attr(description)}" focusable="false">'
        f"<title>{esc(description)}</title>"
        f'<line x1="0" y1="{height - pad}" x2="{width}" y2="{height - pad}" class="base"/>'
        f'<polyline points="{points}" fill="none" class="line"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2" class="dot"/></svg>')


# --- the page -----------------------------------------------------------------------------------

NAV = (("/console/", "Data index", "index"), ("/console/activity", "Activity log", "activity"),
       ("/console/segments", "Segments", "segments"))


def layout(title: str, body: Html, *, section: str = "", signed_in_by_cookie: bool = False,
           notice: str = "", lookup_value: str = "") -> Html:
    nav = "".join(
        f'<li><a href="{href}"{" aria-current=page" if key == section else ""}>{esc(text)}</a></li>'
        for href, text, key in NAV)
    sign_out = ('<form method="post" action="/console/logout" class="signout">'
                '<button type="submit" class="link">Sign out</button></form>'
                if signed_in_by_cookie else "")
    notice_html = (f'<div class="notice" role="status">{esc(notice)}</div>' if notice else "")
    return Html(f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · eventide console</title>
<link rel="stylesheet" href="/console/static/console.css">
<script src="/console/static/console.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/console/">eventide <span>console</span></a>
  <nav aria-label="Console sections"><ul>{nav}</ul></nav>
  <form class="lookup" role="search" method="get" action="/console/people">
    <label for="lookup-id">Find person</label>
    <input id="lookup-id" name="id" value="{attr(lookup_value)}" placeholder="customer id"
           autocomplete="off" required>
    <button type="submit">Open</button>
  </form>
  {sign_out}
</header>
<main id="main" tabindex="-1">
{notice_html}
{body}
</main>
</body>
</html>
""")


def login_page(*, next_path: str, error: str = "") -> Html:
    error_html = (f'<p class="errors" role="alert" id="login-error">{esc(error)}</p>'
                  if error else "")
    described = ' aria-describedby="login-error"' if error else ""
    return Html(f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · eventide console</title>
<link rel="stylesheet" href="/console/static/console.css">
</head>
<body class="login">
<main id="main">
  <h1>eventide console</h1>
  <p>Sign in with the workspace's <strong>app key</strong> (the bearer key used for reads).</p>
  {error_html}
  <form method="post" action="/console/login" class="stack">
    {hidden("next", next_path)}
    <label for="app_key">App key</label>
    <input id="app_key" name="app_key" type="password" autocomplete="current-password"
           required autofocus{described}>
    <button type="submit" class="primary">Sign in</button>
  </form>
</main>
</body>
</html>
""")


def error_page(status: int, message: str, **layout_kwargs: Any) -> Html:
    title = {400: "Bad request", 401: "Not signed in", 403: "Forbidden", 404: "Not found",
             503: "Unavailable"}.get(status, "Error")
    body = Html(f'<h1>{esc(title)}</h1><p class="errors" role="alert">{esc(message)}</p>'
                '<p><a href="/console/">Back to the data index</a></p>')
    return layout(title, body, **layout_kwargs)
