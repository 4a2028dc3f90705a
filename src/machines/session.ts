import { assign, fromCallback, fromPromise, setup, type SnapshotFrom, type StateValue } from 'xstate';
import type { ErrorCode } from '../errors.js';
import { closePlan } from './close-plan.js';
import type { SessionSummary } from '../server/ports.js';
import type { SessionPorts } from './legs.js';

export type { ClientLeg, ClosableLeg, Report, SessionPorts, UpstreamLeg } from './legs.js';

/** Why a session was cancelled from outside its sockets. */
export type CancelReason =
  | 'shutdown'
  | 'operator'
  | 'idle_timeout'
  | 'max_duration'
  | 'insufficient_quota'
  | 'spend_cap'
  | 'backpressure_stall';

/** The error each cancel reason is reported to the client as. */
export const CANCEL_ERRORS: Record<CancelReason, ErrorCode> = {
  shutdown: 'server_shutting_down',
  operator: 'session_cancelled',
  idle_timeout: 'idle_timeout',
  max_duration: 'session_expired',
  insufficient_quota: 'insufficient_quota',
  spend_cap: 'session_spend_cap_exceeded',
  backpressure_stall: 'backpressure_stall',
};

/** A serialisable error, so the machine's context stays inspectable. */
export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  closeCode: number;
}

export type Side = 'client' | 'upstream' | 'relay';

export interface CloseInfo {
  code: number;
  reason: string;
}

export type SessionEvent =
  | { type: 'CLIENT_CLOSED'; code: number; reason: string }
  | { type: 'TARGET_CLOSED'; code: number; reason: string }
  | { type: 'ERROR'; source: Side; error: ErrorInfo }
  | { type: 'CANCEL'; reason: CancelReason }
  | { type: 'RESPONSE_REQUESTED' }
  | { type: 'RESPONSE_CREATED'; responseId: string }
  | { type: 'RESPONSE_DONE'; responseId: string }
  /** Both sockets are closed: the codes each closed with, as its socket saw them (null: it already was, or never opened). */
  | { type: 'SOCKETS_CLOSED'; clientCode: number | null; upstreamCode: number | null }
  /** The settlement is written (or handed to the backlog), as it was recorded. */
  | { type: 'SETTLED'; settlement: SessionSummary };

/** The first fact that ended relaying; it decides what each side is told. */
export type EndCause =
  | { kind: 'client_closed'; code: number; reason: string }
  | { kind: 'target_closed'; code: number; reason: string }
  | { kind: 'error'; source: Side; error: ErrorInfo }
  | { kind: 'cancelled'; reason: CancelReason }
  | { kind: 'dial_failed'; error: ErrorInfo }
  | { kind: 'connect_timeout' };

export type DrainOutcome = 'response_done' | 'nothing_in_flight' | 'timeout' | 'target_closed' | 'error';

export interface SessionOutcome {
  cause: EndCause;
  drain: DrainOutcome | null;
  clientClosed: CloseInfo | null;
  targetClosed: CloseInfo | null;
  /** Whether the upstream ever answered (the dial completed). */
  upstreamOpened: boolean;
  /** The codes the sockets finally closed with; null until both are closed. */
  closeCodes: CloseCodes | null;
}

export interface CloseCodes {
  client: number | null;
  upstream: number | null;
}

export interface SessionTimings {
  connectTimeoutMs: number;
  drainTimeoutMs: number;
  maxSessionMs: number;
}

export interface SessionInput {
  sessionId: string;
  ports: SessionPorts;
  timings: SessionTimings;
}

export interface SessionContext extends SessionInput {
  /** A response was requested or created and its `response.done` has not arrived. */
  responseInFlight: boolean;
  responseId: string | null;
  cause: EndCause | null;
  drain: DrainOutcome | null;
  clientClosed: CloseInfo | null;
  targetClosed: CloseInfo | null;
  upstreamOpened: boolean;
  closeCodes: CloseCodes | null;
  /** The session's record as settled; set once the settlement is written (or handed to the backlog). */
  settlement: SessionSummary | null;
}

