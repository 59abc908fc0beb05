// rollgate web view: the rollouts list (tiles over a period, filters kept in the URL, one
// line per rollout, server-side paging, live refresh).
'use strict';
(function () {
  const { el } = RG;
  const PERIODS = ['1h', '24h', '7d', '30d', 'all'];
  const STATES = [
    ['', 'every state'], ['attention', 'needs attention'], ['unfinished', 'unfinished'],
    ['progressing', 'progressing'], ['paused', 'paused'], ['succeeded', 'succeeded'],
    ['rolled-back', 'rolled back'], ['aborted', 'aborted'], ['failed', 'failed'],
    ['invalid-spec', 'invalid spec'], ['pending', 'pending'], ['rolling-back', 'rolling back'],
  ];
  const PAGE_SIZE = 100;

  /** What the URL asks for. */
  function wanted() {
    const q = new URLSearchParams(location.search);
    const page = parseInt(q.get('page') || '1', 10);
    return {
      period: PERIODS.includes(q.get('period')) ? q.get('period') : '24h',
      state: q.get('state') || '',
      prefix: q.get('prefix') || '',
      page: Number.isFinite(page) && page >= 1 ? page : 1,
    };
  }

  /** The list URL of `w` (defaults left out). */
  function urlOf(w) {
    const q = new URLSearchParams();
    if (w.period !== '24h') q.set('period', w.period);
    if (w.state) q.set('state', w.state);
    if (w.prefix) q.set('prefix', w.prefix);
    if (w.page > 1) q.set('page', String(w.page));
    const s = q.toString();
    return '/' + (s ? '?' + s : '');
  }

  function go(w) {
    history.pushState(null, '', urlOf(w));
    load();
  }

  const app = document.getElementById('app');
  const title = el('h1', {}, 'Rollouts');
  const periods = el('div', { class: 'periods', role: 'group', 'aria-label': 'Period of the tiles' });
  const tiles = el('section', { class: 'tiles', 'aria-label': 'Summary' });
  const stateSelect = el('select', { id: 'f-state', name: 'state' },
    STATES.map(([value, label]) => el('option', { value }, label)));
  const prefixInput = el('input', {
    id: 'f-prefix', name: 'prefix', type: 'search', placeholder: 'name starts with…', autocomplete: 'off',
  });
  const filters = el('form', { class: 'filters', role: 'search' },
    el('label', { for: 'f-state' }, 'State'), stateSelect,
    el('label', { for: 'f-prefix' }, 'Name'), prefixInput,
    el('button', { type: 'submit' }, 'Filter'),
    el('a', { href: '/', class: 'clear' }, 'Clear'));
  const problem = el('p', { class: 'error', role: 'alert', hidden: true });
  const count = el('p', { class: 'count' });
  const tbody = el('tbody');
  const table = el('table', { class: 'list' },
    el('thead', {}, el('tr', {},
      ['Rollout', 'Strategy', 'Phase', 'Traffic (stable / canary)', 'State', 'Started', 'Duration', 'Last']
        .map((h) => el('th', { scope: 'col' }, h)))),
    tbody);
  const pager = el('nav', { class: 'pager', 'aria-label': 'Pages' });
  app.replaceChildren(title, el('div', { class: 'bar-row' }, periods), tiles, filters, problem, count,
    el('div', { class: 'table-wrap' }, table), pager);

  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    go({ ...wanted(), state: stateSelect.value, prefix: prefixInput.value.trim(), page: 1 });
  });
  stateSelect.addEventListener('change', () => {
    go({ ...wanted(), state: stateSelect.value, prefix: prefixInput.value.trim(), page: 1 });
  });
  filters.querySelector('a.clear').addEventListener('click', (e) => {
    e.preventDefault();
    go({ period: wanted().period, state: '', prefix: '', page: 1 });
  });
  window.addEventListener('popstate', load);

  /** A link that changes the URL in place (history kept), opening normally with a modifier. */
  function link(w, text, props) {
    return el('a', {
      ...(props || {}),
      href: urlOf(w),
      on: {
        click: (e) => {
          if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
          e.preventDefault();
          go(w);
        },
      },
    }, text);
  }

  function tile(key, label, value, shown, sub) {
    return el('div', { class: 'tile tile-' + key, 'data-tile': key, 'data-value': value === null ? '' : String(value) },
      el('div', { class: 'tile-label' }, label),
      el('div', { class: 'tile-value' }, shown),
      el('div', { class: 'tile-sub' }, sub || ''));
  }

  function renderTiles(v, w) {
    const t = v.tiles;
    const a = t.attentionBy;
    const rb = t.rolledBackBy;
    const causes = Object.entries(rb).filter(([, n]) => n > 0).map(([k, n]) => k + ' ' + n).join(' · ');
    const ratio = t.successRatio;
    const span = w.period === 'all' ? 'ever' : 'in ' + w.period;
    tiles.replaceChildren(
      tile('progressing', 'Progressing now', t.progressing, RG.fmtNumber(t.progressing)),
      tile('attention', 'Need attention', t.attention, RG.fmtNumber(t.attention),
        'paused ' + a.paused + ' · invalid ' + a.invalidSpec + ' · stale runner ' + a.staleRunner),
      tile('rolled-back', 'Rolled back ' + span, t.rolledBack, RG.fmtNumber(t.rolledBack), causes || 'none'),
      tile('success-ratio', 'Success ratio ' + span, ratio,
        ratio === null ? '—' : (Math.round(ratio * 1000) / 10) + '%',
        t.succeeded + ' of ' + t.ended + ' ended'),
      tile('median-duration', 'Median duration ' + span, t.medianDurationMs, RG.fmtDuration(t.medianDurationMs),
        'of runs ended ' + span));
    periods.replaceChildren(el('span', { class: 'label' }, 'Period:'),
      ...PERIODS.map((p) => link({ ...w, period: p }, p, p === w.period ? { class: 'on', 'aria-current': 'true' } : {})));
  }

  function trafficBar(row) {
    const canary = Math.max(0, Math.min(100, Number(row.weight) || 0));
    const stable = el('span', { class: 'bar-stable', title: 'stable ' + RG.fmtNumber(100 - canary) + '%' });
    const next = el('span', { class: 'bar-canary', title: 'canary ' + RG.fmtNumber(canary) + '%' });
    // CSSOM, not a style attribute: the CSP allows this.
    stable.style.width = (100 - canary) + '%';
    next.style.width = canary + '%';
    return el('div', { class: 'traffic' },
      el('div', { class: 'bar', role: 'img', 'aria-label': 'stable ' + (100 - canary) + '%, canary ' + canary + '%' }, stable, next),
      el('span', { class: 'bar-text' }, RG.fmtNumber(100 - canary) + ' / ' + RG.fmtNumber(canary)));
  }

  function renderRow(row) {
    const g = RG.stateGlyph(row.state);
    const phase = row.phaseCount > 0
      ? (row.phaseIndex + 1) + '/' + row.phaseCount + ' ' + row.phase
      : '—';
    const last = row.lastActor ? row.lastActor + ' · ' + (row.lastAction || '') : '—';
    return el('tr', { 'data-rollout': row.rollout, class: row.attention ? 'attention attention-' + row.attention : null },
      el('td', { class: 'name' },
        el('a', { href: '/rollouts/' + encodeURIComponent(row.rollout) }, row.rollout),
        row.run > 0 ? el('span', { class: 'run' }, ' run ' + row.run) : null),
      el('td', {}, row.strategy || '—'),
      el('td', {}, phase),
      el('td', {}, row.run > 0 ? trafficBar(row) : '—'),
      el('td', { class: 'state ' + g.cls, title: row.message || '' },
        el('span', { class: 'glyph', 'aria-hidden': 'true' }, g.glyph), ' ', el('span', { class: 'word' }, g.word)),
      el('td', { class: 'time' }, RG.fmtTime(row.startedMs)),
      el('td', { class: 'num' }, RG.fmtDuration(row.durationMs)),
      el('td', { class: 'last' }, last));
  }

  function renderPager(v, w) {
    const items = [];
    const page = v.page;
    const pages = v.pages;
    if (page > 1) items.push(link({ ...w, page: page - 1 }, '‹ Previous', { rel: 'prev', 'data-page': page - 1 }));
    const shown = new Set([1, pages, page - 2, page - 1, page, page + 1, page + 2]);
    let gap = false;
    for (let p = 1; p <= pages; p++) {
      if (!shown.has(p)) {
        if (!gap) items.push(el('span', { class: 'gap' }, '…'));
        gap = true;
        continue;
      }
      gap = false;
      items.push(p === page
        ? el('span', { class: 'current', 'aria-current': 'page', 'data-page': p }, String(p))
        : link({ ...w, page: p }, String(p), { 'data-page': p }));
    }
    if (page < pages) items.push(link({ ...w, page: page + 1 }, 'Next ›', { rel: 'next', 'data-page': page + 1 }));
    pager.replaceChildren(...items);
  }

  let loading = 0;
  async function load() {
    const w = wanted();
    stateSelect.value = w.state;
    prefixInput.value = w.prefix;
    const q = new URLSearchParams({ period: w.period, page: String(w.page), pageSize: String(PAGE_SIZE) });
    if (w.state) q.set('state', w.state);
    if (w.prefix) q.set('prefix', w.prefix);
    const ticket = ++loading;
    const r = await RG.api('/ui/api/overview?' + q.toString());
    if (ticket !== loading) return; // a newer request answers
    if (!r.ok) {
      problem.hidden = false;
      problem.textContent = r.json.error || 'the list cannot be read (status ' + r.status + ')';
      return;
    }
    problem.hidden = true;
    const v = r.json;
    renderTiles(v, w);
    tbody.replaceChildren(...(v.rows.length
      ? v.rows.map(renderRow)
      : [el('tr', { class: 'empty' }, el('td', { colspan: 8 }, 'No rollout matches.'))]));
    const first = v.total === 0 ? 0 : (v.page - 1) * v.pageSize + 1;
    const lastShown = Math.min(v.total, v.page * v.pageSize);
    count.textContent = v.total === 0 ? 'No rollouts.' : 'Rollouts ' + first + '–' + lastShown + ' of ' + v.total + '.';
    renderPager(v, w);
    document.title = 'rollgate — rollouts' + (v.tiles.attention ? ' (' + v.tiles.attention + ' need attention)' : '');
  }

  RG.session().then((session) => {
    RG.header(session, [{ text: 'Rollouts' }]);
  });
  load();
  RG.live(null, load);
})();
