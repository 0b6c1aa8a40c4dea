"""The mission DAG as Mermaid, Graphviz DOT or a self-contained SVG (layered layout)."""

from __future__ import annotations

import html
import re

from .model import Mission
from .plan import Plan

__all__ = ["to_dot", "to_mermaid", "to_svg"]


def _mermaid_id(step_id: str) -> str:
    return "s_" + re.sub(r"[^A-Za-z0-9_]", "_", step_id)


def _label(text: str) -> str:
    return text.replace('"', "'")


def to_mermaid(mission: Mission) -> str:
    """``flowchart TD`` with one node per step (label: name and type) and one edge per dependency."""
    lines = ["flowchart TD"]
    for step in mission.steps:
        lines.append(
            f'    {_mermaid_id(step.id)}["{_label(step.display_name)}<br/><i>{step.step_type}</i>"]'
        )
    for step in mission.steps:
        for dep in step.depends_on:
            lines.append(f"    {_mermaid_id(dep)} --> {_mermaid_id(step.id)}")
    return "\n".join(lines) + "\n"


def to_dot(mission: Mission) -> str:
    """A ``digraph`` for Graphviz."""

    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        f"digraph {q(mission.display_name)} {{",
        "  rankdir=TB;",
        "  node [shape=box, style=rounded];",
    ]
    for step in mission.steps:
        lines.append(f"  {q(step.id)} [label={q(step.display_name + chr(10) + step.step_type)}];")
    for step in mission.steps:
        for dep in step.depends_on:
            lines.append(f"  {q(dep)} -> {q(step.id)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(
    mission: Mission, *, box_w: int = 180, box_h: int = 44, gap_x: int = 30, gap_y: int = 50
) -> str:
    """A standalone SVG: one row per topological level, edges as straight arrows."""
    levels = Plan.from_mission(mission).levels()
    width = max((len(level) for level in levels), default=1) * (box_w + gap_x) + gap_x
    height = len(levels) * (box_h + gap_y) + gap_y
    pos: dict[str, tuple[int, int]] = {}
    for row, level in enumerate(levels):
        offset = (width - len(level) * (box_w + gap_x) + gap_x) // 2
        for col, step_id in enumerate(level):
            pos[step_id] = (offset + col * (box_w + gap_x), gap_y // 2 + row * (box_h + gap_y))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#555"/></marker></defs>',
        f"<title>{html.escape(mission.display_name)}</title>",
    ]
    for step in mission.steps:
        x2, y2 = pos[step.id]
        for dep in step.depends_on:
            x1, y1 = pos[dep]
            out.append(
                f'<line x1="{x1 + box_w // 2}" y1="{y1 + box_h}" x2="{x2 + box_w // 2}" y2="{y2}" '
                'stroke="#555" marker-end="url(#arrow)"/>'
            )
    for step in mission.steps:
        x, y = pos[step.id]
        name = step.display_name if len(step.display_name) <= 26 else step.display_name[:25] + "…"
        out.append(
            f'<g><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="8" fill="#eef3ff" '
            f'stroke="#3b5bdb"/><text x="{x + box_w // 2}" y="{y + 18}" text-anchor="middle">'
            f'{html.escape(name)}</text><text x="{x + box_w // 2}" y="{y + 34}" '
            f'text-anchor="middle" fill="#666" font-style="italic">{html.escape(step.step_type)}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
