import { connect } from 'node:net';
import { Hono } from 'hono';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { handshake, isLoopback, type HandshakeEnv } from '../../src/server/handshake.js';
import type { Admission, Gatekeeper, HandshakeAttempt } from '../../src/server/ports.js';
import { MemoryLimits } from '../../src/limits/index.js';
import { TestClient } from '../helpers/client.js';
import { RecordingBilling, TEST_KEY } from '../helpers/recording-billing.js';
import { startTestRelay, type RecordingTestRelay } from '../helpers/relay.js';
import { rawUpgradeRequest } from './raw-socket.js';

let stack: RecordingTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

function relayPort(): number {
  return Number(new URL(stack!.relay.url()).port);
}

/** Writes `request` (or its start, then one header line every `trickleMs`) and resolves with what came back and when the server hung up. */
function rawExchange(request: string, trickleMs?: number): Promise<{ response: string; closedAfterMs: number }> {
  return new Promise((resolve) => {
    const began = Date.now();
    const socket = connect(relayPort(), '127.0.0.1');
    let response = '';
    let trickle: NodeJS.Timeout | undefined;
    socket.on('data', (chunk: Buffer) => (response += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearInterval(trickle);
      resolve({ response, closedAfterMs: Date.now() - began });
    });
    if (trickleMs === undefined) {
      socket.write(request);
      return;
    }
    // The request line and the first headers, then a header every trickleMs, never the blank line.
    socket.write(request.slice(0, request.indexOf('\r\n\r\n') + 2));
    let n = 0;
    trickle = setInterval(() => socket.write(`X-Slow-${++n}: ${'a'.repeat(5)}\r\n`), trickleMs);
  });
}

