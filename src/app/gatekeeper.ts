import type { ClientSecretGrant, KeyRecord } from '../billing/ledger/index.js';
import type { Billing } from '../billing/service.js';
import { resolveAlias, upstreamsServing, type UpstreamConfig } from '../config/upstreams.js';
import { RelayError } from '../errors.js';
import type { Limits } from '../limits/index.js';
import { bindSession, isClientSecret, isSessionProblem } from '../protocol/client-secret.js';
import type { Admission, Gatekeeper, HandshakeAttempt } from '../server/ports.js';

export type { Limits } from '../limits/index.js';

/** What a client secret decides about the session it opens. */
interface SecretBinding {
  model: string;
  intent: 'transcription' | undefined;
}

/**
 * The session a client secret opens: its own model and type. An attempt
 * that asks for another model (after aliases) or another type is refused
 * rather than silently given the secret's.
 */
function bindToSecret(upstreams: UpstreamConfig, attempt: HandshakeAttempt, grant: ClientSecretGrant): SecretBinding {
  const bound = bindSession(grant.secret.session);
  // Minting checked the configuration; one that no longer reads is not honoured.
  if (isSessionProblem(bound) || bound.model === null) throw new RelayError('internal_error', 'The client secret carries no usable session.');
  if (attempt.intent !== undefined && attempt.intent !== bound.intent) {
    throw new RelayError('client_secret_mismatch', `This client secret opens ${bound.type} sessions only.`);
  }
  if (attempt.model !== undefined && resolveAlias(upstreams, attempt.model) !== bound.model) {
    throw new RelayError('client_secret_mismatch', `This client secret opens sessions of the model "${bound.model}" only; leave out "model", or ask for that one.`);
  }
  return { model: bound.model, intent: bound.intent };
}

/**
 * Who may open a session, in the order that leaks the least: the address's
 * handshake rate first (it counts failed attempts too), then the key or
 * client secret (so an unknown one learns nothing about models or limits),
 * then the model, then the key's limits, whose slot is held until the
 * session is gone. A client secret stands for its key in everything but
 * the model, which is its own, and its spend, which its cap bounds.
 */
export function createGatekeeper(billing: Billing, upstreams: UpstreamConfig, limits: Limits | null): Gatekeeper {
  async function admitKey(attempt: HandshakeAttempt): Promise<{ key: KeyRecord; model: string; intent: 'transcription' | undefined; grant?: ClientSecretGrant }> {
    if (isClientSecret(attempt.key)) {
      const grant = await billing.authorizeClientSecret(attempt.key);
      const binding = bindToSecret(upstreams, attempt, grant);
      billing.assertPriced(binding.model);
      return { key: grant.key, ...binding, grant };
    }
    if (attempt.model === undefined) throw new RelayError('missing_model');
    const model = resolveAlias(upstreams, attempt.model);
    return { key: await billing.authorize(attempt.key, model), model, intent: attempt.intent };
  }

  /** The model served, then the key's limits, whose slot is held until the session is gone. */
  async function admitted(key: KeyRecord, model: string, intent: 'transcription' | undefined, grant: ClientSecretGrant | undefined): Promise<Admission> {
    if (upstreamsServing(upstreams, model).length === 0) throw new RelayError('model_not_found', `No upstream of this relay serves the model "${model}".`);
    const release = limits ? await limits.acquire({ keyId: key.id, maxSessions: key.maxSessions }) : () => undefined;
    let released = false;
    return {
      caller: grant ? { keyId: key.id, keyName: key.name, clientSecretId: grant.secret.id } : { keyId: key.id, keyName: key.name },
      model,
      intent,
      clientSecretSession: grant?.secret.session,
      openMeter: (session) => billing.openMeter(session, key, grant),
      release() {
        if (released) return;
        released = true;
        release();
      },
    };
  }

  return {
    async admit(attempt: HandshakeAttempt): Promise<Admission> {
      // Every attempt counts against its address, a wrong key included: that is what slows down guessing.
      await limits?.countHandshake(attempt.ip);
      const { key, model, intent, grant } = await admitKey(attempt);
      return admitted(key, model, intent, grant);
    },
    async admitRouted(keyId: string, requestedModel: string): Promise<Admission> {
      const model = resolveAlias(upstreams, requestedModel);
      return admitted(await billing.authorizeId(keyId, model), model, undefined, undefined);
    },
    async identify(plaintextKey: string) {
      const found = await billing.identify(plaintextKey);
      if (!found) return null;
      const { key, clientSecretId } = found;
      return clientSecretId === undefined ? { keyId: key.id, keyName: key.name } : { keyId: key.id, keyName: key.name, clientSecretId };
    },
  };
}
