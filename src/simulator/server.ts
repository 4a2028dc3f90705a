/**
 * The simulator's HTTP server: records every upgrade request, applies
 * handshake faults, refuses what OpenAI or Azure would refuse, and hands each
 * accepted WebSocket to its own SimulatedSession. It owns every socket and
 * session it accepted and releases them all in close().
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import type { SimulatedCall } from './call.js';
import type { CallEnding } from './call.js';
import { createCallRoutes, ringingCallBody, unknownCallBody } from './calls-http.js';
import { defaultRefusalBody, judgeHandshake, recordHandshake, writeRefusal } from './handshake.js';
import { SimulatedSession, faultProblem } from './session.js';
import type { SessionSettings } from './session.js';
import { WebSocketSink, feedSession } from './socket-sink.js';
import { PhoneLine } from './sip.js';
import type { FaultSpec, HandshakeFault, HandshakeRecord, Simulator, SimulatorOptions, TimedSessionFault } from './types.js';

/**
 * `{kind:'silence'}` names both a handshake fault (no session.created) and a
 * session fault; without a `when` it is read as the handshake fault.
 */
function isHandshakeFault(fault: FaultSpec): fault is HandshakeFault {
  return fault.kind === 'refuse' || fault.kind === 'hang' || fault.kind === 'hold' || fault.kind === 'close_on_open' || (fault.kind === 'silence' && !('when' in fault && fault.when !== undefined));
}

function checkHandshakeFault(fault: HandshakeFault): void {
  if (fault.kind === 'refuse' && !(Number.isInteger(fault.status) && fault.status >= 300 && fault.status <= 599)) {
    throw new RangeError(`refuse fault: status must be an HTTP status from 300 to 599, got ${String(fault.status)}`);
  }
}

function checkSessionFault(fault: TimedSessionFault): void {
  const problem = faultProblem(fault);
  if (problem !== null) throw new RangeError(`session fault: ${problem}`);
}