describe('slow and abusive handshakes', () => {
  it('drops an upgrade whose headers trickle in (slowloris) after the header timeout, while a session beside it goes on', async () => {
    // On real time: the header timeout is the HTTP server's headersTimeout, armed on Node's internal timers, which no fake clock reaches.
    stack = await startTestRelay({ billing: 'recording', settings: { headerTimeoutMs: 600 } });
    const neighbour = stack.connect();
    await neighbour.next('session.created');
    const slow = await rawExchange(rawUpgradeRequest('/v1/realtime?model=gpt-realtime', 'relay', { Authorization: `Bearer ${TEST_KEY}` }), 100);
    expect(slow.response).toMatch(/^HTTP\/1\.1 408/);
    expect(slow.closedAfterMs).toBeGreaterThanOrEqual(500);
    // The timeout plus at most one check interval (a quarter of it), with room for a busy machine.
    expect(slow.closedAfterMs).toBeLessThan(3_000);
    neighbour.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await neighbour.next('response.done');
    expect(neighbour.closed).toBeNull();
  });

  it('answers oversized request headers with 431', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    const huge = await rawExchange(rawUpgradeRequest('/v1/realtime?model=gpt-realtime', 'relay', { Authorization: `Bearer ${TEST_KEY}`, 'X-Padding': 'p'.repeat(20_000) }));
    expect(huge.response).toMatch(/^HTTP\/1\.1 431/);
  });

  it('stays up and answers every attempt of an upgrade flood', async () => {
    stack = await startTestRelay({ billing: 'recording', simulator: { chunkIntervalMs: 0 } });
    const attempts = Array.from({ length: 300 }, (_, i) => stack!.connect(i % 3 === 0 ? {} : { key: `rk_flood_${i}` }));
    await Promise.all(attempts.map((client) => client.until(() => client.closed !== null || client.events.some((e) => e.type === 'session.created'), 'an answer', 20_000)));
    const opened = attempts.filter((c) => c.closed === null);
    const refused = attempts.filter((c) => c.unexpected?.status === 401);
    expect(opened.length).toBe(100);
    expect(refused.length).toBe(200);
    for (const client of opened) client.close();
    await stack.relay.registry.empty();
    expect((await fetch(`${stack.relay.url().replace(/^ws/, 'http')}/healthz`)).status).toBe(200);
    const after = stack.connect();
    await after.next('session.created');
  });

  it('refuses a disallowed Origin with 403 before the upgrade, and lets allowed and server-side clients in', async () => {
    stack = await startTestRelay({ billing: 'recording', server: { allowedOrigins: ['https://app.example'] } });
    const evil = stack.connect({ headers: { Origin: 'https://evil.example' } });
    await evil.closedWith();
    expect(evil.unexpected?.status).toBe(403);
    expect(JSON.parse(evil.unexpected!.body)).toEqual({ error: { type: 'invalid_request_error', code: 'origin_not_allowed', message: expect.any(String), param: null } });
    const browser = TestClient.connect(stack.url(), { protocols: ['realtime', `openai-insecure-api-key.${TEST_KEY}`], headers: { Origin: 'https://evil.example' } });
    await browser.closedWith();
    expect(browser.unexpected?.status).toBe(403);
    const allowed = stack.connect({ headers: { Origin: 'https://app.example' } });
    await allowed.next('session.created');
    const server = stack.connect();
    await server.next('session.created');
    expect(stack.billing.opened).toHaveLength(2);
  });

  it('frees the slot and settles the session of a handshake whose connection is gone before its session was opened', async () => {
    const limits = new MemoryLimits({ maxSessionsPerKey: 1, sessionsPerMinute: 0, handshakesPerMinutePerIp: 0 });
    const recording = new RecordingBilling();
    let hungUp!: () => void;
    const clientGone = new Promise<void>((resolve) => (hungUp = resolve));
    let slow = true;
    // The relay's gatekeeper, with a limit, and a ledger that is slow to open the first session.
    const gatekeeper: Gatekeeper = {
      async admit(attempt) {
        const admission = await recording.admit(attempt);
        const release = await limits.acquire({ keyId: admission.caller.keyId, maxSessions: null });
        return {
          ...admission,
          openMeter: async (session) => {
            if (slow) {
              slow = false;
              await clientGone;
            }
            return admission.openMeter(session);
          },
          release,
        };
      },
    };
    stack = await startTestRelay({ billing: 'recording', server: { gatekeeper } });
    let serverSide!: import('node:stream').Duplex;
    stack.relay.server.once('upgrade', (_request, upgraded) => (serverSide = upgraded));
    const socket = connect(relayPort(), '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write(rawUpgradeRequest('/v1/realtime?model=gpt-realtime', 'relay', { Authorization: `Bearer ${TEST_KEY}` }));
    await expect.poll(() => limits.stats().openSessions).toBe(1);
    // The connection is torn down on the relay's side (a reset, a shutdown) before the ledger answers.
    const gone = new Promise((resolve) => serverSide.once('close', resolve));
    serverSide.destroy();
    await gone;
    hungUp();
    await recording.settled(1);
    expect(recording.settlements[0]!.endReason).toBe('handshake_aborted');
    expect(limits.stats().openSessions).toBe(0);
    const next = stack.connect();
    await next.next('session.created');
  });

  it('never echoes a key-bearing subprotocol in the 101', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    for (const offer of [[`openai-insecure-api-key.${TEST_KEY}`, 'realtime'], ['realtime', `openai-insecure-api-key.${TEST_KEY}`, 'openai-beta.realtime-v1']]) {
      const socket = new WebSocket(stack.url(), offer, { perMessageDeflate: false });
      const header = await new Promise<string | undefined>((resolve, reject) => {
        socket.once('upgrade', (res) => resolve(res.headers['sec-websocket-protocol'] as string | undefined));
        socket.once('error', reject);
      });
      expect(header).toBe('realtime');
      socket.terminate();
    }
  });
});

