import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { routeUpgrades, type UpgradeEnv } from '../../src/server/upgrade.js';
import { startTestRelay, type RecordingTestRelay } from '../helpers/relay.js';

let stack: RecordingTestRelay | undefined;
let server: Server | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** A raw upgrade request, and the refusal read off the socket as it was written. */
function upgrade(port: number): Promise<{ status: number; contentType: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ port, path: '/v1/realtime?model=gpt-realtime', headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, contentType: res.headers['content-type'], body }));
    });
    req.on('upgrade', () => reject(new Error('upgraded')));
    req.on('error', reject);
    req.end();
  });
}

describe('refusals read from the one error table', () => {
  it('tells a plain request to the realtime endpoint to upgrade, with 426 in OpenAI\'s envelope', async () => {
    stack = await startTestRelay({ billing: 'recording' });
    const response = await fetch(stack.url().replace(/^ws/, 'http'));
    expect(response.status).toBe(426);
    expect(await response.text()).toBe(
      '{"error":{"message":"This endpoint speaks WebSocket: send an Upgrade request.","type":"invalid_request_error","code":"upgrade_required","param":null}}',
    );
  });

  it("answers an upgrade the app failed to route with 500 internal_error in OpenAI's envelope", async () => {
    const failing = { fetch: () => Promise.reject(new Error('routing failed')) } as unknown as Hono<UpgradeEnv>;
    server = createServer();
    const wss = new WebSocketServer({ noServer: true });
    routeUpgrades(server, failing, wss);
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const answer = await upgrade((server.address() as AddressInfo).port);
    expect(answer).toEqual({
      status: 500,
      contentType: 'application/json',
      body: '{"error":{"message":"The relay failed unexpectedly.","type":"server_error","code":"internal_error","param":null}}',
    });
    wss.close();
  });
});
