import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { KeyRecord, Ledger } from '../../src/billing/ledger/index.js';
import { ADMIN_ERRORS } from '../../src/server/admin/index.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, type ScratchSchema } from '../helpers/postgres.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/*
 * The ledger-backed admin endpoints, ended sessions and spend, on the relay as
 * `relay start` builds it, once on SQLite and once on PostgreSQL.
 */

const TOKEN = 'admin-token-for-history-tests-0123';

let stack: LedgerTestRelay | undefined;
let schema: ScratchSchema | undefined;
afterEach(async () => {
  await stack?.close();
  await schema?.drop();
  stack = undefined;
  schema = undefined;
});

interface Answer {
  status: number;
  body: any;
}

async function admin(path: string, token: string | null = TOKEN): Promise<Answer> {
  const headers: Record<string, string> = token === null ? {} : { Authorization: `Bearer ${token}` };
  const response = await fetch(`${stack!.httpUrl}/admin${path}`, { headers });
  return { status: response.status, body: await response.json() };
}

function expectError(answer: Answer, status: number, code: string, param?: string | null) {
  expect({ status: answer.status, code: answer.body?.error?.code }).toEqual({ status, code });
  expect(answer.body.error).toMatchObject({ type: expect.any(String), message: expect.any(String) });
  if (param !== undefined) expect(answer.body.error.param).toBe(param);
  expect(ADMIN_ERRORS).toHaveProperty(code);
}

function sessionId(): string {
  return `sess_${randomBytes(16).toString('hex')}`;
}

/** A session of `key` that ran from `startedAt` for `durationMs`, charged `costs` and settled. */
async function endedSession(ledger: Ledger, key: KeyRecord, startedAt: Date, durationMs: number, costs: bigint[], endReason = 'client_closed'): Promise<string> {
  const id = sessionId();
  await ledger.openSession({ id, keyId: key.id, model: 'gpt-realtime', upstream: 'simulator', instanceId: 'history-test', startedAt });
  for (const [i, costNano] of costs.entries()) {
    await ledger.recordCharge({ sessionId: id, keyId: key.id, kind: 'response', itemId: `resp_${i}`, model: 'gpt-realtime', costNano, usage: {} });
  }
  await ledger.settleSession({ sessionId: id, endedAt: new Date(startedAt.getTime() + durationMs), endReason, status: 'settled', summary: {} });
  return id;
}

const postgresProblem = await probePostgres();
if (postgresProblem !== null && !POSTGRES_REQUIRED) console.warn(`Skipping the PostgreSQL half of the history API tests: ${postgresProblem}.`);

const backends = [
  { name: 'SQLite', available: true },
  { name: 'PostgreSQL', available: postgresProblem === null || POSTGRES_REQUIRED },
] as const;

