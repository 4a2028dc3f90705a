import { afterEach, describe, expect, it } from 'vitest';
import type { Ledger } from '../../src/billing/ledger/index.js';
import { HAVE_CHROMIUM, openChromium, type OpenChromium } from '../helpers/chromium.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/*
 * The ending of a session on the live sessions page, in headless Chromium:
 * a client that does not answer the close keeps the session in
 * `closed.closing` until the close timeout; a ledger that holds the
 * settlement back keeps it in `closed.settling`; then it leaves the page.
 */

const TOKEN = 'admin-token-for-the-ending-test-0123';

/** A ledger whose settlement writes wait until `release()`. */
function heldSettlements(ledger: Ledger): { ledger: Ledger; release(): void; held(): number } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let held = 0;
  const wrapped = new Proxy(ledger, {
    get(target, name, receiver) {
      if (name === 'settleSession') {
        return async (...args: Parameters<Ledger['settleSession']>) => {
          held++;
          await gate;
          return target.settleSession(...args);
        };
      }
      const value = Reflect.get(target, name, receiver) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { ledger: wrapped, release: () => release(), held: () => held };
}

let stack: LedgerTestRelay | undefined;
let browser: OpenChromium | undefined;
let gate: ReturnType<typeof heldSettlements> | undefined;
afterEach(async () => {
  gate?.release();
  await browser?.close();
  await stack?.close();
  browser = stack = gate = undefined;
});

describe('the live sessions page, as a session ends', () => {
  it.skipIf(!HAVE_CHROMIUM)('shows a cancelled session closing its sockets, then settling its bill, then gone', async () => {
    stack = await startTestRelay({
      settings: { adminToken: TOKEN, closeTimeoutMs: 1_500 },
      wrapLedger: (ledger) => {
        gate = heldSettlements(ledger);
        return gate.ledger;
      },
    });
    browser = await openChromium();
    const { page } = browser;
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`${stack.relay.url().replace(/^ws/, 'http')}/admin/ui?token=${TOKEN}`);
    await page.locator('#status-text', { hasText: 'live' }).waitFor();

    const { key, record } = await stack.createKey();
    const client = stack.connect({ key });
    await client.next('session.created');
    const row = page.locator('tbody tr[data-session-id]').first();
    await row.locator('[data-field="state"] .state-name', { hasText: 'relaying' }).waitFor();
    const id = (await row.getAttribute('data-session-id'))!;

    // The client stops reading: the close frame it is sent goes unanswered until the close timeout.
    client.socket.pause();
    expect(stack.relay.registry.cancel(id, 'operator')).toBe(true);
    await row.locator('[data-field="state"] .state-name', { hasText: 'closed.closing' }).waitFor();
    await page.locator('#diagram .state.occupied[data-state="closed.closing"]').waitFor();

    // Both sockets are closed; the ledger has not taken the settlement yet.
    await row.locator('[data-field="state"] .state-name', { hasText: 'closed.settling' }).waitFor();
    await page.locator('#diagram .state.occupied[data-state="closed.settling"]').waitFor();
    expect(gate!.held()).toBe(1);
    expect((await stack.view.book(record.id)).settlements).toHaveLength(0);

    // The ledger answers: the session has ended and leaves the page, settled.
    gate!.release();
    await page.locator(`tr[data-session-id="${id}"]`).waitFor({ state: 'detached' });
    await stack.idle();
    expect((await stack.view.book(record.id)).settlements).toEqual([expect.objectContaining({ sessionId: id, status: 'settled', endReason: 'cancelled:operator' })]);
    expect(pageErrors).toEqual([]);
  }, 30_000);
});
