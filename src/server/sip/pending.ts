import type { Admission, PhoneRoute } from '../ports.js';
import type { Upstream } from '../upstream.js';

/** A routed call forwarded to its tenant's webhook: ringing upstream until the tenant accepts, rejects or refers it. */
export interface PendingCall {
  /** The relay's id of the call, as the tenant knows it. */
  callId: string;
  upstream: Upstream;
  upstreamCallId: string;
  route: PhoneRoute;
  admission: Admission;
}

/**
 * Calls waiting for their tenant. Each one's deadline is set in add() and
 * cleared in take(): whoever takes a call first (the tenant, the deadline,
 * a failed forward, shutdown) is the only one to act on it.
 */
export class PendingCalls {
  private readonly calls = new Map<string, { call: PendingCall; deadline: NodeJS.Timeout }>();

  constructor(
    private readonly timeoutMs: number,
    private readonly expired: (call: PendingCall) => void,
  ) {}

  add(call: PendingCall): void {
    const deadline = setTimeout(() => {
      const taken = this.take(call.callId);
      if (taken) this.expired(taken);
    }, this.timeoutMs);
    deadline.unref();
    this.calls.set(call.callId, { call, deadline });
  }

  get(callId: string): PendingCall | undefined {
    return this.calls.get(callId)?.call;
  }

  take(callId: string): PendingCall | undefined {
    const entry = this.calls.get(callId);
    if (!entry) return undefined;
    clearTimeout(entry.deadline);
    this.calls.delete(callId);
    return entry.call;
  }

  takeAll(): PendingCall[] {
    return [...this.calls.keys()].map((id) => this.take(id)!);
  }

  get size(): number {
    return this.calls.size;
  }
}