/** Causes after which nobody will receive, or nobody may pay for, the response in flight. */
export function cancelsResponse(cause: EndCause | null): boolean {
  if (!cause) return false;
  if (cause.kind === 'client_closed') return true;
  if (cause.kind === 'cancelled') return cause.reason !== 'shutdown' && cause.reason !== 'max_duration';
  return false;
}

export function outcomeOf(context: SessionContext): SessionOutcome {
  return {
    cause: context.cause ?? { kind: 'error', source: 'relay', error: { code: 'internal_error', message: 'session ended without a cause', closeCode: 1011 } },
    drain: context.drain,
    clientClosed: context.clientClosed,
    targetClosed: context.targetClosed,
    upstreamOpened: context.upstreamOpened,
    closeCodes: context.closeCodes,
  };
}

/** A session has ended once its sockets are closed and its settlement written (`closed.ended`): the one signal to let it go. */
export function hasEnded(snapshot: SnapshotFrom<typeof sessionMachine>): boolean {
  return snapshot.matches({ closed: 'ended' });
}

/** A state value as one dotted name (`closed.settling`), as the admin page and the tests show it. */
export function stateName(value: StateValue): string {
  if (typeof value === 'string') return value;
  return Object.entries(value)
    .map(([parent, child]) => (child && Object.keys(child).length > 0 ? `${parent}.${stateName(child as StateValue)}` : parent))
    .join(',');
}

function dialErrorInfo(error: unknown): ErrorInfo {
  const candidate = error as Partial<ErrorInfo> | undefined;
  if (candidate && typeof candidate.code === 'string' && typeof candidate.closeCode === 'number') {
    return { code: candidate.code, message: candidate.message ?? '', closeCode: candidate.closeCode };
  }
  return { code: 'upstream_error', message: error instanceof Error ? error.message : String(error), closeCode: 1011 };
}

type UpstreamReadInput = { ports: SessionPorts; keepAlive: boolean };
type EndingInput = { ports: SessionPorts; outcome: SessionOutcome };

// Input mappers made once, for every session; the readers and the dial take the ports themselves.
// (Their names show in the machine's definition, which the inspector is sent.)
const childInput = ({ context }: { context: SessionContext }): SessionPorts => context.ports;
const relayingUpstreamInput = ({ context }: { context: SessionContext }): UpstreamReadInput => ({ ports: context.ports, keepAlive: true });
const drainingUpstreamInput = ({ context }: { context: SessionContext }): UpstreamReadInput => ({ ports: context.ports, keepAlive: false });
const endingInput = ({ context }: { context: SessionContext }): EndingInput => ({ ports: context.ports, outcome: outcomeOf(context) });

