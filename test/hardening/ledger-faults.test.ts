import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLedger, type Ledger } from '../../src/billing/ledger/index.js';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { TestClient } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { runRelay } from '../helpers/relay-process.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, TEST_DATABASE_URL, type ScratchSchema } from '../helpers/postgres.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

const postgresAbsent = await probePostgres();
if (postgresAbsent && POSTGRES_REQUIRED) throw new Error(`REQUIRE_POSTGRES=1 but ${postgresAbsent}`);
if (postgresAbsent) console.warn(`skipping the Postgres fault test: ${postgresAbsent}`);

describe.skipIf(postgresAbsent !== null)('the Postgres ledger cut mid-session', () => {
  let schema: ScratchSchema;
  let proxy: TcpProxy;
  let sim: Simulator;
  let running: LedgerTestRelay;
  let direct: Ledger;

  beforeAll(async () => {
    schema = await createScratchSchema();
    const target = new URL(TEST_DATABASE_URL);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const viaProxy = new URL(schema.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    sim = await startSimulator({ chunkIntervalMs: 10, textDeltas: 80 });
    running = await startTestRelay({ upstreamSimulator: sim, settings: { databaseUrl: viaProxy.href, logLevel: 'silent' } });
    direct = await openLedger({ databaseUrl: schema.url });
  });

  afterAll(async () => {
    proxy?.restore();
    await running?.close();
    await direct?.close();
    await sim?.close();
    await proxy?.close();
    await schema?.drop();
  });

  it('fails the session closed with billing_unavailable, then writes the charge and the settlement exactly once when the database returns', async () => {
    const { key, record } = await direct.createKey({ name: 'cut', balanceNano: 5_000_000_000n });
    const client = TestClient.connect(`${running.wsUrl}/v1/realtime?model=gpt-realtime`, { key });
    await client.next('session.created');
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    const created = await client.next('response.created');
    const responseId = (created.response as { id: string }).id;
    await client.next('response.output_text.delta');

    proxy.cut();
    const error = await client.next('error', 10_000);
    expect(error.error).toMatchObject({ type: 'server_error', code: 'billing_unavailable' });
    expect((await client.closedWith(10_000)).code).toBe(1011);
    // A response whose charge was not written is not handed over.
    expect(client.count('response.done')).toBe(0);
    await running.relay.registry.empty();
    expect(running.billing.backlog.size).toBeGreaterThan(0);
    expect(await schema.query('SELECT 1 FROM charges')).toHaveLength(0);

    proxy.restore();
    await expect.poll(async () => (await schema.query('SELECT 1 FROM settlements')).length, { timeout: 15_000, interval: 100 }).toBe(1);
    // Replaying again (the spool, a second flush) changes nothing.
    await running.billing.backlog.flush();
    const charges = await schema.query<{ item_id: string; cost_nano: bigint }>('SELECT item_id, cost_nano FROM charges');
    expect(charges.map((c) => c.item_id)).toEqual([responseId]);
    const cost = charges[0]!.cost_nano;
    expect(cost).toBeGreaterThan(0n);
    const [settlement] = await schema.query<{ status: string; total_nano: bigint; charge_count: number; end_reason: string }>('SELECT status, total_nano, charge_count, end_reason FROM settlements');
    expect(settlement).toMatchObject({ status: 'settled', total_nano: cost, charge_count: 1, end_reason: 'error:billing_unavailable' });
    expect((await direct.getKey(record.id))!.balanceNano).toBe(5_000_000_000n - cost);
    expect(await schema.query("SELECT 1 FROM sessions WHERE status = 'open'")).toHaveLength(0);
    expect(running.billing.backlog.size).toBe(0);
  });

  it('refuses new sessions with 503 billing_unavailable while the database is away, and opens them again after', async () => {
    const { key } = await direct.createKey({ name: 'away', balanceNano: 5_000_000_000n });
    proxy.cut();
    const refused = TestClient.connect(`${running.wsUrl}/v1/realtime?model=gpt-realtime`, { key });
    await refused.closedWith(10_000);
    expect(refused.unexpected?.status).toBe(503);
    expect(JSON.parse(refused.unexpected!.body).error.code).toBe('billing_unavailable');
    proxy.restore();
    const after = TestClient.connect(`${running.wsUrl}/v1/realtime?model=gpt-realtime`, { key });
    await after.next('session.created', 10_000);
    after.close();
    await after.closedWith();
    await running.relay.registry.empty();
  });
});

describe('a SQLite data folder that cannot be written', () => {
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'relay-readonly-'));
  });
  afterAll(() => {
    rmSync(scratch, { recursive: true, force: true });
  });

  function start(dataDir: string, asUser?: number) {
    // HOME too: a service account may not read the test runner's.
    return runRelay(['start'], { HOME: tmpdir(), PORT: '0', RELAY_DATA_DIR: dataDir, LOG_LEVEL: 'error' }, { uid: asUser });
  }

  it('stops at once with a clear configuration error (exit 2) when the folder cannot be created', async () => {
    writeFileSync(join(scratch, 'a-file'), '');
    const result = await start(join(scratch, 'a-file', 'data'));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('RELAY_DATA_DIR');
    expect(result.stderr).toContain('ENOTDIR');
    expect(result.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('stops at once with a clear configuration error (exit 2) when the folder is read-only', async () => {
    const readonly = join(scratch, 'readonly');
    mkdirSync(readonly);
    chmodSync(readonly, 0o555);
    chmodSync(scratch, 0o755);
    // Root may write anywhere: run the relay as nobody then, as a service would run.
    const asUser = process.getuid?.() === 0 ? 65534 : undefined;
    const result = await start(readonly, asUser);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('RELAY_DATA_DIR');
    expect(result.stderr).toContain('EACCES');
  });
});
