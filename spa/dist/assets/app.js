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

// api fetches JSON from path with the bearer token; with a body it sends
// that as JSON (POST, PATCH). Statuses in allow are answers, not errors (the
// fleet rollup sends its body with 503). A 204 answers a null body.
async function api(path, { signal, allow = [], method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = 'Bearer ' + token;
  const init = { method, headers, signal, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new APIError(0, 'cannot reach the server: ' + err.message);
  }
  if (res.status === 401) throw new AuthError(await problemText(res));
  if (!res.ok && !allow.includes(res.status)) throw new APIError(res.status, await problemText(res));
  if (res.status === 204) return { status: 204, body: null };
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

// ---------------------------------------------------------------- session
//
// me is GET /api/auth/me for the current token: {username, role,
// must_change_pw}. The static token is "service-token" and an admin, a
// server with authentication off answers "auth-disabled", also an admin. It
// is asked once per token and forgotten on logout and on any 401, so a role
// an admin changed is picked up at the next sign-in or refusal.

let me = null;

const who = document.getElementById('who');

// showMe puts the caller in the header and opens the role gates of app.css
// by setting data-me on <html> to the role. data-me stays unset while a new
// password is owed, so the navigation and every gated control stay hidden
// until then.
function showMe() {
  const root = document.documentElement;
  if (!me) {
    who.hidden = true;
    delete root.dataset.me;
    return;
  }
  document.getElementById('who-name').textContent = me.username;
  document.getElementById('who-role').textContent = me.role;
  who.hidden = false;
  if (me.must_change_pw) delete root.dataset.me;
  else root.dataset.me = me.role;
}

function forget() {
  me = null;
  showMe();
}

// session makes sure me is known before a view runs. Without a token the
// server answers 401 (unless authentication is off), which reaches fail()
// as an AuthError and shows the sign-in form.
async function session(signal) {
  if (me) return;
  const { body } = await api('/api/auth/me', { signal });
  if (signal.aborted) return;
  me = body;
  showMe();
}

// Logging out only forgets the token here: a JWT has no server-side session
// to end, and it expires on its own (12 h).
document.getElementById('logout').addEventListener('click', () => {
  setToken('');
  forget();
  app.replaceChildren();
  render();
});

// The sign-in forms below give no input a name attribute and send nothing
// themselves (submit is prevented): even a native submission, should the
// script fail half-way, could not put a password or token into a URL.
const secretInput = (label, autocomplete) => h('input', {
  type: 'password', autocomplete, spellcheck: 'false', 'aria-label': label, required: true,
});
const field = (label, input) => h('label', { class: 'field' }, h('span', null, label), input);

// refusedNote says why a stored token no longer works; nothing on a first
// visit, when there was no token to refuse.
const refusedNote = (reason) => (reason
  ? h('p', { class: 'muted' }, `The server refused the stored token (${reason}).`) : null);

// loginForm asks for a username and password (POST /api/auth/login) and
// keeps the JWT it answers where the static token goes. Refusals show the
// problem's detail: "invalid credentials" for any failed check, the wait
// after too many failures (429).
function loginForm(reason) {
  const user = h('input', {
    type: 'text', autocomplete: 'username', spellcheck: 'false', autocapitalize: 'none',
    'aria-label': 'username', required: true,
  });
  const pw = secretInput('password', 'current-password');
  const slot = h('div', { class: 'slot' });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', {
    class: 'card auth', id: 'login',
    onsubmit: async (e) => {
      e.preventDefault();
      submit.disabled = true;
      slot.replaceChildren();
      try {
        const { body } = await api('/api/auth/login', {
          method: 'POST', body: { username: user.value.trim(), password: pw.value },
        });
        setToken(body.token);
        forget();
        render();
      } catch (err) {
        pw.value = '';
        slot.replaceChildren(errorBox(err));
        pw.focus();
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h2', null, 'Sign in'),
  refusedNote(reason),
  slot,
  field('Username', user),
  field('Password', pw),
  h('div', { class: 'actions' }, submit,
    h('button', { type: 'button', class: 'link', id: 'use-token', onclick: () => tokenForm(reason) },
      'Use an access token instead')));
  app.replaceChildren(form);
  user.focus();
}

// tokenForm takes the static access token the server prints at start-up
// (on-prem operators use it; the first-run address carries it as #token=).
function tokenForm(reason) {
  const input = secretInput('access token', 'off');
  const form = h('form', {
    class: 'card auth', id: 'token-form',
    onsubmit: (e) => {
      e.preventDefault();
      setToken(input.value.trim());
      forget();
      render();
    },
  },
  h('h2', null, 'Access token'),
  refusedNote(reason),
  h('p', { class: 'muted' }, 'Paste the token printed by the server at start-up (the text after #token= in the dashboard address).'),
  h('div', { class: 'row' }, input, h('button', { type: 'submit' }, 'Use token')),
  h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'link', id: 'use-login', onclick: () => loginForm(reason) },
      'Sign in with a username instead')));
  app.replaceChildren(form);
  input.focus();
}