export const sessionMachine = setup({
  types: {
    context: {} as SessionContext,
    events: {} as SessionEvent,
    input: {} as SessionInput,
  },
  actors: {
    dialUpstream: fromPromise<void, SessionPorts>(({ input, signal }) => input.upstream.dial(signal)),
    clientRead: fromCallback<SessionEvent, SessionPorts>(({ input, sendBack }) => input.client.read(sendBack)),
    /**
     * Reads the upstream; while relaying it also keeps both peers alive (pings,
     * idleness, stalls), since both live exactly as long: one actor, not two.
     * Draining only reads: nobody is kept alive for a tail.
     */
    upstreamRead: fromCallback<SessionEvent, UpstreamReadInput>(({ input, sendBack }) => {
      const stopReading = input.ports.upstream.read(sendBack);
      if (!input.keepAlive) return stopReading;
      const stopKeepingAlive = input.ports.keepAlive(sendBack);
      return function stopUpstreamRead() {
        stopKeepingAlive();
        stopReading();
      };
    }),
    /**
     * The whole ending, as one actor: writes the settlement (a client that has
     * stopped reading must not hold up its bill) and carries out the close
     * plan on both legs, reporting SETTLED and SOCKETS_CLOSED in whichever
     * order they come. The port's settle never rejects: a settlement that
     * cannot be written waits in the backlog. The disposer clears the legs'
     * close timers.
     */
    endSession: fromCallback<SessionEvent, EndingInput>(({ input: { ports, outcome }, sendBack }) => {
      void ports.settle(outcome).then((settlement) => sendBack({ type: 'SETTLED', settlement }));
      const plan = closePlan(outcome);
      let clientCode: number | null | undefined;
      let upstreamCode: number | null | undefined;
      const bothClosed = () => {
        if (clientCode !== undefined && upstreamCode !== undefined) sendBack({ type: 'SOCKETS_CLOSED', clientCode, upstreamCode });
      };
      const stopUpstream = ports.upstream.close(plan.upstream, (code) => {
        upstreamCode = code;
        bothClosed();
      });
      const stopClient = ports.client.close(plan.client, (code) => {
        clientCode = code;
        bothClosed();
      });
      return function stopClosing() {
        stopClient();
        stopUpstream();
      };
    }),
  },
  guards: {
    responseInFlight: ({ context }) => context.responseInFlight,
    nothingInFlight: ({ context }) => !context.responseInFlight,
    settled: ({ context }) => context.settlement !== null,
  },
  delays: {
    connectTimeout: ({ context }) => context.timings.connectTimeoutMs,
    drainTimeout: ({ context }) => context.timings.drainTimeoutMs,
    maxDuration: ({ context }) => context.timings.maxSessionMs,
  },
  actions: {
    markUpstreamOpened: assign({ upstreamOpened: true }),
    recordDialFailure: assign({
      cause: ({ event }) => ({ kind: 'dial_failed' as const, error: dialErrorInfo((event as unknown as { error: unknown }).error) }),
    }),
    recordConnectTimeout: assign({ cause: { kind: 'connect_timeout' as const } }),
    recordClientClosed: assign(({ context, event }) => {
      if (event.type !== 'CLIENT_CLOSED') return {};
      const closed = { code: event.code, reason: event.reason };
      return { clientClosed: closed, cause: context.cause ?? { kind: 'client_closed' as const, ...closed } };
    }),
    recordTargetClosed: assign(({ context, event }) => {
      if (event.type !== 'TARGET_CLOSED') return {};
      const closed = { code: event.code, reason: event.reason };
      return { targetClosed: closed, cause: context.cause ?? { kind: 'target_closed' as const, ...closed } };
    }),
    recordError: assign(({ context, event }) => {
      if (event.type !== 'ERROR') return {};
      return { cause: context.cause ?? { kind: 'error' as const, source: event.source, error: event.error } };
    }),
    recordCancel: assign(({ context, event }) => {
      if (event.type !== 'CANCEL') return {};
      return { cause: context.cause ?? { kind: 'cancelled' as const, reason: event.reason } };
    }),
    recordMaxDuration: assign(({ context }) => ({ cause: context.cause ?? { kind: 'cancelled' as const, reason: 'max_duration' as const } })),
    noteResponseRequested: assign({ responseInFlight: true }),
    noteResponseCreated: assign(({ event }) => (event.type === 'RESPONSE_CREATED' ? { responseInFlight: true, responseId: event.responseId } : {})),
    noteResponseDone: assign({ responseInFlight: false, responseId: null }),
    recordDrain: assign((_, params: { outcome: DrainOutcome }) => ({ drain: params.outcome })),
    recordSettlement: assign(({ event }) => (event.type === 'SETTLED' ? { settlement: event.settlement } : {})),
    recordCloseCodes: assign(({ event }) => (event.type === 'SOCKETS_CLOSED' ? { closeCodes: { client: event.clientCode, upstream: event.upstreamCode } } : {})),
    stopClientForwarding: ({ context }) => context.ports.client.stopForwarding(),
    cancelInFlightResponse: ({ context }) => {
      if (context.responseInFlight && cancelsResponse(context.cause)) context.ports.upstream.cancelResponse();
    },
  },
}).createMachine({
  id: 'session',
  context: ({ input }) => ({
    ...input,
    responseInFlight: false,
    responseId: null,
    cause: null,
    drain: null,
    clientClosed: null,
    targetClosed: null,
    upstreamOpened: false,
    closeCodes: null,
    settlement: null,
  }),
  invoke: { id: 'clientRead', src: 'clientRead', input: childInput },
  initial: 'connecting',
  states: {
    connecting: {
      invoke: {
        id: 'dial',
        src: 'dialUpstream',
        input: childInput,
        onDone: { target: 'relaying', actions: 'markUpstreamOpened' },
        onError: { target: 'closed', actions: 'recordDialFailure' },
      },
      after: { connectTimeout: { target: 'closed', actions: 'recordConnectTimeout' } },
      on: {
        RESPONSE_REQUESTED: { actions: 'noteResponseRequested' },
        CLIENT_CLOSED: { target: 'closed', actions: 'recordClientClosed' },
        ERROR: { target: 'closed', actions: 'recordError' },
        CANCEL: { target: 'closed', actions: 'recordCancel' },
      },
    },
    relaying: {
      invoke: { id: 'upstreamRead', src: 'upstreamRead', input: relayingUpstreamInput },
      after: { maxDuration: { target: 'draining', actions: 'recordMaxDuration' } },
      on: {
        RESPONSE_REQUESTED: { actions: 'noteResponseRequested' },
        RESPONSE_CREATED: { actions: 'noteResponseCreated' },
        RESPONSE_DONE: { actions: 'noteResponseDone' },
        CLIENT_CLOSED: [
          { guard: 'responseInFlight', target: 'draining', actions: 'recordClientClosed' },
          { target: 'closed', actions: 'recordClientClosed' },
        ],
        TARGET_CLOSED: { target: 'closed', actions: 'recordTargetClosed' },
        ERROR: { target: 'closed', actions: 'recordError' },
        CANCEL: { target: 'draining', actions: 'recordCancel' },
      },
    },
    draining: {
      entry: ['stopClientForwarding', 'cancelInFlightResponse'],
      invoke: { id: 'upstreamRead', src: 'upstreamRead', input: drainingUpstreamInput },
      always: { guard: 'nothingInFlight', target: 'closed', actions: { type: 'recordDrain', params: { outcome: 'nothing_in_flight' } } },
      after: { drainTimeout: { target: 'closed', actions: { type: 'recordDrain', params: { outcome: 'timeout' } } } },
      on: {
        // The cancel may have reached the upstream before its response existed.
        RESPONSE_CREATED: { actions: ['noteResponseCreated', 'cancelInFlightResponse'] },
        RESPONSE_DONE: { target: 'closed', actions: ['noteResponseDone', { type: 'recordDrain', params: { outcome: 'response_done' } }] },
        CLIENT_CLOSED: { actions: 'recordClientClosed' },
        TARGET_CLOSED: { target: 'closed', actions: ['recordTargetClosed', { type: 'recordDrain', params: { outcome: 'target_closed' } }] },
        ERROR: { target: 'closed', actions: ['recordError', { type: 'recordDrain', params: { outcome: 'error' } }] },
      },
    },
    // The ending, in the open: the settlement is written and the sockets are
    // closed as the close plan says, both from the moment relaying ends, by
    // one actor (`ending`). `closing` lasts until both sockets are closed,
    // `settling` until the settlement is written too. The server lets the
    // session go when it reaches `ended` (see hasEnded): a final child does
    // not complete the root.
    closed: {
      initial: 'closing',
      invoke: { id: 'ending', src: 'endSession', input: endingInput },
      on: { SETTLED: { actions: 'recordSettlement' } },
      states: {
        closing: {
          on: { SOCKETS_CLOSED: { target: 'settling', actions: 'recordCloseCodes' } },
        },
        settling: {
          always: { guard: 'settled', target: 'ended' },
        },
        ended: { type: 'final' },
      },
    },
  },
});

export type SessionMachine = typeof sessionMachine;
