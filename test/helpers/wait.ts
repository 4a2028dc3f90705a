/** Polls `predicate` until it holds; for state that emits no event a test could await. */
export async function eventually(what: string, predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** `promise`, or a rejection naming `what` once `timeoutMs` has passed. */
export function within<T>(promise: Promise<T>, timeoutMs: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(typeof what === 'string' ? `timed out after ${timeoutMs} ms waiting for ${what}` : what())), timeoutMs);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * Something a test waits for that arrives in pieces (log lines, stderr, frames):
 * `check()` after each piece, and `until(find)` resolves with the first thing
 * `find` returns, or rejects once `gone()` says no more will come, or after `timeoutMs`.
 */
export class Arrivals {
  private readonly waiters = new Set<() => void>();

  constructor(private readonly gone: () => string | null = () => null) {}

  /** Call after each piece arrives (and once the source has ended). */
  check(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  until<T>(find: () => T | undefined, what: string, timeoutMs: number, describe: () => string = () => ''): Promise<T> {
    return new Promise((resolve, reject) => {
      const settle = (outcome: () => void) => {
        this.waiters.delete(check);
        clearTimeout(timer);
        outcome();
      };
      const check = () => {
        const found = find();
        if (found !== undefined) return settle(() => resolve(found));
        const why = this.gone();
        if (why !== null) settle(() => reject(new Error(`${why} before ${what}; ${describe()}`)));
      };
      const timer = setTimeout(() => settle(() => reject(new Error(`timed out waiting for ${what}; ${describe()}`))), timeoutMs);
      this.waiters.add(check);
      check();
    });
  }
}
