import type { AnyStateMachine, AnyStateNode } from 'xstate';

/** One transition of the machine, as a reader (or a diagram) sees it. */
export interface TransitionInfo {
  source: string;
  /** The event name; delays read `after <delay>`, invocations `done <id>` / `error <id>`, eventless ones `always`. */
  event: string;
  target: string;
  guard: string | null;
  actions: string[];
}

export interface MachineDescription {
  id: string;
  initial: string;
  states: Array<{ name: string; final: boolean; entry: string[]; invokes: string[]; delays: string[]; /** A compound state's initial child. */ initial: string | null }>;
  events: string[];
  transitions: TransitionInfo[];
}

function actionName(action: unknown): string {
  if (typeof action === 'string') return action;
  if (action && typeof action === 'object' && 'type' in action) return String((action as { type: unknown }).type);
  return 'inline';
}

function guardName(guard: unknown): string | null {
  if (!guard) return null;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && 'type' in guard) return String((guard as { type: unknown }).type);
  return 'inline';
}

function eventName(descriptor: string, source: AnyStateNode): string {
  if (descriptor.startsWith('xstate.after.')) {
    const delayed = source.after.find((t) => t.eventType === descriptor);
    const delay = delayed?.delay;
    return `after ${typeof delay === 'string' ? delay : String(delay)}`;
  }
  if (descriptor.startsWith('xstate.done.actor.')) return `done ${descriptor.slice('xstate.done.actor.'.length)}`;
  if (descriptor.startsWith('xstate.error.actor.')) return `error ${descriptor.slice('xstate.error.actor.'.length)}`;
  return descriptor;
}

function stateName(node: AnyStateNode): string {
  return node.path.join('.') || node.machine.id;
}

/** Every transition of the machine, including root-level and eventless ones, in a stable order. */
export function describeMachine(machine: AnyStateMachine): MachineDescription {
  const transitions: TransitionInfo[] = [];
  const states: MachineDescription['states'] = [];
  const events = new Set<string>();
  const visit = (node: AnyStateNode) => {
    const name = stateName(node);
    if (node !== machine.root) {
      states.push({
        name,
        final: node.type === 'final',
        // Built-in actions (the timers behind `after`) are not part of the picture.
        entry: node.entry.map(actionName).filter((name) => name !== 'inline'),
        invokes: node.invoke.map((i) => String(i.src)),
        delays: node.after.map((t) => String(t.delay)),
        initial: node.initial?.target?.[0] ? stateName(node.initial.target[0]) : null,
      });
    }
    for (const [descriptor, list] of node.transitions) {
      for (const transition of list) {
        const event = eventName(descriptor, node);
        if (!descriptor.startsWith('xstate.')) events.add(descriptor);
        const targets = transition.target?.map(stateName) ?? [name];
        for (const target of targets) {
          transitions.push({ source: name, event, target, guard: guardName(transition.guard), actions: transition.actions.map(actionName) });
        }
      }
    }
    for (const transition of node.always ?? []) {
      const targets = transition.target?.map(stateName) ?? [name];
      for (const target of targets) {
        transitions.push({ source: name, event: 'always', target, guard: guardName(transition.guard), actions: transition.actions.map(actionName) });
      }
    }
    for (const child of Object.values(node.states)) visit(child);
  };
  visit(machine.root);
  return {
    id: machine.id,
    initial: String(machine.root.initial?.target?.[0] ? stateName(machine.root.initial.target[0]) : ''),
    states,
    events: [...events].sort(),
    transitions,
  };
}

/** The machine as a Mermaid state diagram: the README's picture is this output. Compound states are drawn as nested blocks. */
export function toMermaid(machine: AnyStateMachine): string {
  const description = describeMachine(machine);
  const parentOf = (name: string) => name.split('.').slice(0, -1).join('.');
  const local = (name: string) => name.split('.').at(-1)!;
  const block = (parent: string, indent: string): string[] => {
    const lines: string[] = [];
    const node = parent ? machine.getStateNodeById(`${description.id}.${parent}`) : machine.root;
    const initial = node.initial?.target?.[0];
    if (initial) lines.push(`${indent}[*] --> ${local(stateName(initial))}`);
    for (const t of description.transitions) {
      const isRoot = t.source === description.id;
      if (isRoot ? parent !== '' : parentOf(t.source) !== parent) continue;
      const sources = isRoot ? description.states.filter((s) => !s.final && parentOf(s.name) === '').map((s) => s.name) : [t.source];
      const label = `${t.event}${t.guard ? ` [${t.guard}]` : ''}`;
      // A transition into a compound state's child is drawn to the compound state it enters.
      const target = parentOf(t.target) === parent ? t.target : t.target.split('.').slice(0, parent ? parent.split('.').length + 1 : 1).join('.');
      for (const from of sources) lines.push(`${indent}${local(from)} --> ${local(target)} : ${label}`);
    }
    for (const state of description.states) {
      if (parentOf(state.name) !== parent) continue;
      if (state.final) lines.push(`${indent}${local(state.name)} --> [*]`);
      else if (description.states.some((child) => parentOf(child.name) === state.name)) {
        lines.push(`${indent}state ${local(state.name)} {`, ...block(state.name, `${indent}  `), `${indent}}`);
      }
    }
    return lines;
  };
  return ['stateDiagram-v2', ...block('', '  ')].join('\n');
}
