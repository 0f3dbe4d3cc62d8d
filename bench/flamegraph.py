"""Render collapsed stacks ("outer;inner;leaf 123" per line) as a flame graph in SVG.

py-spy draws its own CPU flame graphs; this draws the others, e.g. the bytes an idle stream
keeps, by the stack that allocated them (`stream_memory.py`). Each frame's width is its share
of the total; hovering shows the frame, its amount and share.
"""

from __future__ import annotations

import argparse
import html
import zlib
from pathlib import Path

WIDTH = 1200
ROW = 17
FONT = 11
MIN_WIDTH = 0.5  # pixels: narrower frames are not drawn


def read_collapsed(text: str) -> list[tuple[list[str], float]]:
    stacks = []
    for line in text.splitlines():
        stack, _, amount = line.rpartition(" ")
        if stack:
            stacks.append((stack.split(";"), float(amount)))
    return stacks


def _tree(stacks: list[tuple[list[str], float]]) -> dict:
    root: dict = {"total": 0.0, "children": {}}
    for frames, amount in stacks:
        node = root
        node["total"] += amount
        for frame in frames:
            node = node["children"].setdefault(frame, {"total": 0.0, "children": {}})
            node["total"] += amount
    return root


def _colour(name: str) -> str:
    seed = zlib.crc32(name.encode())
    return f"rgb({205 + seed % 50},{80 + (seed >> 8) % 120},{40 + (seed >> 16) % 50})"


def render(stacks: list[tuple[list[str], float]], title: str, unit: str) -> str:
    """Drawn top down (an icicle): the outermost frame first, under the title."""
    root = _tree(stacks)
    total = root["total"] or 1.0
    boxes: list[str] = []
    deepest = 0

    def draw(node: dict, x: float, depth: int) -> None:
        nonlocal deepest
        for name, child in sorted(node["children"].items()):
            width = child["total"] / total * WIDTH
            if width >= MIN_WIDTH:
                deepest = max(deepest, depth)
                y = 24 + depth * ROW
                label = f"{name} ({child['total']:,.0f} {unit}, {child['total'] / total:.1%})"
                text = name[: int(width / (FONT * 0.6))] if width > 7 * FONT else ""
                boxes.append(f'<g><title>{html.escape(label)}</title><rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{ROW - 1}" '
                             f'fill="{_colour(name)}"/><text x="{x + 3:.1f}" y="{y + FONT + 1}">{html.escape(text)}</text></g>')
                draw(child, x, depth + 1)
            x += width

    draw(root, 0.0, 0)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{24 + (deepest + 1) * ROW + 8}" '
            f'font-family="monospace" font-size="{FONT}"><rect width="100%" height="100%" fill="#fff"/>'
            f'<text x="4" y="16" font-size="14">{html.escape(title)} (total {total:,.0f} {unit})</text>' + "".join(boxes) + "</svg>\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collapsed", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--title", default="flame graph")
    parser.add_argument("--unit", default="samples")
    args = parser.parse_args()
    args.output.write_text(render(read_collapsed(args.collapsed.read_text()), args.title, args.unit))


if __name__ == "__main__":
    main()
