import { vi } from 'vitest';

/**
 * A simulated clock for the relay's session timers (idle, maximum duration,
 * drain, ping, stall) on real sockets. Only the timer functions and Date are
 * faked: socket I/O, setImmediate, process.nextTick and microtasks stay real,
 * so frames still flow while the clock stands still. The simulator runs in
 * this process, so its paced chunks (chunkIntervalMs > 0) follow the clock
 * too; with chunkIntervalMs 0 it streams on setImmediate, in real time.
 */
export function useFakeClock(): void {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
}

/** A few turns of the real event loop, enough for a frame to cross a loopback socket. */
async function letSocketsTalk(): Promise<void> {
  for (let turn = 0; turn < 3; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Moves the clock `ms` forward, `stepMs` at a time, letting sockets talk after each step. */
export async function advanceClock(ms: number, stepMs = 10): Promise<void> {
  for (let passed = 0; passed < ms; passed += stepMs) {
    await vi.advanceTimersByTimeAsync(Math.min(stepMs, ms - passed));
    await letSocketsTalk();
  }
}

/**
 * Moves the clock forward, `stepMs` at a time, until `promise` settles, and
 * settles the same way. A timeout inside `promise` (client.next's, say) runs
 * on the same clock, so a wait that never ends fails after that much clock time.
 */
export async function runClockUntil<T>(promise: Promise<T>, stepMs = 10): Promise<T> {
  let settled = false;
  const watched = promise.finally(() => {
    settled = true;
  });
  watched.catch(() => undefined);
  while (!settled) {
    await vi.advanceTimersByTimeAsync(stepMs);
    await letSocketsTalk();
  }
  return watched;
}
