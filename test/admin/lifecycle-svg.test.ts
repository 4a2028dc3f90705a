import { describe, expect, it } from 'vitest';
import { createMachine } from 'xstate';
import { describeMachine } from '../../src/machines/diagram.js';
import { sessionMachine } from '../../src/machines/session.js';
import { lifecycleSvg } from '../../src/server/admin/lifecycle-svg.js';

/** The first rectangle of a state's group: its node, or for a compound state its box. */
function boxOf(svg: string, state: string): { x: number; y: number; width: number; height: number } {
  const match = new RegExp(`data-state="${state.replaceAll('.', '\\.')}"[^>]*><rect x="([\\d.]+)" y="([\\d.]+)" width="([\\d.]+)" height="([\\d.]+)"`).exec(svg);
  if (!match) throw new Error(`no state ${state} in the diagram`);
  const [x, y, width, height] = match.slice(1).map(Number) as [number, number, number, number];
  return { x, y, width, height };
}

function statesIn(svg: string): string[] {
  return [...svg.matchAll(/<g class="state[^"]*" data-state="([^"]+)"/g)].map((m) => m[1]!);
}

describe('the lifecycle diagram', () => {
  it('draws every state of the session machine and labels every transition', () => {
    const description = describeMachine(sessionMachine);
    const svg = lifecycleSvg(description);
    expect(statesIn(svg).sort()).toEqual(description.states.map((s) => s.name).sort());
    for (const t of description.transitions) expect(svg).toContain(`${t.event}${t.guard ? ` [${t.guard}]` : ''}`);
    // One arrow per (source, target) pair, plus an entry arrow for the machine and one for each compound state.
    const pairs = new Set(description.transitions.map((t) => `${t.source}>${t.target}`));
    const compounds = description.states.filter((s) => s.initial !== null).length;
    expect(svg.match(/class="edge"/g)).toHaveLength(pairs.size + 1 + compounds);
  });

  it('draws the compound closed state as a box around closing, settling and ended, which transitions into closed end on', () => {
    const svg = lifecycleSvg(describeMachine(sessionMachine));
    const box = boxOf(svg, 'closed');
    expect(svg).toContain('<g class="state compound" data-state="closed"');
    for (const child of ['closed.closing', 'closed.settling', 'closed.ended']) {
      const inner = boxOf(svg, child);
      expect(inner.x).toBeGreaterThan(box.x);
      expect(inner.x + inner.width).toBeLessThan(box.x + box.width);
      expect(inner.y).toBeGreaterThan(box.y);
      expect(inner.y + inner.height).toBeLessThan(box.y + box.height);
    }
    // The simple states sit left of it.
    const outside = ['connecting', 'relaying', 'draining'].map((name) => boxOf(svg, name));
    for (const state of outside) expect(state.x + state.width).toBeLessThan(box.x);
    // The arrow from draining ends on the box's left edge, not on one of its children.
    const draining = boxOf(svg, 'draining');
    expect(svg).toMatch(new RegExp(`<line class="edge" x1="${draining.x + draining.width}" y1="[\\d.]+" x2="${box.x - 2}"`));
    // Inside, an entry dot points at its initial child.
    const closing = boxOf(svg, 'closed.closing');
    expect(svg).toMatch(new RegExp(`<line class="edge" x1="[\\d.]+" y1="[\\d.]+" x2="${closing.x - 2}"`));
  });

  it('draws any machine: backward jumps, root transitions and names that need escaping', () => {
    const machine = createMachine({
      id: 'door',
      initial: 'shut',
      on: { 'SMASH<&>': '.broken' },
      states: { shut: { on: { OPEN: 'open' } }, open: { on: { SHUT: 'shut', LOCK: 'locked' } }, locked: { on: { UNLOCK: 'shut' } }, broken: { type: 'final' } },
    });
    const svg = lifecycleSvg(describeMachine(machine));
    expect(statesIn(svg)).toEqual(['shut', 'open', 'locked', 'broken']);
    expect(svg).toContain('SMASH&lt;&amp;&gt;');
    expect(svg).not.toContain('SMASH<&>');
    expect(svg).toContain('>UNLOCK<');
    expect(svg).toContain('>SHUT<');
  });
});
