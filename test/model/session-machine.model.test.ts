import { afterAll, describe, expect, it } from 'vitest';
import { assign, type InspectionEvent, type StateValue, type TransitionDefinition } from 'xstate';
import { sessionMachine, stateName, type SessionMachine } from '../../src/machines/session.js';
import type { TestClient } from '../helpers/client.js';
import { startTestRelay, type RecordingTestRelay } from '../helpers/relay.js';
import { allTransitions, coveringPaths, describeTransition, type PathStep, type SessionPath } from './session-paths.js';

/**
 * Model-based test of the session machine: paths generated from the machine
 * itself (with @xstate/graph) that together take every transition, each
 * replayed end to end on real sockets — a real `ws` client, the real relay
 * server, the upstream simulator — with the world made to produce each event
 * of the path for real. For every path: the machine passes through the
 * path's states, ends `closed`, the client sees the close code (and error
 * event) it is owed, the session is settled exactly once, and nothing is
 * left open.
 */

const SHORT = 300;
const LONG = 20_000;

type Coarse = string;
/** Requested and created are both "a response in flight" to the eye of a test that only watches. */
function coarse(state: string): Coarse {
  return state.replace('+requested', '+inflight').replace('+created', '+inflight');
}

interface ClientView {
  code: number;
  /** The `error` event the client must have received before the close, if any. */
  error?: string;
}

interface Expectation {
  client: ClientView;
  endReason: string;
}

/**
 * What the client and the ledger must see, written from the path alone (not
 * from the relay's code): the first fact that ends the session decides.
 */
function expectationFor(path: SessionPath): Expectation {
  let cause: Expectation | null = null;
  let clientView: ClientView | null = null;
  const causes: Record<string, Expectation> = {
    CLIENT_CLOSED: { client: { code: 1000 }, endReason: 'client_closed' },
    TARGET_CLOSED: { client: { code: 4001 }, endReason: 'upstream_closed' },
    ERROR: { client: { code: 1007, error: 'invalid_frame' }, endReason: 'error:invalid_frame' },
    CANCEL: { client: { code: 1000, error: 'session_cancelled' }, endReason: 'cancelled:operator' },
    'xstate.error.actor.dial': { client: { code: 1011, error: 'upstream_unavailable' }, endReason: 'dial_failed:upstream_unavailable' },
    'xstate.after.connectTimeout.session.connecting': { client: { code: 1011, error: 'upstream_timeout' }, endReason: 'connect_timeout' },
    'xstate.after.maxDuration.session.relaying': { client: { code: 1001, error: 'session_expired' }, endReason: 'cancelled:max_duration' },
  };
  for (const step of path.steps) {
    const type = step.event.type;
    const gone = clientView !== null;
    if (type === 'ERROR' && step.state.startsWith('closed') && cause !== null) {
      // An error after the session began ending: in draining the client's only errors are frames too big (ws closes it with 1009).
      if (!gone) clientView = { code: 1009 };
    }
    if (cause === null && causes[type]) cause = causes[type]!;
    if (type === 'CLIENT_CLOSED' && !gone) clientView = { code: 1000 };
    if (step.state.startsWith('closed')) break;
  }
  // A path that stops short of `closed` is ended by the upstream: refusing the held dial, or going away.
  const last = path.steps.at(-1)!.state;
  cause ??= last.startsWith('connecting') ? causes['xstate.error.actor.dial']! : causes.TARGET_CLOSED!;
  return { client: clientView ?? cause.client, endReason: cause.endReason };
}

interface Observed {
  states: string[];
  events: string[];
  transitions: Set<TransitionDefinition<any, any>>;
  sessionId: string | null;
  wake(): void;
  waiters: Array<() => void>;
}

