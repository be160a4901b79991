"""What the view methods return: the self-contained page of ``eccolo
report`` (inline CSS, JavaScript and data; no network), shown in a notebook
as an iframe whose ``srcdoc`` is the page, which JupyterLab, the classic
Notebook and VS Code all display; ``save_html`` writes the page itself."""
import html as _html
import json
import os


class View:
    """A page of views. ``html`` is the page; ``show`` what it opens on
    (e.g. {"view": "saliency", "method": "ig", "token": 0})."""

    def __init__(self, page, show=None, height=None, data=None):
        self.html = page
        self.show = dict(show or {})
        self.height = height
        self.data = data  # the numbers behind the view (printJson), when the method has them

    def save_html(self, path):
        """Write the page to PATH (it opens from disk in any browser)."""
        tmp = "%s.tmp.%d" % (path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.html)
        os.replace(tmp, path)
        return path

    def _repr_html_(self):
        # The iframe grows to the page's height once loaded (capped; the page
        # scrolls inside beyond it). srcdoc documents share the notebook's
        # origin, so the handler may read the page's height.
        h = self.height or 480
        onload = ("try{var d=this.contentDocument.documentElement;"
                  "this.style.height=Math.min(Math.max(d.scrollHeight+8,%d),900)+'px'}catch(e){}" % min(h, 360))
        return ('<iframe class="eccolo-view" data-view="%s" srcdoc="%s" style="width:100%%;height:%dpx;'
                'border:1px solid #e5e7eb;border-radius:4px" onload="%s"></iframe>'
                % (_html.escape(self.show.get("view", ""), quote=True), _html.escape(self.html, quote=True), h,
                   _html.escape(onload, quote=True)))

    def __repr__(self):
        return "<eccolo view %s (%d bytes of HTML)>" % (json.dumps(self.show), len(self.html))


class Plot:
    """A small inline SVG chart (NMF.plot): factor strength over the tokens.
    No plotting library needed."""

    def __init__(self, series, labels, tokens, title=""):
        self.series, self.labels, self.tokens, self.title = series, labels, tokens, title

    def svg(self, width=900, height=220):
        colors = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"]
        T = len(self.tokens)
        top = max([max(s) for s in self.series if len(s)] + [1e-12])
        left, bottom, right = 40, 70, 140
        w, h = width - left - right, height - bottom - 10
        x = (lambda t: left + (w * t / max(T - 1, 1)))
        y = (lambda v: 10 + h - h * v / top)
        out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
               'font-size="10">' % (width, height),
               '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>' % (left, 10 + h, left + w, 10 + h)]
        for i, s in enumerate(self.series):
            pts = " ".join("%.1f,%.1f" % (x(t), y(v)) for t, v in enumerate(s))
            c = colors[i % len(colors)]
            out.append('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>' % (c, pts))
            out.append('<text x="%d" y="%d" fill="%s">%s</text>' % (left + w + 10, 20 + 14 * i, c,
                                                                    _html.escape(self.labels[i])))
        for t, tok in enumerate(self.tokens):
            out.append('<text transform="translate(%.1f,%d) rotate(-90)" text-anchor="end">%s</text>'
                       % (x(t) + 3, 14 + h, _html.escape(repr(tok)[1:-1][:16])))
        if self.title:
            out.append('<text x="%d" y="9">%s</text>' % (left, _html.escape(self.title)))
        out.append("</svg>")
        return "".join(out)

    def _repr_html_(self):
        return self.svg()

    def save_html(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write("<!DOCTYPE html><meta charset='utf-8'>" + self.svg())
        return path
