import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

const TOKEN = 'admin-token-for-tests-0123456789';
const TENANT_SECRET = `whsec_${Buffer.from('a tenant own secret of 32 bytes!').toString('base64')}`;

describe('/admin/routes', () => {
  let stack: LedgerTestRelay;
  beforeAll(async () => {
    stack = await startTestRelay({ settings: { adminToken: TOKEN, logLevel: 'warn' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  const call = async (path: string, method = 'GET', body?: unknown, token: string | null = TOKEN) => {
    const headers: Record<string, string> = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(`${stack.httpUrl}/admin/routes${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as any };
  };

  it('adds, lists, shows and removes routes, never showing a tenant secret again', async () => {
    const { record } = await stack.createKey({ name: 'tenant-a' });
    expect((await call('', 'GET', undefined, null)).status).toBe(401);
    const added = await call('', 'POST', { header: 'X-Tenant=a', key: 'tenant-a', model: 'gpt-realtime', session: { voice: 'marin' }, webhook_url: 'https://a.example/calls', webhook_secret: TENANT_SECRET });
    expect(added.status).toBe(201);
    expect(added.body).toEqual({
      id: expect.stringMatching(/^route_[0-9a-f]{32}$/),
      number: null,
      header: { name: 'x-tenant', value: 'a' },
      key_id: record.id,
      session: { voice: 'marin', model: 'gpt-realtime' },
      webhook_url: 'https://a.example/calls',
      webhook_secret_set: true,
      created_at: expect.any(String),
    });
    expect(JSON.stringify((await call('')).body)).not.toContain(TENANT_SECRET);
    expect((await call('')).body.data.map((r: { id: string }) => r.id)).toContain(added.body.id);
    expect((await call(`/${added.body.id}`)).body.id).toBe(added.body.id);
    expect((await call('', 'POST', { number: '+1', header: 'X=y', key: 'tenant-a', model: 'gpt-realtime' })).body.error).toMatchObject({ code: 'invalid_input', param: 'number' });
    expect((await call('', 'POST', { number: '+1', key: 'nobody', model: 'gpt-realtime' })).body.error.code).toBe('key_not_found');
    expect((await call('', 'POST', { number: '+1', key: 'tenant-a' })).body.error).toMatchObject({ code: 'invalid_input', param: 'model' });
    expect((await call('', 'POST', { number: '+1', key: 'tenant-a', model: 'gpt-realtime', pattern: '.*' })).body.error).toMatchObject({ code: 'unknown_parameter', param: 'pattern' });
    expect(await call(`/${added.body.id}`, 'DELETE')).toEqual({ status: 200, body: { id: added.body.id, deleted: true } });
    const gone = await call(`/${added.body.id}`, 'DELETE');
    expect({ status: gone.status, code: gone.body.error.code }).toEqual({ status: 404, code: 'route_not_found' });
  });
});
