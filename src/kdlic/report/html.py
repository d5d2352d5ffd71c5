"""The report's one HTML page: inline CSS, no script, relative links only.

It opens from disk (``file://``) without a server; every ``href``/``src`` is a path
relative to the page, inside the report folder.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdlic.report.tables import Table

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.ref td { background: #fff8dc; font-weight: 600; }
.wide { overflow-x: auto; } .notes { font-size: .85em; color: #555; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; } .figs img { max-width: 640px; width: 100%; }
.crops { display: flex; flex-wrap: wrap; gap: 1em; }
.crops figure { margin: 0; } .crops img { width: 256px; image-rendering: pixelated; }
figcaption { font-size: .8em; text-align: center; max-width: 256px; }
code { background: #f3f3f3; padding: 0 .2em; }
"""


# Once the page has loaded, it records on <body> how many images failed to load and how
# many tables have no rows: a headless browser's DOM dump then shows whether the page is
# whole (tests/test_report_browser.py, `make check-report`).
SELF_CHECK = (
    "addEventListener('load',()=>{"
    "const broken=[...document.images].filter(i=>!i.complete||i.naturalWidth===0).length;"
    "const empty=[...document.querySelectorAll('table')]"
    ".filter(t=>t.querySelectorAll('tbody tr, tr td').length===0).length;"
    "document.body.dataset.images=document.images.length;"
    "document.body.dataset.brokenImages=broken;"
    "document.body.dataset.emptyTables=empty;});"
)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _rel(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def _md_inline(text: str) -> str:
    """Escape, then turn **bold** (the only Markdown the notes use) into <b>."""
    parts = _e(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def table_html(table: Table, files: Sequence[Path], root: Path) -> str:
    links = " ".join(f'<a href="{_e(_rel(f, root))}">{_e(f.suffix[1:].upper())}</a>'
                     for f in files)
    out = [f"<h3>{_e(table.title)} <small>({links})</small></h3>", '<div class="wide"><table>']
    out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in table.header) + "</tr>")
    for cells in table.cells:
        ref = cells[0].endswith("(ref)")
        out.append(f'<tr{" class=ref" if ref else ""}>'
                   + "".join(f"<td>{_md_inline(c)}</td>" for c in cells) + "</tr>")
    out.append("</table></div>")
    if table.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{_md_inline(n)}</li>"
                                                  for n in table.notes) + "</ul>")
    return "\n".join(out)


def write_html(
    path: Path,
    tables: Sequence[tuple[Table, Sequence[Path]]],
    plots: dict[str, Path],
    crops: dict[str, Any] | None,
    inputs: Sequence[tuple[Path, str]],
    summary: Sequence[str],
    methods: dict[str, str],
) -> Path:
    """Write the page at ``path``; every linked file must lie under ``path.parent``."""
    root = path.parent
    body = ["<h1>kdlic report</h1>",
            f"<p class=notes>Generated {_e(datetime.datetime.now().isoformat(timespec='seconds'))}"
            " by <code>kdlic report</code>.</p>",
            "<h2>Summary</h2><ul>" + "".join(f"<li>{_md_inline(s)}</li>" for s in summary)
            + "</ul>",
            "<h2>Tables</h2>"]
    body += [table_html(t, files, root) for t, files in tables]

    titles = {"rd_psnr": "PSNR against bpp", "rd_msssim": "MS-SSIM against bpp",
              "psnr_vs_params": "PSNR against parameters", "psnr_vs_flops": "PSNR against FLOPs",
              "psnr_vs_latency": "PSNR against latency"}
    for heading, keys in (("Rate-distortion", ("rd_psnr", "rd_msssim")),
                          ("Quality against resources",
                           ("psnr_vs_params", "psnr_vs_flops", "psnr_vs_latency"))):
        if not any(key in plots for key in keys):
            continue  # nothing to show: no empty axes
        body.append(f"<h2>{heading}</h2><div class=figs>")
        for key in keys:
            if key in plots:
                src = _e(_rel(plots[key], root))
                body.append(f'<figure><a href="{src}"><img src="{src}" '
                            f'alt="{_e(titles.get(key, key))}"></a>'
                            f"<figcaption>{_e(titles.get(key, key))}</figcaption></figure>")
        body.append("</div>")

    if crops is not None:  # (why there are none is in the summary's notes)
        body.append("<h2>Reconstructions</h2>")
        x, y, w, h = crops["box"]
        body.append(f"<p>{_e(Path(crops['image']).name)}, region x={x}, y={y}, {w}x{h}; "
                    "bpp and PSNR of the whole image, really coded.</p><div class=crops>")
        src = _e(_rel(crops["original"], root))
        body.append(f'<figure><img src="{src}" alt="original"><figcaption>original'
                    "</figcaption></figure>")
        for c in crops["crops"]:
            if c["file"] is None:
                continue
            src = _e(_rel(c["file"], root))
            body.append(f'<figure><img src="{src}" alt="{_e(c["name"])}"><figcaption>'
                        f'{_e(c["name"])}<br>{c["bpp"]:.3f} bpp, {c["psnr"]:.2f} dB'
                        "</figcaption></figure>")
        body.append("</div>")
        skipped = [c for c in crops["crops"] if c["file"] is None]
        if skipped:
            body.append('<ul class="notes">' + "".join(
                f"<li>{_e(c['name'])}: {_e(c['note'])}</li>" for c in skipped) + "</ul>")

    if methods:
        body.append("<h2>Methods</h2><ul class=notes>" + "".join(
            f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in methods.items()) + "</ul>")
    body.append("<h2>Inputs</h2><ul>")
    for p, kind in inputs:
        body.append(f'<li><a href="{_e(_rel(p, root))}">{_e(p.name)}</a> ({_e(kind)})</li>')
    body.append("</ul>")
    page = ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<title>kdlic report</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body)
            + f"\n<script>{SELF_CHECK}</script>\n</body></html>\n")
    from kdlic.utils.files import atomic_write

    atomic_write(path, lambda f: f.write(page), mode="w")
    return path
