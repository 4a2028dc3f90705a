import { EventEmitter } from 'node:events';
import type { Actor } from 'xstate';
import { stateName, type CancelReason, type SessionMachine } from '../machines/session.js';
import type { LiveLink } from './live-link.js';

export interface LiveSession {
  link: LiveLink;
  actor: Actor<SessionMachine>;
}

/**
 * A lifecycle fact about one session: it started, its machine changed state
 * (the ending's states included) or a response began or ended, or it ended
 * (the machine reached `closed.ended`: sockets closed, settlement written).
 * Never emitted per frame.
 */
export interface SessionChange {
  kind: 'started' | 'changed' | 'ended';
  sessionId: string;
}

/**
 * Every live session of this process, from the accepted upgrade until its
 * machine has ended. Shutdown and the admin API work through it;
 * `on('changed', …)` tells watchers (the live sessions page) what changed.
 */
export class SessionRegistry extends EventEmitter<{ changed: [SessionChange] }> {
  private readonly sessions = new Map<string, LiveSession>();
  private readonly emptyWaiters: Array<() => void> = [];

  constructor() {
    super();
    // One listener per open admin stream, each removed when its stream closes.
    this.setMaxListeners(0);
  }

  add(session: LiveSession): void {
    const { sessionId } = session.link;
    this.sessions.set(sessionId, session);
    let state: string | undefined;
    let responseInFlight: boolean | undefined;
    // Snapshots change on lifecycle events only (the machine never sees a frame).
    session.actor.subscribe({
      next: (snapshot) => {
        const name = stateName(snapshot.value);
        if (name === state && snapshot.context.responseInFlight === responseInFlight) return;
        const first = state === undefined;
        state = name;
        responseInFlight = snapshot.context.responseInFlight;
        if (!first) this.emit('changed', { kind: 'changed', sessionId });
      },
      error: () => undefined,
    });
    this.emit('changed', { kind: 'started', sessionId });
  }

  remove(sessionId: string): void {
    if (!this.sessions.delete(sessionId)) return;
    this.emit('changed', { kind: 'ended', sessionId });
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

  /** Sessions whose machine has not reached `closed` yet (the rest are ending: closing sockets, settling). */
  active(): LiveSession[] {
    return this.list().filter(isActive);
  }

  cancel(sessionId: string, reason: CancelReason): boolean {
    const session = this.sessions.get(sessionId);
    if (!session || !isActive(session)) return false;
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

function isActive(session: LiveSession): boolean {
  const snapshot = session.actor.getSnapshot();
  return snapshot.status === 'active' && !snapshot.matches('closed');
}
