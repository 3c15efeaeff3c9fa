// kanade dashboard: vanilla JavaScript modules, no framework, no build step.
//
// The one rule: text that comes from the server (hostnames, job output, audit
// payloads, error details) reaches the page through textContent only, never
// as HTML. Agents in the field write that text.

import { t, lang, setLang, tzMode, setTz, zoneName, fmtNum } from './i18n.js';

const TOKEN_KEY = 'kanade.token';
// REFRESH_MS is how often the page on screen is read again. A test may
// shorten it (kanade.refresh_ms in localStorage) so it need not wait 10 s.
const REFRESH_MS = (() => {
  try {
    const v = Number(localStorage.getItem('kanade.refresh_ms'));
    return v >= 100 ? v : 10_000;
  } catch {
    return 10_000;
  }
})();
const PAGE = 50;
// MAX_LIMIT is the API's largest page: a list reloaded in place, or
// restored after Back, asks for at most this many rows at once.
const MAX_LIMIT = 500;

const app = document.getElementById('app');
const liveEl = document.getElementById('live');

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
//
// A read of the view being drawn goes out at once, beside that view's GET
// /api/auth/me, but answers only once me is known (ready): whatever a view
// draws after a read is drawn for a known role, so it never offers, not even
// for a frame, a control the role cannot use, and nothing is drawn over the
// sign-in or new-password form. It saves a round trip per page load.
async function api(path, opts = {}) {
  const res = call(path, opts);
  if (!opts.signal || gate?.signal !== opts.signal) return res;
  res.catch(() => {}); // me's refusal is the one that is reported
  await ready(opts.signal);
  return res;
}

// gate is the GET /api/auth/me that render started beside its view, with
// that view's signal; ready waits for it. A view that decides what to draw
// before its first read (the editor) waits for it first.
let gate = null;
async function ready(signal) {
  if (gate?.signal === signal) await gate.me;
  signal?.throwIfAborted();
}

async function call(path, { signal, allow = [], method = 'GET', body } = {}) {
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
    lost();
    throw new APIError(0, t('cannot reach the server: ') + err.message);
  }
  if (res.status === 401) throw new AuthError(await problemText(res));
  // A gateway or server failure means what is on screen may be old; any
  // other answer means the server is there.
  if (res.status >= 502 && res.status <= 504 && !allow.includes(res.status)) lost();
  else reached();
  if (!res.ok && !allow.includes(res.status)) throw new APIError(res.status, await problemText(res));
  if (res.status === 204) return { status: 204, body: null };
  try {
    return { status: res.status, body: await res.json(), headers: res.headers };
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

// fmtTime shows an instant in the zone of the header's switch (the
// browser's, or UTC); the tables that show times name that zone in their
// heading (zoned). Japanese writes dates with slashes.
function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const u = tzMode === 'utc';
  const [y, mo, da, hh, mi, ss] = u
    ? [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
    : [d.getFullYear(), d.getMonth(), d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
  const sep = lang === 'ja' ? '/' : '-';
  return `${y}${sep}${pad(mo + 1)}${sep}${pad(da)} ${pad(hh)}:${pad(mi)}:${pad(ss)}`;
}

// clock is HH:MM:SS of now (or of d) in the chosen zone.
function clock(d = new Date()) {
  return fmtTime(d.toISOString()).slice(11);
}

// zoned is a column heading that names the zone its times are in.
const zoned = (label) => `${t(label)} (${zoneName()})`;

function fmtAgo(iso) {
  const ts = new Date(iso).getTime();
  if (!iso || Number.isNaN(ts)) return '–';
  const s = Math.round((Date.now() - ts) / 1000);
  if (s < 0) return t('in the future');
  if (s < 60) return t('{n} s ago', { n: s });
  if (s < 3600) return t('{n} min ago', { n: Math.floor(s / 60) });
  if (s < 86400) return t('{n} h ago', { n: Math.floor(s / 3600) });
  return t('{n} d ago', { n: Math.floor(s / 86400) });
}

function fmtMs(ms) {
  if (ms == null || ms === '') return '–';
  const n = Number(ms);
  if (!Number.isFinite(n)) return String(ms);
  if (n < 1000) return t('{n} ms', { n });
  if (n < 60_000) return t('{n} s', { n: (n / 1000).toFixed(n < 10_000 ? 2 : 1) });
  const s = Math.round(n / 1000);
  const m = Math.floor(s / 60);
  if (m < 60) return t('{m} min {s} s', { m, s: s % 60 });
  return t('{h} h {m} min', { h: Math.floor(m / 60), m: m % 60 });
}

const timeCell = (iso) => h('time', { datetime: iso || null, title: iso || null }, fmtTime(iso));
const agoCell = (iso) => h('time', { datetime: iso || null, title: fmtTime(iso), 'data-ago': '' }, fmtAgo(iso));
const badge = (text, kind) => h('span', { class: 'badge ' + kind }, text);
const link = (href, text) => h('a', { href }, text);
const seg = (s) => encodeURIComponent(s);

function runStatus(r) {
  if (r.skipped) return badge(t('skipped'), 'muted');
  if (r.reaped) return badge(t('reaped'), 'bad');
  if (r.exit_code == null) return badge(t('running'), 'info');
  return r.exit_code === 0 ? badge(t('success'), 'ok') : badge(t('exit {code}', { code: r.exit_code }), 'bad');
}

// ---------------------------------------------------------------- live state
//
// #live says whether what is on screen is current: "live · updated
// HH:MM:SS" after an answer, "stale since HH:MM:SS" from the first failed
// read until the server answers again. A failed refresh never replaces the
// page: the last good data stays, marked stale. Only this small region is
// aria-live, so a screen reader hears the change of state, not the page.

let staleSince = null;
let lastGood = null;

function showLive() {
  if (staleSince) {
    liveEl.className = 'badge warn';
    liveEl.dataset.state = 'stale';
    liveEl.textContent = t('stale since {time}', { time: clock(staleSince) });
  } else if (lastGood) {
    liveEl.className = 'badge ok';
    liveEl.dataset.state = 'live';
    liveEl.textContent = t('live · updated {time}', { time: clock(lastGood) });
  } else {
    liveEl.className = '';
    delete liveEl.dataset.state;
    liveEl.textContent = '';
  }
}

function lost() {
  if (!staleSince) staleSince = new Date();
  showLive();
}

function reached() {
  staleSince = null;
  showLive();
}

// markRefreshed records that the view on screen was just read in full.
function markRefreshed() {
  if (staleSince) return;
  lastGood = new Date();
  showLive();
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

// session makes sure me is known before a view draws (see api). Without a
// token the server answers 401 (unless authentication is off), which
// reaches fail() as an AuthError and shows the sign-in form.
async function session(signal) {
  if (me) return;
  const { body } = await call('/api/auth/me', { signal });
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
  type: 'password', autocomplete, spellcheck: 'false', 'aria-label': t(label), required: true,
});
const field = (label, input) => h('label', { class: 'field' }, h('span', null, t(label)), input);

// refusedNote says why a stored token no longer works; nothing on a first
// visit, when there was no token to refuse.
const refusedNote = (reason) => (reason
  ? h('p', { class: 'muted' }, t('The server refused the stored token ({reason}).', { reason })) : null);

// loginForm asks for a username and password (POST /api/auth/login) and
// keeps the JWT it answers where the static token goes. Refusals show the
// problem's detail: "invalid credentials" for any failed check, the wait
// after too many failures (429).
function loginForm(reason) {
  const user = h('input', {
    type: 'text', autocomplete: 'username', spellcheck: 'false', autocapitalize: 'none',
    'aria-label': t('username'), required: true,
  });
  const pw = secretInput('password', 'current-password');
  const slot = h('div', { class: 'slot' });
  const submit = h('button', { type: 'submit' }, t('Sign in'));
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
  h('h2', null, t('Sign in')),
  refusedNote(reason),
  slot,
  field('Username', user),
  field('Password', pw),
  h('div', { class: 'actions' }, submit,
    h('button', { type: 'button', class: 'link', id: 'use-token', onclick: () => tokenForm(reason) },
      t('Use an access token instead'))));
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
  h('h2', null, t('Access token')),
  refusedNote(reason),
  h('p', { class: 'muted' }, t('Paste the token printed by the server at start-up (the text after #token= in the dashboard address).')),
  h('div', { class: 'row' }, input, h('button', { type: 'submit' }, t('Use token'))),
  h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'link', id: 'use-login', onclick: () => loginForm(reason) },
      t('Sign in with a username instead'))));
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
  const submit = h('button', { type: 'submit' }, t('Change password'));
  const form = h('form', {
    class: 'card auth', id: 'change-password',
    onsubmit: async (e) => {
      e.preventDefault();
      slot.replaceChildren();
      if (next.value !== again.value) {
        slot.replaceChildren(errorBox(new Error(t('the new passwords differ'))));
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
  h('h2', null, t('Choose a new password')),
  h('p', { class: 'muted' }, t('Your password was set by someone else. Choose your own (at least 8 characters) to go on.')),
  slot,
  field('Current password', old),
  field('New password', next),
  field('New password again', again),
  h('div', { class: 'actions' }, submit));
  app.replaceChildren(form);
  old.focus();
}

// ---------------------------------------------------------------- views
//
// A view renders once, then is read again every REFRESH_MS while it is on
// screen (see startRefresh). A refresh replaces nothing that has not
// changed (show and patch compare the markup first), so a selection, the
// focus and a screen reader's place survive it, and a refresh that fails
// keeps what is shown.

// patch puts nodes into el, keeping every node that renders as before:
// only what changed is replaced (a figure, a row), so a selection, the
// focus and a screen reader's place elsewhere survive a refresh.
function patch(el, ...nodes) {
  const next = document.createElement(el.tagName);
  next.append(...nodes.flat().filter((n) => n != null && n !== false));
  sizeBars(next);
  if (next.innerHTML === el.innerHTML) return false;
  morphChildren(el, next);
  return true;
}

const shallow = (n) => (n.nodeType === 1 ? n.cloneNode(false).outerHTML : n.nodeName + n.nodeValue);

// morphChildren makes old's children render as next's, reusing old nodes
// whose tag and attributes match, child by child.
function morphChildren(old, next) {
  const a = [...old.childNodes];
  const b = [...next.childNodes];
  if (a.length !== b.length) {
    old.replaceChildren(...b);
    return;
  }
  a.forEach((o, i) => {
    const n = b[i];
    if (o.nodeType === 1 && n.nodeType === 1 && shallow(o) === shallow(n)) {
      if (o.innerHTML !== n.innerHTML) morphChildren(o, n);
    } else if (o.nodeType === 3 && n.nodeType === 3) {
      if (o.nodeValue !== n.nodeValue) o.nodeValue = n.nodeValue;
    } else o.replaceWith(n);
  });
}

// show is patch of the whole page. A refresh that was already reading when
// the operator opened a form or a confirmation lands on a busy page: it is
// dropped (the next tick reads again), or it would wipe what was opened.
const show = (...nodes) => (refreshing && busy() ? false : patch(app, ...nodes));

// can says whether the caller's role reaches need: controls it cannot use
// are not built at all (app.css hides data-role ones as a second line).
const RANK = { viewer: 1, operator: 2, admin: 3 };
const can = (need) => (RANK[me?.role] || 0) >= RANK[need];

// settled rethrows a refused session, and on a refresh any failure, so
// that the page keeps its last good data instead of an error box.
function settled(results, refresh) {
  rethrowAuth(results);
  if (refresh) for (const r of results) if (r.status === 'rejected') throw r.reason;
}

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

// stat is one figure of a tile; with href it links to the list it counts.
function stat(label, value, kind, href) {
  const inner = [h('span', { class: 'num' }, value == null ? '–' : (typeof value === 'number' ? fmtNum(value) : value)),
    h('span', { class: 'label' }, t(label))];
  return href
    ? h('a', { class: 'stat' + (kind ? ' ' + kind : ''), href, 'data-stat': label }, inner)
    : h('div', { class: 'stat' + (kind ? ' ' + kind : ''), 'data-stat': label }, inner);
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
  return [
    h('div', { class: 'card-head' },
      h('h2', null, t('Fleet')),
      h('span', { id: 'fleet-status', class: 'badge big ' + kind, 'data-status': status }, t(status)),
      res.status !== 200 ? h('span', { class: 'muted' }, `HTTP ${res.status}`) : null,
      h('span', { class: 'muted right' }, t('observed'), ' ', timeCell(b.observed_at))),
    h('div', { class: 'stats' },
      h('div', { class: 'group', id: 'fleet-agents' },
        h('h3', null, t('Agents')),
        stat('known', a.known, '', '/agents'), stat('active', a.active, 'ok', '/agents?status=online'),
        stat('stale', a.stale, a.stale > 0 ? 'warn' : '', '/agents?status=offline')),
      h('div', { class: 'group', id: 'fleet-results' },
        h('h3', null, t('Results, last {n} h', { n: rr.window_hours ?? 24 })),
        stat('total', rr.total, '', '/results'), stat('failed', rr.failed, rr.failed > 0 ? 'bad' : '', '/results?status=failure')),
      h('div', { class: 'group', id: 'fleet-jetstream' },
        h('h3', null, t('JetStream')),
        stat('healthy', js.total != null ? `${js.healthy ?? 0}/${js.total}` : '–', js.all_ok ? 'ok' : 'bad', '#attention'))),
    missing.length ? h('div', { class: 'problems' },
      h('strong', null, t('Missing JetStream resources: ')),
      h('ul', { class: 'inline' }, missing.map((m) => h('li', null, h('code', null, m))))) : null,
    problems.length ? h('div', { class: 'problems' },
      h('strong', null, t('Failing: ')),
      h('ul', null, problems.map((p) => h('li', null, p)))) : null,
  ];
}

function durationsBody(rows) {
  return Array.isArray(rows) && rows.length
    ? h('div', { class: 'scroll' }, h('table', { id: 'durations' },
      h('thead', null, h('tr', null, ['job', 'runs', 'min', 'p50', 'p95', 'p99', 'max', 'mean']
        .map((c, i) => h('th', { class: i ? 'num' : null, scope: 'col' }, t(c))))),
      h('tbody', null, rows.map((r) => h('tr', null,
        h('td', null, h('a', { href: '/results?job_id=' + seg(r.job_id) }, r.job_id)),
        h('td', { class: 'num' }, fmtNum(r.count)),
        h('td', { class: 'num' }, fmtMs(r.min_ms)),
        h('td', { class: 'num' }, fmtMs(r.p50_ms)),
        h('td', { class: 'num' }, fmtMs(r.p95_ms)),
        h('td', { class: 'num' }, fmtMs(r.p99_ms)),
        h('td', { class: 'num' }, r.max_result_id
          ? link('/results/' + seg(r.max_result_id), fmtMs(r.max_ms)) : fmtMs(r.max_ms)),
        h('td', { class: 'num' }, fmtMs(r.mean_ms)))))))
    : h('p', { class: 'muted' }, t('No finished runs in the last 24 hours.'));
}

// failureGroups groups failed runs by job and exit code: how many runs,
// on how many PCs, the latest of them. Largest group first.
function failureGroups(runs) {
  const groups = new Map();
  for (const r of runs) {
    if (r.skipped) continue;
    const code = r.reaped ? 'reaped' : String(r.exit_code);
    const key = r.job_id + '\u0000' + code;
    let g = groups.get(key);
    if (!g) groups.set(key, g = { job: r.job_id, code, runs: 0, pcs: new Set(), latest: r });
    g.runs++;
    g.pcs.add(r.pc_id);
  }
  return [...groups.values()].sort((a, b) => b.pcs.size - a.pcs.size || b.runs - a.runs);
}

// attentionItems lists what an operator should look at first: failing
// jobs, PCs failing again and again, stale PCs, missing JetStream parts.
function attentionItems(fleet, failures) {
  const items = [];
  const b = fleet?.body || {};
  const missing = b.jetstream?.missing || [];
  if (missing.length) items.push(h('li', { class: 'bad' }, link('#fleet', t('{n} JetStream resources are missing', { n: missing.length }))));
  if (b.agents?.stale > 0) {
    items.push(h('li', { class: 'warn' }, link('/agents?status=offline', t('{n} PCs have not sent a heartbeat recently', { n: fmtNum(b.agents.stale) }))));
  }
  if (failures) {
    for (const g of failureGroups(failures).slice(0, 5)) {
      items.push(h('li', { class: 'bad' }, link(`/results?status=failure&job_id=${seg(g.job)}`,
        t('{job}: exit {code} on {n} PCs', { job: g.job, code: g.code, n: g.pcs.size }))));
    }
    const perPC = new Map();
    for (const r of failures) if (!r.skipped) perPC.set(r.pc_id, (perPC.get(r.pc_id) || 0) + 1);
    [...perPC].filter(([, n]) => n >= 2).sort((x, y) => y[1] - x[1]).slice(0, 5).forEach(([pc, n]) => {
      items.push(h('li', { class: 'bad' }, link('/agents/' + seg(pc), t('{pc} failed {n} times', { pc, n }))));
    });
  }
  return items;
}

// parseDur reads a duration such as "10m", "1h30m" or "1d" in ms; NaN when
// it is not one.
function parseDur(s) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
  const unit = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5 };
  let total = 0;
  let seen = '';
  for (const m of String(s).matchAll(re)) {
    total += Number(m[1]) * unit[m[2]];
    seen += m[0];
  }
  return seen && seen === String(s).trim() ? total : NaN;
}

