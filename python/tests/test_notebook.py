"""A real notebook (docs/notebooks/ecco_article.ipynb: the Ecco article's
example with the import changed) executed headless with nbclient, exported
with nbconvert, and opened in headless Chromium: no console error, no
network, and each view's iframe shows what its method promises (the tab,
the tokens, the shading, the factors' sparklines, the rankings' heatmap)."""
import os
import sys

import pytest

from conftest import ROOT, browse, console_errors

sys.path.insert(0, os.path.join(ROOT, "tools"))
pytest.importorskip("nbclient")
import notebook_html  # noqa: E402  (tools/notebook_html.py)


def test_notebook_views_in_chromium(tmp_path):
    nb = notebook_html.execute(os.path.join(ROOT, "docs", "notebooks", "ecco_article.ipynb"), cwd=str(tmp_path))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    page = tmp_path / "nb.html"
    page.write_text(notebook_html.add_probe(notebook_html.to_html(nb)), encoding="utf-8")
    dom, err = browse(page.as_uri(), "--dump-dom", tmp_path, extra=("--virtual-time-budget=5000",
                                                                      "--window-size=1200,1500"))
    assert not console_errors(err), console_errors(err)
    assert "net::ERR" not in err, "the page tried the network: %s" % err[-2000:]
    r = notebook_html.probe_result(dom)
    assert r is not None, "the probe did not run: %s" % err[-2000:]
    assert r["external"] == []  # nothing fetched from anywhere
    frames = {f["view"]: f for f in r["frames"]}
    assert sorted(frames) == ["nmf", "rankings", "saliency"]
    # generate(verbose=True) showed the text, the generated part in bold
    assert r["texts"] and r["texts"][0].startswith("Frameworks for Machine Learning include:")
    s = frames["saliency"]
    T, G = s["tokens"], s["generated"]
    assert s["tab"] == "Saliency" and s["section"] == "view-saliency" and not s["fatal"]
    assert G >= 1 and T > G
    # the first generated token is selected (as Ecco's selectFirstToken): the prompt is shaded
    assert 1 <= s["shaded"] <= T - G + 1
    n = frames["nmf"]
    assert n["tab"] == "Factors (NMF)" and n["sparklines"] == 10 and n["shaded"] == T
    k = frames["rankings"]
    assert k["tab"] == "Rankings" and k["canvas"]
    for f in r["frames"]:
        assert f["scripts_external"] == 0 and f["height"] >= 300 and not f["fatal"]
    # the last cell: numpy arrays behind the views
    last = nb.cells[-1].outputs[0]["data"]["text/plain"]
    assert "(1, 5, 1280, %d)" % T in last
