// rollgate web view: a metric's chart, drawn as SVG by hand (no library). One
// circle[data-verdict] per point, coloured by verdict and also told apart without colour
// (filled, hollow, dashed, crossed) and by the legend's counts; a dashed line per limit the
// plugin reports; text only through RG.svg children (Text nodes), never markup.
'use strict';
(function () {
  const W = 960;
  // Axis labels: three significant digits, so a label fits the left margin.
  const tickLabel = (v) => (Number.isFinite(v) ? String(Number(v.toPrecision(3))) : '');
  const H = 220;
  const PAD = { left: 64, right: 12, top: 12, bottom: 28 };
  const VERDICTS = ['pass', 'fail', 'inconclusive', 'no-data', 'error'];
  const COUNT_KEY = { pass: 'pass', fail: 'fail', inconclusive: 'inconclusive', 'no-data': 'noData', error: 'error' };

  function extent(values) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) {
      if (!Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    return [lo, hi];
  }

  function timeOfDay(ms) {
    const text = RG.fmtTime(ms);
    return text.length > 11 ? text.slice(11) : text;
  }

  /** A cross through (x, y): the mark of fail and error points. */
  function cross(x, y, r, cls) {
    const d = 'M' + (x - r) + ' ' + (y - r) + 'L' + (x + r) + ' ' + (y + r) +
      'M' + (x - r) + ' ' + (y + r) + 'L' + (x + r) + ' ' + (y - r);
    return RG.svg('path', { d, class: 'mark ' + cls, 'aria-hidden': 'true' });
  }

  /**
   * The chart of `metric` (a metric of the detail document): an svg[data-metric=KEY].
   */
  function chart(metric) {
    const points = metric.points || [];
    const lines = metric.lines || [];
    const [t0, t1raw] = extent(points.map((p) => p.at));
    const t1 = t1raw > t0 ? t1raw : t0 + 60000;
    const values = points.map((p) => p.value).filter((v) => v !== null && v !== undefined);
    let [lo, hi] = extent(values.concat(lines.map((l) => l.value)));
    if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
    if (lo > 0) lo = 0;
    if (hi <= lo) hi = lo + 1;
    hi += (hi - lo) * 0.08;
    const x = (t) => PAD.left + ((t - t0) / (t1 - t0 || 1)) * (W - PAD.left - PAD.right);
    const y = (v) => H - PAD.bottom - ((v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
    const bottom = H - PAD.bottom;
    const svg = RG.svg('svg', {
      'data-metric': metric.key, viewBox: '0 0 ' + W + ' ' + H, class: 'chart' + (metric.dryRun ? ' dry-run' : ''),
      role: 'img', 'aria-label': 'Measurements of ' + metric.name + ' over time',
    });
    svg.append(RG.svg('title', null, metric.name + ': ' + points.length + ' point(s)'));
    // Axes and ticks.
    svg.append(RG.svg('line', { x1: PAD.left, y1: bottom, x2: W - PAD.right, y2: bottom, class: 'axis' }));
    svg.append(RG.svg('line', { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: bottom, class: 'axis' }));
    for (const v of [lo, (lo + hi) / 2, hi]) {
      svg.append(RG.svg('text', { x: PAD.left - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, tickLabel(v)));
    }
    if (points.length) {
      svg.append(RG.svg('text', { x: PAD.left, y: H - 8, class: 'tick' }, timeOfDay(t0)));
      svg.append(RG.svg('text', { x: W - PAD.right, y: H - 8, class: 'tick', 'text-anchor': 'end' }, timeOfDay(t1raw)));
    } else {
      svg.append(RG.svg('text', { x: W / 2, y: H / 2, class: 'empty', 'text-anchor': 'middle' }, 'no measurement yet'));
    }
    // The plugin's limits.
    for (const l of lines) {
      const ly = y(l.value);
      svg.append(RG.svg('line', { x1: PAD.left, y1: ly, x2: W - PAD.right, y2: ly, class: 'limit', 'data-limit': l.value }));
      svg.append(RG.svg('text', { x: W - PAD.right - 4, y: ly - 4, class: 'limit-label', 'text-anchor': 'end' }, l.label));
    }
    // The values, joined, then one circle per point.
    const path = points.filter((p) => p.value !== null && p.value !== undefined)
      .map((p, i) => (i ? 'L' : 'M') + x(p.at).toFixed(1) + ' ' + y(p.value).toFixed(1)).join('');
    if (path) svg.append(RG.svg('path', { d: path, class: 'trace', 'aria-hidden': 'true' }));
    for (const p of points) {
      const px = x(p.at);
      const py = p.value === null || p.value === undefined ? bottom : y(p.value);
      const verdict = VERDICTS.includes(p.verdict) ? p.verdict : 'error';
      const label = RG.fmtTime(p.at) + ' — ' + verdict +
        (p.value === null || p.value === undefined ? '' : ' — ' + RG.fmtNumber(p.value)) +
        (p.count > 1 ? ' (' + p.count + ' measurements merged)' : '');
      svg.append(RG.svg('circle', { cx: px.toFixed(1), cy: py.toFixed(1), r: p.count > 1 ? 5 : 4, class: 'pt v-' + verdict, 'data-verdict': verdict },
        RG.svg('title', null, label)));
      if (verdict === 'fail' || verdict === 'error') svg.append(cross(px, py, 2.5, 'v-' + verdict));
    }
    return svg;
  }

  /** The legend: each verdict's sample mark and count (what the chart tells by colour). */
  function legend(metric) {
    const counts = metric.counts || {};
    const ul = RG.el('ul', { class: 'legend', 'aria-label': 'Verdicts' });
    for (const v of VERDICTS) {
      const mark = RG.svg('svg', { viewBox: '0 0 12 12', class: 'legend-mark', 'aria-hidden': 'true' },
        RG.svg('circle', { cx: 6, cy: 6, r: 4, class: 'pt v-' + v }),
        (v === 'fail' || v === 'error') ? cross(6, 6, 2.5, 'v-' + v) : null);
      ul.append(RG.el('li', { 'data-count': v }, mark, ' ' + v + ' ', RG.el('strong', null, String(counts[COUNT_KEY[v]] || 0))));
    }
    return ul;
  }

  /** The same points as a table. */
  function table(metric) {
    const body = RG.el('tbody');
    for (const p of metric.points || []) {
      body.append(RG.el('tr', { 'data-verdict': p.verdict },
        RG.el('td', null, RG.fmtTime(p.at)),
        RG.el('td', null, p.value === null || p.value === undefined ? '—' : RG.fmtNumber(p.value)),
        RG.el('td', null, p.verdict),
        RG.el('td', null, String(p.count))));
    }
    return RG.el('table', { class: 'points' },
      RG.el('thead', null, RG.el('tr', null,
        RG.el('th', { scope: 'col' }, 'time'), RG.el('th', { scope: 'col' }, 'value'),
        RG.el('th', { scope: 'col' }, 'verdict'), RG.el('th', { scope: 'col' }, 'measurements'))),
      body);
  }

  window.RGChart = { chart, legend, table };
})();
