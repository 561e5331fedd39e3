// A line chart in SVG of a series of {t, v} (t in ms), over the last
// span ms: drawn afresh at every tick, no library.
import {s, num} from './dom.js';

const W = 600, H = 140, PAD = 4;

export function chart(label) {
  const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', class: 'chart', role: 'img'});
  svg.setAttribute('aria-label', label);
  return svg;
}

// draw replaces the chart's lines with points, scaled to their maximum.
export function draw(svg, points, span, now, label) {
  const max = Math.max(1, ...points.map((p) => p.v));
  const x = (t) => PAD + (W - 2 * PAD) * (1 - (now - t) / span);
  const y = (v) => H - PAD - (H - 2 * PAD) * (v / max);
  const d = points.map((p, i) => (i ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(p.v).toFixed(1)).join(' ');
  const last = points.length ? points[points.length - 1].v : 0;
  svg.setAttribute('aria-label', `${label}: ${num(last, 1)} now, at most ${num(max, 1)} over the last ${Math.round(span / 1000)} seconds`);
  svg.replaceChildren(
    s('line', {x1: PAD, x2: W - PAD, y1: y(max), y2: y(max), class: 'grid'}),
    s('line', {x1: PAD, x2: W - PAD, y1: y(max / 2), y2: y(max / 2), class: 'grid'}),
    s('line', {x1: PAD, x2: W - PAD, y1: H - PAD, y2: H - PAD, class: 'axis'}),
    s('path', {d: d || 'M0 0', class: 'line'}),
    s('text', {x: PAD + 2, y: y(max) + 14, class: 'label'}, num(max, 1) + '/s'),
  );
}
