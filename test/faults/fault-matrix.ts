/**
 * The fault matrix: every fault the simulator (or a misbehaving client) can
 * strike, in every phase of a session where it can happen, and what the
 * client and the ledger must see. The test replays each cell on real sockets;
 * the README's table is generated from this one.
 */

export const PHASES = ['connecting', 'relaying, idle', 'response in flight', 'draining'] as const;
export type Phase = (typeof PHASES)[number];

export interface Outcome {
  /** The close code the client sees; null when the client is the one that vanished. */
  clientClose: number | null;
  /** The `error` event's code the client receives before the close, if any. */
  errorEvent?: string;
  /** The settlement's end reason. */
  endReason: string;
  /** How the session ends when the fault alone does not end it. */
  note?: string;
}

export type FaultName =
  | 'upstream refuses 401'
  | 'upstream refuses 429'
  | 'upstream refuses 503'
  | 'handshake hangs'
  | 'upstream silent after upgrade'
  | 'upstream closes after upgrade'
  | 'garbage frame'
  | 'upstream goes silent'
  | 'TCP drop'
  | 'upstream closes 4001'
  | 'session_expired + 1001'
  | 'upstream stops reading'
  | 'client stops reading'
  | 'client vanishes'
  | 'client ignores pings'
  | 'client sends after close';

export interface FaultRow {
  fault: FaultName;
  side: 'upstream' | 'client';
  cells: Partial<Record<Phase, Outcome>>;
  /** Why the fault cannot happen in a phase, where that is not obvious. */
  cannotHappen?: Partial<Record<Phase, string>>;
}

const DIAL = (errorEvent: string, clientClose: number, endReason: string): Partial<Record<Phase, Outcome>> => ({
  connecting: { clientClose, errorEvent, endReason },
});

/** Draining here is a shutdown drain: the client is still connected and the response is let finish. */
const SHUTDOWN: Outcome = { clientClose: 1001, errorEvent: 'server_shutting_down', endReason: 'cancelled:shutdown' };

