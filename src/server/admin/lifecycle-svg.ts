import type { MachineDescription } from '../../machines/diagram.js';

/**
 * The session lifecycle as an SVG, drawn from the machine's own description
 * (`describeMachine(sessionMachine)`), so the live page can never disagree
 * with the code. The simple states sit in one row, siblings in definition
 * order (final ones last); a compound state (closed) is a box around its
 * children, with its own entry dot pointing at its initial child, and a
 * transition into it ends on the box. A transition to the neighbouring
 * state or box is a straight arrow labelled above, a longer jump an arc
 * below, a self-transition a loop above its state (or box).
 * Each state, compound ones included, is a `<g class="state" data-state="…">`
 * with a count badge the page fills in; the page highlights states by
 * toggling classes on them.
 */

const NODE_W = 124;
const NODE_H = 46;
const GAP = 222;
const MARGIN_X = 28;
const LINE = 13;
/** Room a compound box leaves around its children: at the sides and below, and above for its name. */
const BOX_PAD = 34;
const BOX_HEAD = 30;

interface Edge {
  source: string;
  target: string;
  labels: string[];
}

/** Where a state is drawn: its box, and the row columns it covers. */
interface Place {
  left: number;
  right: number;
  top: number;
  bottom: number;
  firstColumn: number;
  lastColumn: number;
  compound: boolean;
}

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

const parentOf = (name: string) => name.split('.').slice(0, -1).join('.');