// scheduleRows is one row per schedule that validates, with its status
// (last run, outcome) and its next run: a calendar schedule's next instant
// from /upcoming, an interval schedule's from its last run plus its
// interval, or null ("due") when it has not run yet.
// The overview and the schedules page need each schedule's last run, one
// GET /api/schedules/{id}/status apiece (there is no batch route). Bounded
// twice: at most STATUS_POOL requests in flight (a browser has six
// connections per host, and the page's other reads must not queue behind
// a hundred), and a status read less than STATUS_TTL_MS ago is reused, so
// a refresh every 10 s costs a few requests, not one per schedule.
const STATUS_POOL = 4;
const STATUS_TTL_MS = 60_000;
const statusCache = new Map(); // schedule id -> {at, res}

async function scheduleStatus(id, signal) {
  const hit = statusCache.get(id);
  if (hit && performance.now() - hit.at < STATUS_TTL_MS) return hit.res;
  const res = await api(`/api/schedules/${seg(id)}/status`, { signal });
  statusCache.set(id, { at: performance.now(), res });
  return res;
}

// pooled is Promise.allSettled of fn over items with at most n running.
async function pooled(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = { status: 'fulfilled', value: await fn(items[i]) };
      } catch (reason) {
        out[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

async function scheduleRows(signal, list, upcoming) {
  const first = new Map();
  for (const f of itemsOf(upcoming)) if (!first.has(f.schedule_id)) first.set(f.schedule_id, f.at);
  const valid = itemsOf(list).filter((x) => !x.error).slice(0, 100);
  const statuses = await pooled(valid, STATUS_POOL, (x) => scheduleStatus(x.key, signal));
  rethrowAuth(statuses);
  return valid.map((x, i) => {
    const s = entryValue(x);
    const st = statuses[i].status === 'fulfilled' ? statuses[i].value.body || {} : null;
    const enabled = scheduleEnabled(s);
    let at = enabled ? (first.get(x.key) || st?.next_run || null) : null;
    const cad = s.when?.per_target ?? s.when?.per_pc;
    if (enabled && !at && isObj(cad)) {
      const every = parseDur(cad.every);
      const last = st?.last_run?.started_at;
      at = last && Number.isFinite(every) ? new Date(new Date(last).getTime() + every).toISOString() : null;
    }
    return { id: x.key, job: s.job_id, at, enabled, runsOn: s.runs_on || 'backend', status: st, value: s, item: x };
  });
}

// nextRuns is what fires next across every kind of schedule, soonest
// first, one row per schedule ("due" ones first).
function nextRuns(rows) {
  return rows.filter((r) => r.enabled && (r.at || (r.runsOn === 'backend' && !isObj(r.value.when?.calendar))))
    .sort((a, b) => (a.at ? new Date(a.at).getTime() : 0) - (b.at ? new Date(b.at).getTime() : 0));
}

function nextUpTable(id, rows) {
  return h('div', { class: 'scroll' }, h('table', { class: 'list', id },
    h('thead', null, h('tr', null, ['at', 'in', 'Schedule', 'job'].map((c, i) => h('th', { scope: 'col' }, i === 0 ? zoned(c) : t(c))))),
    h('tbody', null, rows.map((r) => h('tr', null,
      h('td', null, r.at ? timeCell(r.at) : t('due')),
      h('td', { class: 'muted' }, r.at ? untilCell(r.at) : '–'),
      h('td', { class: 'mono' }, link('/schedules/' + seg(r.id), r.id)),
      h('td', null, r.job != null ? link('/jobs/' + seg(String(r.job)), String(r.job)) : '–'))))));
}

// progress is a bar of an execution's answers against its target: ok,
// failed and skipped (the API's three counters: "failed" never includes a
// skip, as on every other page), each its own colour, never past 100 %.
function progress(x) {
  const target = Math.max(Number(x.target_count) || 0, 1);
  const ok = Number(x.success_count) || 0;
  const failed = Number(x.failure_count) || 0;
  const sk = Number(x.skipped_count) || 0;
  const done = ok + failed + sk;
  const scale = Math.max(target, done);
  const pct = (n) => `${(100 * n / scale).toFixed(1)}%`;
  const label = progressText(x);
  return h('div', { class: 'progress', role: 'img', 'aria-label': label, title: label },
    h('span', { class: 'p-ok', style: null, 'data-w': pct(ok) }),
    h('span', { class: 'p-bad', 'data-w': pct(failed) }),
    h('span', { class: 'p-skip', 'data-w': pct(sk) }));
}

// The bars' widths: CSP forbids style attributes from markup (style-src
// 'self'), so they are set through CSSOM after the bars are placed.
// progressText says the same as the bar, in words. Skipped answers of PCs
// outside the target (offline when it was resolved) can make the answers
// exceed it; the count of answers shown never does.
function progressText(x) {
  const ok = Number(x.success_count) || 0;
  const failed = Number(x.failure_count) || 0;
  const sk = Number(x.skipped_count) || 0;
  return t('{done} of {n} PCs answered: {ok} succeeded, {failed} failed, {skipped} skipped', {
    done: fmtNum(Math.min(ok + failed + sk, x.target_count ?? Infinity)), n: fmtNum(x.target_count ?? '?'),
    ok: fmtNum(ok), failed: fmtNum(failed), skipped: fmtNum(sk),
  });
}

function sizeBars(root = app) {
  for (const el of root.querySelectorAll('[data-w]')) el.style.width = el.dataset.w;
}

function execTable(id, list) {
  return h('div', { class: 'scroll' }, h('table', { class: 'list', id },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('job')), h('th', { scope: 'col' }, zoned('at')),
      h('th', { scope: 'col', class: 'wide' }, t('progress')), h('th', { scope: 'col' }, t('status')))),
    h('tbody', null, list.map((x) => rowLink(h('tr', null,
      h('td', null, link('/executions/' + seg(x.exec_id), x.job_id ?? x.exec_id)),
      h('td', null, timeCell(x.initiated_at)),
      h('td', { class: 'wide' }, progress(x)),
      h('td', null, x.status)), '/executions/' + seg(x.exec_id))))));
}

function versionBars(list) {
  const rows = Array.isArray(list) ? list : [];
  if (!rows.length) return h('p', { class: 'muted' }, t('No agents have reported a version.'));
  const max = Math.max(...rows.map((r) => r.total || 0), 1);
  return h('table', { class: 'bars', id: 'versions' }, h('tbody', null, rows.map((r) => h('tr', null,
    h('th', { scope: 'row', class: 'mono' }, r.version || '–'),
    h('td', { class: 'wide' }, h('div', { class: 'bar' }, h('span', { 'data-w': `${(100 * (r.total || 0) / max).toFixed(1)}%` }))),
    h('td', { class: 'num' }, `${fmtNum(r.active)}/${fmtNum(r.total)}`)))));
}

function freshInstall() {
  return h('section', { class: 'card', id: 'fresh' },
    h('h2', null, t('No agents yet')),
    h('p', null, t('Point an agent at this backend: set its NATS URL to this server\'s NATS address (nats://{host}:4222 unless -nats-listen says otherwise) and its token to the NATS token the server was started with (-nats-token / KANADE_NATS_TOKEN).', { host: location.hostname })),
    h('p', null, t('To try the dashboard with a simulated fleet, start the server with -demo 300.')));
}

async function overview({ signal, refresh }) {
  const card = (id, title) => h('section', { class: 'card', id }, title ? h('h2', null, t(title)) : null, h('div', { class: 'body' }, t('Loading…')));
  if (!refresh || !app.querySelector('#fleet')) {
    app.replaceChildren(h('div', { class: 'overview' },
      h('div', { id: 'fresh-slot' }),
      h('section', { class: 'card fleet', id: 'fleet' }, h('p', { class: 'muted' }, t('Loading…'))),
      card('attention', 'Needs attention'),
      h('div', { class: 'two' }, card('next-up', 'Next up'), card('recent', 'Recent executions')),
      h('div', { class: 'two' }, card('versions-card', 'Agent versions'), card('durations-card', 'Run durations, last 24 h'))));
  }
  // Every read starts at once and each card is drawn as soon as what it
  // shows has arrived, so one slow read holds back only its own card. An
  // auth refusal draws nothing: settled (below) takes the page to the login.
  const settle = (p) => p.then((value) => ({ status: 'fulfilled', value }), (reason) => ({ status: 'rejected', reason }));
  const [fleetP, dursP, failsP, execsP, versP, schedsP, upP] = [
    api('/api/health/fleet', { signal, allow: [503] }),
    api('/api/health/scan_durations', { signal }),
    api('/api/results?status=failure&limit=200', { signal }),
    api('/api/executions?limit=5', { signal }),
    api('/api/agents/versions', { signal }),
    api('/api/schedules', { signal }),
    api('/api/schedules/upcoming?limit=100', { signal }),
  ].map(settle);
  // A refresh that failed keeps the card's last good content (the status
  // region says since when it is stale).
  const live = (rs) => !signal.aborted && !rs.some((r) => r.status === 'rejected' && (refresh || r.reason instanceof AuthError));
  const body = (id) => app.querySelector(`#${id} > .body`);
  const put = (el, ...nodes) => {
    if (!el) return;
    patch(el, ...nodes);
    sizeBars(el);
  };
  const part = (r, fn) => (r.status === 'fulfilled' ? fn(r.value) : errorBox(r.reason));
  const draw = (ps, fn) => Promise.all(ps).then((rs) => (live(rs) ? fn(...rs) : undefined));
  const cards = [
    draw([fleetP], (fleet) => {
      if (fleet.status === 'fulfilled') put(app.querySelector('#fleet'), fleetCard(fleet.value));
      else put(app.querySelector('#fleet'), h('h2', null, t('Fleet')), errorBox(fleet.reason));
      const known = fleet.status === 'fulfilled' ? fleet.value.body?.agents?.known : undefined;
      put(app.querySelector('#fresh-slot'), known === 0 ? freshInstall() : null);
    }),
    draw([fleetP, failsP], (fleet, fails) => {
      const items = attentionItems(fleet.status === 'fulfilled' ? fleet.value : null,
        fails.status === 'fulfilled' ? itemsOf(fails.value.body) : null);
      put(body('attention'), items.length ? h('ul', { class: 'attention' }, items) : h('p', { class: 'muted ok-note' }, t('Nothing needs attention.')),
        fails.status === 'rejected' ? errorBox(fails.reason) : null);
    }),
    draw([execsP], (execs) => put(body('recent'), part(execs, (v) => (itemsOf(v.body).length ? execTable('recent-execs', itemsOf(v.body)) : h('p', { class: 'muted' }, t('No executions yet.')))))),
    draw([versP], (vers) => put(body('versions-card'), part(vers, (v) => versionBars(v.body)))),
    draw([dursP], (durs) => put(body('durations-card'), part(durs, (v) => durationsBody(v.body)))),
    draw([schedsP, upP], async (scheds, up) => {
      if (scheds.status === 'fulfilled') {
        const rows = nextRuns(await scheduleRows(signal, scheds.value.body, up.status === 'fulfilled' ? up.value.body : null));
        if (signal.aborted) return;
        put(body('next-up'), rows.length ? nextUpTable('next-up-table', rows.slice(0, 8)) : h('p', { class: 'muted' }, t('No schedule fires soon.')));
      } else if (!refresh) put(body('next-up'), errorBox(scheds.reason));
    }),
  ];
  settled(await Promise.all([fleetP, dursP, failsP, execsP, versP]), refresh);
  await Promise.all(cards);
  if (signal.aborted) return;
  markRefreshed();
}