describe.each(backends)('ended sessions and spend over the admin API ($name)', ({ name, available }) => {
  async function start(): Promise<LedgerTestRelay> {
    if (name === 'PostgreSQL') schema = await createScratchSchema();
    stack = await startTestRelay({ settings: { adminToken: TOKEN, logLevel: 'warn' }, ...(schema ? { postgres: schema } : {}) });
    return stack;
  }

  it.runIf(available)('pages through a key\'s ended sessions newest first, with end reason, duration and settled cost', async () => {
    const { ledger } = await start();
    const alpha = (await ledger.createKey({ name: `alpha ${randomBytes(3).toString('hex')}`, balanceNano: 10_000_000_000n })).record;
    const beta = (await ledger.createKey({ name: `beta ${randomBytes(3).toString('hex')}`, balanceNano: 10_000_000_000n })).record;
    const base = Date.UTC(2026, 10, 29, 12, 0, 0);
    const alphaIds: string[] = [];
    for (let i = 0; i < 5; i++) alphaIds.push(await endedSession(ledger, alpha, new Date(base + i * 60_000), 30_000 + i * 1_000, [1_000_000n * BigInt(i + 1), 250n], i === 4 ? 'cancelled:operator' : 'client_closed'));
    await endedSession(ledger, beta, new Date(base + 10 * 60_000), 5_000, [7n]);
    // Still open: not an ended session.
    await ledger.openSession({ id: sessionId(), keyId: alpha.id, model: 'gpt-realtime', upstream: 'simulator', instanceId: 'history-test', startedAt: new Date(base) });

    const first = await admin(`/sessions/ended?key=${encodeURIComponent(alpha.name)}&limit=2`);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ object: 'list', has_more: true, last_id: alphaIds[3] });
    expect(first.body.data.map((s: { id: string }) => s.id)).toEqual([alphaIds[4], alphaIds[3]]);
    expect(first.body.data[0]).toEqual({
      id: alphaIds[4],
      key: { id: alpha.id, name: alpha.name },
      model: 'gpt-realtime',
      upstream: 'simulator',
      transport: 'websocket',
      status: 'settled',
      end_reason: 'cancelled:operator',
      started_at: new Date(base + 4 * 60_000).toISOString(),
      ended_at: new Date(base + 4 * 60_000 + 34_000).toISOString(),
      duration_ms: 34_000,
      cost_nano: '5000250',
      charge_count: 2,
    });

    const second = await admin(`/sessions/ended?key=${alpha.id}&limit=2&before=${first.body.last_id}`);
    expect(second.body.data.map((s: { id: string }) => s.id)).toEqual([alphaIds[2], alphaIds[1]]);
    expect(second.body.has_more).toBe(true);
    const third = await admin(`/sessions/ended?key=${alpha.id}&limit=2&before=${second.body.last_id}`);
    expect(third.body.data.map((s: { id: string }) => s.id)).toEqual([alphaIds[0]]);
    expect(third.body).toMatchObject({ has_more: false, last_id: alphaIds[0] });

    // Without a key every key's sessions come, the default page holding all six.
    const all = await admin('/sessions/ended');
    expect(all.body.data).toHaveLength(6);
    expect(all.body.data[0].key.name).toBe(beta.name);
  });

  it.runIf(available)('sums each key\'s charges per hour and per day, as nano-USD strings', async () => {
    const { ledger } = await start();
    const alpha = (await ledger.createKey({ name: `alpha ${randomBytes(3).toString('hex')}`, balanceNano: 10_000_000_000n })).record;
    const beta = (await ledger.createKey({ name: `beta ${randomBytes(3).toString('hex')}`, balanceNano: 10_000_000_000n })).record;
    await endedSession(ledger, alpha, new Date(), 1_000, [1_500_000_000n, 250_000_001n]);
    await endedSession(ledger, alpha, new Date(), 1_000, [3n]);
    await endedSession(ledger, beta, new Date(), 1_000, [42_000_000n]);

    const totals = (rows: Array<{ key: { name: string }; total_nano: string; charge_count: number }>) => {
      const sums = new Map<string, { nano: bigint; charges: number }>();
      for (const r of rows) {
        const sum = sums.get(r.key.name) ?? { nano: 0n, charges: 0 };
        sums.set(r.key.name, { nano: sum.nano + BigInt(r.total_nano), charges: sum.charges + r.charge_count });
      }
      return Object.fromEntries([...sums].map(([k, v]) => [k, { nano: v.nano.toString(), charges: v.charges }]));
    };
    for (const bucket of ['hour', 'day'] as const) {
      const answer = await admin(`/spend?bucket=${bucket}`);
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({ object: 'list', bucket });
      for (const row of answer.body.data) {
        const ms = bucket === 'hour' ? 3_600_000 : 86_400_000;
        expect(Date.parse(row.start) % ms).toBe(0);
      }
      expect(totals(answer.body.data)).toEqual({
        [alpha.name]: { nano: '1750000004', charges: 3 },
        [beta.name]: { nano: '42000000', charges: 1 },
      });
    }
    const onlyBeta = await admin(`/spend?bucket=hour&key=${encodeURIComponent(beta.name)}`);
    expect(totals(onlyBeta.body.data)).toEqual({ [beta.name]: { nano: '42000000', charges: 1 } });
    const future = await admin(`/spend?bucket=day&since=${new Date(Date.now() + 2 * 86_400_000).toISOString()}`);
    expect(future.body.data).toEqual([]);
  });

  it.runIf(available)('refuses bad queries with OpenAI\'s error envelope and a stable code', async () => {
    const { ledger } = await start();
    const key = (await ledger.createKey({ name: `k ${randomBytes(3).toString('hex')}`, balanceNano: 1n })).record;
    expectError(await admin('/sessions/ended?limit=0'), 400, 'invalid_input', 'limit');
    expectError(await admin('/sessions/ended?limit=101'), 400, 'invalid_input', 'limit');
    expectError(await admin('/sessions/ended?limit=ten'), 400, 'invalid_input', 'limit');
    expectError(await admin('/sessions/ended?before=42'), 400, 'invalid_input', 'before');
    expectError(await admin('/sessions/ended?offset=3'), 400, 'unknown_parameter', 'offset');
    expectError(await admin('/sessions/ended?key=nobody'), 404, 'key_not_found');
    expectError(await admin(`/sessions/ended?key=${key.id}&before=${sessionId()}`), 404, 'session_not_found');
    expectError(await admin('/sessions/ended', null), 401, 'missing_admin_token');
    expectError(await admin('/spend?bucket=week'), 400, 'invalid_input', 'bucket');
    expectError(await admin('/spend?since=March'), 400, 'invalid_input', 'since');
    expectError(await admin('/spend?bucket=hour&since=2020-01-01'), 400, 'invalid_input', 'since');
    expectError(await admin('/spend?key=nobody'), 404, 'key_not_found');
    expectError(await admin('/spend?keys=a'), 400, 'unknown_parameter', 'keys');
    expectError(await admin('/spend', 'x'.repeat(40)), 401, 'invalid_admin_token');
  });
});
