import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLedger, type Ledger } from '../../src/billing/ledger/index.js';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { TestClient } from '../helpers/client.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, type ScratchSchema } from '../helpers/postgres.js';
import { dropPrefix, probeRedis, REDIS_REQUIRED, TEST_REDIS_URL, uniquePrefix } from './redis-probe.js';
import { spawnRelay, tempDataDir, type RelayProcess } from '../helpers/relay-process.js';

const postgresAbsent = await probePostgres();
const redisAbsent = await probeRedis();
if (postgresAbsent && POSTGRES_REQUIRED) throw new Error(`REQUIRE_POSTGRES=1 but ${postgresAbsent}`);
if (redisAbsent && REDIS_REQUIRED) throw new Error(`REQUIRE_REDIS=1 but ${redisAbsent}`);
const absent = postgresAbsent ?? redisAbsent;
if (absent) console.warn(`skipping the two-instance limits test: ${absent}`);

const LEASE_TTL_MS = 2_000;

describe.skipIf(absent !== null)('two relay processes on one Redis and one Postgres', () => {
  let schema: ScratchSchema;
  let ledger: Ledger;
  let sim: Simulator;
  let key: string;
  const prefix = uniquePrefix('two');
  const relays: RelayProcess[] = [];
  const dataDirs = [tempDataDir('relay-two-a-'), tempDataDir('relay-two-b-')];
  const clients: TestClient[] = [];

  beforeAll(async () => {
    schema = await createScratchSchema();
    ledger = await openLedger({ databaseUrl: schema.url });
    key = (await ledger.createKey({ name: 'shared', balanceNano: 10_000_000_000n })).key;
    sim = await startSimulator({ chunkIntervalMs: 5 });
    const env = {
      DATABASE_URL: schema.url,
      REDIS_URL: TEST_REDIS_URL,
      RELAY_REDIS_PREFIX: prefix,
      RELAY_LEASE_TTL_MS: String(LEASE_TTL_MS),
      RELAY_MAX_SESSIONS_PER_KEY: '2',
      OPENAI_API_KEY: 'x',
      OPENAI_BASE_URL: `${sim.url.replace(/^ws/, 'http')}/v1`,
      RELAY_DEMO_BALANCE_USD: '0',
    };
    // One at a time: both would run the ledger migrations (they take a lock, but start-up is faster in turn).
    for (const dataDir of dataDirs) relays.push(await spawnRelay({ dataDir: dataDir.path, env }));
  }, 60_000);

  afterAll(async () => {
    for (const client of clients) client.socket.terminate();
    await Promise.all(relays.map((relay) => relay.kill()));
    for (const dataDir of dataDirs) dataDir.remove();
    await sim?.close();
    await ledger?.close();
    await schema?.drop();
    await dropPrefix(prefix);
  });

  function connect(relay: RelayProcess): TestClient {
    const client = TestClient.connect(`${relay.url}/v1/realtime?model=gpt-realtime`, { key });
    clients.push(client);
    return client;
  }

  /** Resolves with the 429 (or whatever refusal) a session on `relay` gets, or null when it opens. */
  async function attempt(relay: RelayProcess): Promise<{ status: number; retryAfter: string | undefined; body: string } | null> {
    const client = connect(relay);
    let retryAfter: string | undefined;
    client.socket.once('unexpected-response', (_req, res) => {
      retryAfter = res.headers['retry-after'];
    });
    await client.until(() => client.closed !== null || client.events.some((e) => e.type === 'session.created'), 'an answer', 10_000);
    if (client.closed === null) return null;
    return { status: client.unexpected?.status ?? 0, retryAfter, body: client.unexpected?.body ?? '' };
  }

  it("holds a key's cap across both instances, and a killed instance frees its slots within the lease time", async () => {
    const [a, b] = relays as [RelayProcess, RelayProcess];
    const onA = connect(a);
    await onA.next('session.created', 10_000);
    const onB = connect(b);
    await onB.next('session.created', 10_000);

    for (const relay of [a, b]) {
      const refused = await attempt(relay);
      expect(refused).not.toBeNull();
      expect(refused!.status).toBe(429);
      expect(Number(refused!.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(refused!.body)).toMatchObject({ error: { type: 'rate_limit_error', code: 'rate_limit_exceeded', param: null } });
    }

    // Sessions keep flowing on both while the cap is reached.
    onB.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await onB.next('response.done', 10_000);

    a.signal('SIGKILL');
    const killedAt = Date.now();
    expect((await a.exited()).signal).toBe('SIGKILL');
    expect((await onA.closedWith()).code).toBe(1006);
    // The dead instance's lease is still there until it expires.
    expect((await attempt(b))?.status).toBe(429);

    let reopened: TestClient | null = null;
    while (reopened === null) {
      expect(Date.now() - killedAt).toBeLessThan(LEASE_TTL_MS + 3_000);
      const client = connect(b);
      await client.until(() => client.closed !== null || client.events.some((e) => e.type === 'session.created'), 'an answer', 10_000);
      if (client.closed === null) reopened = client;
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const freedAfter = Date.now() - killedAt;
    console.log(`a killed instance's slot was free again after ${freedAfter} ms (lease ttl ${LEASE_TTL_MS} ms)`);
    expect(freedAfter).toBeGreaterThan(LEASE_TTL_MS / 3);

    // Now B holds both slots: the cap still holds.
    expect((await attempt(b))?.status).toBe(429);
    onB.close();
    reopened.close();
    await onB.closedWith();
  }, 60_000);
});