// listView renders a keyset-paginated {items, next_cursor} endpoint as a
// table with filters kept in the address (so a reload keeps them) and a
// "More" button that follows next_cursor. How many rows were shown is kept
// in the history entry, so Back to the list loads as many again and
// returns to where the page was scrolled. A refresh reads the rows shown
// again in one request and replaces the table only when they changed.
// toLocalInput is an RFC 3339 instant as a datetime-local value, in the
// zone the page shows (UTC or local); fromLocalInput is the reverse, ''
// for an empty or partial input.
function toLocalInput(iso) {
  const d = iso ? new Date(iso) : null;
  if (!d || isNaN(d)) return '';
  const utc = tzMode === 'utc';
  const two = (n) => String(n).padStart(2, '0');
  const f = (n, u) => two(utc ? u : n);
  return `${utc ? d.getUTCFullYear() : d.getFullYear()}-${f(d.getMonth() + 1, d.getUTCMonth() + 1)}-${f(d.getDate(), d.getUTCDate())}` +
    `T${f(d.getHours(), d.getUTCHours())}:${f(d.getMinutes(), d.getUTCMinutes())}:${f(d.getSeconds(), d.getUTCSeconds())}`;
}
function fromLocalInput(v) {
  if (!v) return '';
  const d = new Date(tzMode === 'utc' ? v + 'Z' : v);
  return isNaN(d) ? '' : d.toISOString();
}

// With counted, a first page (and every reload of what is shown) asks for
// the number of matching rows too (?total=true, in X-Total-Count).
function listView({ title, endpoint, columns, filters = [], rowHref, empty, id, extra, itemsKey = 'items', counted = false }) {
  return async ({ query, signal }) => {
    const inputs = {};
    const errorSlot = h('div');
    const tbody = h('tbody');
    const count = h('span', { class: 'muted', id: 'list-count' });
    const more = h('button', { type: 'button', class: 'more', hidden: true }, t('More'));
    const extraSlot = h('div');
    let cursor = null;
    let shown = 0;
    let total = null; // the API's count of matching rows, when it gives one
    let exact = true;
    let seq = 0;
    let lastKey = '';
    // userLoads counts the reads the operator asked for (More, a filter)
    // still in flight: a refresh neither starts during one nor, started
    // before it, lands after it (seq), so it cannot undo a More.
    let userLoads = 0;

    const params = () => {
      const p = new URLSearchParams();
      for (const [name, el] of Object.entries(inputs)) if (el.value.trim()) p.set(name, el.value.trim());
      return p;
    };

    const remember = () => history.replaceState({ ...(history.state || {}), shown }, '');

    const setCount = () => {
      count.textContent = !shown ? t(empty || 'Nothing here yet.')
        : total != null ? t('{n} of {total}', { n: fmtNum(shown), total: fmtNum(total) + (exact ? '' : '+') })
          : t(cursor ? '{n} shown, more available' : '{n} shown', { n: fmtNum(shown) });
    };

    // load reads a page: the next one (more), or the first `want` rows
    // afresh (reset), replacing the table only when they differ.
    const load = async ({ reset, want = PAGE, quiet = false }) => {
      const mine = ++seq;
      if (!quiet) userLoads++;
      const p = params();
      p.set('limit', Math.min(Math.max(want, 1), MAX_LIMIT));
      if (!reset && cursor) p.set('cursor', cursor);
      if (reset && counted) p.set('total', 'true');
      if (!quiet) more.disabled = true;
      try {
        const { body, headers } = await api(`${endpoint}?${p}`, { signal });
        if (mine !== seq || signal.aborted) return;
        errorSlot.replaceChildren();
        const items = Array.isArray(body[itemsKey]) ? body[itemsKey] : [];
        if (reset) {
          const key = JSON.stringify(items);
          if (key !== lastKey) tbody.replaceChildren(...items.map(row));
          else tickTimes(tbody);
          lastKey = key;
          shown = items.length;
        } else {
          tbody.append(...items.map(row));
          shown += items.length;
          lastKey = '';
        }
        sizeBars(tbody);
        cursor = body.next_cursor || null;
        if (reset) {
          const n = headers?.get('X-Total-Count');
          total = n != null && n !== '' && Number.isFinite(Number(n)) ? Number(n) : (typeof body.total === 'number' ? body.total : null);
          exact = body.total_exact !== false;
        }
        more.hidden = !cursor;
        setCount();
        remember();
        markRefreshed();
      } catch (err) {
        if (mine !== seq) return;
        if (quiet || err instanceof AuthError || err.name === 'AbortError') throw err;
        errorSlot.replaceChildren(errorBox(err));
      } finally {
        if (!quiet) {
          userLoads--;
          more.disabled = false;
        }
      }
    };

    const row = (item) => {
      const href = rowHref && rowHref(item);
      const tr = h('tr', null,
        columns.map((c, i) => {
          const v = c.cell ? c.cell(item) : item[c.key];
          const content = i === 0 && href ? link(href, v ?? '–') : (v ?? '–');
          return h('td', { class: c.class || null }, content);
        }));
      return href ? rowLink(tr, href) : tr;
    };

    // Filters update the address with replaceState (no history entry per
    // keystroke) and reload the first page.
    let debounce;
    const changed = () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        const p = params().toString();
        history.replaceState({}, '', location.pathname + (p ? '?' + p : ''));
        lastKey = '';
        load({ reset: true }).catch((err) => fail(err, signal));
        if (extra) extra(extraSlot, params(), signal, false).catch((err) => fail(err, signal));
      }, 250);
    };
    const filterEls = filters.map((f) => {
      let el;
      if (f.options) {
        el = h('select', { name: f.name, 'aria-label': t(f.label) },
          f.options.map(([v, label]) => h('option', { value: v }, t(label))));
        el.addEventListener('change', changed);
      } else if (f.time) {
        // The address and the API carry RFC 3339; the input shows the
        // instant in the zone the page shows times in.
        const input = h('input', { type: 'datetime-local', name: f.name, 'aria-label': t(f.label), title: t(f.label), step: 1 });
        input.addEventListener('change', changed);
        input.value = toLocalInput(query.get(f.name));
        inputs[f.name] = { get value() { return fromLocalInput(input.value); } };
        return h('label', { class: 'time-filter' }, h('span', null, t(f.label)), input);
      } else {
        el = h('input', { type: 'search', name: f.name, placeholder: t(f.label), 'aria-label': t(f.label), spellcheck: 'false' });
        el.addEventListener('input', changed);
      }
      el.value = query.get(f.name) || '';
      inputs[f.name] = el;
      if (f.ifSet && !el.value) el.hidden = true;
      return el;
    });
    more.addEventListener('click', () => load({ reset: false }).catch((err) => fail(err, signal)));
    // A column with a sort key sorts the list on the server (?sort=&order=,
    // kept in the address like the filters); clicking it again reverses.
    const sortable = columns.some((c) => c.sort);
    if (sortable) {
      inputs.sort = { value: query.get('sort') || '' };
      inputs.order = { value: query.get('order') || '' };
    }
    const head = (c) => {
      if (!c.sort) return h('th', { class: c.class || null, scope: 'col' }, c.zoned ? zoned(c.label) : t(c.label));
      const on = inputs.sort.value === c.sort;
      const desc = inputs.order.value === 'desc';
      const th = h('th', { class: c.class || null, scope: 'col', 'aria-sort': on ? (desc ? 'descending' : 'ascending') : 'none' },
        h('button', {
          type: 'button', class: 'link sort', 'data-sort': c.sort,
          onclick: () => {
            inputs.order.value = on && !desc ? 'desc' : 'asc';
            inputs.sort.value = c.sort;
            thead.replaceChildren(h('tr', null, columns.map(head)));
            changed();
          },
        }, t(c.label), on ? (desc ? ' ▼' : ' ▲') : ''));
      return th;
    };
    const thead = h('thead', null, h('tr', null, columns.map(head)));

    app.replaceChildren(extraSlot, h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, t(title)), count),
      filterEls.length ? h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() }, filterEls) : null,
      errorSlot,
      h('div', { class: 'scroll' },
        h('table', { class: 'list', id },
          thead,
          tbody)),
      more));
    const back = history.state || {};
    const extraDone = extra ? extra(extraSlot, params(), signal, false) : null;
    await load({ reset: true, want: back.shown || PAGE });
    if (extraDone) await extraDone;
    if (back.scroll != null) window.scrollTo(0, back.scroll);
    // A refresh reads what is shown again (at most MAX_LIMIT rows).
    return async () => {
      if (shown > MAX_LIMIT || userLoads > 0) return;
      await load({ reset: true, want: Math.max(shown, PAGE), quiet: true });
      if (extra) await extra(extraSlot, params(), signal, true);
    };
  };
}

const agents = listView({
  title: 'Agents',
  id: 'agents',
  endpoint: '/api/agents',
  counted: true,
  empty: 'No agents match.',
  filters: [
    { name: 'q', label: 'search pc_id or hostname' },
    { name: 'status', label: 'status', options: [['', 'all'], ['online', 'online'], ['offline', 'offline']] },
    { name: 'os', label: 'os' },
    { name: 'version', label: 'version' },
    { name: 'group', label: 'group' },
  ],
  rowHref: (a) => '/agents/' + seg(a.pc_id),
  // State and heartbeat come right after the id: on a phone they are what
  // is visible without scrolling the table.
  columns: [
    { label: 'pc_id', key: 'pc_id', class: 'mono', sort: 'pc_id' },
    { label: 'state', cell: (a) => (a.online ? badge(t('online'), 'ok') : badge(t('offline'), 'muted')), sort: 'status' },
    { label: 'last heartbeat', cell: (a) => agoCell(a.last_heartbeat), sort: 'last_heartbeat' },
    { label: 'hostname', key: 'hostname', sort: 'hostname' },
    { label: 'os', key: 'os_family', sort: 'os' },
    { label: 'version', key: 'agent_version', class: 'mono', sort: 'agent_version' },
  ],
});

// triage groups the failed runs that match the results filters by job and
// exit code: how many PCs, and the first stderr line of the latest run.
const TRIAGE_RUNS = 500;
async function triage(slot, params, signal, refresh) {
  const p = new URLSearchParams(params);
  const st = p.get('status');
  if (st && st !== 'failure') {
    slot.replaceChildren();
    return;
  }
  p.set('status', 'failure');
  p.set('limit', TRIAGE_RUNS);
  p.delete('cursor');
  let body;
  try {
    ({ body } = await api('/api/results?' + p, { signal }));
  } catch (err) {
    if (refresh || err instanceof AuthError || err.name === 'AbortError') throw err;
    patch(slot, h('section', { class: 'card' }, errorBox(err)));
    return;
  }
  const groups = failureGroups(itemsOf(body)).slice(0, 10);
  const firsts = await Promise.allSettled(groups.map((g) => api('/api/results/' + seg(g.latest.result_id), { signal })));
  if (signal.aborted) return;
  rethrowAuth(firsts);
  const firstLine = (i) => {
    if (firsts[i].status !== 'fulfilled') return '–';
    const r = firsts[i].value.body || {};
    const text = String(r.stderr || r.stdout || '');
    return text.split('\n').map((l) => l.trim()).find(Boolean) || '–';
  };
  patch(slot, h('section', { class: 'card', id: 'triage' },
    h('div', { class: 'card-head' }, h('h2', null, t('Failed runs by job and exit code')),
      h('span', { class: 'muted' }, t('Failures among the latest {n} runs that match.', { n: TRIAGE_RUNS }))),
    groups.length
      ? h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'triage-table' },
        h('thead', null, h('tr', null, ['job', 'exit code', 'PCs', 'runs', 'first stderr line']
          .map((c, i) => h('th', { scope: 'col', class: i === 2 || i === 3 ? 'num' : null }, t(c))))),
        h('tbody', null, groups.map((g, i) => h('tr', null,
          h('td', null, link(`/results?status=failure&job_id=${seg(g.job)}`, g.job)),
          h('td', { class: 'mono' }, g.code),
          h('td', { class: 'num' }, fmtNum(g.pcs.size)),
          h('td', { class: 'num' }, fmtNum(g.runs)),
          h('td', { class: 'mono clip wide' }, link('/results/' + seg(g.latest.result_id), clip(firstLine(i), 160))))))))
      : h('p', { class: 'muted' }, t('No failed runs among the latest {n}.', { n: TRIAGE_RUNS }))));
}

