import { afterEach, describe, expect, it } from 'vitest';
import { TestClient } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { startTcpProxy, type TcpProxy } from '../hardening/tcp-proxy.js';

let stack: LedgerTestRelay | undefined;
let proxy: TcpProxy | undefined;
afterEach(async () => {
  await stack?.close();
  await proxy?.close();
  stack = undefined;
  proxy = undefined;
});

function connect(options: { key?: string; protocols?: string[] } = {}): TestClient & { retryAfter?: string } {
  // An explicit key (undefined: none), so that a browser's subprotocol key goes alone.
  const client: TestClient & { retryAfter?: string } = stack!.connect({ key: options.key, protocols: options.protocols });
  client.socket.once('unexpected-response', (_req, res) => {
    client.retryAfter = res.headers['retry-after'];
  });
  return client;
}

describe('limits at the handshake', () => {
  it("answers a key's session over its cap with 429, Retry-After and OpenAI's error body, before the upgrade", async () => {
    stack = await startTestRelay({ settings: { maxSessionsPerKey: 1 } });
    const first = connect({ key: stack.key });
    await first.next('session.created');
    const second = connect({ key: stack.key });
    await second.closedWith();
    expect(second.unexpected?.status).toBe(429);
    expect(Number(second.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(second.unexpected!.body)).toEqual({
      error: { type: 'rate_limit_error', code: 'rate_limit_exceeded', param: null, message: expect.stringContaining('1 open session') },
    });
    // No session row was opened for the refused attempt.
    first.close();
    await first.closedWith();
    await stack.idle();
    expect(stack.sessions()).toHaveLength(1);
    // The slot is back.
    const third = connect({ key: stack.key });
    await third.next('session.created');
  });

  it('tells a browser over its cap why, with an error event and close 1008', async () => {
    stack = await startTestRelay({ settings: { maxSessionsPerKey: 1 } });
    const first = connect({ key: stack.key });
    await first.next('session.created');
    const browser = connect({ protocols: ['realtime', `openai-insecure-api-key.${stack.key}`] });
    const error = await browser.next('error');
    expect(error.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    expect(await browser.closedWith()).toEqual({ code: 1008, reason: 'rate_limit_exceeded' });
    expect(browser.socket.protocol).toBe('realtime');
  });

  it('limits handshakes per address, wrong keys included', async () => {
    stack = await startTestRelay({ settings: { handshakesPerMinutePerIp: 3 } });
    for (let i = 0; i < 3; i++) {
      const wrong = connect({ key: `rk_wrong_${i}` });
      await wrong.closedWith();
      expect(wrong.unexpected?.status).toBe(401);
    }
    const right = connect({ key: stack.key });
    await right.closedWith();
    expect(right.unexpected?.status).toBe(429);
    expect(Number(right.retryAfter)).toBe(20);
    expect(JSON.parse(right.unexpected!.body).error.code).toBe('rate_limit_exceeded');
  });

  it('refuses new sessions with 503 limits_unavailable while the shared Redis is unreachable, and the session beside goes on', async () => {
    proxy = await startTcpProxy({ host: '127.0.0.1', port: 6379 });
    stack = await startTestRelay({ settings: { maxSessionsPerKey: 5, redisUrl: `redis://127.0.0.1:${proxy.port}`, redisPrefix: `relay_test:down:${process.pid}:${Date.now()}:` }, simulator: { chunkIntervalMs: 2 } });
    const open = connect({ key: stack.key });
    await open.next('session.created');
    proxy.cut();
    const refused = connect({ key: stack.key });
    await refused.closedWith();
    expect(refused.unexpected?.status).toBe(503);
    expect(refused.retryAfter).toBe('5');
    expect(JSON.parse(refused.unexpected!.body).error).toMatchObject({ type: 'server_error', code: 'limits_unavailable' });
    open.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await open.next('response.done');
    expect(open.closed).toBeNull();
  });
});
