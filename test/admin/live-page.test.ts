import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { describeMachine } from '../../src/machines/diagram.js';
import { sessionMachine } from '../../src/machines/session.js';
import { TestClient } from '../helpers/client.js';
import { CHROMIUM, HAVE_CHROMIUM, openChromium, type OpenChromium } from '../helpers/chromium.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';

/*
 * The live sessions page in headless Chromium, against the relay as
 * `relay start` builds it. Without Chromium the test is skipped with a
 * reason locally, and fails in CI (which installs it).
 */

const TOKEN = 'admin-token-for-the-page-test-0123';
const SCREENSHOT = join(process.cwd(), 'test-results', 'admin-live-sessions.png');

if (!HAVE_CHROMIUM && !process.env.CI) {
  console.warn(`Skipping the live sessions page test: no Chromium at ${CHROMIUM} (install it with: apt-get update && apt-get install -y chromium).`);
}

let stack: LedgerTestRelay | undefined;
let browser: OpenChromium | undefined;
afterEach(async () => {
  await browser?.close();
  await stack?.close();
  browser = undefined;
  stack = undefined;
});

async function openBrowser(): Promise<Page> {
  browser = await openChromium({ width: 1480, height: 900 });
  return browser.page;
}

function connect(key: string): TestClient {
  return stack!.connect({ key });
}

describe('the live sessions page', () => {
  it.runIf(!HAVE_CHROMIUM && process.env.CI)('has Chromium to run in CI', () => {
    throw new Error(`CI must provide Chromium at ${CHROMIUM}`);
  });

  it.skipIf(!HAVE_CHROMIUM)('shows sessions live as they change state, and its Cancel button ends one, billed and recorded', async () => {
    stack = await startTestRelay({ settings: { adminToken: TOKEN, logLevel: 'debug' } });
    const sim = stack.sim!;
    const page = await openBrowser();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('dialog', (dialog) => void dialog.accept());

    await page.goto(`${stack.httpUrl}/admin/ui?token=${TOKEN}`);
    await page.locator('#status-text', { hasText: 'live' }).waitFor();
    // The token left the address bar (and history) as soon as the page read it.
    expect(page.url()).toBe(`${stack.httpUrl}/admin/ui`);
    expect(await page.locator('#empty').isVisible()).toBe(true);

    // The diagram is the machine's: every state of it, each transition's event.
    const machine = describeMachine(sessionMachine);
    for (const state of machine.states) await page.locator(`#diagram .state[data-state="${state.name}"]`).waitFor();
    const diagramText = await page.locator('#diagram').textContent();
    for (const transition of machine.transitions) expect(diagramText).toContain(transition.event);

    // A session whose upstream has not answered yet: connecting.
    sim.queueHandshakeFault({ kind: 'hold' });
    const held = connect(stack.key);
    const row = page.locator('tbody tr[data-session-id]').first();
    await row.locator('[data-field="state"] .state-name', { hasText: 'connecting' }).waitFor();
    await page.locator('#diagram .state.occupied[data-state="connecting"]').waitFor();
    const id = await row.getAttribute('data-session-id');
    expect(id).toMatch(/^sess_[0-9a-f]{32}$/);
    expect(await row.locator('[data-field="key"]').textContent()).toBe('demo');

    // The upstream answers: relaying.
    await vi.waitFor(() => expect(sim.handshakes.length).toBe(1));
    sim.releaseHeld();
    await held.next('session.created');
    await row.locator('[data-field="state"] .state-name', { hasText: 'relaying' }).waitFor();
    await page.locator('#diagram .state.occupied[data-state="relaying"]').waitFor();
    expect(await page.locator('#diagram .state.occupied[data-state="connecting"]').count()).toBe(0);

    // A response starts and does not finish: it shows in flight.
    held.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    held.send({ type: 'response.create' });
    await held.next('response.created');
    await row.locator('[data-in-flight="true"]').waitFor();

    // A second session, with a finished response that has been billed.
    const other = connect(stack.key);
    await other.next('session.created');
    other.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await other.next('response.done');
    const otherRow = page.locator(`tbody tr[data-session-id]:not([data-session-id="${id}"])`);
    await otherRow.locator('[data-field="spend"]', { hasText: /^0\.0*[1-9]/ }).waitFor();
    expect(await page.locator('#count').textContent()).toBe('2');

    // Hovering a session shows where it is in the lifecycle.
    await row.hover();
    await page.locator('#diagram .state.selected[data-state="relaying"]').waitFor();
    mkdirSync(join(process.cwd(), 'test-results'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // Cancel: the client gets its response's end, `session_cancelled`, then close 1000.
    await row.locator('button[data-action="cancel"]').click();
    expect(await held.closedWith()).toMatchObject({ code: 1000 });
    const types = held.events.map((e) => e.type);
    expect(types.slice(-2)).toEqual(['response.done', 'error']);
    expect(held.events.at(-1)).toMatchObject({ error: { code: 'session_cancelled' } });
    await page.locator(`tr[data-session-id="${id}"]`).waitFor({ state: 'detached' });
    expect(await page.locator('#count').textContent()).toBe('1');

    // The row leaves the page only once the session is settled: the ledger has it.
    const settlement = stack.settlements().find((s) => s.sessionId === id);
    expect(settlement).toMatchObject({ status: 'settled', endReason: 'cancelled:operator', chargeCount: 1 });
    expect(stack.sessions().find((s) => s.id === id)).toMatchObject({ status: 'settled' });

    expect(pageErrors).toEqual([]);
    expect(JSON.stringify(stack.logs)).not.toContain(TOKEN);
  });
});
