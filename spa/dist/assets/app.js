// kanade dashboard: vanilla JavaScript modules, no framework, no build step.
//
// The one rule: text that comes from the server (hostnames, job output, audit
// payloads, error details) reaches the page through textContent only, never
// as HTML. Agents in the field write that text.

const TOKEN_KEY = 'kanade.token';
const REFRESH_MS = 10_000;
const PAGE = 50;

const app = document.getElementById('app');
const refreshed = document.getElementById('refreshed');

// ---------------------------------------------------------------- token

let memoryToken = ''; // used when localStorage is unavailable

function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || memoryToken;
  } catch {
    return memoryToken;
  }
}

function setToken(t) {
  memoryToken = t;
  try {
    if (t) localStorage.setItem(TOKEN_KEY, t);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Private mode or storage disabled: the in-memory copy serves this tab.
  }
}

// The first-run address carries the token as #token=…: the fragment never
// reaches the server or its logs. Keep it and take it out of the address bar
// so it does not end up in bookmarks, history or screenshots.
function takeTokenFromHash() {
  if (!location.hash.startsWith('#')) return;
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has('token')) return;
  const t = params.get('token').trim();
  if (t) setToken(t);
  params.delete('token');
  const rest = params.toString();
  history.replaceState(history.state, '', location.pathname + location.search + (rest ? '#' + rest : ''));
}

// ---------------------------------------------------------------- API

class AuthError extends Error {}

class APIError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// problemText turns an RFC 9457 problem (huma's errors) into one line.
async function problemText(res) {
  const text = await res.text().catch(() => '');
  try {
    const p = JSON.parse(text);
    let msg = p.detail || p.title || res.statusText;
    if (Array.isArray(p.errors) && p.errors.length) {
      msg += ': ' + p.errors.map((e) => [e.location, e.message].filter(Boolean).join(' ')).join('; ');
    }
    return msg;
  } catch {
    return text.slice(0, 300) || res.statusText || 'request failed';
  }
}

// api fetches JSON from path with the bearer token. Statuses in allow are
// answers, not errors (the fleet rollup sends its body with 503).
async function api(path, { signal, allow = [] } = {}) {
  const headers = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = 'Bearer ' + token;
  let res;
  try {
    res = await fetch(path, { headers, signal, cache: 'no-store' });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new APIError(0, 'cannot reach the server: ' + err.message);
  }
  if (res.status === 401) throw new AuthError(await problemText(res));
  if (!res.ok && !allow.includes(res.status)) throw new APIError(res.status, await problemText(res));
  try {
    return { status: res.status, body: await res.json() };
  } catch {
    throw new APIError(res.status, 'the server answered with something that is not JSON');
  }
}

// ---------------------------------------------------------------- DOM helpers

// h builds an element. String children become text nodes (never HTML).
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const pad = (n) => String(n).padStart(2, '0');

function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtAgo(iso) {
  const t = new Date(iso).getTime();
  if (!iso || Number.isNaN(t)) return '–';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 0) return 'in the future';
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  return Math.floor(s / 86400) + ' d ago';
}