function observer(): { observed: Observed; inspect: (event: InspectionEvent) => void } {
  const observed: Observed = {
    states: [],
    events: [],
    transitions: new Set(),
    sessionId: null,
    waiters: [],
    wake() {
      for (const waiter of this.waiters.splice(0)) waiter();
    },
  };
  const inspect = (event: InspectionEvent) => {
    const snapshot = (event as { snapshot?: { machine?: { id?: string }; value?: unknown; context?: Record<string, unknown> } }).snapshot;
    if (event.type === '@xstate.microstep') {
      for (const t of (event as unknown as { _transitions: Array<TransitionDefinition<any, any>> })._transitions) observed.transitions.add(t);
    }
    if (event.type === '@xstate.event' && (event.actorRef as { logic?: { id?: string } }).logic?.id === 'session') {
      observed.events.push(event.event.type);
    }
    if (event.type === '@xstate.snapshot' && snapshot?.machine?.id === 'session') {
      const ctx = snapshot.context!;
      observed.sessionId = ctx.sessionId as string;
      const response = !ctx.responseInFlight ? '' : ctx.responseId === null ? '+requested' : '+created';
      observed.states.push(`${stateName(snapshot.value as StateValue)}${response}${ctx.clientClosed ? '+client-gone' : ''}`);
    }
    observed.wake();
  };
  return { observed, inspect };
}