function edgesOf(description: MachineDescription, drawn: Set<string>): Edge[] {
  const nonFinal = description.states.filter((s) => !s.final).map((s) => s.name);
  const edges = new Map<string, Edge>();
  for (const t of description.transitions) {
    // A transition on the machine's root applies in every state that is not final.
    const sources = t.source === description.id ? nonFinal : [t.source];
    for (const source of sources) {
      const target = t.target === description.id ? source : t.target;
      if (!drawn.has(source) || !drawn.has(target)) continue;
      const id = `${source}>${target}`;
      const edge = edges.get(id) ?? { source, target, labels: [] };
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
  // The page colours states by this index: the same order as its own list.
  const order = [...description.states.filter((s) => !s.final), ...description.states.filter((s) => s.final)].map((s) => s.name);
  const childrenOf = (parent: string) => {
    const children = description.states.filter((s) => parentOf(s.name) === parent);
    return [...children.filter((s) => !s.final), ...children.filter((s) => s.final)].map((s) => s.name);
  };
  const isCompound = (name: string) => childrenOf(name).length > 0;
  // How many boxes deep a compound state's children sit: its box is drawn that many paddings around them.
  const nesting = (name: string): number => (isCompound(name) ? 1 + Math.max(...childrenOf(name).map(nesting)) : 0);
  const simple: string[] = [];
  // Siblings keep their order; a compound state's children take its place in the row.
  const walk = (parent: string) => {
    for (const name of childrenOf(parent)) {
      if (isCompound(name)) walk(name);
      else simple.push(name);
    }
  };
  walk('');
  const deepest = Math.max(0, ...description.states.map((s) => nesting(s.name)));

  const edges = edgesOf(description, new Set(order));
  const loops = edges.filter((e) => e.source === e.target);
  const maxLoopLines = Math.max(0, ...loops.map((e) => e.labels.length));
  const nodeTop = 16 + deepest * BOX_HEAD + Math.max(maxLoopLines * LINE + 36, Math.max(0, ...edges.map((e) => e.labels.length)) * LINE + 12 - NODE_H / 2);
  const midY = nodeTop + NODE_H / 2;
  const nodeBottom = nodeTop + NODE_H;
  const columnLeft = (column: number) => MARGIN_X + 18 + deepest * BOX_PAD + column * (NODE_W + GAP);

  const places = new Map<string, Place>();
  const placeOf = (name: string): Place => {
    const known = places.get(name);
    if (known) return known;
    let place: Place;
    if (isCompound(name)) {
      const inner = childrenOf(name).map(placeOf);
      const depth = nesting(name);
      const firstColumn = Math.min(...inner.map((p) => p.firstColumn));
      const lastColumn = Math.max(...inner.map((p) => p.lastColumn));
      place = {
        left: columnLeft(firstColumn) - depth * BOX_PAD,
        right: columnLeft(lastColumn) + NODE_W + depth * BOX_PAD,
        top: nodeTop - depth * BOX_HEAD,
        bottom: nodeBottom + depth * BOX_PAD,
        firstColumn,
        lastColumn,
        compound: true,
      };
    } else {
      const column = simple.indexOf(name);
      place = { left: columnLeft(column), right: columnLeft(column) + NODE_W, top: nodeTop, bottom: nodeBottom, firstColumn: column, lastColumn: column, compound: false };
    }
    places.set(name, place);
    return place;
  };
  for (const name of order) placeOf(name);
  const at = (name: string) => places.get(name)!;
  const centre = (p: Place) => (p.left + p.right) / 2;

  const steps = edges.filter((e) => e.source !== e.target && at(e.target).firstColumn === at(e.source).lastColumn + 1);
  const jumps = edges.filter((e) => e.source !== e.target && !steps.includes(e));
  const distance = (e: Edge) => Math.max(at(e.target).firstColumn - at(e.source).lastColumn, at(e.source).firstColumn - at(e.target).lastColumn);
  const depthOf = (e: Edge) => 40 + 44 * (distance(e) - 2);
  const lowest = Math.max(...[...places.values()].map((p) => p.bottom));
  const maxDepth = Math.max(0, ...jumps.map(depthOf));
  const width = Math.max(...[...places.values()].map((p) => p.right)) + MARGIN_X;
  const height = Math.ceil(lowest + maxDepth * 0.75 + (jumps.length > 0 ? 30 : 16));

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="lifecycle" viewBox="0 0 ${width} ${height}" role="img" aria-label="Session lifecycle: ${escapeXml(order.join(', '))}">`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>',
  );

  // Compound boxes first, outermost first, so their children are drawn over them.
  for (const name of order.filter(isCompound).sort((a, b) => nesting(b) - nesting(a))) {
    const p = at(name);
    const label = escapeXml(name.split('.').at(-1)!);
    parts.push(
      `<g class="state compound" data-state="${escapeXml(name)}" data-index="${order.indexOf(name)}">`,
      `<rect x="${p.left}" y="${p.top}" width="${p.right - p.left}" height="${p.bottom - p.top}" rx="16"/>`,
      `<text class="name" x="${p.left + 14}" y="${p.top + 20}">${label}</text>`,
      `<g class="badge"><circle cx="${p.right - 4}" cy="${p.top + 4}" r="11"/><text class="count" x="${p.right - 4}" y="${p.top + 8}" text-anchor="middle" data-count-for="${escapeXml(name)}">0</text></g>`,
      '</g>',
    );
  }

  // Entry arrows: the machine's, and each compound state's to its initial child.
  const entries: Array<{ into: string; x: number; r: number }> = [];
  if (order.includes(description.initial)) entries.push({ into: description.initial, x: at(description.initial).left - 22, r: 5 });
  for (const state of description.states) {
    if (state.initial && places.has(state.initial)) entries.push({ into: state.initial, x: at(state.name).left + 9, r: 4 });
  }
  for (const { into, x, r } of entries) {
    parts.push(`<circle class="start" cx="${x}" cy="${midY}" r="${r}"/>`, `<line class="edge" x1="${x + 5}" y1="${midY}" x2="${at(into).left - 2}" y2="${midY}" marker-end="url(#arrow)"/>`);
  }

  for (const e of steps) {
    const x1 = at(e.source).right;
    const x2 = at(e.target).left;
    parts.push(`<line class="edge" x1="${x1}" y1="${midY}" x2="${x2 - 2}" y2="${midY}" marker-end="url(#arrow)"/>`);
    parts.push(textLines(e.labels, (x1 + x2) / 2, midY - 8, 'event'));
  }

  for (const e of loops) {
    const p = at(e.source);
    // A box's loop sits right of its name.
    const x = p.compound ? p.right - 60 : centre(p);
    parts.push(`<path class="edge" d="M${x - 16},${p.top} C${x - 30},${p.top - 32} ${x + 30},${p.top - 32} ${x + 16},${p.top - 2}" fill="none" marker-end="url(#arrow)"/>`);
    parts.push(textLines(e.labels, x, p.top - 30, 'event'));
  }

  // Longer jumps leave and arrive a little apart, so arcs sharing a state stay distinguishable; one into a box ends on its edge near the side it comes from.
  const arrivals = new Map<string, number>();
  for (const e of [...jumps].sort((a, b) => depthOf(a) - depthOf(b))) {
    const arrived = arrivals.get(e.target) ?? 0;
    arrivals.set(e.target, arrived + 1);
    const from = at(e.source);
    const to = at(e.target);
    const direction = to.firstColumn > from.lastColumn ? 1 : -1;
    const x1 = (from.compound ? (direction > 0 ? from.right - 30 : from.left + 30) : centre(from)) + direction * 14;
    const x2 = (to.compound ? (direction > 0 ? to.left + 30 : to.right - 30) : centre(to)) - direction * (14 + arrived * 18);
    const below = Math.max(from.bottom, to.bottom);
    const depth = depthOf(e);
    parts.push(`<path class="edge" d="M${x1},${from.bottom} C${x1},${below + depth} ${x2},${below + depth} ${x2},${to.bottom + 2}" fill="none" marker-end="url(#arrow)"/>`);
    parts.push(textLines([e.labels.join('  ·  ')], (x1 + x2) / 2, below + depth * 0.75 + 14, 'event'));
  }

  for (const name of order.filter((n) => !isCompound(n))) {
    const state = description.states.find((s) => s.name === name)!;
    const { left: x } = at(name);
    const i = order.indexOf(name);
    const escaped = escapeXml(name);
    // Inside a box the box already says whose child it is.
    const shown = escapeXml(parentOf(name) && places.has(parentOf(name)) ? name.split('.').at(-1)! : name);
    parts.push(
      `<g class="state${state.final ? ' final' : ''}" data-state="${escaped}" data-index="${i}">`,
      `<rect x="${x}" y="${nodeTop}" width="${NODE_W}" height="${NODE_H}" rx="12"/>`,
      state.final ? `<rect class="inner" x="${x + 4}" y="${nodeTop + 4}" width="${NODE_W - 8}" height="${NODE_H - 8}" rx="9"/>` : '',
      `<text class="name" x="${x + NODE_W / 2}" y="${midY + 5}" text-anchor="middle">${shown}</text>`,
      `<g class="badge"><circle cx="${x + NODE_W - 4}" cy="${nodeTop + 4}" r="11"/><text class="count" x="${x + NODE_W - 4}" y="${nodeTop + 8}" text-anchor="middle" data-count-for="${escaped}">0</text></g>`,
      '</g>',
    );
  }

  parts.push('</svg>');
  return parts.join('');
}
