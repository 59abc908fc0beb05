// rollgate web view: the detail page of one rollout (/rollouts/NAME[?run=N]). It fetches
// /ui/api/rollouts/NAME, draws it, and draws it again from a fresh document on every change
// the event stream reports. Every string from the server is put in Text nodes (RG.el
// children, textContent), never parsed as HTML.
'use strict';
(function () {
  const el = RG.el;
  const prefix = '/rollouts/';
  const name = decodeURIComponent(location.pathname.slice(prefix.length));
  const run = new URLSearchParams(location.search).get('run');
  // What the viewer opened (tables, details), kept across redraws.
  const open = new Set();
  let session = null;

  function toggle(key, label, content) {
    const shown = open.has(key);
    const box = el('div', { class: 'toggled', hidden: !shown }, content);
    const button = el('button', {
      type: 'button', class: 'toggle', 'aria-expanded': shown ? 'true' : 'false', 'data-toggle': key,
      on: {
        click: () => {
          const now = !open.has(key);
          if (now) open.add(key); else open.delete(key);
          box.hidden = !now;
          button.setAttribute('aria-expanded', now ? 'true' : 'false');
        },
      },
    }, label);
    return [button, box];
  }

  function title(doc) {
    const s = doc.snapshot;
    const g = RG.stateGlyph(s.state);
    const runs = el('nav', { class: 'runs', 'aria-label': 'Runs' }, 'run ');
    for (const r of doc.runs || []) {
      const here = r.run === doc.run;
      const href = prefix + encodeURIComponent(name) + '?run=' + r.run;
      runs.append(here ? el('strong', { 'aria-current': 'page' }, String(r.run)) : el('a', { href, title: r.state }, String(r.run)), ' ');
    }
    const duration = doc.durationMs ? RG.fmtDuration(doc.durationMs) : '—';
    return el('section', { class: 'title' },
      el('h1', { 'data-title': '' }, s.rollout || name),
      el('p', { class: 'title-line' },
        el('span', { class: 'state ' + g.cls, 'data-state': s.state }, g.glyph + ' ' + g.word),
        ' · ', s.strategy || '—',
        ' · started ', RG.fmtTime(doc.startedMs), ' · ', s.finished ? 'took ' : 'for ', duration),
      runs);
  }

  function banners(doc) {
    return (doc.banners || []).map((b) => el('div', { class: 'banner level-' + b.level, 'data-banner': b.kind, role: b.level === 'error' ? 'alert' : 'status' },
      el('strong', null, b.title),
      b.text ? el('p', null, b.text) : null,
      (b.failures && b.failures.length) ? el('ul', { class: 'failures' }, b.failures.map((f) => el('li', null, f))) : null,
      (b.problems && b.problems.length) ? el('ul', { class: 'problems' }, b.problems.map((p) => el('li', null, el('code', null, p)))) : null,
      b.hint ? el('p', { class: 'hint' }, b.hint) : null));
  }

  function summary(doc) {
    const s = doc.snapshot;
    const parts = [el('span', { class: 'versions' }, s.stableVersion || '—', ' → ', s.canaryVersion || '—')];
    if (s.strategy === 'canary' || !s.target) {
      const w = Math.max(0, Math.min(100, Number(s.weight) || 0));
      parts.push(el('span', { class: 'split' }, 'canary ' + RG.fmtNumber(w) + ' % · stable ' + RG.fmtNumber(100 - w) + ' %'),
        RG.svg('svg', { class: 'splitbar', viewBox: '0 0 100 6', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
          RG.svg('rect', { x: 0, y: 0, width: 100, height: 6, class: 'stable' }),
          RG.svg('rect', { x: 0, y: 0, width: w, height: 6, class: 'canary' })));
    }
    if (s.target) {
      const t = s.target;
      parts.push(el('span', { class: 'target', 'data-target': t.unit },
        t.unit + ': ' + t.completed + ' of ' + t.total + ' done' + (t.failed ? ', ' + t.failed + ' refused' : '') + ', ' + t.remaining + ' left'));
    }
    parts.push(el('span', { class: 'phase-at' }, 'phase ' + (s.phaseCount ? (s.phase + 1) + ' of ' + s.phaseCount + ' (' + s.phaseName + ')' : '—')));
    return el('section', { class: 'summary' }, parts.map((p) => el('span', { class: 'part' }, p)), el('p', { class: 'message' }, s.message || ''));
  }

  function actions(doc) {
    if (!session || session.role !== 'operator') return null;
    const bar = el('section', { class: 'actions', 'aria-label': 'Actions' });
    for (const [action, info] of Object.entries(RG.actions)) {
      const a = (doc.actions || {})[action] || { allowed: false, why: 'unknown action' };
      bar.append(el('button', {
        type: 'button', 'data-action': action, disabled: !a.allowed,
        title: a.allowed ? info[1] : a.why,
        on: { click: () => RG.confirmAction(name, action, () => load()) },
      }, info[0]));
    }
    return bar;
  }

  function pauseText(p) {
    if (!p) return null;
    if (p.indefinite) return 'pause until promoted';
    let text = 'pause ' + RG.fmtDuration(p.durationMs);
    if (p.untilMs) text += ' — ' + RG.fmtDuration(Math.max(0, p.untilMs - Date.now())) + ' left (until ' + RG.fmtTime(p.untilMs) + ')';
    return text;
  }

  function metricLink(doc, key) {
    const m = (doc.metrics || []).find((x) => x.key === key);
    const status = m ? m.status : 'pending';
    return el('li', null, el('a', { href: '#m-' + key }, m ? m.name : key), ' ', el('span', { class: 'mstatus ms-' + status }, status), m && m.dryRun ? el('span', { class: 'badge dry' }, 'dry-run') : null);
  }

  function phases(doc) {
    const list = el('ol', { class: 'phases' });
    for (const p of doc.phases || []) {
      list.append(el('li', { 'data-phase': String(p.index), class: 'phase ph-' + p.status },
        el('div', { class: 'phase-head' }, el('strong', null, p.name), ' ', RG.fmtNumber(p.weight) + ' %', ' ', el('span', { class: 'pstatus' }, p.status)),
        pauseText(p.pause) ? el('p', { class: 'pause' }, pauseText(p.pause)) : null,
        (p.gates || []).length ? el('ul', { class: 'gates' }, p.gates.map((g) => el('li', { 'data-gate': g.name }, 'gate ', el('code', null, g.name), ' (' + g.kind + '): ' + g.status))) : null,
        (p.metrics || []).length ? el('ul', { class: 'pmetrics' }, p.metrics.map((k) => metricLink(doc, k))) : null));
    }
    const bg = (doc.background || []).length
      ? el('div', { class: 'background' }, el('strong', null, 'Background verification'), el('ul', { class: 'pmetrics' }, doc.background.map((k) => metricLink(doc, k))))
      : null;
    return el('section', { class: 'phases-box' }, el('h2', null, 'Phases'), list, bg);
  }

  function metric(doc, m) {
    const phase = m.phaseIndex >= 0 ? ((doc.phases || [])[m.phaseIndex] || {}).name : 'background';
    const checklist = el('ul', { class: 'checklist' }, (m.checklist || []).map((c) => el('li', {
      class: (c.ok ? 'ok' : 'over') + (c.tripped ? ' tripped' : ''), 'data-ok': c.ok ? 'true' : 'false',
    }, c.ok ? '✓ ' : '✗ ', c.text, c.tripped ? el('strong', null, ' — this limit decided') : null)));
    const details = el('pre', { class: 'details' });
    details.textContent = m.details === null || m.details === undefined ? '' : (typeof m.details === 'string' ? m.details : JSON.stringify(m.details, null, 2));
    return el('article', { class: 'metric' + (m.dryRun ? ' dry-run' : ''), id: 'm-' + m.key, 'data-metric-key': m.key },
      el('h3', null, m.name, ' ', el('span', { class: 'where' }, phase), ' ',
        el('span', { class: 'mstatus ms-' + m.status }, m.status),
        m.dryRun ? el('span', { class: 'badge dry', title: 'measured and shown, never decides' }, 'dry-run') : null,
        m.downsampled ? el('span', { class: 'badge', title: 'older points merged two by two' }, 'downsampled') : null),
      RGChart.chart(m),
      RGChart.legend(m),
      toggle('table:' + m.key, 'Points as a table', RGChart.table(m)),
      checklist,
      m.reason ? el('p', { class: 'reason' }, m.reason) : null,
      m.message ? el('p', { class: 'plugin-message' }, 'plugin: ', m.message) : null,
      details.textContent ? toggle('details:' + m.key, 'Plugin details', details) : null);
  }

  function timeline(doc) {
    const body = el('tbody');
    for (const a of doc.timeline || []) {
      body.append(el('tr', { 'data-audit-seq': String(a.seq) },
        el('td', null, RG.fmtTime(a.atMs)), el('td', null, a.actor), el('td', null, a.action),
        el('td', null, (a.stateBefore || '∅') + ' → ' + a.stateAfter), el('td', null, a.reason)));
    }
    return el('section', { class: 'timeline' }, el('h2', null, 'Decisions'),
      el('table', null, el('thead', null, el('tr', null, ['time', 'actor', 'action', 'state', 'reason'].map((h) => el('th', { scope: 'col' }, h)))), body));
  }

  function spec(doc) {
    const s = doc.spec || {};
    const yaml = el('pre', { class: 'yaml' });
    yaml.textContent = s.yaml || '';
    const parts = [el('h2', null, 'Effective Rollout'), toggle('yaml', 'Show the YAML', yaml)];
    if (s.previousRun) {
      const changed = (s.diff || []).filter((l) => l.op !== ' ').length;
      const diff = el('pre', { class: 'diff' }, (s.diff || []).map((l) => el('span', { class: 'd' + (l.op === '+' ? 'add' : l.op === '-' ? 'del' : 'same') }, l.op + ' ' + l.text + '\n')));
      parts.push(el('p', null, changed ? changed + ' line(s) differ from run ' + s.previousRun : 'the same as run ' + s.previousRun),
        s.diffLimited ? el('p', { class: 'hint' }, s.diffLimited) : null,
        changed ? toggle('diff', 'Show the diff', diff) : null);
    }
    return el('section', { class: 'spec' }, parts);
  }

  function render(doc) {
    const app = document.getElementById('app');
    // replaceChildren is the DOM's own: it would write a null (a read-only viewer's absent
    // action bar) as the text "null", so only nodes go in.
    const parts = [
      title(doc),
      ...banners(doc),
      summary(doc),
      actions(doc),
      phases(doc),
      el('section', { class: 'metrics' }, el('h2', null, 'Verification'), (doc.metrics || []).map((m) => metric(doc, m))),
      timeline(doc),
      spec(doc)];
    app.replaceChildren(...parts.filter((p) => p instanceof Node));
  }

  async function load() {
    const path = '/ui/api/rollouts/' + encodeURIComponent(name) + (run ? '?run=' + encodeURIComponent(run) : '');
    const r = await RG.api(path);
    if (!r.ok) {
      document.getElementById('app').replaceChildren(
        el('h1', { 'data-title': '' }, name),
        el('div', { class: 'banner level-error', 'data-banner': 'error', role: 'alert' },
          el('strong', null, r.status === 404 ? 'Not found' : 'Could not load the rollout'),
          el('p', null, (r.json && r.json.error) || 'status ' + r.status)));
      return;
    }
    render(r.json);
  }

  async function main() {
    session = await RG.session();
    RG.header(session, [{ text: name }]);
    await load();
    RG.live(name, () => load());
  }

  main();
})();