export const FAULT_MATRIX: FaultRow[] = [
  { fault: 'upstream refuses 401', side: 'upstream', cells: DIAL('upstream_auth_failed', 1011, 'dial_failed:upstream_auth_failed') },
  { fault: 'upstream refuses 429', side: 'upstream', cells: DIAL('upstream_rate_limited', 1013, 'dial_failed:upstream_rate_limited') },
  { fault: 'upstream refuses 503', side: 'upstream', cells: DIAL('upstream_unavailable', 1011, 'dial_failed:upstream_unavailable') },
  { fault: 'handshake hangs', side: 'upstream', cells: DIAL('upstream_timeout', 1011, 'connect_timeout') },
  { fault: 'upstream silent after upgrade', side: 'upstream', cells: DIAL('upstream_timeout', 1011, 'connect_timeout') },
  {
    fault: 'upstream closes after upgrade',
    side: 'upstream',
    cells: { connecting: { clientClose: 1011, errorEvent: 'upstream_closed', endReason: 'dial_failed:upstream_closed', note: 'the next upstream serving the model is tried first' } },
  },
  {
    fault: 'garbage frame',
    side: 'upstream',
    cells: {
      'relaying, idle': { clientClose: 1000, endReason: 'client_closed', note: 'forwarded untouched; the client then closes' },
      'response in flight': { clientClose: 1000, endReason: 'client_closed', note: 'forwarded untouched; the client then closes' },
      draining: { ...SHUTDOWN, note: 'forwarded untouched; the response then finishes' },
    },
  },
  {
    fault: 'upstream goes silent',
    side: 'upstream',
    cells: {
      'relaying, idle': { clientClose: 1011, errorEvent: 'upstream_timeout', endReason: 'error:upstream_timeout', note: 'missed pong' },
      'response in flight': { clientClose: 1011, errorEvent: 'upstream_timeout', endReason: 'error:upstream_timeout', note: 'missed pong' },
      draining: { ...SHUTDOWN, note: 'drain timeout' },
    },
  },
  {
    fault: 'TCP drop',
    side: 'upstream',
    cells: {
      'relaying, idle': { clientClose: 1011, errorEvent: 'upstream_closed', endReason: 'upstream_closed' },
      'response in flight': { clientClose: 1011, errorEvent: 'upstream_closed', endReason: 'upstream_closed' },
      draining: SHUTDOWN,
    },
  },
  {
    fault: 'upstream closes 4001',
    side: 'upstream',
    cells: {
      'relaying, idle': { clientClose: 4001, endReason: 'upstream_closed' },
      'response in flight': { clientClose: 4001, endReason: 'upstream_closed' },
      draining: SHUTDOWN,
    },
  },
  {
    fault: 'session_expired + 1001',
    side: 'upstream',
    cells: {
      'relaying, idle': { clientClose: 1001, errorEvent: 'session_expired', endReason: 'upstream_closed' },
      'response in flight': { clientClose: 1001, errorEvent: 'session_expired', endReason: 'upstream_closed' },
      draining: { ...SHUTDOWN, note: "the upstream's error event is forwarded too" },
    },
  },
  {
    fault: 'upstream stops reading',
    side: 'upstream',
    cells: {
      'relaying, idle': { clientClose: 1011, errorEvent: 'backpressure_stall', endReason: 'cancelled:backpressure_stall', note: 'the client keeps sending audio' },
      'response in flight': {
        clientClose: 1011,
        errorEvent: 'backpressure_stall',
        endReason: 'cancelled:backpressure_stall',
        note: 'the client keeps sending audio; an upstream that reads nothing cannot take the cancel, so the drain times out',
      },
    },
  },
  {
    fault: 'client stops reading',
    side: 'client',
    cells: {
      'response in flight': {
        clientClose: 1011,
        errorEvent: 'backpressure_stall',
        endReason: 'cancelled:backpressure_stall',
        note: 'the response is cancelled, what the client cannot take is dropped, and the tail is billed',
      },
      draining: { ...SHUTDOWN, note: 'what the client cannot take is dropped; the response finishes and is billed' },
    },
    cannotHappen: {
      connecting: 'nothing is sent to the client before the upstream answers',
      'relaying, idle': 'nothing backs up between responses; a client that reads nothing misses its pong, as in client ignores pings',
    },
  },
  {
    fault: 'client vanishes',
    side: 'client',
    cells: {
      connecting: { clientClose: null, endReason: 'client_closed' },
      'relaying, idle': { clientClose: null, endReason: 'client_closed' },
      'response in flight': { clientClose: null, endReason: 'client_closed', note: 'the response is cancelled and its tail billed' },
      draining: { clientClose: null, endReason: 'cancelled:shutdown', note: 'the response then finishes and is billed' },
    },
  },
  {
    fault: 'client ignores pings',
    side: 'client',
    cells: {
      'relaying, idle': { clientClose: null, endReason: 'client_closed', note: 'missed pong' },
      'response in flight': { clientClose: null, endReason: 'client_closed', note: 'missed pong; the tail is billed' },
    },
  },
  {
    fault: 'client sends after close',
    side: 'client',
    cells: {
      'relaying, idle': { clientClose: 1000, endReason: 'client_closed' },
      'response in flight': { clientClose: 1000, endReason: 'client_closed', note: 'the tail is billed' },
    },
  },
];

/** The matrix as the README shows it. */
export function faultMatrixMarkdown(): string {
  const cell = (o: Outcome | undefined, cannotHappen: string | undefined) => {
    if (!o) return cannotHappen ? `— (${cannotHappen})` : '—';
    const client = o.clientClose === null ? 'client gone' : `${o.errorEvent ? `\`${o.errorEvent}\` + ` : ''}${o.clientClose}`;
    return `${client}; \`${o.endReason}\`${o.note ? ` (${o.note})` : ''}`;
  };
  const header = `| fault | side | ${PHASES.join(' | ')} |`;
  const rule = `|---|---|${PHASES.map(() => '---').join('|')}|`;
  const rows = FAULT_MATRIX.map((row) => `| ${row.fault} | ${row.side} | ${PHASES.map((p) => cell(row.cells[p], row.cannotHappen?.[p])).join(' | ')} |`);
  return [header, rule, ...rows].join('\n');
}

export type CallFaultName =
  | 'upstream refuses the session config'
  | 'sideband refused 503'
  | 'sideband dropped'
  | 'upstream hangs up'
  | 'relay shuts down'
  | 'caller hangs up'
  | 'caller vanishes'
  | 'relay killed (kill -9) mid-call, restarted';

/**
 * A call's faults, WebRTC or phone (SIP). A call's caller has no WebSocket and
 * no close code: a WebRTC caller sees either its offer refused (HTTP status and
 * error code) or the call end (the upstream closes the `oai-events` channel
 * once the relay has hung the call up there); a phone caller hears the call
 * hung up. Every row is replayed by test/faults/call-fault-matrix.test.ts.
 */
