// The API reference page (GET /api/docs). The page itself is public and
// holds nothing secret; the description it shows, /api/openapi.json, needs
// a token like every other /api route. The page reads the token the
// dashboard keeps in this browser (localStorage "kanade.token", see
// spa/dist/assets/app.js) and sends it as a bearer token. Everything from
// the document is written with textContent, never parsed as HTML.

const TOKEN_KEY = 'kanade.token';
const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options'];
const main = document.getElementById('docs');

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) if (v != null) el.setAttribute(k, v);
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

function token() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

function signIn(why) {
  main.replaceChildren(h('h1', null, 'kanade API'),
    h('p', { id: 'docs-signin' }, why + ' ', h('a', { href: '/' }, 'Sign in on the dashboard'),
      ', then come back to this page: it uses the token the dashboard keeps in this browser.'));
}

const refName = (s) => (s && s.$ref ? s.$ref.split('/').pop() : s && s.type ? String(s.type) : '');

function operation(path, method, op) {
  const body = h('div', { class: 'b' });
  if (op.description && op.description !== op.summary) body.append(h('p', null, op.description));
  const params = op.parameters || [];
  if (params.length) {
    body.append(h('table', { class: 'params' },
      h('thead', null, h('tr', null, ['parameter', 'in', 'required', 'type', 'description'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, params.map((p) => h('tr', null, h('td', { class: 'c' }, p.name), h('td', null, p.in),
        h('td', null, p.required ? 'yes' : ''), h('td', { class: 'c' }, refName(p.schema)), h('td', null, p.description || ''))))));
  }
  const req = op.requestBody && op.requestBody.content;
  if (req) {
    body.append(h('p', null, 'Body: ', Object.entries(req).map(([type, m]) => `${type} ${refName(m.schema)}`.trim()).join(', ')));
  }
  const res = Object.entries(op.responses || {});
  if (res.length) {
    body.append(h('table', { class: 'responses' },
      h('thead', null, h('tr', null, ['status', 'description'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, res.map(([code, r]) => h('tr', null, h('td', { class: 'c' }, code), h('td', null, (r && r.description) || ''))))));
  }
  const d = h('details', { class: 'op', 'data-key': `${method.toUpperCase()} ${path}`.toLowerCase() + ' ' + (op.summary || '').toLowerCase() },
    h('summary', null, h('span', { class: `m ${method}` }, method), h('span', { class: 'p' }, path), h('span', { class: 's' }, op.summary || '')),
    body);
  return d;
}

function render(doc) {
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths || {}).sort(([a], [b]) => a.localeCompare(b))) {
    for (const m of METHODS) {
      const op = item && item[m];
      if (!op) continue;
      const tag = (op.tags && op.tags[0]) || 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(path, m, op));
    }
  }
  const filter = h('input', { id: 'filter', type: 'search', 'aria-label': 'Filter operations', placeholder: 'Filter: method, path or summary' });
  const ops = h('div', { id: 'ops' });
  for (const [tag, list] of [...byTag].sort(([a], [b]) => a.localeCompare(b))) {
    ops.append(h('section', { class: 'tag' }, h('h2', null, tag), list));
  }
  filter.addEventListener('input', () => {
    const q = filter.value.trim().toLowerCase();
    for (const op of ops.querySelectorAll('.op')) op.hidden = q !== '' && !op.dataset.key.includes(q);
    for (const s of ops.querySelectorAll('section.tag')) s.hidden = !s.querySelector('.op:not([hidden])');
  });
  const info = doc.info || {};
  main.replaceChildren(h('h1', null, `${info.title || 'API'} ${info.version || ''}`.trim()),
    info.description ? h('p', null, info.description) : null,
    h('p', { class: 'muted' }, `OpenAPI ${doc.openapi || ''}: ${ops.querySelectorAll('.op').length} operations. The document itself is /api/openapi.json.`),
    filter, ops);
}

async function load() {
  const t = token();
  if (!t) {
    signIn('This page shows the API description, which needs a token.');
    return;
  }
  let res;
  try {
    res = await fetch('/api/openapi.json', { headers: { Accept: 'application/json', Authorization: 'Bearer ' + t }, cache: 'no-store' });
  } catch (err) {
    main.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'Cannot reach the server: ' + err.message));
    return;
  }
  if (res.status === 401) {
    signIn('The server refused the token saved in this browser.');
    return;
  }
  if (!res.ok) {
    main.replaceChildren(h('p', { class: 'error', role: 'alert' }, `The server answered HTTP ${res.status} for /api/openapi.json.`));
    return;
  }
  render(await res.json());
}

load();
