/**
 * The relay process dies (kill -9) with live sessions, some with responses
 * already billed and one with a response in flight. Restarted on the same
 * port (hence the same instance id), it settles those sessions at once as
 * `recovered`, from the charges they recorded: nothing is charged again and
 * nothing is lost that a client was shown.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openLedger } from '../../src/billing/ledger/index.js';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { sqliteView } from '../helpers/ledger.js';
import { TestClient } from '../helpers/client.js';
import { freePort, spawnRelay, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';
import { realtimeInvoice, sum, usage } from './invoice.js';
import { respond } from './session-bill.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('crash recovery', () => {
  it('settles the sessions of a killed relay as recovered, from their recorded charges, when it restarts', async () => {
    const sim: Simulator = await startSimulator({ chunkIntervalMs: 0 });
    cleanups.push(() => sim.close());
    const data = tempDataDir('relay-crash-');
    cleanups.push(() => data.remove());
    const port = await freePort();
    const env = { PORT: String(port), OPENAI_API_KEY: 'x', OPENAI_BASE_URL: `http://127.0.0.1:${sim.port}/v1`, RELAY_DEMO_BALANCE_USD: '0' };
    const clients: TestClient[] = [];
    cleanups.push(() => clients.forEach((c) => c.socket.terminate()));

    let relay: RelayProcess = await spawnRelay({ dataDir: data.path, env });
    cleanups.push(() => relay.kill());
    const ledger = await openLedger({ sqlitePath: join(data.path, 'ledger.db') });
    const { key, record } = await ledger.createKey({ name: 'crash', balanceNano: 10_000_000_000n });
    await ledger.close();
    const view = sqliteView(join(data.path, 'ledger.db'));
    const connect = () => {
      const client = TestClient.connect(relay.realtimeUrl(), { key });
      clients.push(client);
      return client;
    };

    // Three live sessions: two responses done; one done and one in flight; none.
    const usages = [usage({ text: [300, 100], out: [40, 0] }), usage({ text: [50, 0], audio: [400, 0], out: [10, 300] }), usage({ image: [200, 0], out: [25, 0] })];
    const [a, b, c] = [connect(), connect(), connect()];
    await Promise.all([a, b, c].map((client) => client.next('session.created')));
    const billed = new Map<string, bigint>();
    for (const u of usages.slice(0, 2)) billed.set((await respond(a, u)).response.id, realtimeInvoice('gpt-realtime', u));
    billed.set((await respond(b, usages[2])).response.id, realtimeInvoice('gpt-realtime', usages[2]!));
    const seen = b.events.length;
    b.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    b.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(usage({ out: [999, 0] })) } } });
    const inFlight = ((await b.next('response.created', 5_000, seen)).response as { id: string }).id;
    expect(billed.has(inFlight)).toBe(false);

    const before = await view.book(record.id);
    expect(before.sessions.map((s) => s.status)).toEqual(['open', 'open', 'open']);
    expect(before.charges).toHaveLength(3);

    await relay.kill();
    await Promise.all([a, b, c].map((client) => client.closedWith()));
    expect(a.closed!.code).toBe(1006);

    relay = await spawnRelay({ dataDir: data.path, env });
    const recoveredLine = await relay.waitForLog((line) => line.msg?.startsWith('settled sessions left open') === true, 'the recovery line');
    expect(recoveredLine).toMatchObject({ sessions: 3 });

    const after = await view.book(record.id);
    const total = sum(billed.values());
    expect(new Map(after.charges.map((charge) => [charge.itemId, charge.costNano]))).toEqual(billed);
    expect(after.charges).toHaveLength(3);
    expect(after.charges.map((charge) => charge.itemId)).not.toContain(inFlight);
    expect(after.sessions.map((s) => s.status)).toEqual(['recovered', 'recovered', 'recovered']);
    for (const session of after.sessions) {
      const settlement = after.settlements.find((t) => t.sessionId === session.id);
      const charges = after.charges.filter((charge) => charge.sessionId === session.id);
      expect(settlement).toMatchObject({ status: 'recovered', endReason: 'instance_restarted', chargeCount: charges.length, totalNano: sum(charges.map((charge) => charge.costNano)) });
      expect(session.spendNano).toBe(settlement!.totalNano);
    }
    expect(sum(after.settlements.map((t) => t.totalNano))).toBe(total);
    expect(after.balanceNano).toBe(record.balanceNano - total);

    // The restarted relay bills as before, and a graceful stop settles normally.
    const d = connect();
    await d.next('session.created');
    const last = usage({ text: [10, 0], out: [10, 0] });
    const lastId = (await respond(d, last)).response.id;
    d.close();
    await d.closedWith();
    relay.signal('SIGTERM');
    expect(await relay.exited()).toMatchObject({ code: 0 });
    const final = await view.book(record.id);
    expect(final.settlements.find((t) => t.sessionId === final.sessions[3]!.id)).toMatchObject({ status: 'settled', totalNano: realtimeInvoice('gpt-realtime', last) });
    expect(final.charges.map((charge) => charge.itemId)).toEqual([...billed.keys(), lastId]);
    expect(final.balanceNano).toBe(record.balanceNano - total - realtimeInvoice('gpt-realtime', last));
  }, 60_000);
});