const results = listView({
  title: 'Results',
  id: 'results',
  endpoint: '/api/results',
  empty: 'No runs match.',
  extra: triage,
  // job and pc match part of the id, in any case (pc also the hostname);
  // job_id and pc_id (exact, from links elsewhere) show only when set.
  filters: [
    { name: 'job', label: 'job contains' },
    { name: 'pc', label: 'PC or hostname contains' },
    { name: 'status', label: 'status', options: [['', 'all'], ['success', 'success'], ['failure', 'failure'], ['running', 'running'], ['skipped', 'skipped']] },
    { name: 'since', label: 'started from', time: true },
    { name: 'until', label: 'started before', time: true },
    { name: 'exec_id', label: 'exec_id', ifSet: true },
    { name: 'job_id', label: 'job_id', ifSet: true },
    { name: 'pc_id', label: 'pc_id', ifSet: true },
  ],
  rowHref: (r) => '/results/' + seg(r.result_id),
  columns: [
    { label: 'status', cell: runStatus },
    { label: 'job', key: 'job_id' },
    { label: 'pc_id', key: 'pc_id', class: 'mono' },
    { label: 'started', zoned: true, cell: (r) => timeCell(r.started_at) },
    { label: 'duration', cell: (r) => fmtMs(r.duration_ms), class: 'num' },
    { label: 'result', key: 'result_id', class: 'mono clip' },
  ],
});

const executions = listView({
  title: 'Executions',
  id: 'executions',
  endpoint: '/api/executions',
  empty: 'No executions yet.',
  rowHref: (x) => '/executions/' + seg(x.exec_id),
  columns: [
    { label: 'exec', key: 'exec_id', class: 'mono clip' },
    { label: 'job', key: 'job_id' },
    { label: 'progress', class: 'wide', cell: (x) => progress(x) },
    { label: 'status', key: 'status' },
    { label: 'at', zoned: true, cell: (x) => timeCell(x.initiated_at) },
    { label: 'targets', cell: (x) => fmtNum(x.target_count), class: 'num' },
    { label: 'ok', cell: (x) => fmtNum(x.success_count), class: 'num' },
    { label: 'failed', cell: (x) => fmtNum(x.failure_count), class: 'num' },
    { label: 'skipped', cell: (x) => fmtNum(x.skipped_count ?? 0), class: 'num' },
    { label: 'version', key: 'version', class: 'mono' },
    { label: 'by', key: 'initiated_by' },
  ],
});

const audit = listView({
  title: 'Audit log',
  id: 'audit',
  endpoint: '/api/audit',
  empty: 'No audit events yet.',
  columns: [
    { label: 'when', zoned: true, cell: (x) => timeCell(x.occurred_at) },
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
      else if (typeof v === 'boolean') cell = v ? t('yes') : t('no');
      else if (/_at$|heartbeat$/.test(k) && typeof v === 'string') cell = timeCell(v);
      else if (/_ms$/.test(k)) cell = fmtMs(v);
      else cell = v ?? '–';
      return h('tr', null, h('th', null, k), h('td', null, cell));
    })));
}

const links = (...items) => h('span', { class: 'right links' }, items.filter(Boolean));
// editLink leads an operator to a write page (the YAML editor); a viewer
// gets nothing.
const editLink = (href, label) => (can('operator') ? h('a', { href, class: 'button', 'data-act': 'edit' }, t(label)) : null);

const untilCell = (iso) => h('time', { datetime: iso || null, 'data-until': '' }, fmtUntil(iso));

// tickTimes brings the relative times of root up to now ("5 min ago",
// "in 2 h"), which would otherwise freeze between reads.
function tickTimes(root = app) {
  for (const el of root.querySelectorAll('time[data-ago]')) el.textContent = fmtAgo(el.getAttribute('datetime'));
  for (const el of root.querySelectorAll('time[data-until]')) el.textContent = fmtUntil(el.getAttribute('datetime'));
}

// ---------------------------------------------------------------- actions
//
// An action is a button that asks first: a click shows the question with
// Confirm and Cancel (Escape cancels), Confirm sends the one request, and
// the outcome is said in a note at the top of the page (role=status, so
// it is announced) that stays until the next navigation. Buttons are only
// built for a role that may use them (can), and the page is read again
// after a change so it shows what the server now holds.

let flash = null; // {ok, text} of the last action on this page

function flashBox() {
  if (!flash) return null;
  return flash.ok
    ? h('div', { class: 'note', role: 'status', id: 'flash' }, flash.text)
    : h('div', { class: 'error', role: 'alert', id: 'flash' }, flash.text);
}

function action({ id, label, question, run, done, danger, need = 'operator', extra }) {
  if (!can(need)) return null;
  const box = h('span', { class: 'act', 'data-role': need, id });
  const idle = () => {
    box.classList.remove('confirming');
    box.replaceChildren(h('button', { type: 'button', class: danger ? 'danger' : null, 'data-act': 'start', onclick: ask }, t(label)));
  };
  function ask() {
    box.classList.add('confirming');
    const inputs = extra ? extra() : null;
    const confirm = h('button', {
      type: 'button', class: danger ? 'danger' : null, 'data-act': 'confirm',
      onclick: async () => {
        confirm.disabled = true;
        try {
          const r = await run(inputs);
          flash = { ok: true, text: typeof done === 'function' ? done(r) : t(done) };
        } catch (err) {
          if (err instanceof AuthError) throw err;
          flash = { ok: false, text: (err.status ? `HTTP ${err.status}: ` : '') + (err.message || String(err)) };
        }
        idle();
        statusCache.clear(); // an action may change what a status says
        refreshNow();
      },
    }, t('Confirm'));
    const cancel = h('button', { type: 'button', 'data-act': 'cancel', onclick: idle }, t('Cancel'));
    box.replaceChildren(h('span', null, t(question)), inputs ? inputs.el : null, confirm, cancel);
    box.addEventListener('keydown', (e) => { if (e.key === 'Escape') idle(); }, { once: true });
    (inputs?.focus || confirm).focus();
  }
  idle();
  return box;
}

// scopeAction edits one agent_config scope (global, a group's, a PC's) as
// JSON: the scope as stored is read when the question opens and PUT back
// whole; the server checks every field and its refusal is the outcome shown.
function scopeAction(id, path, signal) {
  return action({
    id, label: 'Edit config', question: 'Config scope (JSON)',
    extra: () => {
      const el = h('textarea', { class: 'mono scope-edit', rows: 6, spellcheck: 'false', readonly: true, 'aria-label': t('config scope as JSON') });
      el.value = '…';
      api(path, { signal }).then(({ body }) => { el.value = JSON.stringify(body ?? {}, null, 2); }, () => { el.value = '{}'; })
        .finally(() => { el.readOnly = false; });
      return { el, focus: el, value: () => el.value };
    },
    run: (inp) => {
      let body;
      try {
        body = JSON.parse(inp.value());
      } catch (err) {
        return Promise.reject(new APIError(0, t('not JSON: ') + err.message));
      }
      return api(path, { method: 'PUT', body, signal });
    },
    done: 'Config saved.',
  });
}

// textInput is a small labelled input for an action's question.
const textInput = (label, id) => h('input', { type: 'text', id, 'aria-label': t(label), placeholder: t(label) });

async function resultDetail({ params, signal }) {
  const { body: r } = await api('/api/results/' + seg(params[0]), { signal });
  if (signal.aborted) return;
  const out = (name, text) => h('section', { class: 'card' },
    h('h3', null, t(name)),
    text ? h('pre', { id: name }, text) : h('p', { class: 'muted', id: name }, t('(empty)')));
  show(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, t('Run'), ' ', h('span', { class: 'mono' }, r.result_id)), runStatus(r),
        h('span', { class: 'muted' }, fmtMs(r.duration_ms)),
        links(
          r.pc_id ? link('/agents/' + seg(r.pc_id), t('agent {pc}', { pc: r.pc_id })) : null,
          r.exec_id ? link('/executions/' + seg(r.exec_id), t('Execution')) : null,
          r.job_id ? link('/jobs/' + seg(r.job_id), t('Job')) : null,
          r.job_id ? link('/results?job_id=' + seg(r.job_id), t('all runs of {job}', { job: r.job_id })) : null))),
    out('stdout', r.stdout),
    out('stderr', r.stderr),
    h('section', { class: 'card' }, h('h3', null, t('details')), kvTable(r, ['stdout', 'stderr'])));
  markRefreshed();
}

async function agentDetail({ params, signal, refresh }) {
  const pc = params[0];
  const [one, groups, eff] = await Promise.allSettled([
    api('/api/agents/' + seg(pc), { signal }),
    api(`/api/agents/${seg(pc)}/groups`, { signal }),
    api(`/api/agents/${seg(pc)}/effective_config`, { signal }),
  ]);
  if (signal.aborted) return;
  settled([one, groups, eff], refresh);
  if (one.status === 'rejected') throw one.reason;
  const a = one.value.body;
  const groupList = groups.status === 'fulfilled'
    ? (Array.isArray(groups.value.body) ? groups.value.body : (groups.value.body?.groups || [])) : null;
  const logsSlot = h('div', { id: 'logs-slot' });
  const ping = action({
    id: 'ping', label: 'Ping', question: 'Ping this agent',
    run: () => {
      const t0 = performance.now();
      return api(`/api/agents/${seg(pc)}/ping?wait_secs=10`, { method: 'POST', signal }).then(() => performance.now() - t0);
    },
    done: (ms) => t('Pong in {ms}', { ms: fmtMs(Math.round(ms)) }),
  });
  show(
    flashBox(),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, t('Agent'), ' ', h('span', { class: 'mono' }, a.pc_id)),
        a.online ? badge(t('online'), 'ok') : badge(t('offline'), 'muted'),
        ping,
        links(link('/results?pc_id=' + seg(a.pc_id), t('runs on this agent')),
          link('/results?status=failure&pc_id=' + seg(a.pc_id), t('failed')))),
      kvTable(a)),
    perfCard(pc, signal),
    h('section', { class: 'card', id: 'agent-groups' }, h('div', { class: 'card-head' }, h('h3', null, t('groups')),
      groupList == null ? null : action({
        id: 'group-add', label: 'Add to group', question: 'Add to group',
        extra: () => {
          const el = textInput('group', 'group-name');
          return { el, focus: el, value: () => el.value.trim() };
        },
        run: (g) => api(`/api/agents/${seg(pc)}/groups`, { method: 'POST', body: { group: g.value() }, signal }),
        done: (r) => t('{pc} is in: {groups}', { pc, groups: (r?.body?.groups || []).join(', ') || '–' }),
      })),
      groupList == null ? errorBox(groups.reason)
        : h('ul', { class: 'inline' }, groupList.map((g) => h('li', null, link('/groups#' + seg(String(g)), String(g)), ' ',
          action({
            id: 'ungroup-' + g, label: 'Remove', danger: true, question: t('Remove {pc} from {group}?', { pc, group: g }),
            run: () => api(`/api/agents/${seg(pc)}/groups/${seg(String(g))}`, { method: 'DELETE', signal }),
            done: () => t('{pc} left {group}.', { pc, group: g }),
          }))))),
    h('section', { class: 'card', id: 'agent-config' }, h('div', { class: 'card-head' }, h('h3', null, t('effective config')),
      scopeAction('pc-config', `/api/pcs/${seg(pc)}/config`, signal)),
      eff.status === 'fulfilled' ? kvTable(eff.value.body?.effective || {}) : errorBox(eff.reason)),
    h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h3', null, t('Recent log lines')),
      h('button', {
        type: 'button', id: 'show-logs',
        onclick: async () => {
          try {
            const res = await fetch(`/api/agents/${seg(pc)}/logs?tail=100`, { headers: { Authorization: 'Bearer ' + getToken() }, signal });
            const text = await res.text();
            logsSlot.replaceChildren(res.ok ? h('pre', { id: 'logs' }, text) : errorBox(new APIError(res.status, text.slice(0, 300))));
          } catch (err) {
            if (err.name !== 'AbortError') logsSlot.replaceChildren(errorBox(err));
          }
        },
      }, t('Show logs'))), logsSlot));
  markRefreshed();
  // The logs, once shown, are not read again: a refresh would scroll them.
  return () => (app.querySelector('#logs') ? undefined : agentDetail({ params, signal, refresh: true }));
}

// EXEC_RUNS is how many of an execution's runs its page shows (newest
// first; the link below lists them all).
const EXEC_RUNS = 500;
// EXEC_RUNS_FIRST of them are on screen in the first frame; building all
// 500 rows before anything showed put this page last in the performance
// check of issue 13 (1.1–1.8 s on a loaded machine).
const EXEC_RUNS_FIRST = 50;

