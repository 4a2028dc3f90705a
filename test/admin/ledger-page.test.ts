import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import type { KeyRecord, Ledger } from '../../src/billing/ledger/index.js';
import { CHROMIUM, HAVE_CHROMIUM, openChromium, type OpenChromium } from '../helpers/chromium.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/*
 * The ledger half of the admin page in headless Chromium, clicked and typed
 * into as an operator would, against the relay as `relay start` builds it;
 * the ledger is read afterwards to check what each action did.
 */

const TOKEN = 'admin-token-for-the-ledger-page-0123';
const SCREENSHOT = join(process.cwd(), 'test-results', 'admin-ledger.png');

if (!HAVE_CHROMIUM && !process.env.CI) console.warn(`Skipping the admin ledger page test: no Chromium at ${CHROMIUM}.`);

let stack: LedgerTestRelay | undefined;
let browser: OpenChromium | undefined;
afterEach(async () => {
  await browser?.close();
  await stack?.close();
  browser = undefined;
  stack = undefined;
});

async function openBrowser(): Promise<Page> {
  browser = await openChromium({ width: 1480, height: 1600 });
  return browser.page;
}

/** The message the admin API itself answers `body` with, to compare with what the page shows. */
async function apiMessage(path: string, body: unknown): Promise<string> {
  const response = await fetch(`${stack!.httpUrl}/admin${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(400);
  return ((await response.json()) as { error: { message: string } }).error.message;
}

/** A settled session of `key`, charged `costs`, that ended `minutesAgo`. */
async function endedSession(ledger: Ledger, key: KeyRecord, minutesAgo: number, costs: bigint[]): Promise<string> {
  const id = `sess_${randomBytes(16).toString('hex')}`;
  const startedAt = new Date(Date.now() - minutesAgo * 60_000 - 90_000);
  await ledger.openSession({ id, keyId: key.id, model: 'gpt-realtime', upstream: 'simulator', instanceId: 'page-test', startedAt });
  for (const [i, costNano] of costs.entries()) await ledger.recordCharge({ sessionId: id, keyId: key.id, kind: 'response', itemId: `resp_${i}`, model: 'gpt-realtime', costNano, usage: {} });
  await ledger.settleSession({ sessionId: id, endedAt: new Date(startedAt.getTime() + 90_000), endReason: 'client_closed', status: 'settled', summary: {} });
  return id;
}

describe('the admin page for keys, spend and ended sessions', () => {
  it.runIf(!HAVE_CHROMIUM && process.env.CI)('has Chromium to run in CI', () => {
    throw new Error(`CI must provide Chromium at ${CHROMIUM}`);
  });

  it.skipIf(!HAVE_CHROMIUM)('searches and pages ended sessions by key, and draws each key\'s spend with its total', async () => {
    stack = await startTestRelay({ settings: { adminToken: TOKEN, logLevel: 'warn' } });
    const { ledger } = stack;
    const alpha = (await ledger.createKey({ name: 'alpha team', balanceNano: 100_000_000_000n })).record;
    const beta = (await ledger.createKey({ name: 'beta team', balanceNano: 100_000_000_000n })).record;
    const alphaIds: string[] = [];
    // Newest first: alphaIds[0] ended last.
    for (let i = 0; i < 7; i++) alphaIds.push(await endedSession(ledger, alpha, i * 3, [1_000_000_000n + BigInt(i), 250_000_000n]));
    await endedSession(ledger, beta, 1, [42_000_000n]);
    // And one real session of the demo key through the relay, billed and settled.
    const client = stack.connect();
    await client.next('session.created');
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await client.next('response.done');
    client.close();
    await stack.idle();

    const page = await openBrowser();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`${stack.httpUrl}/admin/ui?token=${TOKEN}`);

    // Every ended session, newest first: the demo key's real one included.
    await page.locator('#ended-rows tr').nth(8).waitFor();
    expect(await page.locator('#ended-rows tr').count()).toBe(9);

    // Search by name, five a page.
    await page.getByLabel('Key (id or name)').fill('alpha team');
    await page.getByLabel('Per page').selectOption('5');
    await page.getByRole('button', { name: 'Search' }).click();
    const rowIds = () => page.locator('#ended-rows tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-session-id')));
    await page.locator(`#ended-rows tr[data-session-id="${alphaIds[0]}"]`).waitFor();
    expect(await rowIds()).toEqual(alphaIds.slice(0, 5));
    const firstRow = page.locator(`#ended-rows tr[data-session-id="${alphaIds[0]}"]`);
    expect(await firstRow.locator('[data-field="cost"]').textContent()).toBe('1.250000' + '2 charges');
    expect(await firstRow.textContent()).toContain('client_closed');
    expect(await firstRow.textContent()).toContain('1m 30s');
    await expect.poll(() => page.locator('#ended-page').textContent()).toBe('page 1');
    expect(await page.getByRole('button', { name: '← Newer' }).isDisabled()).toBe(true);

    await page.getByRole('button', { name: 'Older →' }).click();
    await page.locator(`#ended-rows tr[data-session-id="${alphaIds[5]}"]`).waitFor();
    expect(await rowIds()).toEqual(alphaIds.slice(5));
    expect(await page.locator('#ended-page').textContent()).toBe('page 2');
    expect(await page.getByRole('button', { name: 'Older →' }).isDisabled()).toBe(true);
    await page.getByRole('button', { name: '← Newer' }).click();
    await page.locator(`#ended-rows tr[data-session-id="${alphaIds[0]}"]`).waitFor();
    expect(await rowIds()).toEqual(alphaIds.slice(0, 5));

    // By id, and a key that does not exist: the API's message.
    await page.getByLabel('Key (id or name)').fill(beta.id);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('#ended-rows tr').first().filter({ hasText: 'beta team' }).waitFor();
    expect(await page.locator('#ended-rows tr').count()).toBe(1);
    await page.getByLabel('Key (id or name)').fill('nobody');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('#ended-error', { hasText: 'nobody' }).waitFor();
    expect(await page.locator('#ended-rows tr').count()).toBe(0);

    // The spend chart: each key's total is the ledger's sum of its charges.
    const expected = new Map<string, bigint>();
    for (const row of await ledger.usage({})) expected.set(row.keyName, (expected.get(row.keyName) ?? 0n) + row.costNano);
    expect(expected.get('alpha team')).toBe(8_750_000_021n);
    for (const bucket of ['day', 'hour'] as const) {
      await page.getByLabel('Bucket').selectOption(bucket);
      await page.getByRole('button', { name: 'Show' }).click();
      await page.locator('#spend-legend li[data-key-name="alpha team"]').waitFor();
      await page.locator('#spend-chart svg rect.bar').first().waitFor();
      const legend = await page.locator('#spend-legend li').evaluateAll((items) => items.map((li) => [li.getAttribute('data-key-name'), li.getAttribute('data-total-nano'), li.textContent]));
      expect(new Map(legend.map(([name, nano]) => [name, BigInt(nano!)]))).toEqual(expected);
      expect(legend.find(([name]) => name === 'alpha team')![2]).toBe('alpha team: 8.750000021 USD');
      const bars = await page.locator('#spend-chart svg rect.bar').evaluateAll((rects) => rects.map((r) => [r.getAttribute('data-key-name'), r.getAttribute('data-total-nano')]));
      const drawn = new Map<string, bigint>();
      for (const [name, nano] of bars) drawn.set(name!, (drawn.get(name!) ?? 0n) + BigInt(nano!));
      expect(drawn).toEqual(expected);
    }
    mkdirSync(join(process.cwd(), 'test-results'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it.skipIf(!HAVE_CHROMIUM)('creates a key and shows its secret once, tops it up, disables and enables it, and shows the API\'s refusals', async () => {
    stack = await startTestRelay({ settings: { adminToken: TOKEN, logLevel: 'warn' } });
    const { ledger } = stack;
    const page = await openBrowser();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`${stack.httpUrl}/admin/ui?token=${TOKEN}`);
    await page.locator('#key-rows tr[data-key-name="demo"]').waitFor();

    // Create: the secret is shown once, with the note to copy it now.
    await page.getByLabel('New key name').fill('ops console');
    await page.getByLabel('Starting balance (USD)').fill('12.5');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.locator('#new-secret').waitFor();
    expect(await page.locator('#new-secret').textContent()).toContain('Copy it now');
    const secret = await page.locator('#new-secret-value').inputValue();
    const created = await ledger.authenticate(secret);
    expect(created).toMatchObject({ name: 'ops console', balanceNano: 12_500_000_000n, disabled: false });
    const row = page.locator('#key-rows tr[data-key-name="ops console"]');
    await row.waitFor();
    expect(await row.locator('[data-field="balance"]').textContent()).toBe('12.500000');
    await page.getByRole('button', { name: 'I have copied it' }).click();
    expect(await page.locator('#new-secret').isHidden()).toBe(true);
    expect(await page.locator('#new-secret-value').inputValue()).toBe('');
    await page.reload();
    await page.locator('#key-rows tr[data-key-name="ops console"]').waitFor();
    expect(await page.content()).not.toContain(secret);

    // Top up.
    await row.getByLabel('Amount in USD to add to ops console').fill('7.5');
    await row.getByRole('button', { name: 'Top up ops console' }).click();
    await row.locator('[data-field="balance"]', { hasText: '20.000000' }).waitFor();
    expect((await ledger.getKey('ops console'))!.balanceNano).toBe(20_000_000_000n);

    // Refusals show the API's own message, and change nothing.
    for (const amount of ['-3', 'ten', '999999999.5']) {
      await row.getByLabel('Amount in USD to add to ops console').fill(amount);
      await row.getByRole('button', { name: 'Top up ops console' }).click();
      const message = await apiMessage(`/keys/${created!.id}/topup`, { amount });
      await page.locator('#keys-error', { hasText: message }).waitFor();
      expect(await page.locator('#keys-error').textContent()).toBe(message);
    }
    expect(await page.locator('#keys-error').textContent()).toContain('more than the maximum');
    expect((await ledger.getKey('ops console'))!.balanceNano).toBe(20_000_000_000n);
    const badName = 'evil\u202Egnp.exe';
    await page.getByLabel('New key name').fill(badName);
    await page.getByLabel('Starting balance (USD)').fill('1');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.locator('#keys-error', { hasText: await apiMessage('/keys', { name: badName, balance: '1' }) }).waitFor();
    expect(await ledger.getKey(badName)).toBeNull();

    // Disable: the relay refuses the key; enable: it admits it again.
    await row.getByRole('button', { name: 'Disable ops console' }).click();
    await row.locator('[data-field="status"]', { hasText: 'disabled' }).waitFor();
    expect((await ledger.getKey('ops console'))!.disabled).toBe(true);
    const refused = stack.connect({ key: secret });
    await refused.closedWith();
    expect(JSON.parse(refused.unexpected!.body).error.code).toBe('key_disabled');
    await row.getByRole('button', { name: 'Enable ops console' }).click();
    await row.locator('[data-field="status"]', { hasText: 'enabled' }).waitFor();
    expect((await ledger.getKey('ops console'))!.disabled).toBe(false);
    const admitted = stack.connect({ key: secret });
    await admitted.next('session.created');
    expect(await page.locator('#keys-error').isHidden()).toBe(true);
    expect(pageErrors).toEqual([]);
  });
});