function countOption(name: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${String(value)}`);
  return value;
}

/** An unanswered upgrade socket is half-open by default (the HTTP server allows it): notice the peer leaving. */
function letPeerLeave(socket: Duplex): void {
  socket.once('end', () => socket.destroy());
  socket.resume();
}

export async function startSimulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  const host = opts.host ?? '127.0.0.1';
  const policy = { azure: opts.azure ?? false, apiKey: opts.apiKey };
  const audioChunkBytes = countOption('audioChunkBytes', opts.audioChunkBytes, 960, 1);
  const chunkIntervalMs = countOption('chunkIntervalMs', opts.chunkIntervalMs, 20, 0);
  const textDeltas = countOption('textDeltas', opts.textDeltas, 4, 0);
  const audioChunks = countOption('audioChunks', opts.audioChunks, 5, 0);
  const connectTimeoutMs = countOption('callConnectTimeoutMs', opts.callConnectTimeoutMs, 15_000, 1);
  const defaultFault = opts.fault;
  if (defaultFault !== undefined) {
    if (isHandshakeFault(defaultFault)) checkHandshakeFault(defaultFault);
    else checkSessionFault(defaultFault);
  }

  const handshakes: HandshakeRecord[] = [];
  const handshakeFaults: Array<{ fault: HandshakeFault; remaining: number }> = [];
  const sessionFaults: TimedSessionFault[] = [];
  const sockets = new Set<Duplex>();
  const sessions = new Set<SimulatedSession>();
  const calls = new Map<string, SimulatedCall>();
  const endings = new Map<string, CallEnding>();
  const held: Array<(fault: HandshakeFault | undefined) => void> = [];
  let connections = 0;
  let responseSeq = 0;
  const nextResponseId = (): string => `resp_${++responseSeq}`;
  /** Numbers every session, WebSocket or call, so their ids never collide. */
  let sessionSeq = 0;
  const sessionSettings = (): SessionSettings => ({ number: ++sessionSeq, audioChunkBytes, chunkIntervalMs, textDeltas, audioChunks, nextResponseId, tap: opts.tap });
  let closing: Promise<void> | undefined;
  function callEnded(call: SimulatedCall): void {
    calls.delete(call.id);
    endings.set(call.id, call.endedBy);
  }
  const callRoutes = policy.azure ? null : createCallRoutes({ policy, calls, sessionSettings, accepting: () => closing === undefined, callEnded, connectTimeoutMs });

  const phoneLine = policy.azure
    ? null
    : new PhoneLine({ calls, sessionSettings, connectTimeoutMs, onEnded: callEnded, isClosing: () => closing !== undefined, webhook: opts.callWebhook });
  function phone(): PhoneLine {
    if (!phoneLine) throw new Error('simulator: an Azure simulator takes no phone calls');
    return phoneLine;
  }

  function takeHandshakeFault(): HandshakeFault | undefined {
    const head = handshakeFaults[0];
    if (head !== undefined) {
      if (--head.remaining === 0) handshakeFaults.shift();
      return head.fault;
    }
    return defaultFault !== undefined && isHandshakeFault(defaultFault) ? defaultFault : undefined;
  }

  function takeSessionFault(): TimedSessionFault | undefined {
    const queued = sessionFaults.shift();
    if (queued !== undefined) return queued;
    return defaultFault !== undefined && !isHandshakeFault(defaultFault) ? defaultFault : undefined;
  }

  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    // Pings are answered by each session, so that a silenced one can stop.
    autoPong: false,
    // Select `realtime` as OpenAI does; never echo a key-bearing entry.
    handleProtocols: (protocols: Set<string>) => (protocols.has('realtime') ? 'realtime' : false),
  });

  function serverOnRequest(req: IncomingMessage, res: ServerResponse): void {
    if (callRoutes?.handle(req, res)) return;
    if (phoneLine?.handle(req, res)) return;
    const body = JSON.stringify({ error: { message: `Invalid URL (${req.method ?? 'GET'} ${req.url ?? '/'})`, type: 'invalid_request_error', param: null, code: null } });
    res.writeHead(404, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
  }

  function serverOnConnection(socket: Socket): void {
    sockets.add(socket);
    // Refused and hanging upgrades leave the socket without the HTTP server's error handler.
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  }

  function serverOnUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const record = recordHandshake(req);
    handshakes.push(record);
    const fault = takeHandshakeFault();
    if (fault?.kind === 'hold') {
      letPeerLeave(socket);
      held.push((release) => {
        if (!socket.destroyed) answerUpgrade(req, socket, head, record, release);
      });
      return;
    }
    answerUpgrade(req, socket, head, record, fault);
  }

  function answerUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, record: HandshakeRecord, fault: HandshakeFault | undefined): void {
    if (fault?.kind === 'hang') {
      // Never answered; it stays in `sockets` until the peer leaves or close() ends it.
      letPeerLeave(socket);
      return;
    }
    if (fault?.kind === 'refuse') {
      writeRefusal(socket, fault.status, fault.body ?? defaultRefusalBody(fault.status));
      return;
    }
    const verdict = judgeHandshake(record, policy);
    if (!verdict.accept) {
      writeRefusal(socket, verdict.status, verdict.body);
      return;
    }
    const callId = policy.azure ? undefined : record.query.call_id;
    if (callId !== undefined) {
      joinCall(req, socket, head, callId);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      if (fault?.kind === 'close_on_open') {
        ws.close(1011, 'simulator: closed on open');
        return;
      }
      connections++;
      const session = new SimulatedSession(new WebSocketSink(ws), sessionSettings(), verdict);
      sessions.add(session);
      feedSession(ws, session, () => {
        session.dispose();
        sessions.delete(session);
      });
      session.open(verdict, fault?.kind === 'silence', takeSessionFault());
    });
  }

  /** A sideband socket: it joins the call's session instead of opening one. */
  function joinCall(req: IncomingMessage, socket: Duplex, head: Buffer, callId: string): void {
    const ringing = calls.get(callId);
    if (ringing === undefined) {
      writeRefusal(socket, 404, unknownCallBody(callId));
      return;
    }
    if (ringing.isRinging) {
      writeRefusal(socket, 400, ringingCallBody(callId));
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      // The call may have ended while the upgrade completed.
      const call = calls.get(callId);
      if (call === undefined) ws.close(1000);
      else call.join(ws);
    });
  }

  const server = createServer(serverOnRequest);
  server.on('connection', serverOnConnection);
  server.on('upgrade', serverOnUpgrade);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('simulator: server has no TCP address');
  const port = address.port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `ws://${urlHost}:${port}`,
    port,
    queueHandshakeFault(f: HandshakeFault, count = 1): void {
      checkHandshakeFault(f);
      if (!Number.isInteger(count) || count < 1) throw new RangeError(`count must be a positive integer, got ${String(count)}`);
      handshakeFaults.push({ fault: f, remaining: count });
    },
    queueSessionFault(f: TimedSessionFault): void {
      checkSessionFault(f);
      sessionFaults.push(f);
    },
    releaseHeld(fault?: HandshakeFault): number {
      if (fault !== undefined) checkHandshakeFault(fault);
      const waiting = held.splice(0);
      for (const answer of waiting) answer(fault);
      return waiting.length;
    },
    strikeAll(f: TimedSessionFault): number {
      checkSessionFault(f);
      for (const session of sessions) session.applyFault(f);
      return sessions.size;
    },
    get connections() {
      return connections;
    },
    get handshakes() {
      return handshakes;
    },
    get socketCount() {
      return sockets.size;
    },
    get activeCalls() {
      return calls.size;
    },
    placeSipCall: (options) => phone().place(options),
    setCallWebhook: (target) => phone().setWebhook(target),
    redeliverCall: (callId) => phone().redeliver(callId),
    sipCall: (callId) => phoneLine?.state(callId),
    hangUpCall: (callId) => phoneLine?.hangUp(callId) ?? false,
    dropCallSidebands: (callId) => phoneLine?.dropSidebands(callId) ?? 0,
    callEnding(callId: string): CallEnding | undefined {
      return endings.get(callId);
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        for (const session of sessions) session.dispose();
        const ending = [...calls.values()];
        for (const call of ending) call.end(1001, '');
        const peersClosed = Promise.all(ending.map((call) => call.closed));
        for (const socket of sockets) socket.destroy();
        wss.close();
        // 'close' is emitted before libuv has released the listening handle; two
        // turns of the loop pass its close phase, so no handle outlives the promise.
        server.close(() => void peersClosed.then(() => setImmediate(() => setImmediate(resolve))));
      });
      return closing;
    },
  };
}
