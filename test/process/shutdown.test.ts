import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openLedger } from '../../src/billing/ledger/index.js';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { TestClient } from '../helpers/client.js';
import { sessionsWithSettlements, sqliteLedgerFile } from '../helpers/ledger.js';
import { spawnRelay, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';

/*
 * Graceful shutdown of the real process: `node bin/relay.mjs start`, signals
 * sent by the test, the upstream simulator started here so that each
 * response lasts long enough to be in flight when the signal arrives.
 */

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function simulator(options: { chunkIntervalMs: number; audioChunks: number }): Promise<Simulator> {
  const sim = await startSimulator(options);
  cleanups.push(() => sim.close());
  return sim;
}

function dataDir(): string {
  const dir = tempDataDir();
  cleanups.push(() => dir.remove());
  return dir.path;
}

async function relayOn(sim: Simulator, dir: string, env: Record<string, string> = {}): Promise<RelayProcess> {
  const relay = await spawnRelay({
    dataDir: dir,
    env: { OPENAI_API_KEY: 'sk-sim', OPENAI_BASE_URL: `http://127.0.0.1:${sim.port}/v1`, RELAY_CLOSE_TIMEOUT_MS: '2000', ...env },
  });
  cleanups.push(() => relay.kill());
  return relay;
}

function connect(relay: RelayProcess, key: string): TestClient {
  const client = TestClient.connect(relay.realtimeUrl(), { key });
  cleanups.push(() => client.socket.terminate());
  return client;
}

/** Clients whose response has started streaming and not finished. */
async function responsesInFlight(relay: RelayProcess, count: number): Promise<TestClient[]> {
  const clients = Array.from({ length: count }, () => connect(relay, relay.demoKey!));
  await Promise.all(clients.map((c) => c.next('session.created')));
  for (const client of clients) client.send({ type: 'response.create' });
  await Promise.all(clients.map((c) => c.next('response.output_audio.delta')));
  for (const client of clients) expect(client.count('response.done')).toBe(0);
  return clients;
}

async function answer(url: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}

const shuttingDown = (line: { msg?: string }) => line.msg?.startsWith('shutting down') === true;

describe('the relay as a process', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`on ${signal}, lets every response in flight finish, bills it, closes each client with 1001 and exits 0`, async () => {
      // 12 deltas 150 ms apart: each response lasts about 2 s.
      const sim = await simulator({ chunkIntervalMs: 150, audioChunks: 12 });
      const dir = dataDir();
      const relay = await relayOn(sim, dir, { RELAY_SHUTDOWN_TIMEOUT_MS: '20000', RELAY_DRAIN_TIMEOUT_MS: '15000' });
      expect(await answer(`${relay.httpUrl}/healthz`)).toEqual({ status: 200, body: { status: 'ok' } });
      expect(await answer(`${relay.httpUrl}/readyz`)).toEqual({ status: 200, body: { status: 'ready' } });
      const clients = await responsesInFlight(relay, 3);

      relay.signal(signal);
      await relay.waitForLog(shuttingDown, 'the shutdown line');

      // Draining: still alive, no longer ready, refusing new sessions.
      expect(await answer(`${relay.httpUrl}/healthz`)).toEqual({ status: 200, body: { status: 'ok' } });
      expect(await answer(`${relay.httpUrl}/readyz`)).toEqual({ status: 503, body: { status: 'shutting_down' } });
      const late = connect(relay, relay.demoKey!);
      await late.closedWith();
      expect(late.unexpected?.status).toBe(503);
      expect(JSON.parse(late.unexpected!.body)).toMatchObject({ error: { code: 'server_shutting_down', type: 'server_error' } });
      for (const client of clients) expect(client.count('response.done')).toBe(0);

      for (const client of clients) {
        expect(await client.closedWith(15_000)).toMatchObject({ code: 1001 });
        const types = client.events.map((e) => e.type);
        const done = client.events.find((e) => e.type === 'response.done')!;
        expect((done.response as { status: string }).status).toBe('completed');
        const error = client.events.find((e) => e.type === 'error')!;
        expect(error.error).toMatchObject({ code: 'server_shutting_down' });
        // The response's end reaches the client before the reason for the close.
        expect(types.indexOf('response.done')).toBeLessThan(types.indexOf('error'));
        expect(types.at(-1)).toBe('error');
      }
      expect(await relay.exited(15_000)).toEqual({ code: 0, signal: null });
      expect(relay.logs.find((l) => l.msg?.startsWith('stopped'))).toMatchObject({ drained: true });

      const sessions = sessionsWithSettlements(sqliteLedgerFile(dir));
      expect(sessions).toHaveLength(3);
      for (const session of sessions) {
        expect(session).toMatchObject({ status: 'settled', endReason: 'cancelled:shutdown' });
        expect(session.settlement).toMatchObject({ status: 'settled', endReason: 'cancelled:shutdown', chargeCount: 1 });
        expect(session.settlement!.summary).toMatchObject({ drain: 'response_done', clientCloseCode: 1001 });
        expect(session.spendNano).toBeGreaterThan(0n);
      }
      const ledger = await openLedger({ sqlitePath: join(dir, 'ledger.db') });
      try {
        const charges = await ledger.usage({});
        expect(charges.map((c) => c.sessionId).sort()).toEqual(sessions.map((s) => s.id).sort());
        expect(charges.every((c) => c.kind === 'response' && c.costNano > 0n)).toBe(true);
      } finally {
        await ledger.close();
      }
    });
  }

  it('exits at once with 1 on a second signal, and the next start settles what was left', async () => {
    // 100 deltas 200 ms apart: nothing finishes on its own during the test.
    const sim = await simulator({ chunkIntervalMs: 200, audioChunks: 100 });
    const dir = dataDir();
    const relay = await relayOn(sim, dir, { RELAY_SHUTDOWN_TIMEOUT_MS: '60000', RELAY_DRAIN_TIMEOUT_MS: '60000' });
    const clients = await responsesInFlight(relay, 2);

    relay.signal('SIGINT');
    await relay.waitForLog(shuttingDown, 'the shutdown line');
    const second = Date.now();
    relay.signal('SIGTERM');
    expect(await relay.exited(5_000)).toEqual({ code: 1, signal: null });
    expect(Date.now() - second).toBeLessThan(3_000);
    for (const client of clients) await client.closedWith();
    const left = sessionsWithSettlements(sqliteLedgerFile(dir));
    expect(left.map((s) => s.status)).toEqual(['open', 'open']);

    const restarted = await relayOn(sim, dir);
    expect(restarted.demoKey).toBeNull();
    expect(restarted.logs.find((l) => l.msg?.startsWith('settled sessions left open'))).toMatchObject({ sessions: 2 });
    const recovered = sessionsWithSettlements(sqliteLedgerFile(dir));
    expect(recovered.map((s) => s.id)).toEqual(left.map((s) => s.id));
    for (const session of recovered) {
      expect(session.status).toBe('recovered');
      expect(session.settlement).toMatchObject({ status: 'recovered' });
    }
    restarted.signal('SIGTERM');
    expect(await restarted.exited()).toEqual({ code: 0, signal: null });
  });

  it('exits 0 within RELAY_SHUTDOWN_TIMEOUT_MS even if a response never ends, leaving its session to recovery', async () => {
    const sim = await simulator({ chunkIntervalMs: 20, audioChunks: 5 });
    const dir = dataDir();
    const relay = await relayOn(sim, dir, { RELAY_SHUTDOWN_TIMEOUT_MS: '1000', RELAY_DRAIN_TIMEOUT_MS: '60000' });
    const client = connect(relay, relay.demoKey!);
    await client.next('session.created');
    client.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    client.send({ type: 'response.create' });
    await client.next('response.created');

    const signalled = Date.now();
    relay.signal('SIGTERM');
    expect(await relay.exited(10_000)).toEqual({ code: 0, signal: null });
    const took = Date.now() - signalled;
    expect(took).toBeGreaterThanOrEqual(1_000);
    expect(took).toBeLessThan(4_000);
    expect(relay.logs.find((l) => l.msg?.startsWith('stopped'))).toMatchObject({ drained: false, unsettled: 1 });
    await client.closedWith();
    // Still open: the next start settles it (see the second-signal test).
    expect(sessionsWithSettlements(sqliteLedgerFile(dir)).map((s) => s.status)).toEqual(['open']);
  });
});
