"""A report as a list of small typed blocks, rendered twice (markdown, self-contained HTML), so the
two never disagree.

The HTML is written to be read at 1,400 px (the width a paper draft's figures are checked at):
tables wrap their text cells rather than scroll, images scale to the column, and nothing is
loaded from outside the file (no script, font or stylesheet link).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

import pandas as pd

from tina.run_status import RunStatus

# needs attention: neither a result nor on its way
BAD_STATUS = tuple(s.value for s in RunStatus if not s.finished and not s.alive)


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    df: pd.DataFrame
    caption: str = ""


@dataclass(frozen=True)
class Image:
    name: str  # file name under the markdown's files folder
    png: bytes
    alt: str
    caption: str = ""


Block = Heading | Para | Table | Image


# ----------------------------------------------------------------------------- markdown
def _md(text) -> str:
    """Text from runs (an error, a config value) as markdown shows it, never as HTML a viewer runs."""
    return html.escape(str(text), quote=False)


def _md_cell(v) -> str:
    return _md(v).replace("|", "\\|").replace("\n", " ")


def render_md(blocks: list[Block], files_dir: str) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + _md(b.text))
        elif isinstance(b, Para):
            out.append(_md(b.text))
        elif isinstance(b, Table):
            if b.caption:
                out += [f"*{_md(b.caption)}*", ""]
            out.append("| " + " | ".join(_md_cell(c) for c in b.df.columns) + " |")
            out.append("|" + "---|" * len(b.df.columns))
            out += ["| " + " | ".join(_md_cell(v) for v in r) + " |"
                    for r in b.df.itertuples(index=False)]
        elif isinstance(b, Image):
            out.append(f"![{_md(b.alt)}]({files_dir}/{b.name})")
            if b.caption:
                out += ["", f"*{_md(b.caption)}*"]
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1360px;
 padding:0 16px;color:#1f2328;line-height:1.45}
h1{font-size:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}
h2{font-size:1.3em;margin-top:1.6em;border-bottom:1px solid #eaeef2;padding-bottom:.2em}
h3{font-size:1.08em;margin-top:1.2em}
.tbl{overflow-x:auto;margin:.5em 0 1em}
table{border-collapse:collapse;font-size:13px}
caption{caption-side:top;text-align:left;color:#57606a;font-size:.92em;padding:.2em 0}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f6f8fa;white-space:normal;max-width:9em}
td.t{text-align:left;white-space:normal;max-width:28em;overflow-wrap:break-word}
td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
td.bad{color:#b42318;font-weight:600}
figure{margin:.6em 0 1.2em}
figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption,p.note{color:#57606a;font-size:.92em}
ul.toc{font-size:.92em;columns:2}
a{color:#0969da;text-decoration:none}
ul.toc li{overflow-wrap:anywhere}
@media (max-width:1000px){body{padding:0 8px}table{font-size:11px}th,td{padding:2px 3px}th{max-width:7em}
 ul.toc{columns:1}}
"""

_NUMERIC = re.compile(r"[-+\d\s.,eE%→±/—#]*")


def _html_table(t: Table) -> str:
    df = t.df
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for r in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, r):
            cls = ' class="bad"' if c == "status" and v in BAD_STATUS else \
                '' if _NUMERIC.fullmatch(str(v)) else ' class="t"'  # text reads left-aligned, wraps
            cells.append(f"<td{cls}>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(t.caption)}</caption>" if t.caption else ""
    return (f'<div class="tbl"><table>{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _html_block(b: Block) -> str:
    if isinstance(b, Heading):
        return f'<h{b.level} id="{slug(b.text)}">{html.escape(b.text)}</h{b.level}>'
    if isinstance(b, Para):
        return f'<p class="note">{html.escape(b.text)}</p>'
    if isinstance(b, Table):
        return _html_table(b)
    data = base64.b64encode(b.png).decode()
    cap = f"<figcaption>{html.escape(b.caption)}</figcaption>" if b.caption else ""
    return f'<figure><img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def render_html(blocks: list[Block], title: str) -> str:
    """The page: the first heading and paragraph, a table of contents, then the rest."""
    toc = "".join(f'<li><a href="#{slug(b.text)}">{html.escape(b.text)}</a></li>'
                  for b in blocks if isinstance(b, Heading) and b.level == 2)
    parts = [_html_block(b) for b in blocks]
    body = "\n".join([*parts[:2], f'<ul class="toc">{toc}</ul>', *parts[2:]])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f'</title><meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
