/* eccolo compare: the heatmap of one comparison, every layer of A (rows) against
 * every layer of B (columns). Plain JavaScript, no libraries, no network. The
 * page holds one data element written by `eccolo compare --html`:
 *   #ecc-meta  JSON: method, what, tokens, dims, a, b, runs_a, runs_b, layers_a,
 *              layers_b, values [[...]] (null where a value is NaN)
 * Paths are untrusted text: they only enter the page through textContent.
 * #test=1 in the URL runs a scripted self-check after load and writes its JSON
 * into <pre id="test-result">. */
'use strict';
(function () {
  const errors = [];
  window.addEventListener('error', (e) => errors.push(String(e.message)));
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  const META = JSON.parse($('ecc-meta').textContent);
  const LA = META.layers_a, LB = META.layers_b, V = META.values;
  const LAB = META.what === 'hidden_states' ? 'H' : 'L';
  const value = (i, j) => V[i][j];
  const fmt = (v) => (v === null ? 'NaN' : v.toFixed(4));

  // 0 (pale) … 1 (dark): the report's rankings scale, read the other way
  const STOPS = [[247, 247, 240], [253, 231, 37], [33, 145, 140], [49, 15, 112]];
  function color(v) {
    if (v === null) return [200, 200, 200];
    const t = Math.max(0, Math.min(1, v)) * (STOPS.length - 1);
    const i = Math.min(STOPS.length - 2, Math.floor(t)), f = t - i;
    return STOPS[i].map((c, k) => Math.round(c + (STOPS[i + 1][k] - c) * f));
  }
  const rgbCss = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  const ink = (c) => (c[0] + c[1] + c[2] < 380 ? '#fff' : '#111');

  const tip = $('tooltip');
  function showTip(ev, text) {
    tip.textContent = text;
    tip.hidden = false;
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 430) + 'px';
    tip.style.top = ev.clientY + 16 + 'px';
  }
  const hideTip = () => { tip.hidden = true; };
  const describe = (i, j) =>
    `A ${LAB}${LA[i]} × B ${LAB}${LB[j]}: ${META.method} ${fmt(value(i, j))}`;

  function summary() {
    const s = $('summary');
    let first = true;
    const part = (label, text) => {
      s.append((first ? '' : ' · ') + label + ' ');
      s.appendChild(el('code', '', text));
      first = false;
    };
    part('method', META.method + (META.method === 'svcca' ? ` (dims ${META.dims})` : ''));
    part('of', META.what);
    part('over', `${META.tokens} tokens`);
    part('A', `${META.a} (${META.runs_a} run${META.runs_a === 1 ? '' : 's'})`);
    part('B', `${META.b} (${META.runs_b} run${META.runs_b === 1 ? '' : 's'})`);
  }

  function legend() {
    const bar = el('canvas', 'bar');
    bar.width = 160;
    bar.height = 12;
    const ctx = bar.getContext('2d');
    for (let x = 0; x < 160; x++) {
      ctx.fillStyle = rgbCss(color(x / 159));
      ctx.fillRect(x, 0, 1, 12);
    }
    $('cmp-legend').append('0', bar, '1');
  }

  // ---- the heatmap ----------------------------------------------------------------------
  const CH = 26, LEFT = 56, TOP = 26;
  let canvas = null, cw = 0, pinned = null, drawn = 0;

  function draw() {
    const ctx = canvas.getContext('2d'), numbers = $('cmp-numbers').checked;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'center';
    ctx.fillStyle = '#57606a';
    LB.forEach((l, j) => ctx.fillText(LAB + l, LEFT + j * cw + cw / 2, TOP / 2));
    drawn = 0;
    for (let i = 0; i < LA.length; i++) {
      ctx.fillStyle = '#57606a';
      ctx.textAlign = 'right';
      ctx.fillText(LAB + LA[i], LEFT - 6, TOP + i * CH + CH / 2);
      ctx.textAlign = 'center';
      for (let j = 0; j < LB.length; j++) {
        const c = color(value(i, j));
        ctx.fillStyle = rgbCss(c);
        ctx.fillRect(LEFT + j * cw, TOP + i * CH, cw - 1, CH - 1);
        drawn++;
        if (numbers && cw >= 34) {
          ctx.fillStyle = ink(c);
          ctx.fillText(value(i, j) === null ? 'NaN' : value(i, j).toFixed(2), LEFT + j * cw + cw / 2, TOP + i * CH + CH / 2);
        }
      }
    }
    if (pinned) {
      ctx.strokeStyle = '#e11d48';
      ctx.lineWidth = 2;
      ctx.strokeRect(LEFT + pinned[1] * cw + 1, TOP + pinned[0] * CH + 1, cw - 3, CH - 3);
    }
  }

  function cellAt(ev) {
    const r = canvas.getBoundingClientRect();
    const x = (ev.clientX - r.left) * (canvas.width / r.width), y = (ev.clientY - r.top) * (canvas.height / r.height);
    const j = Math.floor((x - LEFT) / cw), i = Math.floor((y - TOP) / CH);
    return i >= 0 && i < LA.length && j >= 0 && j < LB.length ? [i, j] : null;
  }

  function pin(c) {
    pinned = c;
    $('cmp-info').textContent = c ? describe(c[0], c[1]) : '';
    draw();
  }

  function heatmap() {
    const wrap = $('cmp-heat');
    const avail = Math.max(300, (wrap.clientWidth || 900) - LEFT - 4);
    cw = Math.max(12, Math.min(64, Math.floor(avail / LB.length)));
    canvas = el('canvas');
    canvas.width = LEFT + cw * LB.length + 4;
    canvas.height = TOP + CH * LA.length + 4;
    canvas.dataset.cells = LA.length * LB.length;
    wrap.appendChild(canvas);
    canvas.addEventListener('mousemove', (ev) => {
      const c = cellAt(ev);
      if (c) showTip(ev, describe(c[0], c[1]));
      else hideTip();
    });
    canvas.addEventListener('mouseleave', hideTip);
    canvas.addEventListener('click', (ev) => pin(cellAt(ev)));
    $('cmp-numbers').addEventListener('change', draw);
    draw();
  }

  function table() {
    const t = el('table', 'grid'), head = el('tr');
    head.appendChild(el('th', '', 'A \\ B'));
    LB.forEach((l) => head.appendChild(el('th', '', LAB + l)));
    t.appendChild(head);
    LA.forEach((l, i) => {
      const tr = el('tr');
      tr.appendChild(el('th', '', LAB + l));
      LB.forEach((_, j) => {
        const td = el('td', 'num', fmt(value(i, j))), c = color(value(i, j));
        td.style.background = rgbCss(c);
        td.style.color = ink(c);
        td.title = describe(i, j);
        tr.appendChild(td);
      });
      t.appendChild(tr);
    });
    $('cmp-table').appendChild(t);
  }

  // #test=1: hover and click the last cell through real events, report what the page shows
  function selfTest() {
    const r = canvas.getBoundingClientRect(), i = LA.length - 1, j = LB.length - 1;
    const at = {
      clientX: r.left + (LEFT + j * cw + cw / 2) * (r.width / canvas.width),
      clientY: r.top + (TOP + i * CH + CH / 2) * (r.height / canvas.height),
      bubbles: true,
    };
    canvas.dispatchEvent(new MouseEvent('mousemove', at));
    const tooltip = tip.hidden ? null : tip.textContent;
    canvas.dispatchEvent(new MouseEvent('click', at));
    const cells = document.querySelectorAll('#cmp-table td.num');
    $('test-result').textContent = JSON.stringify({
      rows: LA.length, cols: LB.length, drawn, table_cells: cells.length,
      last_cell: cells.length ? cells[cells.length - 1].textContent : null,
      tooltip, info: $('cmp-info').textContent, scripts: document.scripts.length, errors,
    });
  }

  try {
    summary();
    legend();
    heatmap();
    table();
    if (new URLSearchParams(location.hash.slice(1)).get('test')) selfTest();
  } catch (e) {
    const f = $('fatal');
    f.hidden = false;
    f.textContent = 'The view could not start: ' + e;
    throw e;
  }
})();