async function executionDetail({ params, signal, refresh }) {
  // The runs need only the id in the path, so they are read beside the
  // execution, not after it: one round trip less before the page shows
  // (the performance check of issue 13 had this page last, over 1 s).
  const runsRead = api(`/api/results?exec_id=${seg(params[0])}&limit=${EXEC_RUNS}`, { signal })
    .then(({ body }) => ({ runs: itemsOf(body) }), (err) => ({ err }));
  const { body: x } = await api('/api/executions/' + seg(params[0]), { signal });
  if (signal.aborted) return;
  let runs = [];
  let runsErr = null;
  const read = await runsRead;
  if (read.err) {
    if (refresh || read.err instanceof AuthError) throw read.err;
    runsErr = read.err;
  } else runs = read.runs;
  if (signal.aborted) return;
  const runRow = (r) => rowLink(h('tr', null,
    h('td', { class: 'mono' }, link('/results/' + seg(r.result_id), r.pc_id)),
    h('td', null, runStatus(r)),
    h('td', null, timeCell(r.started_at)),
    h('td', { class: 'num' }, fmtMs(r.duration_ms))), '/results/' + seg(r.result_id));
  const runsBody = h('tbody', null, runs.slice(0, EXEC_RUNS_FIRST).map(runRow));
  const runsOf = (status) => '/results?exec_id=' + seg(x.exec_id) + (status ? '&status=' + status : '');
  const n = (v) => Number(v) || 0;
  const kill = x.status === 'running' || x.status === 'pending' ? action({
    id: 'kill', label: 'Kill', question: 'Kill this execution?', danger: true,
    run: () => api(`/api/executions/${seg(x.exec_id)}/kill`, { method: 'POST', signal }),
    done: 'Kill requested.',
  }) : null;
  show(
    flashBox(),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, t('Execution'), ' ', h('span', { class: 'mono' }, x.exec_id)),
        badge(String(x.status), x.status === 'completed' ? 'ok' : (x.status === 'expired' ? 'bad' : 'info')),
        kill,
        links(x.job_id ? link('/jobs/' + seg(x.job_id), t('Job')) : null,
          x.job_id ? link('/results?job_id=' + seg(x.job_id), t('runs of this job')) : null)),
      h('div', { id: 'exec-progress' }, progress(x),
        h('div', { class: 'stats' }, h('div', { class: 'group', id: 'exec-counts' },
          stat('ok', n(x.success_count), n(x.success_count) ? 'ok' : '', runsOf('success')),
          stat('failed', n(x.failure_count), n(x.failure_count) ? 'bad' : '', runsOf('failure')),
          stat('skipped', n(x.skipped_count), '', runsOf('skipped')),
          stat('targets', x.target_count ?? null, '', runsOf('')))),
        h('p', { class: 'muted', id: 'exec-progress-text' }, progressText(x))),
      kvTable(x)),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h3', null, t('per-PC results')),
        links(link(runsOf(''), t('all runs of this execution')))),
      runsErr ? errorBox(runsErr) : h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'exec-runs' },
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('pc_id')), h('th', { scope: 'col' }, t('status')),
          h('th', { scope: 'col' }, zoned('started')), h('th', { scope: 'col', class: 'num' }, t('duration')))),
        runsBody))));
  // The rest of the runs are built after the first rows are painted.
  if (runs.length > EXEC_RUNS_FIRST) {
    requestAnimationFrame(() => setTimeout(() => {
      if (!signal.aborted) runsBody.append(...runs.slice(EXEC_RUNS_FIRST).map(runRow));
    }, 0));
  }
  markRefreshed();
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
function targetSummary(tg) {
  if (!isObj(tg)) return null;
  const parts = [];
  if (tg.all === true) parts.push(t('all PCs'));
  if (Array.isArray(tg.groups) && tg.groups.length) parts.push(t('groups') + ' ' + listText(tg.groups));
  if (Array.isArray(tg.pcs) && tg.pcs.length) parts.push('pcs ' + listText(tg.pcs));
  return parts.length ? parts.join('; ') : t('(none)');
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
const enabledBadge = (s) => (scheduleEnabled(s) ? badge(t('enabled'), 'ok') : badge(t('disabled'), 'muted'));

function fmtUntil(iso) {
  const ts = new Date(iso).getTime();
  if (!iso || Number.isNaN(ts)) return '–';
  const s = Math.round((ts - Date.now()) / 1000);
  if (s < 0) return t('due');
  if (s < 60) return t('in {n} s', { n: s });
  if (s < 3600) return t('in {n} min', { n: Math.floor(s / 60) });
  if (s < 86400) return t('in {n} h', { n: Math.floor(s / 3600) });
  const d = Math.floor(s / 86400);
  const hrs = Math.floor((s % 86400) / 3600);
  return hrs ? t('in {d} d {h} h', { d, h: hrs }) : t('in {n} d', { n: d });
}

function brokenText(item) {
  return item.raw != null ? `${item.error}: ${clip(String(item.raw), 300)}` : String(item.error);
}

function rowLink(tr, href) {
  tr.classList.add('link');
  tr.addEventListener('click', (e) => {
    if (e.target.closest('a, button, input, select, textarea, .act') || getSelection().toString()) return;
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
      h('td', { colspan: columns.length + 1 }, h('strong', null, t('Broken, the worker skips it: ')), brokenText(item)))];
  });
  return h('div', { class: 'scroll' }, h('table', { class: 'list', id },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('id')), columns.map((c) => h('th', { class: c.class || null, scope: 'col' }, c.zoned ? zoned(c.label) : t(c.label))))),
    h('tbody', null, rows)));
}

// entriesHead is a list's title with its count and how many are broken.
function entriesHead(title, items, noun) {
  const broken = items.filter((x) => x.error).length;
  return h('div', { class: 'card-head' }, h('h2', null, t(title)),
    items.length ? h('span', { class: 'muted' }, `${fmtNum(items.length)} ${noun}${items.length === 1 ? '' : 's'}`) : null,
    broken ? badge(t('{n} broken', { n: broken }), 'bad') : null,
    editLink(`/new/${noun}s`, noun === 'job' ? 'New job' : 'New schedule'));
}

const jobColumns = [
  { label: 'version', class: 'mono', cell: (m) => m.version },
  { label: 'shell', cell: (m) => m.execute?.shell },
  { label: 'timeout', class: 'mono', cell: (m) => m.execute?.timeout },
  { label: 'target', cell: (m) => targetSummary(m.target) },
  { label: 'description', class: 'clip wide', cell: (m) => (m.description != null ? String(m.description) : null) },
];

async function jobs({ signal, refresh }) {
  let body;
  try {
    ({ body } = await api('/api/jobs', { signal }));
  } catch (err) {
    if (refresh || err instanceof AuthError || err.name === 'AbortError') throw err;
    show(h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, t('Jobs'))), errorBox(err)));
    return;
  }
  if (signal.aborted) return;
  const items = itemsOf(body);
  show(h('section', { class: 'card' },
    entriesHead('Jobs', items, 'job'),
    items.length
      ? entryTable('jobs', items, '/jobs/', jobColumns)
      : h('p', { class: 'muted empty' }, t('No jobs yet — put one with PUT /api/jobs/{id}.'))));
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
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, zoned('at')), h('th', { scope: 'col' }, t('in')),
      schedule ? h('th', { scope: 'col' }, t('Schedule')) : null, h('th', { scope: 'col' }, t('job')))),
    h('tbody', null, firings.map((f) => h('tr', null,
      h('td', null, timeCell(f.at)),
      h('td', { class: 'muted' }, untilCell(f.at)),
      schedule ? h('td', { class: 'mono' }, link('/schedules/' + seg(f.schedule_id), f.schedule_id)) : null,
      h('td', null, link('/jobs/' + seg(f.job_id), f.job_id))))));
}

// outcome is the badge of a schedule's last run.
function outcome(run) {
  if (!run) return '–';
  if (run.exit_code == null) return runStatus({ exit_code: null });
  return runStatus(run);
}

// toggleAction disables or enables a schedule, asking first.
function toggleAction(id, enabled, signal) {
  return enabled
    ? action({
      id: 'toggle-' + id, label: 'Disable', question: t('Disable {id}?', { id }),
      run: () => api(`/api/schedules/${seg(id)}/disable`, { method: 'POST', signal }),
      done: () => t('{id} is disabled.', { id }),
    })
    : action({
      id: 'toggle-' + id, label: 'Enable', question: t('Enable') + ' ' + id + '?',
      run: () => api(`/api/schedules/${seg(id)}/enable`, { method: 'POST', signal }),
      done: () => t('{id} is enabled.', { id }),
    });
}

async function schedules({ signal, refresh }) {
  const [up, list] = await Promise.allSettled([
    api('/api/schedules/upcoming?limit=100', { signal }),
    api('/api/schedules', { signal }),
  ]);
  if (signal.aborted) return;
  settled([up, list], refresh);
  let rows = [];
  if (list.status === 'fulfilled') rows = await scheduleRows(signal, list.value.body, up.status === 'fulfilled' ? up.value.body : null);
  if (signal.aborted) return;
  const byId = new Map(rows.map((r) => [r.id, r]));

  let upBody;
  if (up.status === 'rejected') upBody = errorBox(up.reason);
  else {
    const next = nextRuns(rows);
    upBody = next.length ? nextUpTable('upcoming', next) : h('p', { class: 'muted empty' }, t('No schedule fires soon.'));
  }
  const upCard = h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', null, t('Next up'))),
    upBody);

  let listCard;
  if (list.status === 'rejected') {
    listCard = h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, t('Schedules'))), errorBox(list.reason));
  } else {
    const items = itemsOf(list.value.body);
    const cols = [...scheduleColumns(),
      { label: 'last fired', zoned: true, cell: (s, item) => { const r = byId.get(item.key)?.status?.last_run; return r ? timeCell(r.started_at) : null; } },
      { label: 'last outcome', cell: (s, item) => outcome(byId.get(item.key)?.status?.last_run) },
      { label: 'next run', zoned: true, cell: (s, item) => { const r = byId.get(item.key); return r?.at ? timeCell(r.at) : null; } },
      { label: '', cell: (s, item) => (item.error ? null : toggleAction(item.key, scheduleEnabled(s), signal)) },
    ];
    listCard = h('section', { class: 'card' },
      entriesHead('Schedules', items, 'schedule'),
      items.length
        ? entryTable('schedules', items, '/schedules/', cols)
        : h('p', { class: 'muted empty' }, t('No schedules yet — put one with PUT /api/schedules/{id}.')));
  }
  show(flashBox(), h('div', { class: 'overview' }, upCard, listCard));
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
  return h('section', { class: 'card' }, h('h3', null, t('stored value')), h('pre', { id: 'raw' }, text));
}

// oneEntry fetches GET path and the list; a value that is not JSON answers
// 500 on GET, and then the list's raw text stands in for it.
async function oneEntry(path, listPath, key, signal, extra = [], refresh = false) {
  const [one, list, ...rest] = await Promise.allSettled([
    api(path, { signal }), api(listPath, { signal }), ...extra.map((p) => api(p, { signal }))]);
  settled([one, list, ...rest], refresh);
  const entry = detailEntry(list, key);
  if (one.status === 'rejected' && entry?.raw == null) throw one.reason;
  const value = one.status === 'fulfilled' ? one.value.body : undefined;
  return { value, entry, rest };
}

const jobKnown = ['id', 'version', 'description', 'execute', 'target', 'rollout'];
const executeKnown = ['shell', 'script', 'timeout', 'jitter', 'run_as', 'cwd'];

async function jobDetail({ params, signal, refresh }) {
  const id = params[0];
  const { value, entry, rest: [scheds, scripts] } = await oneEntry(
    '/api/jobs/' + seg(id), '/api/jobs', id, signal, ['/api/schedules', '/api/scripts/status'], refresh);
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
      : h('p', { class: 'muted empty' }, t('No schedule runs this job.'));
  }

  const script = ex.script != null ? String(ex.script) : '';
  const runNow = entry?.error || value === undefined ? null : action({
    id: 'run-now', label: 'Run now', question: t('Run {job} now on its target?', { job: id }),
    // The API takes the plan, not the job's defaults: send its own target
    // and rollout (an empty plan is refused with 400).
    run: () => api('/api/exec/' + seg(id), { method: 'POST', body: { target: m.target, ...(m.rollout ? { rollout: m.rollout } : {}) }, signal }),
    done: (r) => t('Started execution {id}.', { id: r?.body?.exec_id ?? '' }),
  });
  // script_status of the job (its cmd_id is the job id): a revoked job's
  // commands are skipped by every agent.
  const revoked = scripts.status === 'fulfilled' && String(scripts.value.body?.[id] || '').toUpperCase() === 'REVOKED';
  const revoke = scripts.status !== 'fulfilled' ? null : revoked
    ? action({
      id: 'revoke', label: 'Unrevoke', question: t('Let agents run {job} again?', { job: id }),
      run: () => api(`/api/scripts/${seg(id)}/unrevoke`, { method: 'POST', signal }),
      done: () => t('{job} is no longer revoked.', { job: id }),
    })
    : action({
      id: 'revoke', label: 'Revoke', danger: true, question: t('Revoke {job}? Agents skip its queued and retained commands.', { job: id }),
      run: () => api(`/api/scripts/${seg(id)}/revoke`, { method: 'POST', signal }),
      done: () => t('{job} is revoked.', { job: id }),
    });
  show(
    flashBox(),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, t('Job'), ' ', h('span', { class: 'mono' }, id)),
        entry?.error ? badge(t('broken'), 'bad') : null,
        revoked ? badge(t('revoked'), 'bad') : null,
        runNow, revoke, editLink(`/jobs/${seg(id)}/edit`, 'Edit YAML'),
        links(link('/results?job_id=' + seg(id), t('runs of this job')),
          link(`/results?status=failure&job_id=${seg(id)}`, t('failed')))),
      brokenBox(entry, 'job'),
      value !== undefined ? kvTable(fields) : null),
    h('section', { class: 'card' }, h('h3', null, t('script')),
      script ? h('pre', { id: 'script' }, script) : h('p', { class: 'muted', id: 'script' }, t('(none)'))),
    h('section', { class: 'card' }, h('h3', null, t('schedules that run it')), users),
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

