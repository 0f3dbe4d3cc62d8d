"""Items as HTML. A stand-in until the console's item renderer lands: each item as its
JSON, escaped, with its type as a label."""

from __future__ import annotations

import orjson
from markupsafe import Markup, escape


def render_item(item: dict) -> Markup:
    shown = orjson.dumps(item, option=orjson.OPT_INDENT_2).decode()
    return Markup('<div class="item" data-testid="item" data-type="{}"><div class="kind">{}</div><pre>{}</pre></div>').format(
        item.get("type", "message"), item.get("type", "message"), escape(shown)
    )
