import { spawn } from 'node:child_process';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { ChurnFigures } from './churn.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SESSIONS = Number(process.env.CHURN_SESSIONS ?? 10_000);

/** The churn runs in a process of its own, started with --expose-gc, so that its heap and handles are its alone. */
function runChurn(sessions: number): Promise<{ code: number | null; figures: ChurnFigures | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', 'test/hardening/churn.ts', '--sessions', String(sessions), '--concurrency', '50', '--max-seconds', '240'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // A batch job beside the timing-sensitive suites: it takes the CPU they leave, not the other way round.
    try {
      setPriority(child.pid!, 10);
    } catch {
      // Not permitted here: it runs at normal priority.
    }
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('exit', (code) => {
      const line = output.split('\n').find((l) => l.startsWith('{"sessions"'));
      resolve({ code, figures: line ? (JSON.parse(line) as ChurnFigures) : null, output });
    });
  });
}

describe('leak-free churn', () => {
  it(`opens and ends ${SESSIONS} sessions by every end path and comes back to the baseline`, async () => {
    const { code, figures, output } = await runChurn(SESSIONS);
    expect(figures, output).not.toBeNull();
    const f = figures!;
    console.log(
      `churn: ${f.completed} sessions in ${f.seconds.toFixed(1)} s (${f.sessionsPerSecond}/s); paths ${JSON.stringify(f.attempted)}; ` +
        `heap after GC ${f.heapBaselineMiB} → ${f.heapAfterMiB} MiB (Δ ${f.heapDeltaMiB} MiB, tolerance ${f.heapToleranceMiB}); ` +
        `resources ${JSON.stringify(f.resourcesBaseline)} → ${JSON.stringify(f.resourcesAfter)}; ledger ${f.settlements} settlements of ${f.ledgerSessions} sessions, ${f.openLedgerSessions} open, ${f.charges} charges`,
    );
    expect(f.problems).toEqual([]);
    expect(f.stoppedByTime).toBe(false);
    expect(f.completed).toBe(SESSIONS);
    for (const path of ['client_close', 'upstream_close', 'error', 'cancel', 'quota', 'idle']) expect(f.attempted[path]).toBeGreaterThan(0);
    expect(f.resourcesAfter).toEqual(f.resourcesBaseline);
    expect(f.heapDeltaMiB).toBeLessThanOrEqual(f.heapToleranceMiB);
    expect(f.registryAfter).toBe(0);
    expect(f.limitSlotsAfter).toBe(0);
    expect(f.settlements).toBe(f.ledgerSessions);
    expect(f.settledTwice).toBe(0);
    expect(f.openLedgerSessions).toBe(0);
    expect(code).toBe(0);
  }, 300_000);
});
