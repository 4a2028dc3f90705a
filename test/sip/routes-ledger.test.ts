import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openLedger, type OpenLedgerOptions } from '../../src/billing/ledger/index.js';
import { createScratchSchema, POSTGRES_REQUIRED, probePostgres, TEST_DATABASE_URL } from '../helpers/postgres.js';

const TENANT_SECRET = `whsec_${Buffer.from('a tenant own secret of 32 bytes!').toString('base64')}`;

interface Backend {
  options: OpenLedgerOptions;
  dispose(): Promise<void>;
}

function routesSuite(name: string, backend: () => Promise<Backend>): void {
  describe(`${name}: phone call routes and webhook ids`, () => {
    it('adds, lists and removes routes to a key by number or header, refusing duplicates and bad input', async () => {
      const b = await backend();
      const ledger = await openLedger(b.options);
      try {
        const { record } = await ledger.createKey({ name: 'acme', balanceNano: 1_000_000_000n });
        const byNumber = await ledger.addRoute({ match: { kind: 'number', number: '+15550001111' }, key: 'acme', session: { model: 'gpt-realtime' } });
        const byHeader = await ledger.addRoute({ match: { kind: 'header', name: 'X-Tenant', value: 'acme' }, key: record.id, session: { model: 'gpt-realtime', voice: 'marin' }, webhookUrl: 'https://acme.example/calls', webhookSecret: TENANT_SECRET });
        expect(byNumber).toMatchObject({ id: expect.stringMatching(/^route_[0-9a-f]{32}$/), keyId: record.id, match: { kind: 'number', number: '+15550001111' }, webhookUrl: null });
        expect(byHeader).toMatchObject({ match: { kind: 'header', name: 'x-tenant', value: 'acme' }, session: { voice: 'marin' }, webhookSecret: TENANT_SECRET });
        await expect(ledger.addRoute({ match: { kind: 'number', number: '+15550001111' }, key: 'acme', session: { model: 'gpt-realtime' } })).rejects.toMatchObject({ code: 'invalid_input' });
        await expect(ledger.addRoute({ match: { kind: 'header', name: 'x-TENANT', value: 'acme' }, key: 'acme', session: { model: 'gpt-realtime' } })).rejects.toMatchObject({ code: 'invalid_input' });
        await expect(ledger.addRoute({ match: { kind: 'number', number: '+1' }, key: 'nobody', session: { model: 'gpt-realtime' } })).rejects.toMatchObject({ code: 'key_not_found' });
        await expect(ledger.addRoute({ match: { kind: 'number', number: '+2' }, key: 'acme', session: {} })).rejects.toMatchObject({ code: 'invalid_input' });
        await expect(ledger.addRoute({ match: { kind: 'header', name: 'Bad Name', value: 'x' }, key: 'acme', session: { model: 'gpt-realtime' } })).rejects.toMatchObject({ code: 'invalid_input' });
        await expect(ledger.addRoute({ match: { kind: 'number', number: '+3' }, key: 'acme', session: { model: 'gpt-realtime' }, webhookUrl: 'https://x.example' })).rejects.toMatchObject({ code: 'invalid_input' });
        expect((await ledger.listRoutes()).map((r) => r.id)).toEqual([byNumber.id, byHeader.id]);
        expect(await ledger.removeRoute(byNumber.id)).toBe(true);
        expect(await ledger.removeRoute(byNumber.id)).toBe(false);
        expect((await ledger.listRoutes()).map((r) => r.id)).toEqual([byHeader.id]);
      } finally {
        await ledger.close();
        await b.dispose();
      }
    });

    it('remembers a webhook id across a restart, and keeps sessions of transport sip', async () => {
      const b = await backend();
      try {
        const first = await openLedger(b.options);
        const { record } = await first.createKey({ name: 'acme', balanceNano: 1_000_000_000n });
        expect(await first.recordWebhook('wh_1', new Date())).toBe(true);
        expect(await first.recordWebhook('wh_1', new Date())).toBe(false);
        await first.openSession({ id: 'sess_sip', keyId: record.id, model: 'gpt-realtime', upstream: '', transport: 'sip', instanceId: 'i', startedAt: new Date() });
        await expect(first.openSession({ id: 'sess_bad', keyId: record.id, model: 'gpt-realtime', upstream: '', transport: 'pigeon' as 'sip', instanceId: 'i', startedAt: new Date() })).rejects.toThrow();
        await first.close();
        const second = await openLedger(b.options);
        try {
          expect(await second.recordWebhook('wh_1', new Date())).toBe(false);
          expect(await second.recordWebhook('wh_2', new Date())).toBe(true);
          await second.settleSession({ sessionId: 'sess_sip', status: 'settled', endedAt: new Date(), endReason: 'client_closed', summary: {} });
          const ended = await second.endedSessions({ limit: 10 });
          expect(ended.sessions.map((s) => [s.id, s.transport])).toEqual([['sess_sip', 'sip']]);
        } finally {
          await second.close();
        }
      } finally {
        await b.dispose();
      }
    });
  });
}

routesSuite('SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-routes-'));
  return { options: { sqlitePath: join(dir, 'ledger.db') }, dispose: async () => rmSync(dir, { recursive: true, force: true }) };
});

const postgresProblem = await probePostgres(TEST_DATABASE_URL);
if (postgresProblem === null) {
  routesSuite('PostgreSQL', async () => {
    const schema = await createScratchSchema(TEST_DATABASE_URL);
    return { options: { databaseUrl: schema.url }, dispose: () => schema.drop() };
  });
} else if (POSTGRES_REQUIRED) {
  describe('PostgreSQL', () => {
    it('reaches the test server (REQUIRE_POSTGRES=1)', () => {
      throw new Error(postgresProblem);
    });
  });
}
