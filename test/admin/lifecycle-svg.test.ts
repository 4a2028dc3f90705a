import { describe, expect, it } from 'vitest';
import { createMachine } from 'xstate';
import { describeMachine } from '../../src/machines/diagram.js';
import { sessionMachine } from '../../src/machines/session.js';
import { lifecycleSvg } from '../../src/server/admin/lifecycle-svg.js';

function statesIn(svg: string): string[] {
  return [...svg.matchAll(/<g class="state[^"]*" data-state="([^"]+)"/g)].map((m) => m[1]!);
}

describe('the lifecycle diagram', () => {
  it('draws every state of the session machine and labels every transition', () => {
    const description = describeMachine(sessionMachine);
    const svg = lifecycleSvg(description);
    expect(statesIn(svg).sort()).toEqual(description.states.map((s) => s.name).sort());
    for (const t of description.transitions) expect(svg).toContain(`${t.event}${t.guard ? ` [${t.guard}]` : ''}`);
    // One arrow per (source, target) pair, plus the entry arrow.
    const pairs = new Set(description.transitions.map((t) => `${t.source}>${t.target}`));
    expect(svg.match(/class="edge"/g)).toHaveLength(pairs.size + 1);
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
