import { afterEach, describe, expect, it } from 'vitest';
import { runRelay, spawnRelay, tempDataDir, type Finished, type RelayProcess } from '../helpers/relay-process.js';

const TOKEN = 'admin-token-for-tests-0123456789';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** `relay <args>` on the ledger in `dataDir`, with nothing of the test's environment. */
function relayCli(dataDir: string, args: string[]): Promise<Finished> {
  return runRelay(args, { RELAY_DATA_DIR: dataDir });
}

describe('relay keys and the admin API', () => {
  it('show a key the same way, because they share one view', async () => {
    const dir = tempDataDir();
    cleanups.push(() => dir.remove());
    const created = JSON.parse((await relayCli(dir.path, ['keys', 'create', '--name', 'carol', '--balance', '7.25', '--spend-cap', '0.5', '--max-sessions', '2', '--multiplier', '1.5'])).stdout);
    expect(created).toMatchObject({ key: expect.stringMatching(/^rk_/), name: 'carol', balance: '7.250000', spend_cap: '0.500000', max_sessions: 2, multiplier: '1.5', disabled: false });
    const { key, ...view } = created;
    const listed = JSON.parse((await relayCli(dir.path, ['keys', 'list'])).stdout);
    expect(listed).toEqual([view]);

    const relay: RelayProcess = await spawnRelay({ dataDir: dir.path, env: { ADMIN_TOKEN: TOKEN } });
    cleanups.push(() => relay.kill());
    expect(relay.demoKey).toBeNull();
    const answer = await fetch(`${relay.httpUrl}/admin/keys/carol`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(await answer.json()).toEqual(view);
    expect(JSON.stringify(relay.logs)).not.toContain(key);
    relay.signal('SIGTERM');
    expect(await relay.exited()).toEqual({ code: 0, signal: null });
  });

  it('refuses a bad amount with exit code 2, naming the flag', async () => {
    const dir = tempDataDir();
    cleanups.push(() => dir.remove());
    const failed = await relayCli(dir.path, ['keys', 'create', '--name', 'dave', '--balance', '1.0000000001']);
    expect(failed.code).toBe(2);
    expect(failed.stderr.trim()).toBe('relay: --balance must be a non-negative decimal amount of USD with at most 9 decimals (got "1.0000000001")');
  });

  it('refuses a key name with a bidirectional override with exit code 2, naming --name', async () => {
    const dir = tempDataDir();
    cleanups.push(() => dir.remove());
    const failed = await relayCli(dir.path, ['keys', 'create', '--name', 'invoice\u202Efdp.exe', '--balance', '1']);
    expect(failed.code).toBe(2);
    expect(failed.stderr).toMatch(/^relay: --name must not contain control characters[^\n]*\n$/);
  });

  it('refuses a top-up past the maximum balance with exit code 2, naming --amount, and leaves the balance', async () => {
    const dir = tempDataDir();
    cleanups.push(() => dir.remove());
    await relayCli(dir.path, ['keys', 'create', '--name', 'erin', '--balance', '999999999']);
    for (const amount of ['10000000000', '2']) {
      const failed = await relayCli(dir.path, ['keys', 'topup', 'erin', '--amount', amount]);
      expect(failed.code).toBe(2);
      expect(failed.stderr).toMatch(/^relay: --amount [^\n]*1000000000 USD[^\n]*\n$/);
    }
    expect(JSON.parse((await relayCli(dir.path, ['keys', 'list'])).stdout)).toMatchObject([{ name: 'erin', balance: '999999999.000000' }]);
  });
});
