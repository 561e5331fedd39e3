// The dashboard's shell: sign-in, navigation without reloads, and the
// router that draws the page of the URL (every page has its own).
import {call, me, token, quiet} from './api.js';
import {h} from './dom.js';
import {overview} from './overview.js';
import {deadLetters} from './deadletters.js';
import {transaction} from './transaction.js';
import {table} from './table.js';

const routes = [
  [/^\/ui\/?$/, overview, 'Overview'],
  [/^\/ui\/dead-letters\/?$/, deadLetters, 'Dead letters'],
  [/^\/ui\/transactions\/([^/]+)$/, transaction, 'Transaction'],
  [/^\/ui\/tables\/([^/]+)$/, table, 'Table'],
];

const main = document.getElementById('main');
const login = document.getElementById('login');
let page = null; // the AbortController of the page on screen

// render draws the page of location into main, stopping the one before.
async function render() {
  if (page) page.abort();
  page = new AbortController();
  const signal = page.signal;
  main.replaceChildren();
  login.hidden = true;
  main.hidden = false;
  if (!(await signIn())) return;
  const path = location.pathname;
  for (const [re, draw, title] of routes) {
    const m = path.match(re);
    if (!m) continue;
    document.title = title + ' · spool';
    for (const a of document.querySelectorAll('nav a')) {
      if (a.pathname === path || (a.pathname === '/ui/' && path === '/ui')) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    try {
      await draw(main, signal, ...m.slice(1).map(decodeURIComponent));
    } catch (err) {
      if (!quiet(err)) main.append(h('p', {class: 'msg error', role: 'alert'}, String(err.message || err)));
    }
    return;
  }
  main.append(h('h1', {}, 'No such page'), h('p', {}, h('a', {href: '/ui/'}, 'To the overview')));
}

// signIn learns who we are; false (and the login shown) on a 401.
async function signIn() {
  try {
    const w = await call('GET', '/v1/whoami');
    me.name = w.name;
    me.scopes = w.scopes || [];
  } catch (err) {
    if (!quiet(err)) main.append(h('p', {class: 'msg error', role: 'alert'}, String(err.message || err)));
    return false;
  }
  document.getElementById('who').textContent = 'Signed in as ' + me.name;
  document.getElementById('sign-out').hidden = !token.get();
  fillTables();
  return true;
}

async function fillTables() {
  const sel = document.getElementById('goto-table-name');
  try {
    const {tables} = await call('GET', '/v1/tables');
    const cur = sel.value;
    sel.replaceChildren(...tables.map((t) => h('option', {value: t.name}, t.name)));
    if (cur) sel.value = cur;
  } catch (err) {
    if (!quiet(err)) console.warn(err);
  }
}

function showLogin(reason) {
  if (page) page.abort();
  main.replaceChildren();
  main.hidden = true;
  login.hidden = false;
  document.getElementById('who').textContent = '';
  document.getElementById('sign-out').hidden = true;
  const err = document.getElementById('login-error');
  err.textContent = token.get() ? 'The token was refused: ' + reason : '';
  token.clear(); // a refused token is not sent again
  document.getElementById('login-token').focus();
}

window.addEventListener('spool:login', (e) => showLogin(e.detail));

document.getElementById('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = document.getElementById('login-token');
  token.set(input.value.trim());
  input.value = '';
  render().then(() => main.focus());
});

document.getElementById('sign-out').addEventListener('click', () => {
  token.clear();
  showLogin('');
});

document.getElementById('goto-table').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = document.getElementById('goto-table-name').value;
  if (t) navigate('/ui/tables/' + encodeURIComponent(t));
});

// navigate shows path without a reload.
export function navigate(path) {
  history.pushState(null, '', path);
  render().then(() => main.focus());
}

// Links within the dashboard change the page without a reload.
document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || a.target || a.origin !== location.origin || !a.pathname.startsWith('/ui/') || a.pathname.startsWith('/ui/assets/')) return;
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
});
window.addEventListener('popstate', render);
window.addEventListener('spool:navigate', (e) => navigate(e.detail));

render();
