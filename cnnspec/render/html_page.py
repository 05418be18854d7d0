"""The one self-contained HTML page that `cnnspec graph -o FILE.html` and `cnnspec diff --format html`
write: every style and script inline and written here, nothing fetched (the file opens offline, from
a CI artifact, in any browser).

The script does three things: hovering a box shows its description (params, MACs, shape) in the
info panel; clicking a folded group shows the view of its inside, with a breadcrumb back (the URL's
`#view=PATH` says which view is shown, so a link opens it); clicking an entry of a diff's change
list scrolls to its box and flashes it. When it has wired everything it sets `data-ready="1"` on
`<body>`, which the browser test reads.
"""

from __future__ import annotations

from html import escape

from cnnspec.render.graph_svg import STYLE
from cnnspec.terminal import printable

PAGE_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #0f172a; background: #fff; }
header { padding: 12px 20px; border-bottom: 1px solid #e2e8f0; background: #f8fafc; }
header h1 { font-size: 18px; margin: 0 0 4px 0; }
header p { margin: 2px 0; font-size: 13px; color: #334155; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
nav.crumbs { font-size: 13px; margin-top: 6px; }
nav.crumbs a { color: #0369a1; cursor: pointer; text-decoration: underline; }
main { padding: 12px 20px; }
#info { position: fixed; right: 12px; top: 12px; max-width: 360px; white-space: pre-wrap; font-size: 12px;
  background: #ffffffee; border: 1px solid #cbd5e1; border-radius: 6px; padding: 8px 10px; z-index: 10;
  font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; box-shadow: 0 2px 6px #0002; }
#info:empty { display: none; }
.node.group { cursor: pointer; }
.node:hover rect { stroke-width: 3; }
.node.flash rect { stroke: #e11d48 !important; stroke-width: 4 !important; }
.legend { font-size: 12px; color: #334155; margin: 6px 0; }
.legend span { display: inline-block; padding: 1px 6px; margin-right: 8px; border-radius: 4px;
  border: 1px solid #94a3b8; }
.legend .added { background: #bbf7d0; border-color: #15803d; }
.legend .removed { background: #fecaca; border-color: #b91c1c; }
.legend .changed { background: #fef08a; border-color: #a16207; }
.legend .effect { border: 2px dashed #ea580c; }
.legend .residual { color: #7c3aed; } .legend .concat { color: #0284c7; } .legend .shape { color: #64748b; }
table.totals { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
table.totals th, table.totals td { border: 1px solid #e2e8f0; padding: 3px 10px; text-align: right; }
table.totals th:first-child, table.totals td:first-child { text-align: left; }
td.up { color: #b91c1c; } td.down { color: #15803d; }
ul.changes { font-size: 13px; padding-left: 20px; }
ul.changes li { margin: 2px 0; cursor: pointer; }
ul.changes li.added::marker { content: "+ "; color: #15803d; }
ul.changes li.removed::marker { content: "− "; color: #b91c1c; }
ul.changes li.changed::marker { content: "~ "; color: #a16207; }
ul.changes li.input::marker { content: "~ "; color: #a16207; }
.sides { display: flex; gap: 16px; align-items: flex-start; }
.side { flex: 1 1 0; min-width: 0; border: 1px solid #e2e8f0; border-radius: 6px; }
.side h2 { font-size: 14px; margin: 0; padding: 6px 10px; background: #f1f5f9; border-bottom: 1px solid #e2e8f0; }
.pane { overflow: auto; max-height: 85vh; }
details { font-size: 13px; margin: 6px 0; }
"""

SCRIPT = """
(function () {
  var info = document.getElementById("info");
  function describe(node) {
    var t = node.querySelector("title");
    return t ? t.textContent : "";
  }
  document.querySelectorAll("svg.cnnspec-graph .node").forEach(function (node) {
    node.addEventListener("mouseenter", function () { info.textContent = describe(node); });
    node.addEventListener("mouseleave", function () { info.textContent = ""; });
  });
  var views = document.querySelectorAll("section.view");
  var crumbs = document.querySelector("nav.crumbs");
  function show(path) {
    var found = false;
    views.forEach(function (v) { if (v.dataset.view === path) { found = true; } });
    if (!found) { path = ""; }
    views.forEach(function (v) { v.hidden = v.dataset.view !== path; });
    if (crumbs) {
      crumbs.textContent = "";
      var parts = path ? path.split(".") : [];
      var trail = [["model", ""]];
      for (var i = 0; i < parts.length; i++) { trail.push([parts[i], parts.slice(0, i + 1).join(".")]); }
      trail.forEach(function (step, i) {
        if (i) { crumbs.appendChild(document.createTextNode(" › ")); }
        var isLast = i === trail.length - 1;
        var a = document.createElement(isLast ? "span" : "a");
        a.textContent = step[0];
        if (!isLast) { a.addEventListener("click", function () { open(step[1]); }); }
        crumbs.appendChild(a);
      });
    }
    document.body.dataset.view = path;
  }
  function open(path) {
    history.replaceState(null, "", path ? "#view=" + encodeURIComponent(path) : "#");
    show(path);
  }
  document.querySelectorAll("svg.cnnspec-graph .node.group").forEach(function (node) {
    node.addEventListener("click", function () { open(node.dataset.id); });
  });
  document.querySelectorAll("[data-goto]").forEach(function (item) {
    item.addEventListener("click", function () {
      var side = document.querySelector(item.dataset.side || "body");
      var target = null;
      side.querySelectorAll(".node").forEach(function (n) { if (n.dataset.id === item.dataset.goto) { target = n; } });
      if (!target) { return; }
      target.scrollIntoView({block: "center", inline: "center"});
      target.classList.add("flash");
      setTimeout(function () { target.classList.remove("flash"); }, 1500);
    });
  });
  var hash = (location.hash.match(/view=([^&]*)/) || [null, ""])[1];
  try { hash = decodeURIComponent(hash); } catch (e) { hash = ""; }  // a hand-edited, malformed #view=
  if (views.length) { show(hash); }
  document.body.dataset.ready = "1";
})();
"""


def html_text(text: object) -> str:
    """Untrusted text (a spec's name, a file name given on the command line) for an HTML page: control
    characters written as escapes (`printable`: a raw ESC or a bidi override in a heading), then HTML-escaped."""
    return escape(printable(text))


def page(title: str, header: str, body: str) -> str:
    """A whole HTML document: `header` and `body` are HTML already escaped by the caller."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html_text(title)}</title>"
        f"<style>{PAGE_STYLE}{STYLE}</style></head>\n"
        f'<body><div id="info"></div><header>{header}</header>\n<main>{body}</main>\n'
        f"<script>{SCRIPT}</script></body></html>\n"
    )


LEGEND_EDGES = (
    '<span class="residual">━ residual</span><span class="concat">━ concat</span>'
    '<span class="shape">┅ shape only</span>'
)