export interface CallFaultRow {
  fault: CallFaultName;
  transport: 'webrtc' | 'sip';
  side: 'upstream' | 'caller' | 'relay';
  when: 'placing the call' | 'between responses' | 'response in flight';
  /** The refusal of the offer, or null when the call was answered and then ended. */
  refused: { status: number; code: string } | null;
  /** The caller left without a word: it sees nothing more. */
  callerGone?: true;
  endReason: string;
  /** Settled by recovery after a crash rather than by the session itself. */
  recovered?: true;
  /** Whether a response was charged (exactly once) before the end. */
  charged: boolean;
  note?: string;
}

export const CALL_FAULT_MATRIX: CallFaultRow[] = [
  { fault: 'upstream refuses the session config', transport: 'webrtc', side: 'upstream', when: 'placing the call', refused: { status: 400, code: 'upstream_invalid_request' }, endReason: 'dial_failed:upstream_invalid_request', charged: false, note: "the upstream's message and param" },
  { fault: 'sideband refused 503', transport: 'webrtc', side: 'upstream', when: 'placing the call', refused: { status: 502, code: 'upstream_unavailable' }, endReason: 'dial_failed:upstream_unavailable', charged: false, note: 'the answered call is hung up upstream' },
  { fault: 'sideband dropped', transport: 'webrtc', side: 'upstream', when: 'between responses', refused: null, endReason: 'upstream_closed', charged: true },
  { fault: 'upstream hangs up', transport: 'webrtc', side: 'upstream', when: 'between responses', refused: null, endReason: 'upstream_closed', charged: true },
  { fault: 'relay shuts down', transport: 'webrtc', side: 'relay', when: 'response in flight', refused: null, endReason: 'cancelled:shutdown', charged: true, note: 'the response finishes first' },
  { fault: 'caller hangs up', transport: 'webrtc', side: 'caller', when: 'between responses', refused: null, endReason: 'client_closed', charged: true, note: '`POST …/hangup`' },
  { fault: 'caller vanishes', transport: 'webrtc', side: 'caller', when: 'between responses', refused: null, callerGone: true, endReason: 'cancelled:idle_timeout', charged: true, note: 'the relay never sees the media: the silent sideband ends it after `RELAY_IDLE_TIMEOUT_MS`, unless the upstream ends the call first' },
  { fault: 'relay killed (kill -9) mid-call, restarted', transport: 'webrtc', side: 'relay', when: 'between responses', refused: null, endReason: 'instance_restarted', recovered: true, charged: true, note: 'the media never passed through the relay: the call runs on upstream until the restarted relay recovers the session and hangs it up' },
  { fault: 'sideband refused 503', transport: 'sip', side: 'upstream', when: 'placing the call', refused: null, endReason: 'dial_failed:upstream_unavailable', charged: false, note: 'the call is accepted, then hung up' },
  { fault: 'sideband dropped', transport: 'sip', side: 'upstream', when: 'between responses', refused: null, endReason: 'upstream_closed', charged: true },
  { fault: 'caller hangs up', transport: 'sip', side: 'caller', when: 'between responses', refused: null, endReason: 'upstream_closed', charged: true, note: 'the upstream ends the call' },
  { fault: 'relay killed (kill -9) mid-call, restarted', transport: 'sip', side: 'relay', when: 'between responses', refused: null, endReason: 'instance_restarted', recovered: true, charged: true, note: 'the call runs on upstream until the restarted relay recovers the session and hangs it up' },
];

/** The call faults as the README shows them. */
export function callFaultMatrixMarkdown(): string {
  const rows = CALL_FAULT_MATRIX.map((row) => {
    const caller = row.refused
      ? `offer refused: ${row.refused.status} \`${row.refused.code}\``
      : row.callerGone
        ? 'caller gone (the call is hung up upstream)'
        : row.transport === 'sip'
          ? 'the call ends'
          : 'the call ends (hung up upstream, `oai-events` closes)';
    const settled = row.recovered ? ', settled as recovered' : '';
    return `| ${row.fault} | ${row.transport} | ${row.side} | ${row.when} | ${caller} | \`${row.endReason}\`${settled} | ${row.charged ? 'the response, once' : 'nothing'}${row.note ? ` (${row.note})` : ''} |`;
  });
  return ['| fault | transport | side | when | what the caller sees | end reason | billed |', '|---|---|---|---|---|---|---|', ...rows].join('\n');
}
