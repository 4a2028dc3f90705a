import type { Actor } from 'xstate';
import type { CancelReason, SessionMachine } from '../machines/session.js';
import type { SessionLink } from './session-link.js';

export interface LiveSession {
  link: SessionLink;
  actor: Actor<SessionMachine>;
}

/**
 * Every live session of this process, from the accepted upgrade until both
 * of its sockets are closed. Shutdown and the admin API work through it.
 */
export class SessionRegistry {
  private readonly sessions = new Map<string, LiveSession>();
  private readonly emptyWaiters: Array<() => void> = [];

  add(session: LiveSession): void {
    this.sessions.set(session.link.sessionId, session);
  }

  remove(sessionId: string): void {
    this.sessions.delete(sessionId);
    if (this.sessions.size === 0) for (const resolve of this.emptyWaiters.splice(0)) resolve();
  }

  get(sessionId: string): LiveSession | undefined {
    return this.sessions.get(sessionId);
  }

  list(): LiveSession[] {
    return [...this.sessions.values()];
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Sessions whose machine has not reached `closed` yet (the rest are only closing sockets). */
  active(): LiveSession[] {
    return this.list().filter((session) => session.actor.getSnapshot().status === 'active');
  }

  cancel(sessionId: string, reason: CancelReason): boolean {
    const session = this.sessions.get(sessionId);
    if (!session || session.actor.getSnapshot().status !== 'active') return false;
    session.actor.send({ type: 'CANCEL', reason });
    return true;
  }

  cancelAll(reason: CancelReason): void {
    for (const session of this.active()) session.actor.send({ type: 'CANCEL', reason });
  }

  /** Resolves when the last live session is gone. */
  empty(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptyWaiters.push(resolve));
  }
}
