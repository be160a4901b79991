/* eccolo report: the interactive views. Plain JavaScript, no libraries, no
 * network. The page holds two data elements written by `eccolo report`:
 *   #ecc-meta  JSON: tokens, settings, and for each view its arrays as
 *              {type: "u8"|"u16"|"i32"|"f32", off: byte offset, n: count}
 *   #ecc-blob  base64 of one little-endian binary blob those arrays view.
 * How the numbers are quantised is described in host/report/report_data.c (and in
 * the About tab). Token text is untrusted: it only ever enters the page
 * through textContent, never as HTML.
 *
 * The URL hash drives tests and links: #view=rankings shows a view, with options
 * method=ig, detailed=1, token=G, ignore=0,3 (saliency: positions left unshaded), token=G
 * (rankings: generated token G; attention: query position), layer=L, head=H (attention, neurons); META.show (written by the library's
 * in-memory pages, ecc_run_report_html) gives the same keys when the hash does not;
 * #test=all (or saliency:5[:detailed], nmf, rankings:3, neurons, attention, load) runs a
 * scripted self-check after load and writes its JSON into <pre id="test-result">. */
'use strict';
(function () {
  const t0 = performance.now();
  const pageErrors = [];
  window.addEventListener('error', (e) => pageErrors.push(String(e.message)));

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const SVGNS = 'http://www.w3.org/2000/svg';

  // ---- data -----------------------------------------------------------------
  const META = JSON.parse($('ecc-meta').textContent);
  const BLOB = decodeBase64($('ecc-blob').textContent);
  const T = META.T, N0 = META.n_input, G = T - N0;
  const TOKENS = META.tokens, PARTIAL = META.partial, IDS = META.ids;

  function decodeBase64(s) {
    const bin = atob(s.trim());
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // A typed array over the blob for a descriptor {type, off, n}.
  function arr(d) {
    const C = { u8: Uint8Array, u16: Uint16Array, i32: Int32Array, f32: Float32Array }[d.type];
    return new C(BLOB.buffer, BLOB.byteOffset + d.off, d.n);
  }

  // Texts of token ids named by the views (layer predictions, watch list).
  const VOCAB = new Map();
  if (META.vocab) META.vocab.ids.forEach((id, i) => VOCAB.set(id, META.vocab.text[i]));
  IDS.forEach((id, i) => { if (!VOCAB.has(id)) VOCAB.set(id, TOKENS[i]); });
  const idText = (id) => (VOCAB.has(id) ? VOCAB.get(id) : '#' + id);

  // ---- token rendering --------------------------------------------------------
  // Spaces become a dim middle dot, newlines a ↵ followed by a line break,
  // tabs ⇥, other control characters (and carriage returns) \xNN.
  function appendText(parent, text) {
    let plain = '';
    const flush = () => { if (plain) parent.appendChild(document.createTextNode(plain)); plain = ''; };
    const mark = (cls, s) => { flush(); parent.appendChild(el('span', cls, s)); };
    if (text === '') { mark('ctl', '∅'); return 0; }
    let newlines = 0;
    for (const ch of text) {
      const c = ch.codePointAt(0);
      if (ch === ' ') mark('ws', '·');
      else if (ch === '\n') { mark('ctl', '↵'); newlines++; }
      else if (ch === '\t') mark('ctl', '⇥');
      else if (c < 0x20 || (c >= 0x7f && c < 0xa0)) mark('ctl', '\\x' + c.toString(16).padStart(2, '0'));
      else plain += ch;
    }
    flush();
    return newlines;
  }

  // The same as plain text (canvas labels, headers).
  const plainText = (text) => text.replace(/ /g, '·').replace(/\n/g, '↵').replace(/\t/g, '⇥')
    .replace(/[\x00-\x1f\x7f-\x9f]/g, (ch) => '\\x' + ch.charCodeAt(0).toString(16).padStart(2, '0'));

  // The run's T tokens into `box`; returns the token spans (index = position).
  // Prompt and generated tokens are told apart by class (and a boundary mark).
  function renderTokens(box, opts = {}) {
    const frag = document.createDocumentFragment();
    const spans = new Array(T);
    for (let i = 0; i < T; i++) {
      if (i === N0 && G > 0) frag.appendChild(el('span', 'boundary'));
      const s = el('span', 'tok ' + (i < N0 ? 'prompt' : 'gen'));
      if (PARTIAL[i]) s.classList.add('partial');
      if (opts.clickable) s.classList.add('clickable');
      s.dataset.i = i;
      const nl = appendText(s, TOKENS[i]);
      s.title = tokenTitle(i);
      frag.appendChild(s);
      for (let k = 0; k < nl; k++) frag.appendChild(document.createElement('br'));
      spans[i] = s;
    }
    box.textContent = '';
    box.appendChild(frag);
    return spans;
  }

  function tokenTitle(i) {
    let t = 'position ' + i + ' · id ' + IDS[i] + (i < N0 ? ' · prompt' : ' · generated #' + (i - N0));
    if (i >= N0 && LOGPROBS) t += ' · p = ' + fmt(Math.exp(LOGPROBS[i - N0]));
    return t;
  }
  const LOGPROBS = META.logprobs ? arr(META.logprobs) : null;

  // Shade a token: colour [r, g, b] at opacity a (0 … 1); dark text above 0.55.
  function shade(span, rgb, a) {
    if (!(a > 0)) { span.style.backgroundColor = ''; span.classList.remove('dark'); return; }
    a = Math.min(1, a);
    span.style.backgroundColor = `rgba(${rgb[0]}, ${rgb[1]}, ${rgb[2]}, ${a.toFixed(3)})`;
    span.classList.toggle('dark', a > 0.55);
  }

  function fmt(x) {
    if (x === 0) return '0';
    const a = Math.abs(x);
    return a >= 100 ? x.toFixed(1) : a >= 0.01 ? x.toFixed(4) : x.toExponential(2);
  }
  const quote = (s) => JSON.stringify(s);

  // Tooltip for canvases (tokens use the native title).
  const tip = $('tooltip');
  function showTip(ev, text) {
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 430) + 'px';
    tip.style.top = ev.clientY + 16 + 'px';
  }
  const hideTip = () => { tip.hidden = true; };

  // A sparkline of values (length T) in colour `color` (CSS), as an SVG.
  function sparkline(values, color, max) {
    const svg = document.createElementNS(SVGNS, 'svg');
    svg.setAttribute('class', 'spark');
    const n = values.length;
    svg.setAttribute('viewBox', `0 0 ${Math.max(1, n - 1)} 1`);
    svg.setAttribute('preserveAspectRatio', 'none');
    if (!(max > 0)) max = 1;
    let pts = '';
    for (let i = 0; i < n; i++) pts += i + ',' + (1 - Math.max(0, values[i]) / max * 0.92).toFixed(4) + ' ';
    const fill = document.createElementNS(SVGNS, 'polygon');
    fill.setAttribute('points', `0,1 ${pts}${n - 1},1`);
    fill.setAttribute('class', 'fill');
    fill.setAttribute('fill', color);
    const line = document.createElementNS(SVGNS, 'polyline');
    line.setAttribute('points', pts);
    line.setAttribute('stroke', color);
    svg.append(fill, line);
    // hover: the token under the pointer
    svg.addEventListener('mousemove', (ev) => {
      const r = svg.getBoundingClientRect();
      const i = Math.max(0, Math.min(n - 1, Math.round((ev.clientX - r.left) / r.width * (n - 1))));
      showTip(ev, `${quote(TOKENS[i])} (position ${i}): ${fmt(values[i])}`);
    });
    svg.addEventListener('mouseleave', hideTip);
    return svg;
  }

  function option(select, value, text) {
    const o = el('option', null, text);
    o.value = value;
    select.appendChild(o);
  }

  // ---- views --------------------------------------------------------------------
  // Each view: {id, present, init() (run once, when first shown), ...}.
  const views = [];
  const state = { current: null };

  // ==== Saliency =====================================================================
  const saliency = (function () {
    const S = META.saliency;
    const v = { id: 'saliency', present: !!(S && S.methods.length && G > 0) };
    if (!v.present) return v;
    const RGB = [37, 99, 235];
    const methods = S.methods.map((m) => ({ name: m.name, q: arr(m.q), rowmax: arr(m.rowmax) }));
    let method = methods.findIndex((m) => m.name === 'grad_x_input');
    if (method < 0) method = 0;
    let spans = null, selected = -1, pinned = false;
    const ignore = new Set(); // positions left unshaded (Ecco's ignore_tokens)
    // row g (packed lower triangle) starts at g·n0 + g(g−1)/2
    const rowStart = (g) => g * N0 + (g * (g - 1)) / 2;

    v.value = (g, j) => {
      const m = methods[method];
      return (m.q[rowStart(g) + j] / 65535) * m.rowmax[g];
    };

    v.init = function () {
      const sel = $('sal-method');
      methods.forEach((m, i) => option(sel, i, m.name));
      sel.value = method;
      $('sal-method-label').hidden = methods.length < 2;
      sel.addEventListener('change', () => { method = +sel.value; v.select(selected); });
      $('sal-detailed').addEventListener('change', (e) => $('sal-text').classList.toggle('detailed', e.target.checked));
      const box = $('sal-text');
      spans = renderTokens(box);
      box.addEventListener('mouseover', (e) => {
        const s = e.target.closest('.tok.gen');
        if (s && !pinned) v.select(+s.dataset.i - N0);
      });
      box.addEventListener('click', (e) => {
        const s = e.target.closest('.tok.gen');
        if (!s) return;
        const g = +s.dataset.i - N0;
        pinned = !(pinned && g === selected);
        v.select(g);
      });
      document.addEventListener('keydown', (e) => {
        if (state.current !== v || (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft')) return;
        if (e.target instanceof HTMLSelectElement || e.target instanceof HTMLInputElement) return;
        const g = selected < 0 ? 0 : Math.max(0, Math.min(G - 1, selected + (e.key === 'ArrowRight' ? 1 : -1)));
        pinned = true;
        v.select(g);
        spans[N0 + g].scrollIntoView({ block: 'nearest' });
        e.preventDefault();
      });
      $('sal-info').textContent = 'No token selected.';
    };

    v.apply = function (opt) {
      const m = methods.findIndex((x) => x.name === opt('method'));
      if (m >= 0) { method = m; $('sal-method').value = m; }
      if (opt('detailed') === '1' || opt('detailed') === 'true') {
        $('sal-detailed').checked = true;
        $('sal-text').classList.add('detailed');
      }
      for (const j of (opt('ignore') || '').split(',')) if (j !== '') ignore.add(+j);
      const g = opt('token');
      if (g !== null && +g >= 0 && +g < G) { pinned = true; v.select(+g); }
    };

    // Shade the tokens before generated token g by its attribution row,
    // scaled to the row's maximum (as Ecco); g < 0 clears.
    v.select = function (g) {
      selected = g;
      if (!spans) return;
      const m = methods[method];
      const n = g < 0 ? 0 : N0 + g;
      let rowTop = 0; // shading is scaled to the row's maximum over the positions not ignored
      for (let j = 0; j < n; j++) if (!ignore.has(j)) rowTop = Math.max(rowTop, m.q[rowStart(g) + j] / 65535);
      for (let j = 0; j < T; j++) {
        const s = spans[j];
        s.classList.toggle('target', j === n && g >= 0);
        if (j < n) {
          const q = m.q[rowStart(g) + j] / 65535, val = q * m.rowmax[g];
          shade(s, RGB, ignore.has(j) || !(rowTop > 0) ? 0 : q / rowTop);
          s.dataset.v = (val * 100).toFixed(1);
          s.title = `${m.name}: ${fmt(val)} (${(val * 100).toFixed(2)} % of the attribution of ${quote(TOKENS[n])})\n` +
            tokenTitle(j);
        } else {
          shade(s, RGB, 0);
          s.dataset.v = '';
          s.title = tokenTitle(j);
        }
      }
      const info = $('sal-info');
      info.textContent = '';
      if (g < 0) { info.textContent = 'No token selected.'; return; }
      const top = [];
      for (let j = 0; j < n; j++) top.push([v.value(g, j), j]);
      top.sort((a, b) => b[0] - a[0]);
      info.append(el('b', null, quote(TOKENS[n])), ` (generated #${g}, position ${n}` +
        (LOGPROBS ? `, p = ${fmt(Math.exp(LOGPROBS[g]))}` : '') + `)${pinned ? ' — pinned' : ''}. Top inputs: ` +
        top.slice(0, 5).map(([val, j]) => `${quote(TOKENS[j])} ${(val * 100).toFixed(1)} %`).join(', '));
    };
    v.state = () => ({ selected, pinned, method: methods[method].name });
    v.spans = () => spans;
    return v;
  })();
  views.push(saliency);

  // ==== NMF factors ===================================================================
  const PALETTE = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];
  function factorColor(k) {
    if (k < PALETTE.length) return PALETTE[k];
    // beyond ten: golden-angle hues
    const h = ((k * 137.508) % 360) / 360, s = 0.65, l = 0.5;
    const f = (n) => {
      const kk = (n + h * 12) % 12, a = s * Math.min(l, 1 - l);
      return Math.round(255 * (l - a * Math.max(-1, Math.min(kk - 3, 9 - kk, 1))));
    };
    return [f(0), f(8), f(4)];
  }
  const rgbCss = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;

  const nmf = (function () {
    const M = META.nmf;
    const v = { id: 'nmf', present: !!M };
    if (!v.present) return v;
    const K = M.K, W = arr(M.factors); // [K, T]
    const fmax = new Float32Array(K);
    for (let k = 0; k < K; k++) for (let t = 0; t < T; t++) fmax[k] = Math.max(fmax[k], W[k * T + t]);
    let spans = null, isolated = -1, rows = [];

    v.init = function () {
      const info = $('nmf-info');
      info.textContent = `${K} factors of the activations of layers ${M.layer_from} … ${M.layer_to - 1}` +
        (M.relative_error ? `, relative error ${(+M.relative_error).toFixed(4)}` : '') +
        (M.iterations ? `, ${M.iterations} iterations` : '') + (M.solver ? `, solver ${M.solver}` : '') +
        (M.init ? `, init ${M.init}` : '') + (M.runs > 1 ? ` (factorised over ${M.runs} runs)` : '') + '.';
      spans = renderTokens($('nmf-text'));
      const box = $('nmf-factors');
      for (let k = 0; k < K; k++) {
        const row = el('div', 'factor');
        row.dataset.k = k;
        const name = el('div');
        const sw = el('span', 'swatch');
        sw.style.background = rgbCss(factorColor(k));
        name.append(sw, `Factor ${k}`);
        const neurons = el('div', 'neurons');
        for (const [layer, neuron, w] of M.top[k] || [])
          neurons.appendChild(el('span', 'mono', `L${layer}·n${neuron} ${fmt(w)}`));
        neurons.title = 'largest loadings: (layer, neuron) weight';
        row.append(name, sparkline(W.subarray(k * T, (k + 1) * T), rgbCss(factorColor(k)), fmax[k]), neurons);
        row.addEventListener('click', () => v.isolate(isolated === k ? -1 : k));
        box.appendChild(row);
        rows.push(row);
      }
      v.isolate(-1);
    };

    // Tint tokens: by their arg-max factor (k < 0) or by factor k alone.
    v.isolate = function (k) {
      isolated = k;
      rows.forEach((r, i) => r.classList.toggle('isolated', i === k));
      $('nmf-factors').classList.toggle('isolating', k >= 0);
      for (let t = 0; t < T; t++) {
        let best = k, bv = k >= 0 ? W[k * T + t] : -1;
        if (k < 0) for (let j = 0; j < K; j++) if (W[j * T + t] > bv) { bv = W[j * T + t]; best = j; }
        const a = best >= 0 && fmax[best] > 0 ? bv / fmax[best] : 0;
        shade(spans[t], factorColor(best), a);
        spans[t].title = (best >= 0 ? `factor ${best}: ${fmt(bv)}\n` : '') + tokenTitle(t);
      }
    };
    v.state = () => ({ isolated });
    v.spans = () => spans;
    return v;
  })();
  views.push(nmf);

  // ==== Rankings and layer predictions ===================================================
  // Log colour scale for ranks: 1 (dark) … ≥ 5000 (pale), as Ecco's rankings plot.
  const RANK_STOPS = [[49, 15, 112], [33, 145, 140], [253, 231, 37], [247, 247, 240]];
  function rankColor(r) {
    const t = Math.max(0, Math.min(1, Math.log(Math.max(1, r)) / Math.log(5000))) * (RANK_STOPS.length - 1);
    const i = Math.min(RANK_STOPS.length - 2, Math.floor(t)), f = t - i;
    return RANK_STOPS[i].map((c, j) => Math.round(c + (RANK_STOPS[i + 1][j] - c) * f));
  }

  const rankings = (function () {
    const R = META.rankings;
    const v = { id: 'rankings', present: !!R };
    if (!v.present) return v;
    const L = R.L, ranks = arr(R.ranks); // [L, G]
    const topIds = R.top_ids ? arr(R.top_ids) : null, topP = R.top_probs ? arr(R.top_probs) : null; // [L, G, k]
    const K = R.k || 0;
    const watch = R.watch ? { ids: arr(R.watch.ids), ranks: arr(R.watch.ranks), W: R.watch.W } : null;
    let selected = -1, cw = 0, canvas = null;
    const CH = 22, LEFT = 44;
    let top = 0;

    v.init = function () {
      // legend
      const lg = $('rk-legend');
      const bar = el('canvas', 'bar');
      bar.width = 160; bar.height = 12;
      const bctx = bar.getContext('2d');
      for (let x = 0; x < 160; x++) {
        bctx.fillStyle = rgbCss(rankColor(Math.exp((x / 159) * Math.log(5000))));
        bctx.fillRect(x, 0, 1, 12);
      }
      lg.append('rank 1', bar, '≥ 5000 (log scale)');
      // heatmap: rows = layers 1 … L, columns = generated tokens
      const wrap = $('rk-heat');
      const avail = Math.max(300, (wrap.clientWidth || 900) - LEFT - 4);
      cw = Math.max(4, Math.min(44, Math.floor(avail / G)));
      const labels = cw >= 12;
      top = labels ? 70 : 8;
      canvas = el('canvas');
      canvas.width = LEFT + cw * G + 4;
      canvas.height = top + CH * L + 4;
      canvas.dataset.cells = L * G;
      wrap.appendChild(canvas);
      drawHeat(labels);
      canvas.addEventListener('mousemove', (ev) => {
        const c = cell(ev);
        if (!c) return hideTip();
        const [l, g] = c;
        showTip(ev, `layer ${l + 1} · ${quote(TOKENS[N0 + g])} (position ${N0 + g}): rank ${ranks[l * G + g]}`);
      });
      canvas.addEventListener('mouseleave', hideTip);
      canvas.addEventListener('click', (ev) => { const c = cell(ev); if (c) v.select(c[1]); });
      const sel = $('rk-token');
      for (let g = 0; g < G; g++) option(sel, g, `#${g} ${quote(TOKENS[N0 + g])}`);
      sel.addEventListener('change', () => v.select(+sel.value));
      v.select(0);
    };

    v.apply = function (opt) {
      const g = opt('token');
      if (g !== null && +g >= 0 && +g < G) v.select(+g);
    };

    function cell(ev) {
      const r = canvas.getBoundingClientRect();
      const x = (ev.clientX - r.left) * (canvas.width / r.width), y = (ev.clientY - r.top) * (canvas.height / r.height);
      const g = Math.floor((x - LEFT) / cw), l = Math.floor((y - top) / CH);
      return g >= 0 && g < G && l >= 0 && l < L ? [l, g] : null;
    }

    function drawHeat(labels) {
      const ctx = canvas.getContext('2d');
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.font = '11px system-ui, sans-serif';
      ctx.textBaseline = 'middle';
      for (let l = 0; l < L; l++) {
        ctx.fillStyle = '#57606a';
        ctx.textAlign = 'right';
        ctx.fillText('L' + (l + 1), LEFT - 6, top + l * CH + CH / 2);
        for (let g = 0; g < G; g++) {
          const r = ranks[l * G + g], c = rankColor(r);
          ctx.fillStyle = rgbCss(c);
          ctx.fillRect(LEFT + g * cw, top + l * CH, cw - (cw > 6 ? 1 : 0), CH - 1);
          if (cw >= 30) {
            ctx.fillStyle = c[0] + c[1] + c[2] < 380 ? '#fff' : '#111';
            ctx.textAlign = 'center';
            ctx.fillText(r >= 10000 ? (r / 1000).toFixed(0) + 'k' : String(r), LEFT + g * cw + cw / 2, top + l * CH + CH / 2);
          }
        }
      }
      if (labels) {
        ctx.fillStyle = '#1f2328';
        ctx.textAlign = 'left';
        for (let g = 0; g < G; g++) {
          ctx.save();
          ctx.translate(LEFT + g * cw + cw / 2 + 3, top - 4);
          ctx.rotate(-Math.PI / 3);
          ctx.fillText(plainText(TOKENS[N0 + g]).slice(0, 12), 0, 0);
          ctx.restore();
        }
      }
      if (selected >= 0) {
        ctx.strokeStyle = '#e11d48';
        ctx.lineWidth = 2;
        ctx.strokeRect(LEFT + selected * cw + 1, top + 1, cw - 2, CH * L - 2);
      }
    }

    // Layer predictions (and watched ranks) for generated token g.
    v.select = function (g) {
      selected = g;
      $('rk-token').value = g;
      drawHeat(cw >= 12);
      const actual = IDS[N0 + g];
      const preds = $('rk-preds');
      preds.textContent = '';
      preds.appendChild(el('h2', null, `Layer predictions for ${quote(TOKENS[N0 + g])} (position ${N0 + g})`));
      const tbl = el('table', 'grid');
      const head = el('tr');
      head.append(el('th', null, 'layer'), el('th', null, 'rank'));
      if (topIds) head.appendChild(el('th', null, `top ${K} tokens (probability)`));
      tbl.appendChild(head);
      for (let l = 0; l < L; l++) {
        const tr = el('tr');
        tr.append(el('td', null, String(l + 1)), el('td', 'num', String(ranks[l * G + g])));
        if (topIds) {
          const td = el('td');
          for (let i = 0; i < K; i++) {
            const o = (l * G + g) * K + i, id = topIds[o], p = topP[o] / 65535;
            const span = el('span', 'pred' + (id === actual ? ' actual' : ''));
            appendText(span, idText(id));
            span.appendChild(el('span', 'p', p.toFixed(3)));
            const bar = el('span', 'bar');
            bar.style.width = (100 * p).toFixed(1) + '%';
            span.appendChild(bar);
            span.title = `id ${id}: p = ${fmt(p)}`;
            td.appendChild(span);
          }
          tr.appendChild(td);
        }
        tbl.appendChild(tr);
      }
      preds.appendChild(tbl);
      if (!watch) return;
      const wbox = $('rk-watch');
      wbox.textContent = '';
      wbox.appendChild(el('h2', null, `Rankings of the watched tokens at position ${N0 + g}`));
      const wt = el('table', 'grid');
      const wh = el('tr');
      wh.appendChild(el('th', null, 'layer'));
      for (let w = 0; w < watch.W; w++) { const th = el('th'); appendText(th, idText(watch.ids[w])); wh.appendChild(th); }
      wt.appendChild(wh);
      for (let l = 0; l < L; l++) {
        const tr = el('tr');
        tr.appendChild(el('td', null, String(l + 1)));
        for (let w = 0; w < watch.W; w++) {
          const r = watch.ranks[(l * G + g) * watch.W + w], c = rankColor(r);
          const td = el('td', 'num', String(r));
          td.style.background = rgbCss(c);
          td.style.color = c[0] + c[1] + c[2] < 380 ? '#fff' : '#111';
          tr.appendChild(td);
        }
        wt.appendChild(tr);
      }
      wbox.appendChild(wt);
    };
    v.state = () => ({ selected, cells: L * G, predRows: $('rk-preds').querySelectorAll('tr').length - 1,
      watchRows: $('rk-watch').querySelectorAll('tr').length });
    return v;
  })();
  views.push(rankings);

  // ==== Neurons =========================================================================
  const neurons = (function () {
    const A = META.activations;
    const v = { id: 'neurons', present: !!(A && A.layer.length) };
    if (!v.present) return v;
    const RGB = [234, 88, 12], NEG = [100, 116, 139];
    const N = A.layer.length, q = arr(A.q); // [N, T] uint8 between lo and hi
    const topFlat = arr(A.top.flat), topVal = arr(A.top.value), TK = A.top.k; // [T, TK]
    const slot = new Map(); // "layer:neuron" -> row of q
    for (let i = 0; i < N; i++) slot.set(A.layer[i] + ':' + A.neuron[i], i);
    let spans = null, current = -1;
    const value = (i, t) => A.lo[i] + (q[i * T + t] / 255) * (A.hi[i] - A.lo[i]);

    v.init = function () {
      const ls = $('nr-layer');
      for (let l = A.layer_from; l < A.layer_to; l++) option(ls, l, String(l));
      ls.addEventListener('change', () => { fillNeurons(+ls.value); v.show(+$('nr-neuron').value); });
      $('nr-neuron').addEventListener('change', (e) => v.show(+e.target.value));
      $('nr-index').max = A.F - 1;
      $('nr-index').addEventListener('change', (e) => v.pick(+ls.value, +e.target.value));
      spans = renderTokens($('nr-text'), { clickable: true });
      $('nr-text').addEventListener('click', (e) => {
        const s = e.target.closest('.tok');
        if (s) v.tokenTop(+s.dataset.i);
      });
      ls.value = A.layer[0];
      fillNeurons(A.layer[0]);
      v.show(0);
    };

    v.apply = function (opt) {
      const l = opt('layer');
      const first = l === null ? -1 : A.layer.indexOf(+l);
      if (first < 0) return;
      $('nr-layer').value = +l;
      fillNeurons(+l);
      v.show(first);
    };

    function fillNeurons(layer) {
      const sel = $('nr-neuron');
      sel.textContent = '';
      for (let i = 0; i < N; i++)
        if (A.layer[i] === layer) option(sel, i, `${A.neuron[i]} (max ${fmt(A.hi[i])})`);
    }

    // Show embedded neuron i: shading, sparkline.
    v.show = function (i) {
      if (!(i >= 0 && i < N)) return;
      current = i;
      $('nr-layer').value = A.layer[i];
      if (+$('nr-neuron').value !== i) { fillNeurons(A.layer[i]); $('nr-neuron').value = i; }
      $('nr-index').value = A.neuron[i];
      $('nr-msg').textContent = `layer ${A.layer[i]}, neuron ${A.neuron[i]}: from ${fmt(A.lo[i])} to ${fmt(A.hi[i])}`;
      const vals = new Float32Array(T);
      for (let t = 0; t < T; t++) {
        const x = value(i, t);
        vals[t] = x;
        if (x >= 0) shade(spans[t], RGB, A.hi[i] > 0 ? x / A.hi[i] : 0);
        else shade(spans[t], NEG, A.lo[i] < 0 ? (0.6 * x) / A.lo[i] : 0);
        spans[t].title = `L${A.layer[i]}·n${A.neuron[i]}: ${fmt(x)}\n` + tokenTitle(t);
      }
      const sp = $('nr-spark');
      sp.textContent = '';
      sp.appendChild(sparkline(vals, rgbCss(RGB), A.hi[i]));
    };

    // Select (layer, neuron) by index; a message when it is not embedded.
    v.pick = function (layer, neuron) {
      const i = slot.get(layer + ':' + neuron);
      if (i === undefined) {
        $('nr-msg').textContent = `layer ${layer}, neuron ${neuron} is not embedded: this page holds ` +
          (A.all ? 'every neuron' : `the ${A.per_layer} most active neurons of each layer and the tokens' top neurons`) + '.';
        return false;
      }
      v.show(i);
      return true;
    };

    // List token t's most active neurons (exact values, all captured layers).
    v.tokenTop = function (t) {
      spans.forEach((s, j) => s.classList.toggle('target', j === t));
      const box = $('nr-top');
      box.textContent = '';
      box.appendChild(el('h2', null, `Most active neurons at ${quote(TOKENS[t])} (position ${t})`));
      const ul = el('ul', 'toplist');
      for (let r = 0; r < TK; r++) {
        const f = topFlat[t * TK + r], layer = A.layer_from + Math.floor(f / A.F), neuron = f % A.F;
        const li = el('li', 'mono', `L${layer}·n${neuron}  ${fmt(topVal[t * TK + r])}`);
        if (slot.has(layer + ':' + neuron)) li.addEventListener('click', () => v.pick(layer, neuron));
        else { li.classList.add('missing'); li.title = 'not embedded'; }
        ul.appendChild(li);
      }
      box.appendChild(ul);
    };
    v.state = () => ({ current, listed: $('nr-top').querySelectorAll('li').length });
    v.spans = () => spans;
    return v;
  })();
  views.push(neurons);

  // ==== Attention =========================================================================
  const attention = (function () {
    const AT = META.attention;
    const v = { id: 'attention', present: !!AT };
    if (!v.present) return v;
    const RGB = [5, 150, 105];
    const L = AT.L, NH = AT.NH, K = AT.k;
    const idx = arr(AT.idx), p = arr(AT.p); // [L, NH, T, K]: the K largest keys of each query row
    let spans = null, layer = 0, head = 0, query = -1, canvas = null;

    v.init = function () {
      const ls = $('at-layer'), hs = $('at-head');
      for (let l = 0; l < L; l++) option(ls, l, String(l));
      for (let h = 0; h < NH; h++) option(hs, h, String(h));
      ls.addEventListener('change', () => { layer = +ls.value; redraw(); });
      hs.addEventListener('change', () => { head = +hs.value; redraw(); });
      spans = renderTokens($('at-text'), { clickable: true });
      $('at-text').addEventListener('click', (e) => {
        const s = e.target.closest('.tok');
        if (s) v.select(+s.dataset.i);
      });
      // one pixel per (query, key), shown at up to 8× (pixelated) or shrunk to 560 px
      canvas = el('canvas', T <= 560 ? 'pixelated' : 'shrunk');
      canvas.width = T;
      canvas.height = T;
      const side = T <= 560 ? T * Math.max(1, Math.min(8, Math.floor(560 / T))) : 560;
      canvas.style.width = side + 'px';
      canvas.style.height = side + 'px';
      $('at-heat').appendChild(canvas);
      canvas.addEventListener('mousemove', (ev) => {
        const [i, j] = cellAt(ev);
        if (i < 0) return hideTip();
        showTip(ev, `query ${quote(TOKENS[i])} (${i}) → key ${quote(TOKENS[j])} (${j}): ${fmt(prob(i, j))}`);
      });
      canvas.addEventListener('mouseleave', hideTip);
      canvas.addEventListener('click', (ev) => { const [i] = cellAt(ev); if (i >= 0) v.select(i); });
      $('at-info').textContent = K < T
        ? `Only the ${K} strongest keys of each query are embedded (of up to ${T}); the rest show as 0.`
        : 'Click a token to see what it attends to.';
      v.select(T - 1);
    };

    v.apply = function (opt) {
      const l = opt('layer'), h = opt('head'), q = opt('token');
      if (l !== null && +l >= 0 && +l < L) { layer = +l; $('at-layer').value = layer; }
      if (h !== null && +h >= 0 && +h < NH) { head = +h; $('at-head').value = head; }
      redraw();
      if (q !== null && +q >= 0 && +q < T) v.select(+q);
    };

    function cellAt(ev) {
      const r = canvas.getBoundingClientRect();
      const j = Math.floor(((ev.clientX - r.left) / r.width) * T), i = Math.floor(((ev.clientY - r.top) / r.height) * T);
      return i >= 0 && i < T && j >= 0 && j < T ? [i, j] : [-1, -1];
    }
    const base = (i) => ((layer * NH + head) * T + i) * K;
    function prob(i, j) {
      const b = base(i);
      for (let r = 0; r < K; r++) if (idx[b + r] === j && p[b + r] > 0) return p[b + r] / 65535;
      return 0;
    }

    // The heatmap of the current head: row = query, column = key; darker = more.
    function drawHeat() {
      const ctx = canvas.getContext('2d');
      const img = ctx.createImageData(T, T), d = img.data;
      for (let o = 0; o < d.length; o += 4) { d[o] = d[o + 1] = d[o + 2] = 255; d[o + 3] = 255; }
      for (let i = 0; i < T; i++) {
        const b = base(i);
        for (let r = 0; r < K; r++) {
          const a = Math.sqrt(p[b + r] / 65535); // sqrt: small weights stay visible
          if (!(a > 0)) continue;
          const o = (i * T + idx[b + r]) * 4;
          d[o] = Math.round(255 - (255 - RGB[0]) * a);
          d[o + 1] = Math.round(255 - (255 - RGB[1]) * a);
          d[o + 2] = Math.round(255 - (255 - RGB[2]) * a);
        }
      }
      if (query >= 0) // mark the selected query row
        for (let j = 0; j < T; j++) if (j > query) { const o = (query * T + j) * 4; d[o] = 225; d[o + 1] = 29; d[o + 2] = 72; }
      ctx.putImageData(img, 0, 0);
    }

    function redraw() {
      drawHeat();
      if (query >= 0) v.select(query);
    }

    // Shade the tokens by the attention of query token i (scaled to the row's maximum).
    v.select = function (i) {
      query = i;
      const b = base(i);
      let mx = 0;
      for (let r = 0; r < K; r++) mx = Math.max(mx, p[b + r]);
      const row = new Map();
      for (let r = 0; r < K; r++) if (p[b + r] > 0) row.set(idx[b + r], p[b + r] / 65535);
      for (let j = 0; j < T; j++) {
        const x = row.get(j) || 0;
        shade(spans[j], RGB, mx > 0 ? (x * 65535) / mx : 0);
        spans[j].classList.toggle('target', j === i);
        spans[j].title = `attention from ${quote(TOKENS[i])} (${i}), layer ${layer}, head ${head}: ${fmt(x)}\n` + tokenTitle(j);
      }
      drawHeat();
    };
    v.state = () => ({ layer, head, query, k: K });
    v.spans = () => spans;
    return v;
  })();
  views.push(attention);

  // ==== About ==============================================================================
  const about = {
    id: 'about',
    present: true,
    init() {
      const box = $('about');
      const dl = el('dl');
      const row = (k, val) => { const dd = el('dd', null, val); dl.append(el('dt', null, k), dd); return dd; };
      const model = META.model || {}, cfg = model.config || {}, ex = META.explain || {};
      row('model', `${model.id || '?'} (${cfg.n_layer} layers, ${cfg.n_head} heads, width ${cfg.n_embd})`);
      row('run', META.run_dir);
      row('tokens', `${T} (${N0} prompt, ${G} generated)`);
      if (typeof META.prompt === 'string') row('prompt', META.prompt).className = 'pre';
      if (ex.target) row('saliency target', ex.target);
      if (ex.lens) row('logit lens', ex.lens);
      row('embedded data', `${(META.blob_bytes / 1e6).toFixed(2)} MB (binary, before base64)`);
      row('page ready in', '').id = 'about-load';
      if (state.loadMs) $('about-load').textContent = `${Math.round(state.loadMs)} ms`;
      box.append(el('h2', null, 'This run'), dl);
      box.appendChild(el('h2', null, 'What the page embeds'));
      const ul = el('ul');
      const li = (t) => ul.appendChild(el('li', null, t));
      if (META.saliency) li('Saliency: each row of attribution values (the positions before its token) as 16-bit ' +
        'integers scaled to the row maximum; shading is value / row maximum, as in Ecco.');
      if (META.activations) {
        const A = META.activations;
        li(A.all ? 'Neurons: every neuron of the captured layers, 8-bit between its minimum and maximum.'
          : `Neurons: in each layer the ${A.per_layer} neurons with the largest activation (plus the tokens' top ` +
            `neurons), 8-bit between each neuron's minimum and maximum; each token's ${A.top.k} most active neurons exactly.`);
      }
      if (META.attention) li(`Attention: ${META.attention.k >= T ? 'every entry' : `the ${META.attention.k} largest ` +
        'entries'} of each query row, probabilities as 16-bit integers.`);
      if (META.rankings) li('Rankings exactly; layer-prediction probabilities as 16-bit integers.');
      if (META.nmf) li(`NMF: the factors of this run exactly; the ${(META.nmf.top[0] || []).length} largest loadings ` +
        'of each factor.');
      if (META.vocab && META.vocab.source !== 'tokenizer')
        li('The model\'s tokenizer was not found when the page was written: tokens not in the text show as #id.');
      box.appendChild(ul);
    },
  };
  views.push(about);

  // ---- tabs ---------------------------------------------------------------------------------
  function show(v) {
    if (!v || !v.present) return;
    if (!v.ready) { v.ready = true; v.init(); }
    for (const w of views) {
      if (!w.present) continue;
      $('view-' + w.id).hidden = w !== v;
      w.tab.setAttribute('aria-selected', String(w === v));
    }
    state.current = v;
  }

  function buildTabs() {
    const nav = $('tabs');
    for (const v of views) {
      if (!v.present) continue;
      const b = el('button', null, $('view-' + v.id).dataset.title);
      b.setAttribute('role', 'tab');
      b.addEventListener('click', () => { show(v); history.replaceState(null, '', '#view=' + v.id); });
      nav.appendChild(b);
      v.tab = b;
    }
  }

  function summary() {
    const s = $('summary');
    const model = META.model || {};
    s.append('model ', el('code', null, model.id || '?'), ` · ${T} tokens (${N0} prompt + ${G} generated)`);
    const gen = TOKENS.slice(N0).join('').replace(/[\x00-\x1f\x7f-\x9f]/g, ' ');
    if (gen) s.append(' · ', el('span', null, `“${gen.length > 80 ? gen.slice(0, 80) + '…' : gen}”`));
    document.title = `eccolo report: ${(model.id || '').split('/').pop()} · ${T} tokens`;
  }

  // ---- self-checks for the tests (#test=...) ----------------------------------------------------
  const bgs = (spans) => spans.map((s) => getComputedStyle(s).backgroundColor);
  const shaded = (list) => list.filter((c) => c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent').length;
  const diff = (a, b) => a.filter((x, i) => x !== b[i]).length;
  const click = (node) => node.dispatchEvent(new MouseEvent('click', { bubbles: true }));

  const tests = {
    saliency(arg, opt) {
      show(saliency);
      const g = Math.min(G - 1, +arg || 0);
      if (opt === 'detailed') { $('sal-detailed').checked = true; $('sal-detailed').dispatchEvent(new Event('change')); }
      const spans = saliency.spans();
      const before = bgs(spans);
      click(spans[N0 + g]);
      const after = bgs(spans);
      const st = saliency.state();
      document.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowRight', bubbles: true }));
      const afterKey = saliency.state().selected;
      document.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowLeft', bubbles: true }));
      return { tokens: $('sal-text').querySelectorAll('.tok').length, generated: $('sal-text').querySelectorAll('.tok.gen').length,
        shaded_before: shaded(before), shaded_after: shaded(after), changed: diff(before, after),
        selected: st.selected, after_right_key: afterKey, title: spans[0].title };
    },
    nmf() {
      show(nmf);
      const spans = nmf.spans();
      const before = bgs(spans);
      const row = $('nmf-factors').querySelector('.factor');
      click(row);
      const after = bgs(spans);
      const iso = nmf.state().isolated;
      return { tokens: $('nmf-text').querySelectorAll('.tok').length,
        sparklines: $('nmf-factors').querySelectorAll('svg.spark').length, shaded_before: shaded(before),
        changed: diff(before, after), isolated: iso,
        neurons_listed: $('nmf-factors').querySelectorAll('.neurons span').length };
    },
    rankings(arg) {
      show(rankings);
      rankings.select(Math.min(G - 1, +arg || 0));
      const canvas = $('rk-heat').querySelector('canvas');
      return Object.assign(rankings.state(), { canvas: !!canvas, width: canvas ? canvas.width : 0 });
    },
    neurons() {
      show(neurons);
      const spans = neurons.spans();
      const before = bgs(spans);
      neurons.show(1 % META.activations.layer.length);
      const after = bgs(spans);
      click(spans[T - 1]);
      return Object.assign(neurons.state(), { tokens: $('nr-text').querySelectorAll('.tok').length,
        shaded: shaded(after), changed: diff(before, after) });
    },
    attention() {
      show(attention);
      const spans = attention.spans();
      const before = bgs(spans);
      click(spans[Math.floor(T / 2)]);
      const after = bgs(spans);
      return Object.assign(attention.state(), { tokens: $('at-text').querySelectorAll('.tok').length,
        shaded: shaded(after), changed: diff(before, after) });
    },
    load() { return {}; },
  };

  function runTest(spec) {
    const [name, arg, opt] = spec.split(':');
    const result = { load_ms: state.loadMs, T, n_input: N0, blob_bytes: META.blob_bytes,
      views: views.filter((v) => v.present).map((v) => v.id) };
    const names = name === 'all' ? views.filter((v) => v.present && tests[v.id]).map((v) => v.id) : [name];
    for (const n of names) {
      try {
        result[n] = tests[n] ? tests[n](arg, opt) : { error: 'no such test' };
      } catch (e) {
        result[n] = { error: String(e && e.stack ? e.stack : e) };
      }
    }
    result.scripts = document.scripts.length; // 3 unless token text injected one
    result.errors = pageErrors;
    $('test-result').textContent = JSON.stringify(result);
  }

  // ---- start -----------------------------------------------------------------------------------
  function start() {
    summary();
    buildTabs();
    const hash = new URLSearchParams(location.hash.slice(1));
    const given = META.show || {};
    const opt = (k) => (hash.has(k) ? hash.get(k) : given[k] === undefined || given[k] === null ? null : String(given[k]));
    const want = views.find((v) => v.id === opt('view') && v.present);
    show(want || views.find((v) => v.present && v.id !== 'about') || about);
    if (want && want.apply) want.apply(opt);
    void document.body.offsetHeight; // force style and layout, so that they count
    state.loadMs = performance.now();
    document.body.dataset.loadMs = state.loadMs.toFixed(1);
    document.body.dataset.initMs = (state.loadMs - t0).toFixed(1);
    if ($('about-load')) $('about-load').textContent = `${Math.round(state.loadMs)} ms`;
    if (hash.get('test')) runTest(hash.get('test'));
  }
  try {
    start();
  } catch (e) {
    const f = $('fatal');
    f.hidden = false;
    f.textContent = 'The report could not start: ' + e;
    throw e;
  }
})();
