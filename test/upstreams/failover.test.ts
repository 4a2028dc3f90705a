import { createServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { startSimulator, type HandshakeFault, type Simulator } from '../../src/simulator/index.js';
import { TestClient } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

let stack: LedgerTestRelay | undefined;
let sims: Simulator[] = [];
afterEach(async () => {
  await stack?.close();
  for (const sim of sims) await sim.close();
  stack = undefined;
  sims = [];
});

const CONNECT_TIMEOUT_MS = 2_000;

/** `count` simulators serving every model, tried in the order given. */
async function startUpstreams(count: number): Promise<Simulator[]> {
  sims = await Promise.all(Array.from({ length: count }, () => startSimulator({ chunkIntervalMs: 1 })));
  stack = await startTestRelay({
    settings: { connectTimeoutMs: CONNECT_TIMEOUT_MS },
    upstreams: {
      upstreams: sims.map((sim, i) => ({ name: `upstream-${i + 1}`, kind: 'openai' as const, baseUrl: `${sim.url.replace(/^ws/, 'http')}/v1`, apiKey: 'sk-sim', priority: i })),
    },
  });
  return sims;
}

/** A client that sends a burst of events the moment its socket opens, before any upstream has answered. */
async function clientWithEarlyFrames(): Promise<TestClient> {
  const client = stack!.connect();
  await new Promise((resolve) => client.socket.once('open', resolve));
  for (const id of ['item_early_a', 'item_early_b', 'item_early_c']) {
    client.send({ type: 'conversation.item.create', item: { id, type: 'message', role: 'user', content: [{ type: 'input_text', text: id }] } });
  }
  client.send({ type: 'session.update', session: { type: 'realtime', instructions: 'sent before any upstream answered' } });
  client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
  return client;
}

/** The early burst reached the upstream that answered, all of it, in order. */
async function expectEarlyFramesServedInOrder(client: TestClient): Promise<void> {
  await client.next('response.done');
  const answers = client.events.filter((e) => e.type === 'conversation.item.added' || e.type === 'session.updated' || e.type === 'response.created');
  expect(answers.map((e) => (e.type === 'conversation.item.added' ? (e.item as { id: string }).id : e.type)).slice(0, 5)).toEqual([
    'item_early_a',
    'item_early_b',
    'item_early_c',
    'session.updated',
    'response.created',
  ]);
  expect(client.events[0]!.type).toBe('session.created');
  // Nothing of the failed attempt reaches the client.
  expect(client.count('error')).toBe(0);
  expect(client.count('session.created')).toBe(1);
}

function dialLogs(level: number) {
  return stack!.logs.filter((line) => line.level === level && typeof line.upstream === 'string');
}

describe('failover between upstreams', () => {
  const refusals: Array<[string, HandshakeFault, string]> = [
    ['429', { kind: 'refuse', status: 429 }, 'upstream_rate_limited'],
    ['500', { kind: 'refuse', status: 500 }, 'upstream_unavailable'],
    ['503', { kind: 'refuse', status: 503 }, 'upstream_unavailable'],
  ];
  it.each(refusals)('moves to the next upstream when the first answers %s, with the early frames in order', async (_status, fault, code) => {
    const [first, second] = await startUpstreams(2);
    first!.queueHandshakeFault(fault);
    const client = await clientWithEarlyFrames();
    await expectEarlyFramesServedInOrder(client);
    expect(first!.connections).toBe(0);
    expect(second!.connections).toBe(1);
    expect(dialLogs(40)).toEqual([expect.objectContaining({ upstream: 'upstream-1', code })]);
    client.close();
    await stack!.idle();
    expect(stack!.settlements()[0]!.summary).toMatchObject({ upstream: 'upstream-2', endReason: 'client_closed' });
  });

  it('moves to the next upstream when the first refuses the connection', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const sim = await startSimulator({ chunkIntervalMs: 1 });
    sims = [sim];
    stack = await startTestRelay({
      settings: { connectTimeoutMs: CONNECT_TIMEOUT_MS },
      upstreams: {
        upstreams: [
          { name: 'gone', baseUrl: `http://127.0.0.1:${closedPort}/v1`, apiKey: 'sk-gone', priority: 0 },
          { name: 'standby', baseUrl: `${sim.url.replace(/^ws/, 'http')}/v1`, apiKey: 'sk-sim', priority: 1 },
        ],
      },
    });
    const client = await clientWithEarlyFrames();
    await expectEarlyFramesServedInOrder(client);
    expect(dialLogs(40)).toEqual([expect.objectContaining({ upstream: 'gone', code: 'upstream_unavailable' })]);
    expect(String(dialLogs(40)[0]!.detail)).toContain('ECONNREFUSED');
  });

  it('moves to the next upstream when the first completes the upgrade and closes before its first frame', async () => {
    // The smallest such upstream: a WebSocket server that accepts every upgrade and closes at once.
    const closing = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve) => closing.once('listening', resolve));
    let accepted = 0;
    closing.on('connection', (socket) => {
      accepted++;
      socket.close(1011, 'going away before a word');
    });
    const sim = await startSimulator({ chunkIntervalMs: 1 });
    sims = [sim];
    try {
      stack = await startTestRelay({
        settings: { connectTimeoutMs: CONNECT_TIMEOUT_MS },
        upstreams: {
          upstreams: [
            { name: 'closes', baseUrl: `http://127.0.0.1:${(closing.address() as AddressInfo).port}/v1`, apiKey: 'sk-closes', priority: 0 },
            { name: 'standby', baseUrl: `${sim.url.replace(/^ws/, 'http')}/v1`, apiKey: 'sk-sim', priority: 1 },
          ],
        },
      });
      const client = await clientWithEarlyFrames();
      await expectEarlyFramesServedInOrder(client);
      expect(accepted).toBe(1);
      expect(sim.connections).toBe(1);
      expect(dialLogs(40)).toEqual([expect.objectContaining({ upstream: 'closes', code: 'upstream_closed' })]);
      expect(String(dialLogs(40)[0]!.detail)).toContain('1011 going away before a word');
      client.close();
      await stack.idle();
      expect(stack.settlements()[0]!.summary).toMatchObject({ upstream: 'standby', endReason: 'client_closed' });
    } finally {
      await new Promise((resolve) => closing.close(resolve));
    }
  });

  it('moves on from an upstream that never answers the upgrade, within the connect deadline', async () => {
    const [first, second] = await startUpstreams(2);
    first!.queueHandshakeFault({ kind: 'hang' });
    const began = Date.now();
    const client = await clientWithEarlyFrames();
    await client.next('session.created', CONNECT_TIMEOUT_MS);
    expect(Date.now() - began).toBeLessThan(CONNECT_TIMEOUT_MS);
    await expectEarlyFramesServedInOrder(client);
    expect(first!.handshakes).toHaveLength(1);
    expect(second!.connections).toBe(1);
    expect(dialLogs(40)).toEqual([expect.objectContaining({ upstream: 'upstream-1', code: 'upstream_timeout' })]);
  });

  it('leaves the last upstream its share of the deadline after two that hang', async () => {
    const [first, second, third] = await startUpstreams(3);
    first!.queueHandshakeFault({ kind: 'hang' });
    second!.queueHandshakeFault({ kind: 'hang' });
    const client = await clientWithEarlyFrames();
    await expectEarlyFramesServedInOrder(client);
    expect(third!.connections).toBe(1);
    expect(dialLogs(40).map((l) => l.upstream)).toEqual(['upstream-1', 'upstream-2']);
  });

  it('skips an upstream that refuses the relay\'s credentials and logs it as an error', async () => {
    const [first, second] = await startUpstreams(2);
    first!.queueHandshakeFault({ kind: 'refuse', status: 401 });
    const client = await clientWithEarlyFrames();
    await expectEarlyFramesServedInOrder(client);
    expect(second!.connections).toBe(1);
    const [logged] = dialLogs(50);
    expect(logged).toMatchObject({ upstream: 'upstream-1', code: 'upstream_auth_failed' });
    expect(String(logged!.detail)).toContain('401');
    expect(JSON.stringify(stack!.logs)).not.toContain('sk-sim');
  });

  it('does not fail over once the upstream has sent its first frame', async () => {
    const [first, second] = await startUpstreams(2);
    first!.queueSessionFault({ kind: 'close', code: 1011, reason: 'upstream broke' });
    const client = stack!.connect();
    expect(await client.closedWith()).toEqual({ code: 1011, reason: 'upstream broke' });
    expect(client.events.map((e) => e.type)).toEqual(['session.created']);
    expect(first!.connections).toBe(1);
    expect(second!.handshakes).toHaveLength(0);
    await stack!.idle();
    expect(stack!.settlements()[0]!.summary).toMatchObject({ upstream: 'upstream-1', endReason: 'upstream_closed' });
  });

  it('tells the client why when every upstream fails', async () => {
    const [first, second] = await startUpstreams(2);
    first!.queueHandshakeFault({ kind: 'refuse', status: 503 });
    second!.queueHandshakeFault({ kind: 'refuse', status: 429 });
    const client = stack!.connect();
    const error = await client.next('error');
    expect(error.error).toMatchObject({ code: 'upstream_rate_limited' });
    expect((await client.closedWith()).code).toBe(1013);
    await stack!.idle();
    expect(await stack!.ledger.usage({ key: 'demo' })).toEqual([]);
  });
});