async function scheduleDetail({ params, signal, refresh }) {
  const id = params[0];
  const { value, entry, rest: [up] } = await oneEntry(
    '/api/schedules/' + seg(id), '/api/schedules', id, signal, [`/api/schedules/upcoming?limit=${nextFiringsLimit}`], refresh);
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
      : h('p', { class: 'muted empty', id: 'next-firings' }, entry?.error ? t('Broken: it does not fire.') : t(firingNote(s)));
  }

  show(
    flashBox(),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', null, t('Schedule'), ' ', h('span', { class: 'mono' }, id)),
        value !== undefined ? enabledBadge(s) : null,
        entry?.error ? badge(t('broken'), 'bad') : null,
        value !== undefined && !entry?.error ? toggleAction(id, scheduleEnabled(s), signal) : null,
        editLink(`/schedules/${seg(id)}/edit`, 'Edit YAML'),
        links(s.job_id != null ? link('/results?job_id=' + seg(String(s.job_id)), t('runs of its job')) : null)),
      brokenBox(entry, 'schedule'),
      value !== undefined ? kvTable(fields) : null),
    h('section', { class: 'card' }, h('h3', null, t('next firings')), next),
    rawCard(value, entry));
  markRefreshed();
}

// ---------------------------------------------------------------- groups and releases

async function groups({ signal, refresh }) {
  // The page keeps an open config question: a refresh would reread it.
  const [gs, cfg] = await Promise.allSettled([api('/api/groups', { signal }), api('/api/config', { signal, allow: [404] })]);
  if (signal.aborted) return;
  settled([gs, cfg], refresh);
  const list = gs.status === 'fulfilled' ? (gs.value.body?.groups || []) : [];
  show(
    flashBox(),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, t('Groups')),
        list.length ? h('span', { class: 'muted' }, fmtNum(list.length)) : null),
      gs.status === 'rejected' ? errorBox(gs.reason) : list.length
        ? h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'groups' },
          h('thead', null, h('tr', null, ['Groups', 'members', 'alive', 'has config'].map((c, i) => h('th', { scope: 'col', class: i === 1 || i === 2 ? 'num' : null }, t(c))))),
          h('tbody', null, list.map((g) => h('tr', { id: seg(g.name) },
            h('td', { class: 'mono' }, g.name),
            h('td', { class: 'num' }, fmtNum(Array.isArray(g.members) ? g.members.length : g.members)),
            h('td', { class: 'num' }, fmtNum(g.alive)),
            h('td', null, g.has_config ? t('yes') : t('no'),
              ' ', scopeAction('group-config-' + g.name, `/api/groups/${seg(g.name)}/config`, signal)))))))
        : h('p', { class: 'muted' }, t('No groups yet.'))),
    h('section', { class: 'card', id: 'fleet-config' }, h('div', { class: 'card-head' }, h('h3', null, t('fleet config')),
      scopeAction('global-config', '/api/config', signal)),
      cfg.status === 'rejected' ? errorBox(cfg.reason) : kvTable(isObj(cfg.value.body) ? cfg.value.body : {})));
  markRefreshed();
}

// rolloutAction sets target_version of one scope to version, asking which
// scope (global, a group, a PC) and an optional jitter first.
function rolloutAction(version, signal) {
  return action({
    id: 'rollout-' + version, label: 'Roll out', question: t('Roll {version} out to', { version }),
    extra: () => {
      const type = h('select', { 'aria-label': t('scope'), class: 'rollout-type' },
        ['global', 'group', 'pc'].map((v) => h('option', { value: v }, t(v))));
      const value = textInput('group or PC', null);
      value.className = 'rollout-value';
      const jitter = textInput('jitter (e.g. 30m)', null);
      jitter.className = 'rollout-jitter';
      return {
        el: h('span', { class: 'inputs' }, type, value, jitter), focus: type,
        value: () => ({ type: type.value, value: value.value.trim(), jitter: jitter.value.trim() }),
      };
    },
    run: (inp) => {
      const v = inp.value();
      return api('/api/agents/rollout', {
        method: 'POST', signal,
        body: { version, scope: v.type === 'global' ? { type: 'global' } : { type: v.type, value: v.value }, ...(v.jitter ? { jitter: v.jitter } : {}) },
      });
    },
    done: (r) => t('{version} is the target of {scope}.', { version, scope: r?.body?.scope_label ?? '' }),
  });
}

async function releases({ signal, refresh }) {
  const [rel, vers] = await Promise.allSettled([api('/api/agents/releases', { signal }), api('/api/agents/versions', { signal })]);
  if (signal.aborted) return;
  settled([rel, vers], refresh);
  const relBody = rel.status === 'fulfilled' ? rel.value.body : null;
  const items = Array.isArray(relBody) ? relBody : itemsOf(relBody).length ? itemsOf(relBody) : (relBody?.releases || []);
  show(
    flashBox(),
    h('section', { class: 'card' }, h('h2', null, t('Versions in the fleet')),
      vers.status === 'fulfilled' ? versionBars(vers.value.body) : errorBox(vers.reason)),
    h('section', { class: 'card' }, h('h2', null, t('Agent releases')),
      rel.status === 'rejected' ? errorBox(rel.reason) : items.length
        ? h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'releases' },
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('version')), h('th', { scope: 'col' }, t('details')),
            can('operator') ? h('th', { scope: 'col' }, t('rollout')) : null)),
          h('tbody', null, items.map((r) => h('tr', null,
            h('td', { class: 'mono' }, String(r.version ?? r.name ?? '–')),
            h('td', { class: 'mono clip wide' }, JSON.stringify(r)),
            can('operator') ? h('td', null, rolloutAction(String(r.version ?? ''), signal)) : null)))))
        : h('p', { class: 'muted' }, t('No releases published.'))));
  sizeBars();
  markRefreshed();
}

// ---------------------------------------------------------------- freeze
//
// A frozen fleet runs nothing new: the banner under the header says so on
// every page, with the reason, and operators can lift it there. The switch
// to freeze is on the overview's banner slot too.

const banner = document.getElementById('freeze-banner');

async function freezeBanner(signal) {
  let f;
  try {
    ({ body: f } = await api('/api/freeze', { signal, allow: [404, 503] }));
  } catch (err) {
    if (err instanceof AuthError) throw err;
    return; // the banner keeps its last state
  }
  if (signal.aborted) return;
  const frozen = isObj(f) && !f.status;
  if (frozen) {
    patch(banner, h('span', null, t('The fleet is frozen: {reason}', { reason: f.reason || '–' })),
      action({
        id: 'unfreeze', label: 'Unfreeze', question: 'Unfreeze' + '?',
        run: () => api('/api/freeze', { method: 'DELETE', signal }), done: 'The fleet is not frozen.',
      }));
  } else if (location.pathname === '/' && can('operator')) {
    patch(banner, action({
      id: 'freeze', label: 'Freeze the fleet', question: 'Freeze the fleet',
      extra: () => {
        const el = h('input', { type: 'text', 'aria-label': t('reason'), placeholder: t('reason'), id: 'freeze-reason' });
        return { el, focus: el, value: () => el.value.trim() };
      },
      run: (inp) => api('/api/freeze', { method: 'PUT', body: { reason: inp.value() || 'frozen from the dashboard' }, signal }),
      done: 'The fleet is frozen.',
    }));
  } else patch(banner);
  banner.hidden = !banner.firstChild;
  banner.className = frozen ? 'frozen' : 'unfrozen';
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

  let shownKey = '';
  const load = async () => {
    const { body } = await api('/api/accounts', { signal });
    if (signal.aborted) return;
    const list = Array.isArray(body) ? body : [];
    const key = JSON.stringify(list);
    if (key !== shownKey) tbody.replaceChildren(...list.map(row));
    shownKey = key;
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
      shownKey = '';
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
      }, a.disabled ? t('Enable') : t('Disable')),
      h('button', { type: 'button', 'data-act': 'reset', onclick: resetStep }, t('Reset password')),
      h('button', { type: 'button', class: 'danger', 'data-act': 'delete', onclick: deleteStep }, t('Delete')));
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
  h('button', { type: 'submit' }, t('Create')));

  await load();
  if (signal.aborted) return;
  app.replaceChildren(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, t('Accounts')), count),
      status,
      h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'accounts' },
        h('thead', null, h('tr', null, ['username', 'role', 'state', 'must change password', 'created', 'updated', '']
          .map((c) => h('th', { scope: 'col' }, c === 'created' || c === 'updated' ? zoned(c) : t(c))))),
        tbody))),
    h('section', { class: 'card', 'data-role': 'admin' }, h('h3', null, t('new account')), createForm));
  // The table is read again as other pages are, unless a step is open.
  return () => (app.querySelector('td form, [data-act="confirm-delete"]') ? undefined : load());
}

function notFound() {
  app.replaceChildren(h('section', { class: 'card' }, h('h2', null, t('Not found')),
    h('p', null, t('No page at '), h('code', null, location.pathname), '. ', link('/', t('Back to the overview')))));
  return false;
}

// ---------------------------------------------------------------- YAML editor
//
// /jobs/{id}/edit, /schedules/{id}/edit and …/new: the record's YAML (as
// last sent, comments kept) in a plain textarea. Saving sends it as YAML;
// the server is the one judge of it, and its problem details (400 for YAML
// that does not parse, 422 naming the field as body.a.b[0]) are shown in
// place: each error listed with its line and column, the line marked in the
// gutter, and a click on an error puts the caret there. Editor pages are
// not refreshed, so nothing typed is ever replaced.

