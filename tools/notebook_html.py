#!/usr/bin/env python3
"""Run a notebook headless and look at it the way a reader does.

  execute(path)          runs every cell with nbclient (a Python kernel of this interpreter)
  to_html(nb)            nbconvert's HTML of the executed notebook (the lab template, with
                         MathJax and require.js left out: the page must not need the network)
  add_probe(html)        appends a script that, once the page and its iframes have loaded,
                         writes what each eccolo view shows into <pre id="eccolo-probe">
  probe_result(dom)      that JSON back from Chromium's --dump-dom

Used by python/tests/test_notebook.py and, as a command, to take the README's picture:

  tools/notebook_html.py docs/notebooks/ecco_article.ipynb out.html [--screenshot out.png]
"""
import argparse
import html as _html
import json
import os
import re
import subprocess
import sys
import tempfile

PROBE = r"""
<script>
window.addEventListener('load', function () {
  var out = {frames: [], texts: []};
  document.querySelectorAll('iframe.eccolo-view').forEach(function (f) {
    var d = f.contentDocument, r = {view: f.dataset.view, height: f.getBoundingClientRect().height};
    if (!d) { r.error = 'no document'; out.frames.push(r); return; }
    var sel = d.querySelector('#tabs [aria-selected="true"]');
    r.tab = sel ? sel.textContent : null;
    r.tabs = Array.prototype.map.call(d.querySelectorAll('#tabs button'), function (b) { return b.textContent; });
    r.fatal = d.getElementById('fatal') ? !d.getElementById('fatal').hidden : null;
    var vis = d.querySelector('section.view:not([hidden])');
    r.section = vis ? vis.id : null;
    r.tokens = vis ? vis.querySelectorAll('.tok').length : 0;
    r.generated = vis ? vis.querySelectorAll('.tok.gen').length : 0;
    r.shaded = vis ? Array.prototype.filter.call(vis.querySelectorAll('.tok'), function (s) {
      var c = d.defaultView.getComputedStyle(s).backgroundColor;
      return c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent';
    }).length : 0;
    r.sparklines = d.querySelectorAll('#nmf-factors svg.spark').length;
    r.canvas = !!d.querySelector('#rk-heat canvas');
    r.scripts_external = d.querySelectorAll('script[src]').length;
    out.frames.push(r);
  });
  document.querySelectorAll('.eccolo-text').forEach(function (e) { out.texts.push(e.textContent); });
  out.external = Array.prototype.map.call(document.querySelectorAll('script[src], link[href]'),
    function (e) { return e.src || e.href; });
  var pre = document.createElement('pre');
  pre.id = 'eccolo-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def execute(path, timeout=600, cwd=None):
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": cwd or os.path.dirname(os.path.abspath(path))}}).execute()
    return nb


def to_html(nb):
    from nbconvert import HTMLExporter
    ex = HTMLExporter(template_name="lab")
    ex.mathjax_url = ""
    ex.require_js_url = ""
    body, _ = ex.from_notebook_node(nb)
    # what the template still fetches (an empty MathJax or require.js tag) goes: the page is offline
    body = re.sub(r'<script[^>]+src="(https?:)?//[^"]*"[^>]*>\s*</script>', "", body)
    body = re.sub(r'<script[^>]+src=""[^>]*>\s*</script>', "", body)
    body = re.sub(r'<link[^>]+href="https?://[^"]*"[^>]*>', "", body)
    return body


def add_probe(html):
    i = html.rfind("</body>")
    return html[:i] + PROBE + html[i:] if i >= 0 else html + PROBE


def probe_result(dom):
    m = re.search(r'<pre id="eccolo-probe">(.*?)</pre>', dom, re.S)
    return json.loads(_html.unescape(m.group(1))) if m else None


def chromium():
    for c in (os.environ.get("ECCOLO_CHROMIUM"), "/usr/lib/chromium/chromium", "/usr/bin/chromium"):
        if c and os.access(c, os.X_OK):
            return c
    raise SystemExit("Chromium not found: apt-get install chromium")


def screenshot(html_path, png, size="1200,1500"):
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["timeout", "120", chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--hide-scrollbars", "--user-data-dir=" + profile,
                        "--virtual-time-budget=5000", "--window-size=" + size, "--screenshot=" + os.path.abspath(png),
                        "file://" + os.path.abspath(html_path)], check=True, capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook")
    ap.add_argument("html")
    ap.add_argument("--screenshot")
    ap.add_argument("--size", default="1200,1500")
    a = ap.parse_args()
    nb = execute(a.notebook)
    with open(a.html, "w", encoding="utf-8") as f:
        f.write(to_html(nb))
    if a.screenshot:
        screenshot(a.html, a.screenshot, a.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