async function until(observed: Observed, what: string, predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; events ${observed.events.join(', ')}; states ${observed.states.join(', ')}`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 25);
      observed.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

const has = (path: SessionPath, type: string) => path.steps.some((s) => s.event.type === type);
const ENTERS_DRAINING = new Set(['CLIENT_CLOSED', 'CANCEL', 'xstate.after.maxDuration.session.relaying']);

/** Replays one path on real sockets. */
async function replay(path: SessionPath, coverage: Set<TransitionDefinition<any, any>>, machine?: SessionMachine): Promise<void> {
  const { observed, inspect } = observer();
  const resources = () => process.getActiveResourcesInfo();
  const count = (kind: string) => resources().filter((r) => r === kind).length;
  const before = { sockets: count('TCPSocketWrap'), timers: count('Timeout') };
  const steps = path.steps.slice(1); // the first step is the machine's own init
  const createdInDraining = steps.some((s, i) => s.event.type === 'RESPONSE_CREATED' && i > 0 && steps[i - 1]!.state.startsWith('draining'));
  const stack = await startTestRelay({
    billing: 'recording',
    server: { inspect, ...(machine ? { machine } : {}) },
    simulator: { chunkIntervalMs: 5 },
    settings: {
      maxPayloadBytes: 64 * 1024,
      connectTimeoutMs: has(path, 'xstate.after.connectTimeout.session.connecting') ? SHORT : LONG,
      maxSessionMs: has(path, 'xstate.after.maxDuration.session.relaying') ? SHORT : LONG,
      drainTimeoutMs: has(path, 'xstate.after.drainTimeout.session.draining') ? SHORT : LONG,
      closeTimeoutMs: 1_000,
    },
  });
  try {
    // Unless the path's first fact is the dial completing, the upstream's answer is held back.
    const holdDial = steps[0]?.event.type !== 'xstate.done.actor.dial';
    if (holdDial) stack.sim.queueHandshakeFault({ kind: 'hold' });
    const client = stack.connect();
    await until(observed, 'the session to start', () => observed.states.length > 0);
    if (holdDial) await until(observed, 'the upstream handshake', () => stack.sim.handshakes.length > 0);
    let consumed = 0;
    let clientGone = false;

    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!;
      const next = steps[i + 1];
      const type = step.event.type;
      const wasIn = coarse(observed.states.at(-1) ?? '');
      await perform(stack, client, step, next, { createdInDraining, state: wasIn, clientGone });
      if (type === 'CLIENT_CLOSED') clientGone = true;
      // Wait until the machine has taken this step's event.
      await until(observed, `event ${type}`, () => observed.events.slice(consumed).includes(type));
      consumed += observed.events.slice(consumed).indexOf(type) + 1;
    }

    // A path that stops short of `closed` is finished by the upstream going away.
    if (!observed.states.at(-1)?.startsWith('closed')) {
      await until(observed, 'the machine to settle into its state', () => true);
      if (observed.states.at(-1)?.startsWith('connecting')) stack.sim.releaseHeld({ kind: 'refuse', status: 503 });
      else stack.sim.strikeAll({ kind: 'close', code: 4001, reason: 'upstream closed' });
    }
    await until(observed, 'closed', () => observed.states.at(-1)?.startsWith('closed') ?? false);

    // The machine passed through the path's states, in order.
    const seen = observed.states.map(coarse);
    let at = 0;
    for (const step of path.steps.slice(1)) {
      const wanted = coarse(step.state);
      const found = seen.indexOf(wanted, at);
      expect(found, `state ${wanted} after ${step.event.type}; saw ${seen.join(' → ')}`).toBeGreaterThanOrEqual(0);
      at = found;
    }

    // What the client saw.
    const expected = expectationFor(path);
    const closed = await client.closedWith(5_000);
    expect(closed.code, 'client close code').toBe(expected.client.code);
    if (expected.client.error) {
      const error = client.events.find((e) => e.type === 'error' && (e.error as { code?: string }).code === expected.client.error);
      expect(error, `error event ${expected.client.error}; saw ${JSON.stringify(client.events.filter((e) => e.type === 'error'))}`).toBeDefined();
    }

    // Settled exactly once, with the right end reason.
    await stack.billing.settled(1);
    await stack.relay.registry.empty();
    // The ending ran to its end: sockets closed, settlement written.
    expect(observed.states.at(-1), `the ending; saw ${observed.states.join(' → ')}`).toMatch(/^closed\.ended/);
    const settlements = stack.billing.settlementsOf(observed.sessionId!);
    expect(settlements).toHaveLength(1);
    expect(settlements[0]!.endReason).toBe(expected.endReason);
    expect(stack.billing.settlements).toHaveLength(1);
  } finally {
    await stack.close();
    for (const t of observed.transitions) coverage.add(t);
  }
  // Nothing left behind: every socket and timer the session owned is gone.
  expect(count('TCPSocketWrap'), `open sockets after the stack closed: ${resources().join(', ')}`).toBeLessThanOrEqual(before.sockets);
  expect(count('Timeout'), `timers after the stack closed: ${resources().join(', ')}`).toBeLessThanOrEqual(before.timers);
  expect(stack.relay.registry.size).toBe(0);
}

interface StepContext {
  createdInDraining: boolean;
  state: string;
  clientGone: boolean;
}

/** Makes the world produce one event of the path. */
async function perform(stack: RecordingTestRelay, client: TestClient, step: PathStep, next: PathStep | undefined, ctx: StepContext): Promise<void> {
  const type = step.event.type;
  const inDraining = ctx.state.startsWith('draining');
  const inFlight = ctx.state.includes('+inflight');
  // Entering draining: unless the next fact is the response ending (or an error it triggers), keep the upstream from answering.
  if (ENTERS_DRAINING.has(type) && (inFlight || type !== 'CLIENT_CLOSED') && next && !['RESPONSE_DONE', 'RESPONSE_CREATED', 'ERROR'].includes(next.event.type)) {
    stack.sim.strikeAll({ kind: 'silence' });
  }
  // An error in draining with the client gone comes from the ledger failing the response's charge.
  if (next?.event.type === 'ERROR' && ENTERS_DRAINING.has(type) && type === 'CLIENT_CLOSED') stack.billing.failCharges = true;
  switch (type) {
    case 'xstate.done.actor.dial':
      stack.sim.releaseHeld();
      return;
    case 'xstate.error.actor.dial':
      stack.sim.releaseHeld({ kind: 'refuse', status: 503 });
      return;
    case 'RESPONSE_REQUESTED':
      // A response that stays in flight until the path ends it (or one created late, if the path needs that).
      client.send({ type: 'simulator.fault', fault: ctx.createdInDraining ? { kind: 'delay_response', ms: 400 } : { kind: 'stall_response' } });
      client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
      return;
    case 'RESPONSE_CREATED':
      if (!inFlight && !inDraining) {
        client.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
        client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
      }
      return; // otherwise the upstream creates it by itself
    case 'RESPONSE_DONE':
      if (inDraining) {
        stack.sim.strikeAll({ kind: 'finish_response' });
      } else if (inFlight) {
        client.send({ type: 'response.cancel' });
      } else {
        client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
      }
      return;
    case 'CLIENT_CLOSED':
      client.close(1000);
      return;
    case 'TARGET_CLOSED':
      stack.sim.strikeAll({ kind: 'close', code: 4001, reason: 'upstream closed' });
      return;
    case 'ERROR':
      if (ctx.clientGone) {
        stack.sim.strikeAll({ kind: 'finish_response' }); // its charge fails: the ledger is "down"
      } else if (inDraining) {
        client.socket.send(Buffer.alloc(100 * 1024, 0x61)); // over maxPayload: ws closes the client with 1009
      } else {
        client.socket.send(Buffer.from([1, 2, 3]), { binary: true }); // not a Realtime frame
      }
      return;
    case 'CANCEL':
      stack.relay.registry.cancel([...stack.relay.registry.list()][0]!.link.sessionId, 'operator');
      return;
    default:
      return; // timers: the machine's own delays fire by themselves
  }
}

describe('the session machine, model-tested on real sockets', () => {
  const paths = coveringPaths();
  const coverage = new Set<TransitionDefinition<any, any>>();
  const every = allTransitions();

  afterAll(() => {
    const missed = every.filter((t) => !coverage.has(t)).map(describeTransition);
    const line = `session machine: ${every.length} transitions, ${every.length - missed.length} covered on real sockets by ${paths.length} generated paths`;
    process.stdout.write(`${line}${missed.length ? `; missed: ${missed.join('; ')}` : ''}\n`);
  });

  for (const path of paths) {
    it(`${path.name}`, async () => {
      await replay(path, coverage);
    });
  }

  it('covers every transition of the machine', () => {
    const missed = every.filter((t) => !coverage.has(t)).map(describeTransition);
    expect(missed, `transitions no path took: ${missed.join('; ')}`).toEqual([]);
    expect(coverage.size).toBe(every.length);
  });
});

/** The first path that takes `event` from a state starting with `from` into one starting with `to`. */
function pathTaking(event: string, from: string, to: string): SessionPath {
  const found = coveringPaths().find((path) => path.steps.some((step, i) => i > 0 && step.event.type === event && path.steps[i - 1]!.state.startsWith(from) && step.state.startsWith(to)));
  if (!found) throw new Error(`no generated path takes ${event} from ${from} to ${to}`);
  return found;
}

/*
 * The replays are only worth their coverage if they can fail: each altered
 * machine below runs in the real relay, and a generated path through the
 * altered part must turn red.
 */
describe('a relay whose machine differs from the model fails the replay', () => {
  const mutants: Array<{ name: string; machine: SessionMachine; path: SessionPath }> = [
    {
      name: 'a client that leaves mid-response no longer waits for the tail',
      machine: sessionMachine.provide({ guards: { responseInFlight: () => false } }),
      path: pathTaking('CLIENT_CLOSED', 'relaying', 'draining'),
    },
    {
      name: 'an operator cancel recorded as an idle timeout',
      machine: sessionMachine.provide({ actions: { recordCancel: assign({ cause: { kind: 'cancelled', reason: 'idle_timeout' } }) as never } }),
      path: pathTaking('CANCEL', 'relaying', 'draining'),
    },
  ];
  for (const mutant of mutants) {
    it(`catches ${mutant.name}`, async () => {
      await expect(replay(mutant.path, new Set(), mutant.machine)).rejects.toThrow();
    }, 30_000);
  }
});
