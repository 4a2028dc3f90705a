import type { KeyRecord } from '../billing/ledger/index.js';
import type { Billing } from '../billing/service.js';
import { resolveAlias, upstreamsServing, type UpstreamConfig } from '../config/upstreams.js';
import { RelayError } from '../errors.js';
import type { Limits } from '../limits/index.js';
import type { Admission, Gatekeeper, HandshakeAttempt } from '../server/ports.js';

export type { Limits } from '../limits/index.js';

/**
 * Who may open a session, in the order that leaks the least: the address's
 * handshake rate first (it counts failed attempts too), then the key (so an
 * unknown key learns nothing about models or limits), then the model, then
 * the key's limits, whose slot is held until the session is gone.
 */
export function createGatekeeper(billing: Billing, upstreams: UpstreamConfig, limits: Limits | null): Gatekeeper {
  return {
    async admit(attempt: HandshakeAttempt): Promise<Admission> {
      // Every attempt counts against its address, a wrong key included: that is what slows down guessing.
      await limits?.countHandshake(attempt.ip);
      const model = resolveAlias(upstreams, attempt.model ?? '');
      return admitKey(await billing.authorize(attempt.key, model), model);
    },
    async admitRouted(keyId: string, requestedModel: string): Promise<Admission> {
      const model = resolveAlias(upstreams, requestedModel);
      return admitKey(await billing.authorizeId(keyId, model), model);
    },
    async identify(plaintextKey: string) {
      const key = await billing.identify(plaintextKey);
      return key ? { keyId: key.id, keyName: key.name } : null;
    },
  };

  async function admitKey(key: KeyRecord, model: string): Promise<Admission> {
    if (upstreamsServing(upstreams, model).length === 0) throw new RelayError('model_not_found', `No upstream of this relay serves the model "${model}".`);
    const release = limits ? await limits.acquire({ keyId: key.id, maxSessions: key.maxSessions }) : () => undefined;
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
  }
}
