import { getAdjacencyMap, getShortestPaths, getStateNodes } from '@xstate/graph';
import { __unsafe_getAllOwnEventDescriptors, type AnyStateNode, type SnapshotFrom, type TransitionDefinition } from 'xstate';
import { sessionMachine, stateName, type SessionEvent, type SessionPorts } from '../../src/machines/session.js';

type Snapshot = SnapshotFrom<typeof sessionMachine>;
/** Events of the machine's own, plus the ones XState makes for invocations and delays. */
export type PathEvent = SessionEvent | { type: `xstate.${string}`; [key: string]: unknown };

export interface PathStep {
  event: PathEvent;
  /** The abstract state after the step: value and whether a response is in flight. */
  state: string;
}

export interface SessionPath {
  name: string;
  steps: PathStep[];
}

/** One sample of each event; payloads the driver will reproduce for real. */
const SAMPLES: Record<string, PathEvent> = {
  CLIENT_CLOSED: { type: 'CLIENT_CLOSED', code: 1000, reason: '' },
  TARGET_CLOSED: { type: 'TARGET_CLOSED', code: 4001, reason: 'upstream closed' },
  ERROR: { type: 'ERROR', source: 'client', error: { code: 'invalid_frame', message: 'A frame could not be read.', closeCode: 1007 } },
  CANCEL: { type: 'CANCEL', reason: 'operator' },
  RESPONSE_REQUESTED: { type: 'RESPONSE_REQUESTED' },
  RESPONSE_CREATED: { type: 'RESPONSE_CREATED', responseId: 'resp_x' },
  RESPONSE_DONE: { type: 'RESPONSE_DONE', responseId: 'resp_x' },
};

const inertLeg = new Proxy({}, { get: () => () => () => undefined });
const inertPorts = new Proxy({}, { get: (_target, name) => (name === 'client' || name === 'upstream' ? inertLeg : () => () => undefined) }) as SessionPorts;
export const MODEL_INPUT = { sessionId: 'model', ports: inertPorts, timings: { connectTimeoutMs: 1, drainTimeoutMs: 1, maxSessionMs: 1 } };

/**
 * The state as far as the environment can tell: where the machine is, whether
 * a response is requested or created, and whether the client is still there.
 */
export function abstractState(snapshot: Snapshot): string {
  const { responseInFlight, responseId, clientClosed } = snapshot.context;
  const response = !responseInFlight ? '' : responseId === null ? '+requested' : '+created';
  return `${stateName(snapshot.value)}${response}${clientClosed ? '+client-gone' : ''}`;
}

/**
 * The events the real world can produce in a state. The machine accepts more
 * than the world can send it (a second close of one socket, a second
 * `response.created` while one response is active); paths through those would
 * be impossible to reproduce on real sockets.
 */
function feasible(snapshot: Snapshot, type: string): boolean {
  const { responseInFlight, responseId, clientClosed } = snapshot.context;
  switch (type) {
    case 'CLIENT_CLOSED':
    case 'RESPONSE_REQUESTED':
    case 'CANCEL':
      return clientClosed === null;
    case 'RESPONSE_CREATED':
      return responseId === null;
    case 'ERROR':
      // With the client gone, an error can only come from the relay's side of a response.
      return clientClosed === null || responseInFlight;
    case 'SOCKETS_CLOSED':
    case 'SETTLED':
      // The ending's two facts come in whichever order the sockets and the ledger answer:
      // no path prescribes it, and every replay takes both (see the ending check).
      return false;
    default:
      return true;
  }
}

function eventsFor(snapshot: Snapshot): PathEvent[] {
  if (snapshot.status !== 'active') return [];
  return __unsafe_getAllOwnEventDescriptors(snapshot)
    .filter((type: string) => feasible(snapshot, type))
    .map((type: string) => SAMPLES[type] ?? ({ type } as PathEvent));
}

const options = {
  input: MODEL_INPUT,
  events: eventsFor as never,
  serializeState: (snapshot: Snapshot) => abstractState(snapshot),
};

/**
 * Paths that together take every transition of the machine: for each edge of
 * the state graph, the shortest path to its source followed by that edge.
 */
export function coveringPaths(): SessionPath[] {
  const shortest = new Map<string, PathStep[]>();
  for (const path of getShortestPaths(sessionMachine, options)) {
    shortest.set(abstractState(path.state as Snapshot), path.steps.map((s) => ({ event: s.event as PathEvent, state: abstractState(s.state as Snapshot) })));
  }
  const adjacency = getAdjacencyMap(sessionMachine, options);
  const paths: SessionPath[] = [];
  const seen = new Set<string>();
  for (const [, { state, transitions }] of Object.entries(adjacency)) {
    const source = abstractState(state as Snapshot);
    const prefix = shortest.get(source);
    if (!prefix) continue;
    for (const { event, state: next } of Object.values(transitions as Record<string, { event: unknown; state: unknown }>)) {
      const steps = [...prefix, { event: event as PathEvent, state: abstractState(next as Snapshot) }];
      const name = steps.map((s) => s.event.type.replace('xstate.', '')).join(' → ');
      if (seen.has(name)) continue;
      seen.add(name);
      paths.push({ name, steps });
    }
  }
  // A path that ends where another continues adds nothing of its own.
  return paths.filter((p) => !paths.some((q) => q !== p && q.name.startsWith(`${p.name} → `)));
}

/** Every transition the machine declares, eventless ones included. */
export function allTransitions(): Array<TransitionDefinition<any, any>> {
  return getStateNodes(sessionMachine.root).flatMap((node: AnyStateNode) => [...[...node.transitions.values()].flat(), ...(node.always ?? [])]);
}

export function describeTransition(t: TransitionDefinition<any, any>): string {
  const guard = t.guard ? ` [${typeof t.guard === 'string' ? t.guard : (t.guard as { type?: string }).type}]` : '';
  return `${t.source.path.join('.')} --${t.eventType || 'always'}${guard}--> ${t.target?.map((n) => n.path.join('.')).join(',') ?? '(self)'}`;
}