// changePasswordForm is all a user sees while must_change_pw is set (the
// bootstrap admin, a password an admin reset): the password was chosen by
// someone else. Afterwards the page they asked for renders.
function changePasswordForm() {
  const old = secretInput('current password', 'current-password');
  const next = secretInput('new password', 'new-password');
  const again = secretInput('new password again', 'new-password');
  const slot = h('div', { class: 'slot' });
  const submit = h('button', { type: 'submit' }, 'Change password');
  const form = h('form', {
    class: 'card auth', id: 'change-password',
    onsubmit: async (e) => {
      e.preventDefault();
      slot.replaceChildren();
      if (next.value !== again.value) {
        slot.replaceChildren(errorBox(new Error('the new passwords differ')));
        return;
      }
      submit.disabled = true;
      try {
        await api('/api/auth/change-password', {
          method: 'POST', body: { old_password: old.value, new_password: next.value },
        });
        me = { ...me, must_change_pw: false };
        showMe();
        render();
      } catch (err) {
        // A 401 here is a wrong current password, not a lost session: it
        // is shown like any refusal, and Log out stays in the header.
        slot.replaceChildren(errorBox(err));
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h2', null, 'Choose a new password'),
  h('p', { class: 'muted' }, 'Your password was set by someone else. Choose your own (at least 8 characters) to go on.'),
  slot,
  field('Current password', old),
  field('New password', next),
  field('New password again', again),
  h('div', { class: 'actions' }, submit));
  app.replaceChildren(form);
  old.focus();
}

// ---------------------------------------------------------------- views

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

// kvTable shows every field of a record (nested values as JSON, elements as
// they are), leaving out huma's "$schema" link and the keys in skip.
function kvTable(obj, skip = []) {
  return h('table', { class: 'kv' }, h('tbody', null,
    Object.entries(obj).filter(([k]) => !k.startsWith('$') && !skip.includes(k)).map(([k, v]) => {
      let cell;
      if (v instanceof Node) cell = v;
      else if (v != null && typeof v === 'object') cell = h('code', null, JSON.stringify(v));
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

// ---------------------------------------------------------------- jobs and schedules
//
// /api/jobs and /api/schedules read the KV buckets the worker and the agents
// use, and answer every entry as {key, revision, updated_at, value, error?,
// raw?}. An entry with an error is one the worker skips: it is listed and
// flagged, never hidden, so an operator notices it. These pages only read;
// changes go through PUT and DELETE on the API (or the CLI).

const isObj = (v) => v != null && typeof v === 'object' && !Array.isArray(v);
const itemsOf = (body) => (Array.isArray(body?.items) ? body.items : []);
// entryValue is an entry's stored object; {} for a value that is not one
// (not JSON at all, or JSON of another shape).
const entryValue = (item) => (isObj(item.value) ? item.value : {});
const clip = (s, n) => (s.length > n ? s.slice(0, n) + '…' : s);

function rethrowAuth(settled) {
  for (const r of settled) if (r.status === 'rejected' && r.reason instanceof AuthError) throw r.reason;
}

function listText(xs, max = 3) {
  const a = Array.isArray(xs) ? xs.map(String) : [];
  return a.length > max ? `${a.slice(0, max).join(', ')} +${a.length - max} more` : a.join(', ');
}

// targetSummary reads {all, groups, pcs}; null (shown as "–") when there is
// no target object.
function targetSummary(t) {
  if (!isObj(t)) return null;
  const parts = [];
  if (t.all === true) parts.push('all PCs');
  if (Array.isArray(t.groups) && t.groups.length) parts.push('groups ' + listText(t.groups));
  if (Array.isArray(t.pcs) && t.pcs.length) parts.push('pcs ' + listText(t.pcs));
  return parts.length ? parts.join('; ') : 'none';
}

function cadenceText(c) {
  if (c === 'once') return 'once';
  if (isObj(c) && c.every != null) return 'every ' + c.every;
  return JSON.stringify(c);
}

// whenSummary says in a few words when a schedule fires: "per PC once",
// "per target every 1d", "calendar 09:00 mon-fri (Europe/Berlin)",
// "calendar once 2026-05-01 09:00 (utc)". It reads whatever is stored; a
// value that does not validate is flagged by its row, not here.
function whenSummary(s) {
  const w = s.when;
  if (!isObj(w)) return null;
  if (w.per_pc != null) return 'per PC ' + cadenceText(w.per_pc);
  if (w.per_target != null) return 'per target ' + cadenceText(w.per_target);
  if (isObj(w.calendar)) {
    const c = w.calendar;
    const at = String(c.at ?? '?').trim();
    const tz = `(${s.tz || 'local'})`;
    if (at.length > 5) return `calendar once ${at} ${tz}`;
    const days = Array.isArray(c.days) && c.days.length ? c.days.join(',') : 'daily';
    return `calendar ${at} ${days} ${tz}`;
  }
  return JSON.stringify(w);
}

// A schedule is enabled unless enabled is false: absent or null means on.
const scheduleEnabled = (s) => s.enabled !== false;
const enabledBadge = (s) => (scheduleEnabled(s) ? badge('enabled', 'ok') : badge('disabled', 'muted'));

function fmtUntil(iso) {
  const t = new Date(iso).getTime();
  if (!iso || Number.isNaN(t)) return '–';
  const s = Math.round((t - Date.now()) / 1000);
  if (s < 0) return 'due';
  if (s < 60) return `in ${s} s`;
  if (s < 3600) return `in ${Math.floor(s / 60)} min`;
  if (s < 86400) return `in ${Math.floor(s / 3600)} h`;
  const d = Math.floor(s / 86400);
  const hrs = Math.floor((s % 86400) / 3600);
  return `in ${d} d` + (hrs ? ` ${hrs} h` : '');
}

function brokenText(item) {
  return item.raw != null ? `${item.error}: ${clip(String(item.raw), 300)}` : String(item.error);
}

function rowLink(tr, href) {
  tr.classList.add('link');
  tr.addEventListener('click', (e) => {
    if (e.target.closest('a') || getSelection().toString()) return;
    go(href);
  });
  return tr;
}

// entryTable lists KV entries: the key (a link, flagged when broken), then
// cells(value, item) for the other columns. A broken entry gets a second row
// with its error across the table.
function entryTable(id, items, base, columns) {
  const rows = items.flatMap((item) => {
    const href = base + seg(item.key);
    const broken = Boolean(item.error);
    const v = entryValue(item);
    const tr = rowLink(h('tr', { class: broken ? 'broken' : null },
      h('td', { class: 'mono' }, link(href, item.key), broken ? [' ', badge('broken', 'bad')] : null),
      columns.map((c) => h('td', { class: c.class || null }, c.cell(v, item) ?? '–'))), href);
    if (!broken) return [tr];
    return [tr, h('tr', { class: 'broken-why' },
      h('td', { colspan: columns.length + 1 }, h('strong', null, 'Broken, the worker skips it: '), brokenText(item)))];
  });
  return h('div', { class: 'scroll' }, h('table', { class: 'list', id },
    h('thead', null, h('tr', null, h('th', null, 'id'), columns.map((c) => h('th', { class: c.class || null }, c.label)))),
    h('tbody', null, rows)));
}

// entriesHead is a list's title with its count and how many are broken.
function entriesHead(title, items, noun) {
  const broken = items.filter((x) => x.error).length;
  return h('div', { class: 'card-head' }, h('h2', null, title),
    items.length ? h('span', { class: 'muted' }, `${items.length} ${noun}${items.length === 1 ? '' : 's'}`) : null,
    broken ? badge(`${broken} broken`, 'bad') : null);
}

const jobColumns = [
  { label: 'version', class: 'mono', cell: (m) => m.version },
  { label: 'shell', cell: (m) => m.execute?.shell },
  { label: 'timeout', class: 'mono', cell: (m) => m.execute?.timeout },
  { label: 'target', cell: (m) => targetSummary(m.target) },
  { label: 'description', class: 'clip wide', cell: (m) => (m.description != null ? String(m.description) : null) },
];

async function jobs({ signal }) {
  let body;
  try {
    ({ body } = await api('/api/jobs', { signal }));
  } catch (err) {
    if (err instanceof AuthError || err.name === 'AbortError') throw err;
    app.replaceChildren(h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Jobs')), errorBox(err)));
    return;
  }
  const items = itemsOf(body);
  app.replaceChildren(h('section', { class: 'card' },
    entriesHead('Jobs', items, 'job'),
    items.length
      ? entryTable('jobs', items, '/jobs/', jobColumns)
      : h('p', { class: 'muted empty' }, 'No jobs yet — put one with PUT /api/jobs/{id}.')));
  markRefreshed();
}

function scheduleColumns() {
  return [
    { label: 'when', cell: (s) => whenSummary(s) },
    { label: 'job', cell: (s) => (s.job_id != null ? link('/jobs/' + seg(String(s.job_id)), String(s.job_id)) : null) },
    { label: 'target', cell: (s) => targetSummary(s.target) },
    { label: 'state', cell: (s) => enabledBadge(s) },
    { label: 'runs on', cell: (s) => String(s.runs_on || 'backend') },
  ];
}

function firingsTable(id, firings, { schedule = true } = {}) {
  return h('table', { class: 'list', id },
    h('thead', null, h('tr', null, h('th', null, 'at'), h('th', null, 'in'),
      schedule ? h('th', null, 'schedule') : null, h('th', null, 'job'))),
    h('tbody', null, firings.map((f) => h('tr', null,
      h('td', null, timeCell(f.at)),
      h('td', { class: 'muted' }, fmtUntil(f.at)),
      schedule ? h('td', { class: 'mono' }, link('/schedules/' + seg(f.schedule_id), f.schedule_id)) : null,
      h('td', null, link('/jobs/' + seg(f.job_id), f.job_id))))));
}

async function schedules({ signal }) {
  const root = h('div', { class: 'overview' }, h('p', { class: 'muted' }, 'Loading…'));
  app.replaceChildren(root);
  const [up, list] = await Promise.allSettled([
    api('/api/schedules/upcoming?limit=20', { signal }),
    api('/api/schedules', { signal }),
  ]);
  if (signal.aborted) return;
  rethrowAuth([up, list]);

  let upBody;
  if (up.status === 'rejected') upBody = errorBox(up.reason);
  else {
    const firings = itemsOf(up.value.body);
    upBody = firings.length
      ? h('div', { class: 'scroll' }, firingsTable('upcoming', firings))
      : h('p', { class: 'muted empty' }, 'No calendar firings ahead.');
  }
  const upCard = h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', null, 'Upcoming firings'),
      h('span', { class: 'muted' }, 'calendar schedules the worker fires, soonest first')),
    upBody);

  let listCard;
  if (list.status === 'rejected') {
    listCard = h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Schedules')), errorBox(list.reason));
  } else {
    const items = itemsOf(list.value.body);
    listCard = h('section', { class: 'card' },
      entriesHead('Schedules', items, 'schedule'),
      items.length
        ? entryTable('schedules', items, '/schedules/', scheduleColumns())
        : h('p', { class: 'muted empty' }, 'No schedules yet — put one with PUT /api/schedules/{id}.'));
  }
  root.replaceChildren(upCard, listCard);
  markRefreshed();
}

// detailEntry is the list envelope of key (revision, updated_at, error, raw),
// or null when the list could not be read or lacks the key.
function detailEntry(settled, key) {
  return settled.status === 'fulfilled' ? itemsOf(settled.value.body).find((x) => x.key === key) || null : null;
}

// brokenBox says why an entry is broken; null when it is not.
function brokenBox(entry, noun) {
  if (!entry?.error) return null;
  return h('div', { class: 'problems', role: 'alert' },
    h('strong', null, `Broken: the worker skips this ${noun}. `), String(entry.error));
}

// otherFields are the stored fields the page does not lay out itself
// (fields this dashboard does not know, kept by the API), as they are.
function otherFields(v, known, into) {
  for (const [k, x] of Object.entries(v)) if (!known.includes(k) && !(k in into)) into[k] = x;
  return into;
}

function kvFields(entry, fields) {
  if (entry) {
    fields['kv.revision'] = entry.revision;
    fields['kv.updated_at'] = entry.updated_at;
  }
  return fields;
}

// rawCard shows the stored value: JSON re-indented, or the text of a value
// that is not JSON.
function rawCard(value, entry) {
  const text = value !== undefined ? JSON.stringify(value, null, 2) : String(entry?.raw ?? '');
  return h('section', { class: 'card' }, h('h3', null, 'stored value'), h('pre', { id: 'raw' }, text));
}

// oneEntry fetches GET path and the list; a value that is not JSON answers
// 500 on GET, and then the list's raw text stands in for it.
async function oneEntry(path, listPath, key, signal, extra = []) {
  const [one, list, ...rest] = await Promise.allSettled([
    api(path, { signal }), api(listPath, { signal }), ...extra.map((p) => api(p, { signal }))]);
  rethrowAuth([one, list, ...rest]);
  const entry = detailEntry(list, key);
  if (one.status === 'rejected' && entry?.raw == null) throw one.reason;
  const value = one.status === 'fulfilled' ? one.value.body : undefined;
  return { value, entry, rest };
}

const jobKnown = ['id', 'version', 'description', 'execute', 'target', 'rollout'];
const executeKnown = ['shell', 'script', 'timeout', 'jitter', 'run_as', 'cwd'];

async function jobDetail({ params, signal }) {
  const id = params[0];
  const { value, entry, rest: [scheds] } = await oneEntry(
    '/api/jobs/' + seg(id), '/api/jobs', id, signal, ['/api/schedules']);
  if (signal.aborted) return;
  const m = isObj(value) ? value : {};
  const ex = isObj(m.execute) ? m.execute : {};
  const fields = {
    id: m.id, version: m.version, description: m.description != null ? String(m.description) : undefined,
    'execute.shell': ex.shell, 'execute.timeout': ex.timeout, 'execute.jitter': ex.jitter,
    'execute.run_as': ex.run_as, 'execute.cwd': ex.cwd,
    target: targetSummary(m.target), rollout: m.rollout,
  };
  for (const [k, x] of Object.entries(ex)) if (!executeKnown.includes(k)) fields['execute.' + k] = x;
  otherFields(m, jobKnown, fields);
  kvFields(entry, fields);

  let users;
  if (scheds.status === 'rejected') users = errorBox(scheds.reason);
  else {
    const mine = itemsOf(scheds.value.body).filter((x) => entryValue(x).job_id === id);
    users = mine.length
      ? entryTable('job-schedules', mine, '/schedules/', scheduleColumns().filter((c) => c.label !== 'job'))
      : h('p', { class: 'muted empty' }, 'No schedule runs this job.');
  }

  const script = ex.script != null ? String(ex.script) : '';
  app.replaceChildren(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, 'Job ', h('span', { class: 'mono' }, id)),
        entry?.error ? badge('broken', 'bad') : null,
        links(link('/results?job_id=' + seg(id), 'runs of this job'))),
      brokenBox(entry, 'job'),
      value !== undefined ? kvTable(fields) : null),
    h('section', { class: 'card' }, h('h3', null, 'script'),
      script ? h('pre', { id: 'script' }, script) : h('p', { class: 'muted', id: 'script' }, '(none)')),
    h('section', { class: 'card' }, h('h3', null, 'schedules that run it'), users),
    rawCard(value, entry));
  markRefreshed();
}

// nextFiringsLimit is how many upcoming firings of all schedules the
// schedule page asks for (the API's maximum) to find this one's among them.
const nextFiringsLimit = 500;
const nextFiringsShown = 10;

// firingNote explains why a schedule has no calendar instants to list.
function firingNote(s) {
  if (!scheduleEnabled(s)) return 'Disabled: it does not fire.';
  if (s.runs_on === 'agent') return 'Runs on the agents: they fire it themselves, the backend lists no instants.';
  if (!isObj(s.when?.calendar)) return 'Not a calendar schedule: the worker reconciles it every minute, there are no fixed instants.';
  return 'No firings ahead (a one-shot that has passed, or outside its active window).';
}

const scheduleKnown = ['id', 'when', 'job_id', 'target', 'rollout', 'jitter', 'starting_deadline', 'active', 'tz', 'runs_on', 'enabled'];

async function scheduleDetail({ params, signal }) {
  const id = params[0];
  const { value, entry, rest: [up] } = await oneEntry(
    '/api/schedules/' + seg(id), '/api/schedules', id, signal, [`/api/schedules/upcoming?limit=${nextFiringsLimit}`]);
  if (signal.aborted) return;
  const s = isObj(value) ? value : {};
  const active = isObj(s.active) ? `${s.active.from || '…'} until ${s.active.until || '…'}` : undefined;
  const fields = {
    id: s.id, when: whenSummary(s),
    job_id: s.job_id != null ? link('/jobs/' + seg(String(s.job_id)), String(s.job_id)) : undefined,
    target: targetSummary(s.target), enabled: scheduleEnabled(s), runs_on: s.runs_on || 'backend',
    tz: s.tz || 'local', jitter: s.jitter, starting_deadline: s.starting_deadline, active, rollout: s.rollout,
  };
  otherFields(s, scheduleKnown, fields);
  kvFields(entry, fields);

  let next;
  if (up.status === 'rejected') next = errorBox(up.reason);
  else {
    const mine = itemsOf(up.value.body).filter((f) => f.schedule_id === id).slice(0, nextFiringsShown);
    next = mine.length
      ? h('div', { class: 'scroll' }, firingsTable('next-firings', mine, { schedule: false }))
      : h('p', { class: 'muted empty', id: 'next-firings' }, entry?.error ? 'Broken: it does not fire.' : firingNote(s));
  }

  app.replaceChildren(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, 'Schedule ', h('span', { class: 'mono' }, id)),
        value !== undefined ? enabledBadge(s) : null,
        entry?.error ? badge('broken', 'bad') : null,
        links(s.job_id != null ? link('/results?job_id=' + seg(String(s.job_id)), 'runs of its job') : null)),
      brokenBox(entry, 'schedule'),
      value !== undefined ? kvTable(fields) : null),
    h('section', { class: 'card' }, h('h3', null, 'next firings'), next),
    rawCard(value, entry));
  markRefreshed();
}

// ---------------------------------------------------------------- accounts
//
// Admins only: the nav link is gated, and the API answers 403 to anyone
// else, which this page shows as its error. Every change is one request,
// after which the table is read again, so the page shows what the database
// holds; a refusal (409 for the last enabled admin, 422 for a short
// password) is shown above the table with the problem's own words.

const ROLES = ['viewer', 'operator', 'admin'];

async function accounts({ signal }) {
  const status = h('div', { id: 'accounts-status' });
  const tbody = h('tbody');
  const count = h('span', { class: 'muted' });

  const load = async () => {
    const { body } = await api('/api/accounts', { signal });
    if (signal.aborted) return;
    const list = Array.isArray(body) ? body : [];
    tbody.replaceChildren(...list.map(row));
    count.textContent = `${list.length} account${list.length === 1 ? '' : 's'}`;
    markRefreshed();
  };

  // change sends one request and reports how it went. After a refusal the
  // table is read again too, which puts a role select back where it was.
  // A change to one's own account may change what one may do: the session
  // is read again (render) instead. It answers whether the change was made.
  const change = async ({ path, method, body, done, self }) => {
    status.replaceChildren();
    try {
      await api(path, { method, body, signal });
    } catch (err) {
      if (err instanceof AuthError || err.name === 'AbortError') throw err;
      status.replaceChildren(errorBox(err));
      await load();
      return false;
    }
    if (self) {
      forget();
      render();
      return true;
    }
    await load();
    status.replaceChildren(h('div', { class: 'note', role: 'status' }, done));
    return true;
  };
  // act runs a change from an event handler, where nobody awaits it.
  const act = (c) => change(c).catch((err) => fail(err, signal));

  function row(a) {
    const name = String(a.username);
    const path = '/api/accounts/' + seg(name);
    const self = name === me?.username;
    const roleSelect = h('select', {
      'aria-label': 'role of ' + name, 'data-role': 'admin',
      onchange: () => act({ path, method: 'PATCH', body: { role: roleSelect.value }, self, done: `${name} is now ${roleSelect.value}.` }),
    }, ROLES.map((r) => h('option', { value: r, selected: r === a.role }, r)));
    // The actions cell shows the buttons, or the step one of them asks
    // for: a new password, or a second click to delete.
    const actions = h('div', { class: 'actions', 'data-role': 'admin' });
    const idle = () => actions.replaceChildren(
      h('button', {
        type: 'button', 'data-act': 'toggle',
        onclick: () => act({
          path, method: 'PATCH', body: { disabled: !a.disabled }, self,
          done: `${name} is ${a.disabled ? 'enabled' : 'disabled'}.`,
        }),
      }, a.disabled ? 'Enable' : 'Disable'),
      h('button', { type: 'button', 'data-act': 'reset', onclick: resetStep }, 'Reset password'),
      h('button', { type: 'button', class: 'danger', 'data-act': 'delete', onclick: deleteStep }, 'Delete'));
    function resetStep() {
      const pw = secretInput('new password for ' + name, 'new-password');
      actions.replaceChildren(h('form', {
        class: 'actions',
        onsubmit: (e) => {
          e.preventDefault();
          act({
            path, method: 'PATCH', body: { password: pw.value }, self,
            done: `The password of ${name} is reset: they choose their own at the next sign-in.`,
          });
        },
      }, pw, h('button', { type: 'submit' }, 'Set password'), h('button', { type: 'button', onclick: idle }, 'Cancel')));
      pw.focus();
    }
    function deleteStep() {
      actions.replaceChildren(
        h('span', null, `Delete ${name}?`),
        h('button', {
          type: 'button', class: 'danger', 'data-act': 'confirm-delete',
          onclick: () => act({ path, method: 'DELETE', self, done: `${name} is deleted.` }),
        }, 'Delete'),
        h('button', { type: 'button', onclick: idle }, 'Cancel'));
    }
    idle();
    return h('tr', { 'data-username': name },
      h('td', { class: 'mono' }, name, self ? [' ', badge('you', 'info')] : null),
      h('td', null, roleSelect),
      h('td', null, a.disabled ? badge('disabled', 'bad') : badge('enabled', 'ok')),
      h('td', null, a.must_change_pw ? 'yes' : 'no'),
      h('td', null, timeCell(a.created_at)),
      h('td', null, timeCell(a.updated_at)),
      h('td', null, actions));
  }

  // The new account starts as a viewer with a password the user must
  // replace: the least the admin can hand out by mistake.
  const user = h('input', {
    type: 'text', autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none',
    'aria-label': 'username', placeholder: 'username', required: true, maxlength: 64,
  });
  const pw = secretInput('initial password', 'new-password');
  pw.placeholder = 'initial password';
  const role = h('select', { 'aria-label': 'role' }, ROLES.map((r) => h('option', { value: r }, r)));
  const must = h('input', { type: 'checkbox', checked: true, 'aria-label': 'must change password' });
  const createForm = h('form', {
    class: 'filters', id: 'new-account',
    onsubmit: async (e) => {
      e.preventDefault();
      const name = user.value.trim();
      const made = await change({
        path: '/api/accounts', method: 'POST', done: `${name} is created.`,
        body: { username: name, password: pw.value, role: role.value, must_change_pw: must.checked },
      }).catch((err) => fail(err, signal));
      if (made) {
        user.value = '';
        pw.value = '';
      }
    },
  }, user, pw, role, h('label', { class: 'check' }, must, ' must change the password at the first sign-in'),
  h('button', { type: 'submit' }, 'Create'));

  await load();
  if (signal.aborted) return;
  app.replaceChildren(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, 'Accounts'), count),
      status,
      h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'accounts' },
        h('thead', null, h('tr', null, ['username', 'role', 'state', 'must change password', 'created', 'updated', '']
          .map((c) => h('th', null, c)))),
        tbody))),
    h('section', { class: 'card', 'data-role': 'admin' }, h('h3', null, 'new account'), createForm));
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
  [/^\/jobs$/, jobs, 'jobs'],
  [/^\/jobs\/([^/]+)$/, jobDetail, 'jobs'],
  [/^\/schedules$/, schedules, 'schedules'],
  [/^\/schedules\/([^/]+)$/, scheduleDetail, 'schedules'],
  [/^\/audit$/, audit, 'audit'],
  [/^\/accounts$/, accounts, 'accounts'],
];

let current = null;

// fail shows an error of the current view: the sign-in form for a 401
// (saying why when a stored token was refused), nothing for a view that was
// left, an error box otherwise.
function fail(err, signal) {
  if (signal.aborted || err.name === 'AbortError') return;
  if (err instanceof AuthError) {
    forget();
    loginForm(getToken() ? err.message : '');
  } else app.replaceChildren(h('section', { class: 'card' }, errorBox(err)));
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
  // Who is asking comes first: the sign-in form, or the new password owed,
  // replaces any view.
  session(ctl.signal)
    .then(() => {
      if (ctl.signal.aborted) return undefined;
      if (me.must_change_pw) return changePasswordForm();
      return view({ params, query: new URLSearchParams(location.search), signal: ctl.signal });
    })
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
