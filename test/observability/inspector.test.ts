import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { createSessionInspector, type SessionInspector } from '../../src/observability/inspector.js';
import { sanitizeEvent, sanitizeSnapshot } from '../../src/observability/inspection.js';
import { RelayError } from '../../src/errors.js';
import { TEST_KEY } from '../helpers/recording-billing.js';
import { startTestRelay, type RecordingTestRelay } from '../helpers/relay.js';

interface InspectorMessage {
  type: string;
  sessionId: string;
  parentId?: string;
  name?: string;
  event?: { type: string; [field: string]: unknown };
  snapshot?: { value?: unknown; status?: string; context?: Record<string, unknown> };
}

/** A stand-in for the Stately inspector: a WebSocket server that keeps every message it is sent. */
async function startInspectorServer() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const raw: string[] = [];
  const messages: InspectorMessage[] = [];
  const waiters: Array<() => void> = [];
  wss.on('connection', (socket) => {
    socket.on('message', (data: Buffer) => {
      raw.push(data.toString());
      messages.push(JSON.parse(data.toString()) as InspectorMessage);
      for (const wake of waiters.splice(0)) wake();
    });
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    raw,
    messages,
    connections: () => wss.clients.size,
    until(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; saw ${messages.map((m) => `${m.type}:${m.event?.type ?? ''}`).join(', ')}`)), timeoutMs);
        const check = () => {
          if (predicate()) {
            clearTimeout(timer);
            resolve();
          } else waiters.push(check);
        };
        check();
      });
    },
    close: () => new Promise<void>((resolve) => {
      for (const client of wss.clients) client.terminate();
      wss.close(() => resolve());
    }),
  };
}

let stack: RecordingTestRelay | undefined;
let inspector: SessionInspector | undefined;
let server: Awaited<ReturnType<typeof startInspectorServer>> | undefined;
afterEach(async () => {
  await stack?.close();
  await inspector?.stop();
  await server?.close();
  stack = inspector = server = undefined;
});

// Recognisable and long enough to look like audio to the redaction rules too.
const AUDIO = Buffer.from('relay-inspector-test-audio-payload;'.repeat(12)).toString('base64');

describe('watching sessions in the Stately inspector', () => {
  it('shows a session from registration through draining to its final snapshot, without keys or audio', async () => {
    server = await startInspectorServer();
    inspector = createSessionInspector({ url: server.url });
    stack = await startTestRelay({ billing: 'recording', server: { inspect: inspector.inspect } });
    const client = stack.connect();
    await client.next('session.created');
    for (let i = 0; i < 5; i++) client.send({ type: 'input_audio_buffer.append', audio: AUDIO });
    client.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    client.send({ type: 'response.create' });
    await client.next('response.created');
    // Walking away mid-response: the relay drains, cancels, and bills the cancelled response.
    client.close();
    await stack.billing.settled(1);
    expect(stack.billing.settlements[0]).toMatchObject({ endReason: 'client_closed', drain: 'response_done' });

    // The session shows under the relay's session id.
    const sessionId = stack.billing.settlements[0]!.sessionId;
    const root = () => server!.messages.find((m) => m.type === '@xstate.actor' && m.name === sessionId && m.parentId === undefined);
    const isFinal = (m: InspectorMessage) => m.type === '@xstate.snapshot' && m.sessionId === root()?.sessionId && (m.snapshot?.value as { closed?: unknown } | undefined)?.closed === 'ended';
    await server.until(() => server!.messages.some(isFinal), 'the final snapshot');
    const messages = server.messages;
    const rootId = root()!.sessionId;
    const at = (predicate: (m: InspectorMessage) => boolean) => messages.findIndex(predicate);
    const eventAt = (type: string) => at((m) => m.type === '@xstate.event' && m.sessionId === rootId && m.event?.type === type);

    const registered = at((m) => m.type === '@xstate.actor' && m.sessionId === rootId);
    const created = eventAt('RESPONSE_CREATED');
    const clientClosed = eventAt('CLIENT_CLOSED');
    const responseDone = eventAt('RESPONSE_DONE');
    const final = at(isFinal);
    expect(registered).toBeGreaterThanOrEqual(0);
    expect(created).toBeGreaterThan(registered);
    expect(clientClosed).toBeGreaterThan(created);
    expect(responseDone).toBeGreaterThan(clientClosed);
    expect(final).toBeGreaterThan(responseDone);
    // The session ends in `closed.ended` (a final child: the root stays active until the server stops it).
    expect(messages[final]!.snapshot).toMatchObject({ value: { closed: 'ended' }, status: 'active' });
    expect(messages[final]!.snapshot!.context).toMatchObject({ responseInFlight: false, drain: 'response_done', cause: { kind: 'client_closed' } });

    const states = messages
      .filter((m) => m.type === '@xstate.snapshot' && m.sessionId === rootId)
      .map((m) => m.snapshot!.value)
      .map((value) => (typeof value === 'string' ? value : Object.keys(value as object)[0]));
    expect([...new Set(states)]).toEqual(['connecting', 'relaying', 'draining', 'closed']);
    const children = messages.filter((m) => m.type === '@xstate.actor' && m.parentId === rootId).map((m) => m.name);
    // Its children, in the order they start: the upstream's reader (keep-alive included while relaying)
    // is started again for the drain, and the whole ending (sockets closed, settlement written) is one actor.
    expect(children).toEqual(['clientRead', 'dial', 'upstreamRead', 'upstreamRead', 'ending']);

    // The session's sockets, meter and keys live in `ports`: it never leaves the process.
    for (const m of messages) {
      if (m.snapshot?.context) expect(Object.keys(m.snapshot.context)).not.toContain('ports');
      if (m.event?.type === 'xstate.init') expect(m.event.input).toBe('[redacted]');
    }
    const everything = server.raw.join('\n');
    expect(everything).not.toContain(TEST_KEY);
    expect(everything).not.toContain('sk-sim');
    expect(everything).not.toContain(AUDIO.slice(0, 32));
    expect(everything).not.toContain('ports');
  });

  it('lets a relay pointed at an inspector that is not running stop and exit', async () => {
    // A port that was just free: nothing listens there.
    const dead = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(dead, 'listening');
    const url = `ws://127.0.0.1:${(dead.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => dead.close(() => resolve()));

    const script = fileURLToPath(new URL('./fixtures/inspect-dead-url.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script, url], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OPENAI_API_KEY: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    clearTimeout(killer);
    // Killed means the process did not exit by itself once the relay had stopped.
    expect({ code, signal, stderr }).toEqual({ code: 0, signal: null, stderr: '' });
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as { stopped: boolean; sessionEnded: string; warned: boolean; stopMs: number };
    expect(report).toMatchObject({ stopped: true, sessionEnded: 'client_closed', warned: true });
  });
});

describe('what the inspector is allowed to see', () => {
  it('redacts the input of xstate.init, the cause of an actor error, and audio or keys in any event', () => {
    expect(sanitizeEvent({ type: 'xstate.init', input: { ports: { key: 'rk_secret_secret_secret' } } })).toEqual({ type: 'xstate.init', input: '[redacted]' });
    const failed = new RelayError('upstream_rejected', 'refused', { cause: { headers: { authorization: 'Bearer sk-live-key-0000000000' } } });
    expect(sanitizeEvent({ type: 'xstate.error.actor.dial', error: failed })).toEqual({ type: 'xstate.error.actor.dial', error: { name: 'RelayError', code: 'upstream_rejected', message: 'refused' } });
    expect(sanitizeEvent({ type: 'SOMETHING', audio: AUDIO, delta: 'abc', note: `key rk_abcdefghijklmnop and ${AUDIO}` })).toEqual({
      type: 'SOMETHING',
      audio: '[redacted]',
      delta: '[redacted]',
      note: 'key [redacted] and [redacted]',
    });
  });

  it('keeps only the lifecycle fields of a session snapshot and drops a child actor’s input', () => {
    const ports = { upstream: { apiKey: 'sk-live-key-0000000000' } };
    const machine = sanitizeSnapshot({ status: 'active', value: 'relaying', tags: new Set(), children: { dial: {} }, context: { sessionId: 's1', ports, responseInFlight: true, timings: { drainTimeoutMs: 5 } } });
    expect(machine).toEqual({ status: 'active', value: 'relaying', tags: [], children: { dial: { xstate$$type: 1, id: 'dial' } }, context: { sessionId: 's1', responseInFlight: true, timings: { drainTimeoutMs: 5 } } });
    expect(sanitizeSnapshot({ status: 'active', input: { ports }, output: undefined })).toEqual({ status: 'active' });
  });
});
