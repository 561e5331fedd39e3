// Small DOM helpers. Text always goes in as text nodes, never as HTML:
// rows, errors and operations are data from the database and the writers.

// h makes an element: h('a', {href: '/ui/'}, 'Overview', child, …).
// Attributes starting with "on" are listeners; class and for are spelled
// as in HTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG = 'http://www.w3.org/2000/svg';

// s makes an SVG element.
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// bytes formats a size.
export function bytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

// num formats a count or a rate.
export function num(n, digits = 0) {
  if (n === undefined || n === null || Number.isNaN(n)) return '—';
  return n.toLocaleString('en', {maximumFractionDigits: digits, minimumFractionDigits: digits});
}

// seconds formats a duration in seconds.
export function seconds(x) {
  if (x === undefined || x === null || !Number.isFinite(x)) return '—';
  if (x < 1) return (x * 1000).toFixed(x < 0.01 ? 2 : 1) + ' ms';
  if (x < 120) return x.toFixed(1) + ' s';
  if (x < 7200) return (x / 60).toFixed(1) + ' min';
  return (x / 3600).toFixed(1) + ' h';
}

// time formats an RFC 3339 time for people (local time), or '—'.
export function time(t) {
  if (!t) return '—';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return t;
  return d.toLocaleString('sv-SE', {hour12: false}) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

// message puts a status line in el: kind is 'error', 'ok' or 'info'.
export function message(el, kind, text) {
  el.className = 'msg ' + kind;
  el.textContent = text;
}