function fmtMs(ms) {
  if (ms == null || ms === '') return '–';
  const n = Number(ms);
  if (!Number.isFinite(n)) return String(ms);
  if (n < 1000) return n + ' ms';
  if (n < 60_000) return (n / 1000).toFixed(n < 10_000 ? 2 : 1) + ' s';
  const s = Math.round(n / 1000);
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

const timeCell = (iso) => h('time', { datetime: iso || null, title: iso || null }, fmtTime(iso));
const agoCell = (iso) => h('time', { datetime: iso || null, title: fmtTime(iso) }, fmtAgo(iso));
const badge = (text, kind) => h('span', { class: 'badge ' + kind }, text);
const link = (href, text) => h('a', { href }, text);
const seg = (s) => encodeURIComponent(s);

function runStatus(r) {
  if (r.skipped) return badge('skipped', 'muted');
  if (r.reaped) return badge('reaped', 'bad');
  if (r.exit_code == null) return badge('running', 'info');
  return r.exit_code === 0 ? badge('success', 'ok') : badge('exit ' + r.exit_code, 'bad');
}

function markRefreshed() {
  const d = new Date();
  refreshed.textContent = `updated ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function errorBox(err) {
  const where = err.status ? `HTTP ${err.status}: ` : '';
  return h('div', { class: 'error', role: 'alert' }, where + (err.message || String(err)));
}

// ---------------------------------------------------------------- views

function tokenPrompt(reason) {
  // No name attribute: even a native submission could not put the token
  // into a URL.
  const input = h('input', {
    type: 'password', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'token', 'aria-label': 'access token', required: true,
  });
  const form = h('form', {
    class: 'card auth',
    onsubmit: (e) => {
      e.preventDefault();
      setToken(input.value.trim());
      render();
    },
  },
  h('h2', null, 'Access token needed'),
  h('p', { class: 'muted' }, 'The server refused the request' + (reason ? ` (${reason})` : '') +
    '. Paste the token printed by the server at start-up (the text after #token= in the dashboard address).'),
  h('div', { class: 'row' }, input, h('button', { type: 'submit' }, 'Use token')));
  app.replaceChildren(form);
  input.focus();
}

// fleetProblems collects the reasons a degraded rollup gives, whatever the
// field is called: an "error"/"errors"/"detail" at the top or in a part.
function fleetProblems(body) {
  const out = [];
  const add = (where, v) => {
    if (v == null || v === '' || v === false) return;
    if (Array.isArray(v)) v.forEach((x) => add(where, x));
    else if (typeof v === 'object') Object.entries(v).forEach(([k, x]) => add(where ? `${where}.${k}` : k, x));
    else out.push(where ? `${where}: ${v}` : String(v));
  };
  for (const k of ['error', 'errors', 'detail', 'failing']) add('', body[k]);
  for (const part of ['agents', 'jetstream', 'recent_results']) {
    const p = body[part];
    if (p && typeof p === 'object') for (const k of ['error', 'errors']) add(part, p[k]);
  }
  return out;
}

function stat(label, value, kind) {
  return h('div', { class: 'stat' + (kind ? ' ' + kind : '') },
    h('span', { class: 'num' }, value ?? '–'), h('span', { class: 'label' }, label));
}

function fleetCard(res) {
  const b = res.body || {};
  const status = String(b.status || 'unknown');
  const kind = { ok: 'ok', unknown: 'muted', degraded: 'bad' }[status] || 'muted';
  const a = b.agents || {};
  const js = b.jetstream || {};
  const rr = b.recent_results || {};
  const missing = Array.isArray(js.missing) ? js.missing : [];
  const problems = fleetProblems(b);
  return h('section', { class: 'card fleet', id: 'fleet' },
    h('div', { class: 'card-head' },
      h('h2', null, 'Fleet'),
      h('span', { id: 'fleet-status', class: 'badge big ' + kind }, status),
      res.status !== 200 ? h('span', { class: 'muted' }, `HTTP ${res.status}`) : null,
      h('span', { class: 'muted right' }, 'observed ', timeCell(b.observed_at))),
    h('div', { class: 'stats' },
      h('div', { class: 'group', id: 'fleet-agents' },
        h('h3', null, 'Agents'),
        stat('known', a.known), stat('active', a.active, 'ok'), stat('stale', a.stale, a.stale > 0 ? 'warn' : '')),
      h('div', { class: 'group', id: 'fleet-results' },
        h('h3', null, `Results, last ${rr.window_hours ?? 24} h`),
        stat('total', rr.total), stat('failed', rr.failed, rr.failed > 0 ? 'bad' : '')),
      h('div', { class: 'group', id: 'fleet-jetstream' },
        h('h3', null, 'JetStream'),
        stat('healthy', js.total != null ? `${js.healthy ?? 0}/${js.total}` : '–', js.all_ok ? 'ok' : 'bad'))),
    missing.length ? h('div', { class: 'problems' },
      h('strong', null, 'Missing JetStream resources: '),
      h('ul', { class: 'inline' }, missing.map((m) => h('li', null, h('code', null, m))))) : null,
    problems.length ? h('div', { class: 'problems' },
      h('strong', null, 'Failing: '),
      h('ul', null, problems.map((p) => h('li', null, p)))) : null);
}

function durationsCard(rows) {
  const body = Array.isArray(rows) && rows.length
    ? h('table', { id: 'durations' },
      h('thead', null, h('tr', null, ['job', 'runs', 'min', 'p50', 'p95', 'p99', 'max', 'mean']
        .map((c, i) => h('th', { class: i ? 'num' : null }, c)))),
      h('tbody', null, rows.map((r) => h('tr', null,
        h('td', null, h('a', { href: '/results?job_id=' + seg(r.job_id) }, r.job_id)),
        h('td', { class: 'num' }, r.count),
        h('td', { class: 'num' }, fmtMs(r.min_ms)),
        h('td', { class: 'num' }, fmtMs(r.p50_ms)),
        h('td', { class: 'num' }, fmtMs(r.p95_ms)),
        h('td', { class: 'num' }, fmtMs(r.p99_ms)),
        h('td', { class: 'num' }, r.max_result_id
          ? link('/results/' + seg(r.max_result_id), fmtMs(r.max_ms)) : fmtMs(r.max_ms)),
        h('td', { class: 'num' }, fmtMs(r.mean_ms))))))
    : h('p', { class: 'muted' }, 'No finished runs in the last 24 hours.');
  return h('section', { class: 'card' }, h('h2', null, 'Run durations, last 24 h'), body);
}

async function overview({ signal }) {
  const root = h('div', { class: 'overview' }, h('p', { class: 'muted' }, 'Loading…'));
  app.replaceChildren(root);
  const load = async () => {
    const [fleet, durs] = await Promise.allSettled([
      api('/api/health/fleet', { signal, allow: [503] }),
      api('/api/health/scan_durations', { signal }),
    ]);
    if (signal.aborted) return;
    for (const r of [fleet, durs]) if (r.status === 'rejected' && r.reason instanceof AuthError) throw r.reason;
    root.replaceChildren(
      fleet.status === 'fulfilled' ? fleetCard(fleet.value) : h('section', { class: 'card' }, h('h2', null, 'Fleet'), errorBox(fleet.reason)),
      durs.status === 'fulfilled' ? durationsCard(durs.value.body) : h('section', { class: 'card' }, h('h2', null, 'Run durations'), errorBox(durs.reason)));
    markRefreshed();
  };
  await load();
  const timer = setInterval(() => {
    if (!document.hidden) load().catch((err) => fail(err, signal));
  }, REFRESH_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
}

// listView renders a keyset-paginated {items, next_cursor} endpoint as a
// table with filters kept in the address (so a reload keeps them) and a
// "More" button that follows next_cursor.
function listView({ title, endpoint, columns, filters = [], rowHref, empty }) {
  return async ({ query, signal }) => {
    const inputs = {};
    const errorSlot = h('div');
    const tbody = h('tbody');
    const count = h('span', { class: 'muted' });
    const more = h('button', { type: 'button', class: 'more', hidden: true }, 'More');
    let cursor = null;
    let shown = 0;
    let seq = 0;

    const params = () => {
      const p = new URLSearchParams();
      for (const [name, el] of Object.entries(inputs)) if (el.value.trim()) p.set(name, el.value.trim());
      return p;
    };

    const load = async (reset) => {
      const mine = ++seq;
      const p = params();
      p.set('limit', PAGE);
      if (!reset && cursor) p.set('cursor', cursor);
      more.disabled = true;
      try {
        const { body } = await api(`${endpoint}?${p}`, { signal });
        if (mine !== seq || signal.aborted) return;
        if (reset) {
          tbody.replaceChildren();
          shown = 0;
        }
        errorSlot.replaceChildren();
        const items = Array.isArray(body.items) ? body.items : [];
        for (const item of items) tbody.append(row(item));
        shown += items.length;
        cursor = body.next_cursor || null;
        more.hidden = !cursor;
        count.textContent = shown ? `${shown} shown${cursor ? ', more available' : ''}` : (empty || 'Nothing here yet.');
        markRefreshed();
      } catch (err) {
        if (mine !== seq) return;
        if (err instanceof AuthError || err.name === 'AbortError') throw err;
        errorSlot.replaceChildren(errorBox(err));
      } finally {
        more.disabled = false;
      }
    };

    const row = (item) => {
      const href = rowHref && rowHref(item);
      const tr = h('tr', { class: href ? 'link' : null },
        columns.map((c, i) => {
          const v = c.cell ? c.cell(item) : item[c.key];
          const content = i === 0 && href ? link(href, v ?? '–') : (v ?? '–');
          return h('td', { class: c.class || null }, content);
        }));
      if (href) {
        tr.addEventListener('click', (e) => {
          if (e.target.closest('a') || getSelection().toString()) return;
          go(href);
        });
      }
      return tr;
    };

    // Filters update the address with replaceState (no history entry per
    // keystroke) and reload the first page.
    let debounce;
    const changed = () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        const p = params().toString();
        history.replaceState(history.state, '', location.pathname + (p ? '?' + p : ''));
        load(true).catch((err) => fail(err, signal));
      }, 250);
    };
    const filterEls = filters.map((f) => {
      let el;
      if (f.options) {
        el = h('select', { name: f.name, 'aria-label': f.label },
          f.options.map(([v, label]) => h('option', { value: v }, label)));
        el.addEventListener('change', changed);
      } else {
        el = h('input', { type: 'search', name: f.name, placeholder: f.label, 'aria-label': f.label, spellcheck: 'false' });
        el.addEventListener('input', changed);
      }
      el.value = query.get(f.name) || '';
      inputs[f.name] = el;
      return el;
    });
    more.addEventListener('click', () => load(false).catch((err) => fail(err, signal)));

    app.replaceChildren(h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, title), count),
      filterEls.length ? h('form', { class: 'filters', onsubmit: (e) => e.preventDefault() }, filterEls) : null,
      errorSlot,
      h('div', { class: 'scroll' },
        h('table', { class: 'list' },
          h('thead', null, h('tr', null, columns.map((c) => h('th', { class: c.class || null }, c.label)))),
          tbody)),
      more));
    await load(true);
  };
}

const agents = listView({
  title: 'Agents',
  endpoint: '/api/agents',
  empty: 'No agents match.',
  filters: [
    { name: 'q', label: 'search pc_id or hostname' },
    { name: 'status', label: 'status', options: [['', 'all'], ['online', 'online'], ['offline', 'offline']] },
  ],
  rowHref: (a) => '/agents/' + seg(a.pc_id),
  columns: [
    { label: 'pc_id', key: 'pc_id', class: 'mono' },
    { label: 'hostname', key: 'hostname' },
    { label: 'os', key: 'os_family' },
    { label: 'version', key: 'agent_version', class: 'mono' },
    { label: 'last heartbeat', cell: (a) => agoCell(a.last_heartbeat) },
    { label: 'state', cell: (a) => (a.online ? badge('online', 'ok') : badge('offline', 'muted')) },
  ],
});

const results = listView({
  title: 'Results',
  endpoint: '/api/results',
  empty: 'No runs match.',
  filters: [
    { name: 'job_id', label: 'job_id' },
    { name: 'pc_id', label: 'pc_id' },
    { name: 'status', label: 'status', options: [['', 'all'], ['success', 'success'], ['failure', 'failure'], ['running', 'running'], ['skipped', 'skipped']] },
  ],
  rowHref: (r) => '/results/' + seg(r.result_id),
  columns: [
    { label: 'result', key: 'result_id', class: 'mono clip' },
    { label: 'job', key: 'job_id' },
    { label: 'pc_id', key: 'pc_id', class: 'mono' },
    { label: 'status', cell: runStatus },
    { label: 'started', cell: (r) => timeCell(r.started_at) },
    { label: 'duration', cell: (r) => fmtMs(r.duration_ms), class: 'num' },
  ],
});

const executions = listView({
  title: 'Executions',
  endpoint: '/api/executions',
  empty: 'No executions yet.',
  rowHref: (x) => '/executions/' + seg(x.exec_id),
  columns: [
    { label: 'exec', key: 'exec_id', class: 'mono clip' },
    { label: 'job', key: 'job_id' },
    { label: 'version', key: 'version', class: 'mono' },
    { label: 'by', key: 'initiated_by' },
    { label: 'at', cell: (x) => timeCell(x.initiated_at) },
    { label: 'targets', key: 'target_count', class: 'num' },
    { label: 'ok', key: 'success_count', class: 'num' },
    { label: 'failed', key: 'failure_count', class: 'num' },
    { label: 'status', key: 'status' },
  ],
});

const audit = listView({
  title: 'Audit log',
  endpoint: '/api/audit',
  empty: 'No audit events yet.',
  columns: [
    { label: 'when', cell: (x) => timeCell(x.occurred_at) },
    { label: 'actor', key: 'actor' },
    { label: 'action', key: 'action' },
    { label: 'target', key: 'target', class: 'mono' },
    {
      label: 'payload',
      class: 'mono clip wide',
      cell: (x) => {
        const p = typeof x.payload === 'string' ? x.payload : JSON.stringify(x.payload ?? '');
        return h('span', { title: p }, p.length > 160 ? p.slice(0, 160) + '…' : p);
      },
    },
  ],
});

// kvTable shows every field of a record (nested values as JSON), leaving out
// huma's "$schema" link and the keys in skip.
function kvTable(obj, skip = []) {
  return h('table', { class: 'kv' }, h('tbody', null,
    Object.entries(obj).filter(([k]) => !k.startsWith('$') && !skip.includes(k)).map(([k, v]) => {
      let cell;
      if (v != null && typeof v === 'object') cell = h('code', null, JSON.stringify(v));
      else if (typeof v === 'boolean') cell = v ? 'yes' : 'no';
      else if (/_at$|heartbeat$/.test(k) && typeof v === 'string') cell = timeCell(v);
      else if (/_ms$/.test(k)) cell = fmtMs(v);
      else cell = v ?? '–';
      return h('tr', null, h('th', null, k), h('td', null, cell));
    })));
}

const links = (...items) => h('span', { class: 'right links' }, items.filter(Boolean));

async function resultDetail({ params, signal }) {
  const { body: r } = await api('/api/results/' + seg(params[0]), { signal });
  const out = (name, text) => h('section', { class: 'card' },
    h('h3', null, name),
    text ? h('pre', { id: name }, text) : h('p', { class: 'muted', id: name }, '(empty)'));
  app.replaceChildren(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, 'Run ', h('span', { class: 'mono' }, r.result_id)), runStatus(r),
        h('span', { class: 'muted' }, fmtMs(r.duration_ms)),
        links(
          r.pc_id ? link('/agents/' + seg(r.pc_id), 'agent ' + r.pc_id) : null,
          r.job_id ? link('/results?job_id=' + seg(r.job_id), 'all runs of ' + r.job_id) : null))),
    out('stdout', r.stdout),
    out('stderr', r.stderr),
    h('section', { class: 'card' }, h('h3', null, 'details'), kvTable(r, ['stdout', 'stderr'])));
}

async function agentDetail({ params, signal }) {
  const { body: a } = await api('/api/agents/' + seg(params[0]), { signal });
  app.replaceChildren(h('section', { class: 'card' },
    h('div', { class: 'card-head' },
      h('h2', null, 'Agent ', h('span', { class: 'mono' }, a.pc_id)),
      a.online ? badge('online', 'ok') : badge('offline', 'muted'),
      links(link('/results?pc_id=' + seg(a.pc_id), 'runs on this agent'))),
    kvTable(a)));
}

async function executionDetail({ params, signal }) {
  const { body: x } = await api('/api/executions/' + seg(params[0]), { signal });
  app.replaceChildren(h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', null, 'Execution ', h('span', { class: 'mono' }, x.exec_id))),
    kvTable(x)));
}

function notFound() {
  app.replaceChildren(h('section', { class: 'card' }, h('h2', null, 'Not found'),
    h('p', null, 'No page at ', h('code', null, location.pathname), '. ', link('/', 'Back to the overview'))));
}

// ---------------------------------------------------------------- router

const routes = [
  [/^\/$/, overview, 'overview'],
  [/^\/agents$/, agents, 'agents'],
  [/^\/agents\/([^/]+)$/, agentDetail, 'agents'],
  [/^\/results$/, results, 'results'],
  [/^\/results\/([^/]+)$/, resultDetail, 'results'],
  [/^\/executions$/, executions, 'executions'],
  [/^\/executions\/([^/]+)$/, executionDetail, 'executions'],
  [/^\/audit$/, audit, 'audit'],
];

let current = null;

// fail shows an error of the current view: the token prompt for a 401,
// nothing for a view that was left, an error box otherwise.
function fail(err, signal) {
  if (signal.aborted || err.name === 'AbortError') return;
  if (err instanceof AuthError) tokenPrompt(err.message);
  else app.replaceChildren(h('section', { class: 'card' }, errorBox(err)));
}

function render() {
  current?.abort();
  const ctl = new AbortController();
  current = ctl;
  const path = location.pathname.replace(/\/+$/, '') || '/';
  let view = notFound;
  let params = [];
  let section = '';
  for (const [re, fn, name] of routes) {
    const m = re.exec(path);
    if (!m) continue;
    view = fn;
    section = name;
    try {
      params = m.slice(1).map(decodeURIComponent);
    } catch {
      view = notFound;
    }
    break;
  }
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  refreshed.textContent = '';
  document.title = section ? `kanade · ${section}` : 'kanade';
  Promise.resolve()
    .then(() => view({ params, query: new URLSearchParams(location.search), signal: ctl.signal }))
    .catch((err) => fail(err, ctl.signal));
}

function go(url) {
  history.pushState(null, '', url);
  render();
  window.scrollTo(0, 0);
}

// Same-origin links become client-side navigations (real paths, so a reload
// asks the server, which answers index.html for them).
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  e.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener('popstate', render);

takeTokenFromHash();
render();
