// rollgate web view: what every page shares (the global RG). Vanilla ES2020, no library.
// Elements are built with RG.el / RG.svg only: text always becomes Text nodes, never HTML,
// and no inline style or handler attribute is ever set (the CSP forbids them).
'use strict';
(function () {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const RG = {};

  function applyProps(node, props) {
    if (!props) return;
    for (const [key, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'on') {
        for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
        continue;
      }
      if (key === 'style' || key.toLowerCase().startsWith('on')) {
        throw new Error('RG.el: the property ' + key + ' is not allowed (use classes and on: {…})');
      }
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }

  function append(node, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) {
        append(node, child);
      } else if (child instanceof Node) {
        node.appendChild(child);
      } else {
        node.appendChild(document.createTextNode(String(child)));
      }
    }
  }

  /** An HTML element: props (attributes, `on: {event: fn}`) and children (nodes or text). */
  RG.el = function (tag, props, ...children) {
    const node = document.createElement(tag);
    applyProps(node, props);
    append(node, children);
    return node;
  };

  /** The same in the SVG namespace. */
  RG.svg = function (tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    applyProps(node, attrs);
    append(node, children);
    return node;
  };

  /** Go to the sign-in page, coming back here after. */
  RG.toLogin = function () {
    location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
  };

  /** Fetch JSON: resolves {status, ok, json}; never rejects (status 0: unreachable). */
  RG.api = async function (path, options) {
    const opts = options || {};
    const method = opts.method || 'GET';
    const headers = { Accept: 'application/json' };
    const init = { method, credentials: 'same-origin', headers, cache: 'no-store' };
    if (method !== 'GET') {
      headers['Content-Type'] = 'application/json';
      const session = await RG.session();
      if (session && session.csrf) headers['X-CSRF-Token'] = session.csrf;
      init.body = JSON.stringify(opts.body || {});
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      return { status: 0, ok: false, json: { error: 'the server cannot be reached (' + e.message + ')' } };
    }
    if (response.status === 401 && method === 'GET') {
      RG.toLogin();
    }
    let json;
    try {
      json = await response.json();
    } catch (e) {
      json = { error: 'the answer is not JSON (status ' + response.status + ')' };
    }
    return { status: response.status, ok: response.ok, json };
  };

  let sessionPromise = null;
  /** The /ui/api/session answer (fetched once), or null. */
  RG.session = function () {
    if (!sessionPromise) {
      sessionPromise = RG.api('/ui/api/session').then((r) => (r.ok ? r.json : null));
    }
    return sessionPromise;
  };

  /** The top bar: product name, breadcrumbs ([{text, href}] or strings), user and role. */
  RG.header = function (session, crumbs) {
    const top = document.getElementById('top');
    if (!top) return;
    const nav = RG.el('nav', { class: 'crumbs', 'aria-label': 'Breadcrumbs' },
      RG.el('a', { class: 'brand', href: '/' }, 'rollgate'));
    for (const crumb of crumbs || []) {
      const c = typeof crumb === 'string' ? { text: crumb } : crumb;
      nav.append(RG.el('span', { class: 'sep', 'aria-hidden': 'true' }, '›'),
        c.href ? RG.el('a', { href: c.href }, c.text) : RG.el('span', { class: 'here' }, c.text));
    }
    const who = RG.el('div', { class: 'who' });
    if (session) {
      if (session.mode === 'store') {
        who.append(RG.el('span', { class: 'badge', title: 'rollgate ui --store: a store view never acts' }, 'store view'));
      }
      who.append(
        RG.el('span', { class: 'user', 'data-user': session.user || '' }, session.user || 'anyone'),
        RG.el('span', { class: 'role role-' + session.role, 'data-role': session.role }, session.role));
      if (session.signInRequired && session.csrf) {
        who.append(RG.el('form', { class: 'signout', method: 'post', action: '/logout' },
          RG.el('input', { type: 'hidden', name: 'csrf', value: session.csrf }),
          RG.el('button', { type: 'submit', 'data-signout': '' }, 'Sign out')));
      }
    }
    top.replaceChildren(nav, who);
  };

  const pad = (n) => String(n).padStart(2, '0');

  /** A time (ms since the epoch) in local time, `YYYY-MM-DD HH:MM:SS`; — for none. */
  RG.fmtTime = function (ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
    const d = new Date(ms);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  };

  /** A duration: `850 ms`, `42 s`, `3 m 05 s`, `2 h 10 m`, `3 d 4 h`; — for none. */
  RG.fmtDuration = function (ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
    if (ms < 0) ms = 0;
    if (ms < 1000) return Math.round(ms) + ' ms';
    const s = Math.floor(ms / 1000);
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' m ' + pad(s % 60) + ' s';
    const h = Math.floor(m / 60);
    if (h < 24) return h + ' h ' + pad(m % 60) + ' m';
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
  };

  /** A number for people: integers grouped, others to 4 significant digits; — for none. */
  RG.fmtNumber = function (x) {
    if (x === null || x === undefined || !Number.isFinite(x)) return '—';
    if (Number.isInteger(x)) return x.toLocaleString('en-US');
    return String(Number(x.toPrecision(4)));
  };

  /** A state's glyph, word and class (glyph and word are always shown together). */
  RG.stateGlyph = function (state) {
    const s = state || '';
    let glyph = '▶';
    let cls = 'st-progressing';
    if (s.startsWith('paused')) { glyph = '⏸'; cls = 'st-paused'; }
    else if (s === 'succeeded') { glyph = '✔'; cls = 'st-succeeded'; }
    else if (s === 'rolled-back' || s === 'rolling-back') { glyph = '↩'; cls = 'st-rolled-back'; }
    else if (s === 'failed') { glyph = '✖'; cls = 'st-failed'; }
    else if (s === 'aborted') { glyph = '■'; cls = 'st-aborted'; }
    else if (s === 'invalid-spec' || s === 'unreadable') { glyph = '⚠'; cls = 'st-invalid'; }
    else if (s === 'pending') { cls = 'st-pending'; }
    return { glyph, word: s, cls };
  };

  /**
   * Follow changes (of one rollout, or all with null): onChange(data) at most once per
   * 250 ms for one rollout, once per 2 s for all of them. A throttle, not a debounce: a
   * server whose rollouts change without pause (thousands measuring) still refreshes.
   */
  RG.live = function (rollout, onChange) {
    const url = '/ui/api/events' + (rollout ? '?rollout=' + encodeURIComponent(rollout) : '');
    const gap = rollout ? 250 : 2000;
    let source = null;
    let timer = null;
    let closed = false;
    let lost = false;
    let last = null;
    const fire = (data) => {
      last = data;
      if (timer !== null) return;
      timer = setTimeout(() => {
        timer = null;
        onChange(last);
      }, gap);
    };
    const open = () => {
      source = new EventSource(url, { withCredentials: true });
      source.addEventListener('change', (event) => {
        let data = null;
        try { data = JSON.parse(event.data); } catch (e) { return; }
        fire(data);
      });
      source.addEventListener('open', () => {
        // What happened while the stream was down is not replayed: read again.
        if (lost) fire({ rollout: rollout || '', run: 0, kind: 'reconnected' });
        lost = false;
      });
      source.addEventListener('error', () => {
        source.close();
        lost = true;
        if (!closed) setTimeout(open, 3000);
      });
    };
    open();
    return {
      close() {
        closed = true;
        clearTimeout(timer);
        if (source) source.close();
      },
    };
  };

  const ACTIONS = {
    pause: ['Pause', 'Hold the rollout at its current weight.'],
    resume: ['Resume', 'Continue: re-enter the current phase with fresh verification (a step pause goes on to its gates).'],
    promote: ['Promote', 'Move to the next phase now (skips confirm-promotion gates).'],
    'promote-full': ['Promote fully', 'Apply the final weight and finish the rollout now.'],
    abort: ['Abort', 'Stop the rollout; what was applied stays.'],
    rollback: ['Roll back', 'Restore the stable version (after a success: start the run that takes the previous version back).'],
    retry: ['Retry', 'Start a new run of this rollout.'],
  };
  RG.actions = ACTIONS;

  /** The outcome of an action's answer: [data-outcome, text]. */
  function outcomeOf(r) {
    const j = r.json || {};
    const state = j.state ? ' — state now ' + j.state : '';
    if (r.status === 200) return ['applied', 'Applied' + state + '.'];
    if (r.status === 201) return ['created', 'Run ' + (j.run || '?') + ' created' + state + '.'];
    if (r.status === 202) return ['queued', 'Queued: the run is busy and will apply it shortly' + state + '.'];
    return ['refused', 'Refused: ' + (j.error || 'status ' + r.status)];
  }

  /** Ask for a reason, run `action` on rollout `name`, show the outcome, then onDone(). */
  RG.confirmAction = function (name, action, onDone) {
    const old = document.getElementById('confirm');
    if (old) old.remove();
    const [label, explain] = ACTIONS[action] || [action, ''];
    const reason = RG.el('textarea', {
      id: 'confirm-reason', name: 'reason', rows: 3, maxlength: 1000, required: true,
      placeholder: 'Why? It goes into the audit log.',
    });
    const outcome = RG.el('p', { class: 'outcome', role: 'status' });
    const ok = RG.el('button', { type: 'button', class: 'primary', 'data-confirm': action }, label);
    const cancel = RG.el('button', { type: 'button', 'data-cancel': '' }, 'Cancel');
    const dialog = RG.el('dialog', { id: 'confirm', 'aria-labelledby': 'confirm-title' },
      RG.el('h2', { id: 'confirm-title' }, label + ' ' + name + '?'),
      RG.el('p', { class: 'explain' }, explain),
      RG.el('label', { for: 'confirm-reason' }, 'Reason (required)'),
      reason, outcome,
      RG.el('div', { class: 'buttons' }, cancel, ok));
    const close = () => { dialog.close(); dialog.remove(); };
    cancel.addEventListener('click', close);
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); close(); });
    ok.addEventListener('click', async () => {
      const text = reason.value.trim();
      if (!text) {
        outcome.textContent = 'Write a reason first: it goes into the audit log.';
        reason.focus();
        return;
      }
      ok.disabled = true;
      reason.disabled = true;
      outcome.textContent = 'Sending…';
      const r = await RG.api('/ui/api/rollouts/' + encodeURIComponent(name) + '/' + encodeURIComponent(action),
        { method: 'POST', body: { reason: text } });
      const [kind, message] = outcomeOf(r);
      outcome.setAttribute('data-outcome', kind);
      outcome.className = 'outcome outcome-' + kind;
      outcome.textContent = message;
      ok.hidden = true;
      cancel.textContent = 'Close';
      cancel.focus();
      if (onDone) onDone(r);
    });
    document.body.append(dialog);
    dialog.showModal();
    reason.focus();
  };

  window.RG = RG;
})();