describe('where a subprotocol key is accepted', () => {
  function probe(options: { remoteAddress: string; encrypted?: boolean; allowInsecure?: boolean; protocols?: string; authorization?: string; origin?: string; allowedOrigins?: string[]; query?: string }) {
    const seen: HandshakeAttempt[] = [];
    const gatekeeper: Gatekeeper = {
      async admit(attempt): Promise<Admission> {
        seen.push(attempt);
        return { caller: { keyId: 'k', keyName: 'k' }, model: 'gpt-realtime', clientSecretSession: undefined, openMeter: () => Promise.reject(new Error('unused')), release: () => undefined };
      },
    };
    const app = new Hono<HandshakeEnv>();
    app.get('/', handshake({ gatekeeper, allowInsecureSubprotocolKey: options.allowInsecure ?? false, allowedOrigins: options.allowedOrigins ?? [], isShuttingDown: () => false }), (c) =>
      c.json({ refusal: c.get('refusal')?.code ?? null }),
    );
    const headers: Record<string, string> = { upgrade: 'websocket' };
    if (options.origin) headers.origin = options.origin;
    if (options.protocols) headers['sec-websocket-protocol'] = options.protocols;
    if (options.authorization) headers.authorization = options.authorization;
    const incoming = { socket: { remoteAddress: options.remoteAddress, encrypted: options.encrypted } };
    return Promise.resolve(app.fetch(new Request(`http://relay/?${options.query ?? 'model=gpt-realtime'}`, { headers }), { incoming } as never)).then(async (response) => ({
      status: response.status,
      body: (await response.json()) as { refusal: string | null },
      admitted: seen.length,
      attempt: seen[0],
    }));
  }
  const browser = 'realtime, openai-insecure-api-key.rk_browser';

  it('refuses a subprotocol key over plain ws:// from a non-loopback address, before the key is looked at', async () => {
    expect(await probe({ remoteAddress: '10.1.2.3', protocols: browser })).toEqual({ status: 200, body: { refusal: 'insecure_key_transport' }, admitted: 0 });
    expect(await probe({ remoteAddress: '::ffff:192.0.2.4', protocols: browser })).toMatchObject({ body: { refusal: 'insecure_key_transport' }, admitted: 0 });
  });

  it('accepts it over TLS, from loopback, or when the operator allows it', async () => {
    expect(await probe({ remoteAddress: '10.1.2.3', encrypted: true, protocols: browser })).toMatchObject({ body: { refusal: null }, admitted: 1 });
    expect(await probe({ remoteAddress: '127.0.0.1', protocols: browser })).toMatchObject({ body: { refusal: null }, admitted: 1 });
    expect(await probe({ remoteAddress: '::1', protocols: browser })).toMatchObject({ body: { refusal: null }, admitted: 1 });
    expect(await probe({ remoteAddress: '10.1.2.3', allowInsecure: true, protocols: browser })).toMatchObject({ body: { refusal: null }, admitted: 1 });
  });

  it('accepts a short-lived client secret in a subprotocol over any transport, without a model, from an allowed origin only', async () => {
    const secret = 'realtime, openai-insecure-api-key.ek_browser';
    const admitted = await probe({ remoteAddress: '10.1.2.3', protocols: secret, query: '' });
    expect(admitted).toMatchObject({ body: { refusal: null }, admitted: 1, attempt: { key: 'ek_browser', keySource: 'subprotocol', model: undefined, trustedTransport: false } });
    const fromElsewhere = await probe({ remoteAddress: '10.1.2.3', protocols: secret, query: '', origin: 'https://evil.example', allowedOrigins: ['https://app.example'] });
    expect(fromElsewhere).toMatchObject({ status: 403, admitted: 0 });
    // A relay key without a model is refused before the gatekeeper, as before.
    expect(await probe({ remoteAddress: '127.0.0.1', protocols: browser, query: '' })).toMatchObject({ body: { refusal: 'missing_model' }, admitted: 0 });
  });

  it('lets a header key win over a subprotocol one', async () => {
    const result = await probe({ remoteAddress: '10.1.2.3', protocols: browser, authorization: 'Bearer rk_header' });
    expect(result).toMatchObject({ status: 200, admitted: 1 });
  });

  it('counts only real loopback addresses as loopback', () => {
    for (const address of ['127.0.0.1', '127.0.0.2', '::1', '::ffff:127.0.0.1']) expect(isLoopback(address)).toBe(true);
    for (const address of ['10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', '::2', '', undefined]) expect(isLoopback(address)).toBe(false);
  });

  it('answers a refusal with its own status, body and Retry-After', async () => {
    const gatekeeper: Gatekeeper = {
      admit: () => Promise.reject(new RelayError('rate_limit_exceeded', undefined, { retryAfterSeconds: 7 })),
    };
    const app = new Hono<HandshakeEnv>();
    app.get('/', handshake({ gatekeeper, allowInsecureSubprotocolKey: false, allowedOrigins: [], isShuttingDown: () => false }), (c) => c.body(null, 200));
    const response = await app.fetch(new Request('http://relay/?model=gpt-realtime', { headers: { upgrade: 'websocket', authorization: 'Bearer rk_x' } }), { incoming: { socket: { remoteAddress: '127.0.0.1' } } } as never);
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('7');
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('rate_limit_exceeded');
  });
});
