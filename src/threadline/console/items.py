"""Items as the console shows them: messages with markdown, images, tool calls with their
outputs, reasoning summaries and citations. Every page that shows items renders them here.

Everything an item holds is user-supplied: text is escaped, markdown is rendered with raw HTML
off, and a URL is followed only when it is http(s) or mailto (an image may also be data:).
An item of a type without its own rendering, or whose fields are not what its type says, is
shown labelled with its fields as JSON: never an error."""

from __future__ import annotations

import json
import logging
import re
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

log = logging.getLogger("threadline")

LINK_SCHEMES = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)
IMAGE_DATA = re.compile(r"^data:image/(png|jpe?g|gif|webp|avif);", re.IGNORECASE)

# What each item type is called in the page.
LABELS = {
    "message": "Message",
    "function_call": "Function call",
    "function_call_output": "Function output",
    "custom_tool_call": "Custom tool call",
    "custom_tool_call_output": "Custom tool output",
    "mcp_call": "MCP call",
    "mcp_list_tools": "MCP tools listed",
    "mcp_approval_request": "MCP approval request",
    "mcp_approval_response": "MCP approval response",
    "web_search_call": "Web search",
    "file_search_call": "File search",
    "reasoning": "Reasoning",
    "compaction": "Compacted context",
    "image_generation_call": "Image generation",
    "code_interpreter_call": "Code interpreter",
    "computer_call": "Computer call",
    "computer_call_output": "Computer call output",
    "local_shell_call": "Local shell call",
    "local_shell_call_output": "Local shell output",
    "shell_call": "Shell call",
    "shell_call_output": "Shell output",
    "apply_patch_call": "Apply patch call",
    "apply_patch_call_output": "Apply patch output",
    "tool_search_call": "Tool search call",
    "tool_search_output": "Tool search output",
    "additional_tools": "Additional tools",
    "item_reference": "Item reference",
}


def _markdown_renderer() -> MarkdownIt:
    markdown = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    # Image sources may be data: images; links may not (a data: page is a script host).
    markdown.validateLink = lambda url: bool(LINK_SCHEMES.match(url.strip()) or IMAGE_DATA.match(url.strip()))

    def link_open(renderer, tokens, index, options, env):
        token = tokens[index]
        if not LINK_SCHEMES.match(str(token.attrGet("href") or "")):
            token.attrs.pop("href", None)
        token.attrSet("rel", "nofollow noopener noreferrer")
        return renderer.renderToken(tokens, index, options, env)

    render_image = markdown.renderer.rules["image"]

    def image(renderer, tokens, index, options, env):
        # An image from another site learns nothing of the console's address.
        tokens[index].attrSet("referrerpolicy", "no-referrer")
        tokens[index].attrSet("loading", "lazy")
        return render_image(tokens, index, options, env)

    markdown.add_render_rule("link_open", link_open)
    markdown.add_render_rule("image", image)
    return markdown


MARKDOWN = _markdown_renderer()


def markdown(text: Any) -> Markup:
    """Markdown as HTML; raw HTML in it comes out as text."""
    return Markup(MARKDOWN.render(str(text or "")))


def link_url(url: Any) -> str | None:
    """A URL safe to link to (http, https, mailto), else None."""
    return url if isinstance(url, str) and LINK_SCHEMES.match(url.strip()) else None


def image_url(url: Any) -> str | None:
    """A URL safe to show as an image (http, https, or a data: image), else None."""
    if isinstance(url, str) and (re.match(r"^https?:", url.strip(), re.IGNORECASE) or IMAGE_DATA.match(url.strip())):
        return url
    return None


def pretty_json(value: Any) -> str:
    """JSON text (a call's arguments) indented when it parses, else as sent; other values as JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def short(text: Any, limit: int = 160) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


ENVIRONMENT = Environment(
    loader=FileSystemLoader(str(resources.files("threadline.console") / "templates")),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.filters.update(markdown=markdown, link_url=link_url, image_url=image_url, pretty_json=pretty_json, short=short)
ENVIRONMENT.globals["LABELS"] = LABELS
ITEM = ENVIRONMENT.get_template("_item.html")
FALLBACK = ENVIRONMENT.get_template("_item_fields.html")


def render_item(item: dict) -> Markup:
    """One item as an <article data-testid="item" data-item-type=... data-item-id=...>."""
    if not isinstance(item, dict):
        item = {"type": "unknown", "value": item}
    try:
        return Markup(ITEM.render(item=item, kind=str(item.get("type") or "message")).strip())
    except Exception:  # a malformed stored item is shown as its fields, not a broken page
        log.warning("item %s shown as its fields: its rendering failed", item.get("id"), exc_info=True)
        return Markup(FALLBACK.render(item=item, kind=str(item.get("type") or "unknown")).strip())


def render_items(items: list[dict]) -> Markup:
    return Markup("\n").join(render_item(item) for item in items)

