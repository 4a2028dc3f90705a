import type { Billing } from '../billing/service.js';
import { resolveAlias, upstreamsServing, type UpstreamConfig } from '../config/upstreams.js';
import { RelayError } from '../errors.js';
import type { Admission, Gatekeeper, HandshakeAttempt } from '../server/ports.js';

/** Admission limits (rates, concurrent sessions). `acquire` throws a RelayError `rate_limit_exceeded`. */
export interface Limits {
  acquire(request: { keyId: string; ip: string; maxSessions: number | null }): Promise<() => void>;
}

/**
 * Who may open a session, in the order that leaks the least: the key first
 * (so an unknown key learns nothing about models or limits), then the model,
 * then the limits, whose slot is held until the session is gone.
 */
export function createGatekeeper(billing: Billing, upstreams: UpstreamConfig, limits: Limits | null): Gatekeeper {
  return {
    async admit(attempt: HandshakeAttempt): Promise<Admission> {
      const model = resolveAlias(upstreams, attempt.model ?? '');
      const key = await billing.authorize(attempt.key, model);
      if (upstreamsServing(upstreams, model).length === 0) throw new RelayError('model_not_found', `No upstream of this relay serves the model "${model}".`);
      const release = limits ? await limits.acquire({ keyId: key.id, ip: attempt.ip, maxSessions: key.maxSessions }) : () => undefined;
      let released = false;
      return {
        caller: { keyId: key.id, keyName: key.name },
        model,
        openMeter: (session) => billing.openMeter(session, key),
        release() {
          if (released) return;
          released = true;
          release();
        },
      };
    },
  };
}
