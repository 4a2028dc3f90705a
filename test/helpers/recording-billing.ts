import { RelayError } from '../../src/errors.js';
import type { Admission, Gatekeeper, HandshakeAttempt, SessionMeter, SessionSummary } from '../../src/server/ports.js';

export const TEST_KEY = 'rk_test_key_0123456789';

/**
 * A gatekeeper and meter that only record what the relay tells them: enough
 * to assert the lifecycle (one settlement per session, on every path)
 * without a ledger.
 */
export class RecordingBilling implements Gatekeeper {
  readonly settlements: SessionSummary[] = [];
  readonly charges: Array<{ sessionId: string; kind: string; id: string; usage: unknown }> = [];
  readonly opened: string[] = [];
  models = new Set(['gpt-realtime', 'gpt-realtime-mini', 'gpt-4o-transcribe']);
  failCharges = false;
  /** Makes each charge take this long, as a slow ledger would. */
  chargeDelayMs = 0;
  refuseResponses = false;
  private settleWaiters: Array<() => void> = [];

  async admit(attempt: HandshakeAttempt): Promise<Admission> {
    if (attempt.key === undefined) throw new RelayError('missing_api_key');
    if (attempt.key !== TEST_KEY) throw new RelayError('invalid_api_key');
    if (!attempt.model || !this.models.has(attempt.model)) throw new RelayError('model_not_found');
    const caller = { keyId: 'key_test', keyName: 'test' };
    return {
      caller,
      model: attempt.model,
      clientSecretSession: undefined,
      openMeter: async (session) => {
        this.opened.push(session.sessionId);
        return this.meter(session.sessionId);
      },
      release: () => undefined,
    };
  }

  async identify(key: string): Promise<{ keyId: string; keyName: string } | null> {
    return key === TEST_KEY ? { keyId: 'key_test', keyName: 'test' } : null;
  }

  private meter(sessionId: string): SessionMeter {
    return {
      opened: () => undefined,
      callAnswered: async () => undefined,
      configured: () => undefined,
      admitResponse: () => {
        if (this.refuseResponses) throw new RelayError('insufficient_quota');
      },
      responseStarted: () => undefined,
      chargeResponse: async (response) => {
        if (this.chargeDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.chargeDelayMs));
        if (this.failCharges) throw new Error('ledger down');
        this.charges.push({ sessionId, kind: 'response', id: response.id, usage: response.usage });
        return { costNano: 0n };
      },
      chargeTranscription: async (event) => {
        this.charges.push({ sessionId, kind: 'transcription', id: event.itemId, usage: event.usage });
        return { costNano: 0n };
      },
      spendNano: () => 0n,
      settle: async (summary) => {
        this.settlements.push(summary);
        for (const wake of this.settleWaiters.splice(0)) wake();
      },
    };
  }

  settlementsOf(sessionId: string): SessionSummary[] {
    return this.settlements.filter((s) => s.sessionId === sessionId);
  }

  /** Resolves once `count` sessions have settled. */
  async settled(count: number, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.settlements.length < count) {
      if (Date.now() > deadline) throw new Error(`expected ${count} settlements, saw ${this.settlements.length}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.settleWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}
