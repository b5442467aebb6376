"""The console's templates: Liquid files under ``templates/``, rendered with autoescape on.

Every value a template prints is HTML-escaped (by markupsafe) unless it is
:class:`markupsafe.Markup` (what :mod:`app.console.html`'s helpers and other rendered templates
return). Note that in Liquid an empty string is true: pages pass booleans for conditions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liquid import CachingFileSystemLoader, Environment
from markupsafe import Markup

TEMPLATES_DIR = Path(__file__).with_name("templates")

_env = Environment(autoescape=True,
                   loader=CachingFileSystemLoader(TEMPLATES_DIR, ext=".liquid", auto_reload=False))


def render(name: str, /, **context: Any) -> Markup:
    """``templates/<name>.liquid`` rendered with ``context``, as markup."""
    return Markup(_env.get_template(name).render(**context))
