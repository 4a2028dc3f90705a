import type { MachineDescription } from '../../machines/diagram.js';

/**
 * The session lifecycle as an SVG, drawn from the machine's own description
 * (`describeMachine(sessionMachine)`), so the live page can never disagree
 * with the code. States sit in one row in definition order (final states
 * last); a transition to the next state is a straight arrow labelled above,
 * a longer jump an arc below, a self-transition a loop above its state.
 * Each state is a `<g class="state" data-state="…">` with a count badge the
 * page fills in; the page highlights states by toggling classes on them.
 */

const NODE_W = 124;
const NODE_H = 46;
const GAP = 222;
const MARGIN_X = 28;
const LINE = 13;

interface Edge {
  source: number;
  target: number;
  labels: string[];
}

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

function edgesOf(description: MachineDescription, order: string[]): Edge[] {
  // A transition into a compound state (other than its own) arrives where sessions go: its initial child (closed → closed.closing).
  const initialOf = new Map(description.states.filter((s) => s.initial).map((s) => [s.name, s.initial!]));
  const entered = (target: string): string => (initialOf.has(target) ? entered(initialOf.get(target)!) : target);
  const nonFinal = description.states.filter((s) => !s.final).map((s) => s.name);
  const edges = new Map<string, Edge>();
  for (const t of description.transitions) {
    // A transition on the machine's root applies in every state that is not final.
    const sources = t.source === description.id ? nonFinal : [t.source];
    for (const source of sources) {
      const from = order.indexOf(source);
      const to = order.indexOf(t.target === description.id || t.target === source ? source : entered(t.target));
      if (from === -1 || to === -1) continue;
      const id = `${from}>${to}`;
      const edge = edges.get(id) ?? { source: from, target: to, labels: [] };
      const label = `${t.event}${t.guard ? ` [${t.guard}]` : ''}`;
      if (!edge.labels.includes(label)) edge.labels.push(label);
      edges.set(id, edge);
    }
  }
  return [...edges.values()];
}

function textLines(lines: string[], x: number, lastBaseline: number, className: string): string {
  const first = lastBaseline - (lines.length - 1) * LINE;
  return lines.map((line, i) => `<text class="${className}" x="${x}" y="${first + i * LINE}" text-anchor="middle">${escapeXml(line)}</text>`).join('');
}

export function lifecycleSvg(description: MachineDescription): string {
  const order = [...description.states.filter((s) => !s.final), ...description.states.filter((s) => s.final)].map((s) => s.name);
  const edges = edgesOf(description, order);
  const loops = edges.filter((e) => e.source === e.target);
  const steps = edges.filter((e) => e.target === e.source + 1);
  const jumps = edges.filter((e) => e.source !== e.target && e.target !== e.source + 1);

  const maxLoopLines = Math.max(0, ...loops.map((e) => e.labels.length));
  const maxStepLines = Math.max(0, ...steps.map((e) => e.labels.length));
  const nodeTop = 16 + Math.max(maxLoopLines * LINE + 36, maxStepLines * LINE + 12 - NODE_H / 2);
  const midY = nodeTop + NODE_H / 2;
  const nodeBottom = nodeTop + NODE_H;
  const cx = (i: number) => MARGIN_X + 18 + i * (NODE_W + GAP) + NODE_W / 2;
  const width = cx(order.length - 1) + NODE_W / 2 + MARGIN_X;
  const depthOf = (e: Edge) => 40 + 44 * (Math.abs(e.target - e.source) - 2);
  const maxDepth = Math.max(0, ...jumps.map(depthOf));
  const height = Math.ceil(nodeBottom + maxDepth * 0.75 + (jumps.length > 0 ? 30 : 16));

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="lifecycle" viewBox="0 0 ${width} ${height}" role="img" aria-label="Session lifecycle: ${escapeXml(order.join(', '))}">`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>',
  );

  // The initial state's entry arrow.
  const initial = order.indexOf(description.initial);
  if (initial !== -1) {
    const x = cx(initial) - NODE_W / 2;
    parts.push(`<circle class="start" cx="${x - 22}" cy="${midY}" r="5"/>`, `<line class="edge" x1="${x - 17}" y1="${midY}" x2="${x - 2}" y2="${midY}" marker-end="url(#arrow)"/>`);
  }

  for (const e of steps) {
    const x1 = cx(e.source) + NODE_W / 2;
    const x2 = cx(e.target) - NODE_W / 2;
    parts.push(`<line class="edge" x1="${x1}" y1="${midY}" x2="${x2 - 2}" y2="${midY}" marker-end="url(#arrow)"/>`);
    parts.push(textLines(e.labels, (x1 + x2) / 2, midY - 8, 'event'));
  }

  for (const e of loops) {
    const x = cx(e.source);
    parts.push(`<path class="edge" d="M${x - 16},${nodeTop} C${x - 30},${nodeTop - 32} ${x + 30},${nodeTop - 32} ${x + 16},${nodeTop - 2}" fill="none" marker-end="url(#arrow)"/>`);
    parts.push(textLines(e.labels, x, nodeTop - 30, 'event'));
  }

  // Longer jumps leave and arrive a little apart, so arcs sharing a state stay distinguishable.
  const arrivals = new Map<number, number>();
  for (const e of [...jumps].sort((a, b) => depthOf(a) - depthOf(b))) {
    const arrived = arrivals.get(e.target) ?? 0;
    arrivals.set(e.target, arrived + 1);
    const direction = e.target > e.source ? 1 : -1;
    const x1 = cx(e.source) + direction * 14;
    const x2 = cx(e.target) - direction * (14 + arrived * 18);
    const depth = depthOf(e);
    parts.push(`<path class="edge" d="M${x1},${nodeBottom} C${x1},${nodeBottom + depth} ${x2},${nodeBottom + depth} ${x2},${nodeBottom + 2}" fill="none" marker-end="url(#arrow)"/>`);
    parts.push(textLines([e.labels.join('  ·  ')], (x1 + x2) / 2, nodeBottom + depth * 0.75 + 14, 'event'));
  }

  description.states.forEach((state) => {
    const i = order.indexOf(state.name);
    const x = cx(i) - NODE_W / 2;
    const name = escapeXml(state.name);
    parts.push(
      `<g class="state${state.final ? ' final' : ''}" data-state="${name}" data-index="${i}">`,
      `<rect x="${x}" y="${nodeTop}" width="${NODE_W}" height="${NODE_H}" rx="12"/>`,
      state.final ? `<rect class="inner" x="${x + 4}" y="${nodeTop + 4}" width="${NODE_W - 8}" height="${NODE_H - 8}" rx="9"/>` : '',
      `<text class="name" x="${x + NODE_W / 2}" y="${midY + 5}" text-anchor="middle">${name}</text>`,
      `<g class="badge"><circle cx="${x + NODE_W - 4}" cy="${nodeTop + 4}" r="11"/><text class="count" x="${x + NODE_W - 4}" y="${nodeTop + 8}" text-anchor="middle" data-count-for="${name}">0</text></g>`,
      '</g>',
    );
  });

  parts.push('</svg>');
  return parts.join('');
}
