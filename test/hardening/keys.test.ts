import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ledger } from '../../src/billing/ledger/index.js';
import { hashKey, hashMatches } from '../../src/billing/ledger/key-material.js';
import { TestClient } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

let stack: LedgerTestRelay;
let key: string;
let disabledKey: string;

/** Every call the relay made to its ledger, in order. */
const ledgerCalls: Array<{ method: string; args: unknown[] }> = [];
/** Calls the relay makes on its own timers, whoever is connecting. */
const BACKGROUND_CALLS = new Set(['heartbeat', 'recoverOpenSessions', 'pruneClientSecrets', 'claimUsageEvents', 'pruneUsageEvents', 'ping']);

function recordingCalls(ledger: Ledger): Ledger {
  return new Proxy(ledger, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        ledgerCalls.push({ method: String(property), args });
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

beforeAll(async () => {
  stack = await startTestRelay({ settings: { logLevel: 'trace' }, simulator: { chunkIntervalMs: 1 }, wrapLedger: recordingCalls });
  key = (await stack.ledger.createKey({ name: 'hardening', balanceNano: 5_000_000_000n })).key;
  disabledKey = (await stack.ledger.createKey({ name: 'hardening-disabled', balanceNano: 5_000_000_000n })).key;
  await stack.ledger.setDisabled('hardening-disabled', true);
});
afterAll(async () => {
  await stack.close();
});

interface Refusal {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { error: Record<string, unknown> };
}

function refusal(headers: Record<string, string>): Promise<Refusal> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(stack.realtimeUrl(), { headers, perMessageDeflate: false });
    socket.on('open', () => reject(new Error('the upgrade was accepted')));
    socket.on('error', () => undefined);
    socket.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(body) as Refusal['body'] });
        socket.terminate();
      });
    });
  });
}

describe('relay keys', () => {
  it('answers a missing, an unknown and a disabled key alike: 401, the same headers and body shape, only the code differs', async () => {
    const missing = await refusal({});
    const unknown = await refusal({ Authorization: 'Bearer rk_0000000000000000000000000000000000000000000' });
    const disabled = await refusal({ Authorization: `Bearer ${disabledKey}` });
    for (const [answer, code] of [
      [missing, 'missing_api_key'],
      [unknown, 'invalid_api_key'],
      [disabled, 'key_disabled'],
    ] as const) {
      expect(answer.status).toBe(401);
      expect(answer.body).toEqual({ error: { type: 'invalid_request_error', code, message: expect.any(String), param: null } });
    }
    const names = (r: Refusal) => Object.keys(r.headers).filter((h) => h !== 'date').sort();
    expect(names(unknown)).toEqual(names(disabled));
    expect({ ...unknown.headers, date: 0, 'content-length': 0 }).toEqual({ ...disabled.headers, date: 0, 'content-length': 0 });
  });

  /*
   * What keeps an unknown key from being told apart from a known one by its
   * timing is that both take the same path: one ledger lookup by the key's
   * SHA-256 (computed inside that one call, whatever the key), then a
   * constant-time compare (checked below). That path is checked here by
   * counting the ledger calls each refusal makes, through the relay's real
   * ledger. A stopwatch cannot check it on a shared machine: a single
   * scheduling hiccup is larger than anything it would measure, so it
   * fails when nothing is wrong and proves nothing when it passes.
   */
  it('refuses an unknown key, a near miss of a real key and a disabled key through the same single ledger lookup', async () => {
    const nearMiss = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
    const callsFor = async (presented: string) => {
      const first = ledgerCalls.length;
      const answer = await refusal({ Authorization: `Bearer ${presented}` });
      return { status: answer.status, calls: ledgerCalls.slice(first).filter((call) => !BACKGROUND_CALLS.has(call.method)) };
    };
    const unknown = await callsFor('rk_0000000000000000000000000000000000000000000');
    const wrong = await callsFor(nearMiss);
    const disabled = await callsFor(disabledKey);
    expect(unknown).toEqual({ status: 401, calls: [{ method: 'authenticate', args: ['rk_0000000000000000000000000000000000000000000'] }] });
    expect(wrong).toEqual({ status: 401, calls: [{ method: 'authenticate', args: [nearMiss] }] });
    expect(disabled).toEqual({ status: 401, calls: [{ method: 'authenticate', args: [disabledKey] }] });
    // And the right key starts down the same path.
    const first = ledgerCalls.length;
    const client = TestClient.connect(stack.realtimeUrl(), { key });
    await client.next('session.created');
    client.close();
    expect(ledgerCalls.slice(first).find((call) => !BACKGROUND_CALLS.has(call.method))).toEqual({ method: 'authenticate', args: [key] });
  });

  it('stores only the hash of a key, and compares hashes in constant time', () => {
    const files = readdirSync(stack.dataDir).filter((f) => f.startsWith('ledger.db'));
    const bytes = Buffer.concat(files.map((f) => readFileSync(join(stack.dataDir, f))));
    expect(bytes.includes(Buffer.from(key))).toBe(false);
    expect(bytes.includes(Buffer.from(hashKey(key)))).toBe(true);
    expect(hashMatches(hashKey(key), hashKey(key))).toBe(true);
    expect(hashMatches(hashKey(key), hashKey(`${key}x`))).toBe(false);
    expect(hashMatches(hashKey(key), 'short')).toBe(false);
  });

  it('never logs a key, never echoes it in the 101 and never sends it upstream', async () => {
    const logsBefore = stack.logs.length;
    const handshakesBefore = stack.sim!.handshakes.length;
    const server = TestClient.connect(stack.realtimeUrl(), { key });
    await server.next('session.created');
    server.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await server.next('response.done');
    server.close();
    const browserProtocol = new Promise<string | undefined>((resolve) => {
      const socket = new WebSocket(stack.realtimeUrl(), ['realtime', `openai-insecure-api-key.${key}`], { perMessageDeflate: false });
      socket.once('upgrade', (res) => resolve(res.headers['sec-websocket-protocol'] as string | undefined));
      socket.once('open', () => socket.close());
    });
    expect(await browserProtocol).toBe('realtime');
    const wrong = TestClient.connect(stack.realtimeUrl(), { key: 'rk_wrong_key_must_not_be_logged' });
    await wrong.closedWith();
    const browserWrong = TestClient.connect(stack.realtimeUrl(), { protocols: ['realtime', 'openai-insecure-api-key.rk_wrong_browser_key'] });
    await browserWrong.closedWith();
    await stack.idle();

    const logText = stack.logs.slice(logsBefore).map((line) => JSON.stringify(line)).join('\n');
    expect(stack.logs.length).toBeGreaterThan(logsBefore);
    for (const secret of [key, 'rk_wrong_key_must_not_be_logged', 'rk_wrong_browser_key', key.slice(3)]) expect(logText).not.toContain(secret);
    const upstream = stack.sim!.handshakes.slice(handshakesBefore);
    expect(upstream.length).toBeGreaterThanOrEqual(2);
    for (const record of upstream) expect(JSON.stringify(record)).not.toContain(key.slice(3));
  });
});
