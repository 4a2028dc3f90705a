import { afterEach, describe, expect, it } from 'vitest';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

let stack: LedgerTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

async function answer(url: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}

describe('health and readiness', () => {
  it('stays alive but stops being ready when the ledger cannot be reached', async () => {
    stack = await startTestRelay({ settings: { logLevel: 'silent' } });
    expect(await answer(`${stack.httpUrl}/readyz`)).toEqual({ status: 200, body: { status: 'ready' } });
    await stack.ledger.close();
    expect(await answer(`${stack.httpUrl}/readyz`)).toEqual({ status: 503, body: { status: 'not_ready' } });
    expect(await answer(`${stack.httpUrl}/healthz`)).toEqual({ status: 200, body: { status: 'ok' } });
  });
});
