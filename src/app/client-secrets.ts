import { randomBytes } from 'node:crypto';
import { isLedgerError } from '../billing/ledger/index.js';
import type { Billing } from '../billing/service.js';
import { resolveAlias, upstreamsServing, type UpstreamConfig } from '../config/upstreams.js';
import { RelayError, RequestError } from '../errors.js';
import { DEFAULT_MODEL, bindSession, isClientSecret, isSessionProblem, withModel } from '../protocol/client-secret.js';
import type { Caller, ClientSecretMinter, ClientSecretRequest, MintedClientSecret } from '../server/ports.js';

/**
 * Mints client secrets for relay keys. The secret's session is checked as a
 * session would be at its handshake (its model resolved through the aliases,
 * priced and served), so a secret that could never open a session is never
 * handed out. The secret stands for its key: balance, limits, multiplier and
 * disabled state are the key's, read whenever a session opens.
 */
export function createClientSecretMinter(billing: Billing, upstreams: UpstreamConfig, now: () => Date = () => new Date()): ClientSecretMinter {
  return {
    async authenticate(key: string | undefined): Promise<Caller> {
      if (isClientSecret(key)) throw new RequestError('client_secret_not_allowed', 'A client secret cannot mint another: mint client secrets with a relay key, on your server.');
      const record = await billing.authenticate(key);
      return { keyId: record.id, keyName: record.name };
    },

    async mint(caller: Caller, request: ClientSecretRequest): Promise<MintedClientSecret> {
      const bound = bindSession(request.session);
      if (isSessionProblem(bound)) throw new RequestError(bound.code, `Invalid '${bound.param}': ${bound.message}.`, bound.param);
      const model = resolveAlias(upstreams, bound.model ?? DEFAULT_MODEL[bound.type]);
      const modelParam = bound.type === 'realtime' ? 'session.model' : 'session.audio.input.transcription.model';
      try {
        billing.assertPriced(model);
      } catch (error) {
        if (error instanceof RelayError) throw new RequestError(error.code, error.message, modelParam);
        throw error;
      }
      if (upstreamsServing(upstreams, model).length === 0) throw new RequestError('model_not_found', `No upstream of this relay serves the model "${model}".`, modelParam);
      const session = withModel(request.session, bound.type, model);
      // Whole seconds, as OpenAI reports them: the secret expires exactly at the `expires_at` it was told.
      const expiresAt = Math.floor(now().getTime() / 1000) + request.expiresAfterSeconds;
      let secret: string;
      try {
        ({ secret } = await billing.ledger.createClientSecret({ keyId: caller.keyId, expiresAt: new Date(expiresAt * 1000), session, spendCapNano: request.spendCapNano }));
      } catch (error) {
        if (isLedgerError(error, 'ledger_unavailable')) throw new RequestError('ledger_unavailable', error.message);
        throw error;
      }
      const object = bound.type === 'realtime' ? 'realtime.session' : 'realtime.transcription_session';
      return { value: secret, expires_at: expiresAt, session: { id: `sess_${randomBytes(12).toString('hex')}`, object, ...session } };
    },
  };
}