// yamlPos finds the line and column (both from 1) of a problem's location
// in text: "body.execute.shell" is the key shell under execute,
// "body.when.calendar.days[1]" the second item of that list. A path it
// cannot follow stops at the deepest part found; none at all is line 1.
// A parser's own position in msg ("line N, column M", or [N:M] as
// the YAML parser writes it) wins.
function yamlPos(text, loc, msg) {
  const m = /line (\d+)(?:,? column (\d+))?|\[(\d+):(\d+)\]/i.exec(String(msg || ''));
  if (m) return { line: Number(m[1] || m[3]), col: Number(m[2] || m[4] || 1) };
  const lines = text.split('\n');
  const segs = String(loc || '').replace(/^body\.?/, '').match(/[^.[\]]+|\[\d+\]/g) || [];
  const blank = (l) => /^\s*(#.*)?$/.test(l);
  // at is the line of the part found so far (-1: the document), col the
  // column its children are deeper than; item says at is a list item,
  // whose first key sits on its own line at col.
  let at = -1;
  let col = -1;
  let item = false;
  let pos = { line: 1, col: 1 };
  for (const s of segs) {
    let hit = -1;
    if (s.startsWith('[')) {
      const want = Number(s.slice(1, -1));
      let n = 0;
      let itemInd = -1;
      for (let i = at + 1; i < lines.length && hit < 0; i++) {
        if (blank(lines[i])) continue;
        const ind = lines[i].search(/\S/);
        const dash = /^-(\s|$)/.test(lines[i].slice(ind));
        if (dash ? ind < col : ind <= col) break;
        if (!dash) continue;
        if (itemInd < 0) itemInd = ind;
        if (ind < itemInd) break;
        if (ind === itemInd && n++ === want) {
          hit = i;
          pos = { line: i + 1, col: ind + 1 };
          col = ind + 2;
          item = true;
        }
      }
    } else {
      let childCol = -1;
      for (let i = item ? at : at + 1; i < lines.length && hit < 0; i++) {
        if (blank(lines[i])) continue;
        const ind = lines[i].search(/\S/);
        if (i > at && (item ? ind < col : ind <= col)) break;
        const k = /^(\s*(?:-\s+)*)(["']?)([^"'#:]+?)\2\s*:(\s|$)/.exec(lines[i]);
        if (!k) continue;
        const kc = k[1].length;
        if (childCol < 0) childCol = kc;
        if (kc !== childCol) continue;
        if (k[3] === s) {
          hit = i;
          pos = { line: i + 1, col: kc + 1 };
          col = kc;
          item = false;
        }
      }
    }
    if (hit < 0) break;
    at = hit;
  }
  return pos;
}

// problemErrors reads a failed save's problem: its errors with locations
// (huma's errors[]), or its detail alone.
async function problemErrors(res) {
  const text = await res.text().catch(() => '');
  try {
    const p = JSON.parse(text);
    const errs = Array.isArray(p.errors) && p.errors.length ? p.errors : [{ location: 'body', message: p.detail || p.title }];
    return errs.map((e) => ({ location: e.location || 'body', message: e.message || p.detail || res.statusText }));
  } catch {
    return [{ location: 'body', message: text.slice(0, 300) || res.statusText }];
  }
}

const KINDS = { jobs: 'job', schedules: 'schedule' };

async function editor({ params, signal }, kind, isNew) {
  const id = isNew ? '' : params[0];
  const noun = KINDS[kind];
  await ready(signal);
  if (!can('operator')) {
    show(h('section', { class: 'card' }, errorBox(new APIError(403, t('Only an operator or admin can edit {noun}s.', { noun })))));
    return false;
  }
  let text = isNew ? (noun === 'job'
    ? 'id: new-job\nversion: "1"\nexecute:\n  shell: sh\n  script: echo hello\n  timeout: 1m\ntarget:\n  all: true\n'
    : 'id: new-schedule\nwhen:\n  calendar:\n    at: "09:00"\ntz: utc\njob_id: inventory\ntarget:\n  all: true\n') : '';
  if (!isNew) {
    const headers = { Accept: 'application/yaml' };
    if (getToken()) headers.Authorization = 'Bearer ' + getToken();
    const res = await fetch(`/api/${kind}/${seg(id)}/yaml`, { headers, signal, cache: 'no-store' });
    if (res.status === 401) throw new AuthError(await problemText(res));
    if (!res.ok) throw new APIError(res.status, await problemText(res));
    text = await res.text();
  }
  if (signal.aborted) return false;
  const area = h('textarea', {
    id: 'yaml', class: 'mono', spellcheck: 'false', rows: Math.max(12, text.split('\n').length + 2),
    'aria-label': t('{noun} as YAML', { noun }), 'aria-describedby': 'yaml-errors', wrap: 'off',
  });
  area.value = text;
  const gutter = h('ol', { id: 'yaml-gutter', class: 'gutter mono', 'aria-hidden': 'true' });
  const errList = h('div', { id: 'yaml-errors', role: 'alert' });
  const paint = (marks = new Map()) => {
    const n = area.value.split('\n').length;
    gutter.replaceChildren(...Array.from({ length: n }, (_, i) => h('li', {
      class: marks.has(i + 1) ? 'err' : null, title: marks.get(i + 1) || null,
    }, String(i + 1))));
  };
  area.addEventListener('input', () => paint());
  area.addEventListener('scroll', () => { gutter.scrollTop = area.scrollTop; });
  const goTo = (line, col) => {
    const ls = area.value.split('\n');
    let off = 0;
    for (let i = 0; i < line - 1 && i < ls.length; i++) off += ls[i].length + 1;
    off += Math.max(0, Math.min(col - 1, (ls[line - 1] || '').length));
    area.focus();
    area.setSelectionRange(off, off + (ls[line - 1] || '').length - (col - 1));
  };
  const save = h('button', { type: 'submit', id: 'yaml-save' }, t('Save'));
  const form = h('form', {
    id: 'yaml-form',
    onsubmit: async (e) => {
      e.preventDefault();
      save.disabled = true;
      errList.replaceChildren();
      const headers = { 'Content-Type': 'application/yaml', Accept: 'application/json' };
      if (getToken()) headers.Authorization = 'Bearer ' + getToken();
      let res;
      try {
        res = await fetch(isNew ? `/api/${kind}` : `/api/${kind}/${seg(id)}`, { method: isNew ? 'POST' : 'PUT', headers, body: area.value, signal });
      } catch (err) {
        save.disabled = false;
        if (err.name !== 'AbortError') errList.replaceChildren(errorBox(err));
        return;
      }
      save.disabled = false;
      if (res.status === 401) { fail(new AuthError(await problemText(res)), signal); return; }
      if (res.ok) {
        const body = await res.json().catch(() => ({}));
        const saved = body?.id || id;
        go(`/${kind}/${seg(saved)}`);
        flash = { ok: true, text: t('{id} is saved.', { id: saved }) };
        return;
      }
      const errs = (await problemErrors(res)).map((x) => ({ ...x, ...yamlPos(area.value, x.location, x.message) }));
      const marks = new Map(errs.map((x) => [x.line, x.message]));
      paint(marks);
      errList.replaceChildren(h('div', { class: 'error' },
        h('strong', null, t('The server refused it (HTTP {status}):', { status: res.status })),
        h('ul', { class: 'yaml-errors' }, errs.map((x) => h('li', { 'data-line': x.line, 'data-col': x.col, 'data-location': x.location },
          h('button', { type: 'button', class: 'link', onclick: () => goTo(x.line, x.col) },
            t('line {line}, column {col}', { line: x.line, col: x.col })),
          ' ', h('span', { class: 'mono' }, x.location), ': ', x.message)))));
      goTo(errs[0].line, errs[0].col);
    },
  }, h('div', { class: 'yaml-wrap' }, gutter, area), errList,
  h('div', { class: 'actions' }, save, link(isNew ? `/${kind}` : `/${kind}/${seg(id)}`, t('Cancel'))));
  paint();
  show(h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', null, isNew ? t('New {noun}', { noun }) : [t('Edit'), ' ', h('span', { class: 'mono' }, id)]),
      h('span', { class: 'muted' }, t('Checked by the server when saved (JSON Schema: /api/schemas/{file}).', { file: noun === 'job' ? 'manifest.json' : 'schedule.json' }))),
    form));
  markRefreshed();
  return false;
}

// ---------------------------------------------------------------- telemetry
//
// The pages of observe.md: a PC's performance over 24 h (on the agent
// page), the observability timeline, the compliance table and the
// notifications with who confirmed them. Charts are inline SVG polylines:
// no library, and nothing from the server reaches them but numbers.

// PERF_TTL_MS is how long a PC's series is reused: the agent page is read
// every 10 s, the series moves by one point in five minutes.
const PERF_TTL_MS = 60_000;
const perfCache = new Map(); // pc -> {at, body | err}

// chart draws values (null = no data, which breaks the line) scaled to
// [0, max] as one polyline per unbroken run.
function chart(id, label, values, max, fmt) {
  const W = 600;
  const H = 80;
  const n = values.length;
  const runs = [];
  let run = [];
  values.forEach((v, i) => {
    if (v == null) {
      if (run.length) runs.push(run);
      run = [];
      return;
    }
    const x = n > 1 ? (i * W) / (n - 1) : W / 2;
    const y = H - (Math.min(v, max) / (max || 1)) * H;
    run.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  });
  if (run.length) runs.push(run);
  const known = values.filter((v) => v != null);
  const last = known.length ? known[known.length - 1] : null;
  const desc = t('{label}: latest {last}, highest {max}', {
    label: t(label), last: last == null ? '–' : fmt(last), max: known.length ? fmt(Math.max(...known)) : '–',
  });
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  for (const [k, v] of Object.entries({ viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': desc, class: 'chart', id })) svg.setAttribute(k, v);
  for (const pts of runs) {
    const el = document.createElementNS(ns, pts.length > 1 ? 'polyline' : 'circle');
    if (pts.length > 1) el.setAttribute('points', pts.join(' '));
    else {
      const [cx, cy] = pts[0].split(',');
      el.setAttribute('cx', cx);
      el.setAttribute('cy', cy);
      el.setAttribute('r', '2');
    }
    el.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.append(el);
  }
  return h('figure', { class: 'perf' }, h('figcaption', null, h('span', null, t(label)), h('span', { class: 'muted' }, desc.slice(desc.indexOf(':') + 1).trim())), svg);
}

const pctFmt = (v) => `${v.toFixed(1)} %`;
function bytesFmt(v) {
  const u = ['B/s', 'KB/s', 'MB/s', 'GB/s'];
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 && i ? 1 : 0)} ${u[i]}`;
}

// perfCharts lays out CPU, memory and disk (read + written) of a series,
// one point per 5-minute bucket of the 24 h, gaps where no sample came.
function perfCharts(body, from, to) {
  const step = body.step_seconds || 300;
  const first = Math.floor(from / 1000 / step) * step;
  const n = Math.max(1, Math.ceil((to / 1000 - first) / step));
  const at = new Map((body.points || []).map((p) => [Math.round(new Date(p.at).getTime() / 1000), p]));
  const col = (f) => Array.from({ length: n }, (_, i) => {
    const p = at.get(first + i * step);
    return p ? f(p) : null;
  });
  const num = (v) => (typeof v === 'number' ? v : null);
  const disk = col((p) => (p.disk_read_bytes_per_sec == null && p.disk_written_bytes_per_sec == null ? null
    : (num(p.disk_read_bytes_per_sec) || 0) + (num(p.disk_written_bytes_per_sec) || 0)));
  return [
    chart('perf-cpu', 'CPU', col((p) => num(p.cpu_pct)), 100, pctFmt),
    chart('perf-mem', 'memory', col((p) => (p.mem_total_bytes ? (100 * p.mem_used_bytes) / p.mem_total_bytes : null)), 100, pctFmt),
    chart('perf-disk', 'disk read + write', disk, Math.max(1, ...disk.filter((v) => v != null)), bytesFmt),
  ];
}

// perfCard is the agent page's performance section. It renders from the
// cached series at once (so a refresh of the page changes nothing until the
// series does) and reads the series again when the cache is old, then
// patches the section in place.
function perfCard(pc, signal) {
  const c = perfCache.get(pc);
  const body = () => {
    if (!c) return h('p', { class: 'muted' }, t('Loading…'));
    if (c.err) return errorBox(c.err);
    if (!c.body.points?.length) return h('p', { class: 'muted', id: 'perf-empty' }, t('No performance samples in the last 24 hours.'));
    return h('div', { class: 'perf-grid' }, perfCharts(c.body, c.from, c.to));
  };
  if (!c || Date.now() - c.at > PERF_TTL_MS) {
    if (perfCache.size > 50) perfCache.clear(); // the PCs looked at lately, not every one since the tab opened
    const to = Date.now();
    const from = to - 24 * 3600_000;
    const q = new URLSearchParams({ from: new Date(from).toISOString(), to: new Date(to).toISOString(), step: '5m' });
    api(`/api/agents/${seg(pc)}/perf?${q}`, { signal }).then(
      ({ body: b }) => perfCache.set(pc, { at: Date.now(), body: b, from, to }),
      (err) => {
        if (err instanceof AuthError || err.name === 'AbortError') return false;
        perfCache.set(pc, { at: Date.now(), err });
        return true;
      }).then((ok) => {
      const el = !signal.aborted && ok !== false && app.querySelector('#agent-perf');
      if (el) patch(el, ...perfCard(pc, signal).childNodes);
    });
    if (c) c.at = Date.now(); // one read in flight
  }
  return h('section', { class: 'card', id: 'agent-perf' },
    h('div', { class: 'card-head' }, h('h3', null, t('performance, last 24 h')),
      c?.body ? h('span', { class: 'muted' }, `${fmtTime(new Date(c.from).toISOString())} – ${fmtTime(new Date(c.to).toISOString())} (${zoneName()})`) : null),
    body());
}

// The timeline lists obs_events newest first; kind and source offer the
// values the fleet has sent so far.
const timeline = listView({
  title: 'Timeline',
  id: 'timeline',
  endpoint: '/api/obs_events',
  itemsKey: 'events',
  empty: 'No events match.',
  filters: [
    { name: 'kind', label: 'kind' },
    { name: 'source', label: 'source' },
    { name: 'pc_id', label: 'pc_id' },
  ],
  extra: async (slot, params, signal, refresh) => {
    if (refresh || slot.querySelector('datalist')) return;
    const [k, s] = await Promise.allSettled([api('/api/obs_events/kinds', { signal }), api('/api/obs_events/sources', { signal })]);
    rethrowAuth([k, s]);
    const list = (id, r, key) => h('datalist', { id }, (r.status === 'fulfilled' ? r.value.body?.[key] || [] : []).map((v) => h('option', { value: v })));
    slot.replaceChildren(list('obs-kinds', k, 'kinds'), list('obs-sources', s, 'sources'));
    app.querySelector('input[name="kind"]')?.setAttribute('list', 'obs-kinds');
    app.querySelector('input[name="source"]')?.setAttribute('list', 'obs-sources');
  },
  columns: [
    { label: 'at', zoned: true, cell: (e) => timeCell(e.at) },
    { label: 'pc_id', class: 'mono', cell: (e) => link('/agents/' + seg(e.pc_id), e.pc_id) },
    { label: 'kind', cell: (e) => badge(e.kind, 'info') },
    { label: 'source', key: 'source', class: 'mono' },
    { label: 'record', key: 'event_record_id', class: 'mono' },
    {
      label: 'payload', class: 'mono clip wide',
      cell: (e) => {
        const p = JSON.stringify(e.payload ?? null);
        return h('span', { title: p }, clip(p, 160));
      },
    },
  ],
});

const CHECK_STATES = ['fail', 'warn', 'unknown', 'ok'];
const checkBadge = (s) => badge(t(s), { ok: 'ok', warn: 'warn', fail: 'bad' }[s] || 'muted');
// CHECK_PAGE rows are added per "More": a fleet's rows can be 50 000.
const CHECK_PAGE = 100;
let checkShown = CHECK_PAGE;

// compliance shows GET /api/checks: per check how many PCs are in each
// state (a bar, each state its colour), then the PCs not ok, or all of them.
async function compliance({ query, signal, refresh }) {
  const check = query.get('check') || '';
  const all = query.get('include_ok') === 'true';
  const p = new URLSearchParams();
  if (check) p.set('check', check);
  if (all) p.set('include_ok', 'true');
  const { body } = await api('/api/checks?' + p, { signal });
  if (signal.aborted) return undefined;
  const counts = Array.isArray(body.counts) ? body.counts : [];
  const rows = Array.isArray(body.rows) ? body.rows : [];
  if (!refresh) checkShown = CHECK_PAGE;
  const nav = (c, a) => {
    const q = new URLSearchParams();
    if (c) q.set('check', c);
    if (a) q.set('include_ok', 'true');
    go('/compliance' + (q.toString() ? '?' + q : ''));
  };
  // More shows the next rows by reading the page again (a refresh keeps
  // the count), so every node on screen belongs to one rendering.
  const more = h('button', { type: 'button', class: 'more', hidden: checkShown >= rows.length, onclick: () => { checkShown += CHECK_PAGE; refreshNow(); } }, t('More'));
  const tbody = h('tbody', null, rows.slice(0, checkShown).map((r) => h('tr', null,
    h('td', null, checkBadge(r.status)),
    h('td', null, r.check_name),
    h('td', { class: 'mono' }, link('/agents/' + seg(r.pc_id), r.pc_id)),
    h('td', { class: 'clip wide' }, r.detail ?? '–'),
    h('td', null, timeCell(r.recorded_at)))));
  const total = (c) => CHECK_STATES.reduce((n, s) => n + (Number(c[s]) || 0), 0);
  show(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, t('Compliance')),
        h('span', { class: 'muted' }, t('{n} checks', { n: fmtNum(counts.length) }))),
      counts.length ? h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'check-counts' },
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('check')), h('th', { scope: 'col', class: 'wide' }, t('PCs by state')),
          CHECK_STATES.map((s) => h('th', { scope: 'col', class: 'num' }, t(s))))),
        h('tbody', null, counts.map((c) => {
          const n = Math.max(total(c), 1);
          const label = CHECK_STATES.map((s) => `${t(s)} ${fmtNum(c[s] || 0)}`).join(', ');
          return h('tr', { 'data-check': c.check_name },
            h('td', null, h('button', { type: 'button', class: 'link', 'aria-pressed': String(c.check_name === check), onclick: () => nav(c.check_name === check ? '' : c.check_name, all) }, c.check_name)),
            h('td', { class: 'wide' }, h('div', { class: 'progress', role: 'img', 'aria-label': label, title: label },
              CHECK_STATES.map((s) => h('span', { class: 'c-' + s, 'data-w': `${((100 * (c[s] || 0)) / n).toFixed(1)}%` })))),
            CHECK_STATES.map((s) => h('td', { class: 'num' }, fmtNum(c[s] || 0))));
        }))))
        : h('p', { class: 'muted' }, t('No check has reported yet.'))),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h3', null, check ? t('PCs of {check}', { check }) : t('states per PC')),
        h('span', { class: 'muted', id: 'check-count' }, t(body.truncated ? '{n} rows (truncated)' : '{n} rows', { n: fmtNum(rows.length) })),
        h('label', { class: 'check right' }, h('input', { type: 'checkbox', id: 'include-ok', checked: all, onchange: (e) => nav(check, e.target.checked) }), t('include ok'))),
      rows.length ? h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'check-rows' },
        h('thead', null, h('tr', null, ['status', 'check', 'pc_id', 'detail'].map((c) => h('th', { scope: 'col' }, t(c))), h('th', { scope: 'col' }, zoned('recorded')))),
        tbody)) : h('p', { class: 'muted' }, t(all ? 'No rows.' : 'Every PC is ok.')),
      more));
  markRefreshed();
  return undefined;
}

const PRIORITIES = ['info', 'warn', 'emergency'];
const prioBadge = (p) => badge(t(p), { info: 'info', warn: 'warn', emergency: 'bad' }[p] || 'muted');
const csv = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

// publishAction is the operator's "Notify": title, body, priority, whether
// users must confirm, and the target (everyone, groups, PCs).
function publishAction(signal) {
  return action({
    id: 'notify', label: 'New notification', question: 'Notify end users',
    extra: () => {
      const title = textInput('title', 'notify-title');
      const text = h('textarea', { id: 'notify-body', rows: 3, 'aria-label': t('message'), placeholder: t('message') });
      const prio = h('select', { id: 'notify-priority', 'aria-label': t('priority') }, PRIORITIES.map((v) => h('option', { value: v }, t(v))));
      const ack = h('input', { type: 'checkbox', id: 'notify-ack' });
      const everyone = h('input', { type: 'checkbox', id: 'notify-all' });
      const groups = textInput('groups (comma-separated)', 'notify-groups');
      const pcs = textInput('PCs (comma-separated)', 'notify-pcs');
      return {
        el: h('span', { class: 'inputs notify' }, title, text, prio, h('label', { class: 'check' }, ack, t('users must confirm')),
          h('label', { class: 'check' }, everyone, t('every PC')), groups, pcs),
        focus: title,
        value: () => ({
          title: title.value.trim(), body: text.value, priority: prio.value, require_ack: ack.checked,
          target: { all: everyone.checked, groups: csv(groups.value), pcs: csv(pcs.value) },
        }),
      };
    },
    run: (inp) => api('/api/notifications', { method: 'POST', body: inp.value(), signal }),
    done: (r) => t('Notification {id} sent to {n} subjects.', { id: r?.body?.id ?? '', n: r?.body?.subjects?.length ?? 0 }),
  });
}

// notifications lists what was sent (GET /api/notifications, newest
// first); each row leads to who confirmed it.
async function notifications({ signal }) {
  const { body } = await api('/api/notifications', { signal });
  if (signal.aborted) return;
  const list = Array.isArray(body) ? body : [];
  show(
    flashBox(),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, t('Notifications')),
        h('span', { class: 'muted' }, fmtNum(list.length)), h('span', { class: 'right' }, publishAction(signal))),
      list.length ? h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'notifications' },
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('title')), h('th', { scope: 'col' }, t('priority')),
          h('th', { scope: 'col' }, t('confirm')), h('th', { scope: 'col' }, zoned('issued')), h('th', { scope: 'col' }, zoned('expires')),
          h('th', { scope: 'col' }, t('by')), h('th', { scope: 'col' }, t('id')))),
        h('tbody', null, list.map((n) => rowLink(h('tr', null,
          h('td', { class: 'clip wide' }, link('/notifications/' + seg(n.id), n.title || '–')),
          h('td', null, prioBadge(n.priority)),
          h('td', null, n.require_ack ? t('yes') : t('no')),
          h('td', null, timeCell(n.issued_at)),
          h('td', null, n.expires_at ? timeCell(n.expires_at) : '–'),
          h('td', null, n.issued_by ?? '–'),
          h('td', { class: 'mono clip' }, n.id)), '/notifications/' + seg(n.id))))))
        : h('p', { class: 'muted' }, t('No notifications sent yet.'))));
  markRefreshed();
}

// notificationDetail is one notification and every user's confirmation.
async function notificationDetail({ params, signal, refresh }) {
  const id = params[0];
  const [list, acks] = await Promise.allSettled([api('/api/notifications', { signal }), api(`/api/notifications/${seg(id)}/ack_status`, { signal })]);
  if (signal.aborted) return;
  settled([list, acks], refresh);
  const n = list.status === 'fulfilled' && Array.isArray(list.value.body) ? list.value.body.find((x) => x.id === id) : null;
  const rows = acks.status === 'fulfilled' ? acks.value.body?.acks || [] : [];
  const pcs = new Set(rows.map((a) => a.pc_id));
  show(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, t('Notification'), ' ', h('span', { class: 'mono' }, id)),
        n ? prioBadge(n.priority) : null, links(link('/notifications', t('Notifications')))),
      n ? [h('p', { id: 'notify-title' }, h('strong', null, n.title)), n.body ? h('pre', { id: 'notify-text' }, n.body) : null,
        kvTable(n, ['title', 'body', 'priority'])] : h('p', { class: 'muted' }, t('Not among the last 200 sent.'))),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h3', null, t('confirmed by')),
        h('span', { class: 'muted', id: 'ack-count' }, t('{n} users on {pcs} PCs', { n: fmtNum(rows.length), pcs: fmtNum(pcs.size) }))),
      acks.status === 'rejected' ? errorBox(acks.reason) : rows.length
        ? h('div', { class: 'scroll' }, h('table', { class: 'list', id: 'acks' },
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, t('pc_id')), h('th', { scope: 'col' }, t('user')), h('th', { scope: 'col' }, zoned('confirmed')))),
          h('tbody', null, rows.map((a) => h('tr', null,
            h('td', { class: 'mono' }, link('/agents/' + seg(a.pc_id), a.pc_id)),
            h('td', { class: 'mono' }, a.user_sid),
            h('td', null, timeCell(a.acked_at)))))))
        : h('p', { class: 'muted' }, t('Nobody has confirmed it yet.'))));
  markRefreshed();
}

// ---------------------------------------------------------------- router

// Inventory and telemetry pages slot in here (and in index.html's nav) when
// their routes land on the API.
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
  [/^\/jobs\/([^/]+)\/edit$/, (v) => editor(v, 'jobs', false), 'jobs'],
  [/^\/new\/jobs$/, (v) => editor(v, 'jobs', true), 'jobs'],
  [/^\/schedules$/, schedules, 'schedules'],
  [/^\/schedules\/([^/]+)$/, scheduleDetail, 'schedules'],
  [/^\/schedules\/([^/]+)\/edit$/, (v) => editor(v, 'schedules', false), 'schedules'],
  [/^\/new\/schedules$/, (v) => editor(v, 'schedules', true), 'schedules'],
  [/^\/groups$/, groups, 'groups'],
  [/^\/releases$/, releases, 'releases'],
  [/^\/audit$/, audit, 'audit'],
  [/^\/accounts$/, accounts, 'accounts'],
  [/^\/timeline$/, timeline, 'timeline'],
  [/^\/compliance$/, compliance, 'compliance'],
  [/^\/notifications$/, notifications, 'notifications'],
  [/^\/notifications\/([^/]+)$/, notificationDetail, 'notifications'],
];

let current = null;
// refresher reads the view on screen again; null while there is nothing
// to refresh (a form, an error, a page being left).
let refresher = null;
let refreshing = false;

// fail shows an error of the current view: the sign-in form for a 401
// (saying why when a stored token was refused), nothing for a view that was
// left, an error box otherwise. A 401 also ends the view, so no refresh
// comes back to replace the form while someone types into it.
function fail(err, signal) {
  if (signal.aborted || err.name === 'AbortError') return;
  if (err instanceof AuthError) {
    current?.abort();
    refresher = null;
    forget();
    loginForm(getToken() ? err.message : '');
  } else app.replaceChildren(h('section', { class: 'card' }, errorBox(err)));
}

// busy says whether the operator is in the middle of something a refresh
// must not undo: typing in a field, or answering a confirmation.
function busy() {
  const a = document.activeElement;
  if (app.querySelector('.confirming') || banner.querySelector('.confirming')) return true;
  return Boolean(a && app.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName) && !a.closest('form.filters'));
}

// tick reads the view on screen again. A failure keeps the page (api has
// marked it stale); a refused session ends it.
async function tick(force = false) {
  if (!refresher || refreshing || (!force && (document.hidden || busy()))) return;
  const ctl = current;
  refreshing = true;
  try {
    await Promise.all([refresher(), freezeBanner(ctl.signal)]);
    tickTimes();
    if (!staleSince) markRefreshed();
  } catch (err) {
    if (err instanceof AuthError) fail(err, ctl.signal);
    // Anything else: the last good page stays, #live says since when.
  } finally {
    refreshing = false;
  }
}

setInterval(() => tick(), REFRESH_MS);

// refreshNow reads the page again at once (after an action).
function refreshNow() {
  tick(true);
}

function render() {
  current?.abort();
  const ctl = new AbortController();
  current = ctl;
  refresher = null;
  flash = null;
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
  const navText = document.querySelector(`#nav a[data-nav="${section}"]`)?.textContent;
  document.title = navText ? `kanade · ${navText}` : 'kanade';
  // Who is asking is read beside the view's own reads (see api), and comes
  // first all the same: the sign-in form, or the new password owed, replaces
  // any view, whose reads then end unanswered (aborted).
  const known = session(ctl.signal).then(() => {
    if (ctl.signal.aborted || !me.must_change_pw) return;
    ctl.abort();
    changePasswordForm();
  });
  gate = { signal: ctl.signal, me: known };
  known.catch((err) => {
    fail(err, ctl.signal);
    ctl.abort(); // nothing draws over the sign-in form or the error
  });
  freezeBanner(ctl.signal).catch((err) => fail(err, ctl.signal));
  const query = new URLSearchParams(location.search);
  Promise.resolve().then(() => view({ params, query, signal: ctl.signal, refresh: false })).then((r) => {
    if (ctl.signal.aborted || r === false) return;
    refresher = typeof r === 'function' ? r : () => view({ params, query, signal: ctl.signal, refresh: true });
  }).catch((err) => fail(err, ctl.signal));
}

function go(url) {
  // The page being left keeps where it was scrolled, for Back.
  history.replaceState({ ...(history.state || {}), scroll: window.scrollY }, '');
  history.pushState(null, '', url);
  render();
  window.scrollTo(0, 0);
}

// Same-origin links become client-side navigations (real paths, so a reload
// asks the server, which answers index.html for them). A link to #id stays
// a jump on the page.
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  if (a.getAttribute('href').startsWith('#')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  e.preventDefault();
  go(url.pathname + url.search + url.hash);
});
window.addEventListener('popstate', render);

// The static text of index.html is translated once; the switches re-render.
function translateChrome() {
  document.documentElement.lang = lang;
  for (const a of document.querySelectorAll('#nav a')) {
    a.dataset.en ??= a.textContent;
    a.textContent = t(a.dataset.en);
  }
  for (const el of document.querySelectorAll('#logout, .skip, #tz option, #lang option[value="en"]')) {
    el.dataset.en ??= el.textContent;
    el.textContent = el.id === 'lang' ? el.textContent : t(el.dataset.en);
  }
  for (const el of document.querySelectorAll('#tz, #lang, #nav')) {
    el.dataset.label ??= el.getAttribute('aria-label');
    el.setAttribute('aria-label', t(el.dataset.label));
  }
  document.getElementById('lang').value = lang;
  document.getElementById('tz').value = tzMode;
}

document.getElementById('lang').addEventListener('change', (e) => {
  setLang(e.target.value);
  translateChrome();
  showLive();
  render();
});
document.getElementById('tz').addEventListener('change', (e) => {
  setTz(e.target.value);
  showLive();
  render();
});

translateChrome();
takeTokenFromHash();
render();
