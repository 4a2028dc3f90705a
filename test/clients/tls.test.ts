import { get as httpsGet } from 'node:https';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { TestClient } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

let stack: LedgerTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

function httpsJson(url: string, ca: Buffer): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const request = httpsGet(url, { ca, timeout: 5_000 }, (response) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as unknown }));
    });
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', reject);
  });
}

describe('TLS on the relay port', () => {
  it('serves https:// health and wss:// sessions on the same port', async () => {
    stack = await startTestRelay({ tls: true, simulator: { chunkIntervalMs: 0 } });
    expect(stack.wsUrl).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
    const ca = stack.certificate!.cert;
    expect(await httpsJson(`${stack.httpUrl}/healthz`, ca)).toEqual({ status: 200, body: { status: 'ok' } });

    const client = new TestClient(new WebSocket(stack.realtimeUrl(), { ca, headers: { Authorization: `Bearer ${stack.key}` } }));
    await client.next('session.created');
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await client.next('response.done');
    client.close();
    expect(await client.closedWith()).toMatchObject({ code: 1000 });
    await stack.idle();
    expect(stack.settlements()).toHaveLength(1);
  });

  it('is a real certificate check: a client that does not trust it cannot connect', async () => {
    stack = await startTestRelay({ tls: true });
    const socket = new WebSocket(stack.realtimeUrl(), { headers: { Authorization: `Bearer ${stack.key}` } });
    const error = await new Promise<Error & { code?: string }>((resolve) => socket.once('error', resolve));
    expect(error.code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });
});
