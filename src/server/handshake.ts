import type { IncomingMessage } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import { createMiddleware } from 'hono/factory';
import { ERRORS, RelayError, errorBody } from '../errors.js';
import { isClientSecret } from '../protocol/client-secret.js';
import { parseOfferedProtocols, type OfferedProtocols } from '../protocol/subprotocols.js';
import { canonicalAddress, resolveClientAddress, type ClientAddressOptions } from './client-address.js';
import type { Admission, Caller, Gatekeeper, HandshakeAttempt } from './ports.js';
import { proxiedSource } from './proxy-protocol.js';
import type { UpgradeEnv } from './upgrade.js';

export interface Handshake {
  attempt: HandshakeAttempt;
  protocols: OfferedProtocols;
  /** The client speaks the beta interface (header or subprotocol). */
  beta: boolean;
  /** A browser cannot read a refused handshake: it is told after the upgrade instead. */
  browser: boolean;
}

export type HandshakeEnv = UpgradeEnv & {
  Variables: { handshake: Handshake; admission: Admission; refusal: RelayError | undefined };
};

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

export function bearer(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  return match ? match[1]!.trim() : undefined;
}

/** Whose relay key this is, for acts on what the key already opened; why not, when there is none or it cannot be told. */
export async function identifyCaller(gatekeeper: Gatekeeper, key: string | undefined): Promise<Caller | RelayError> {
  if (key === undefined) return new RelayError('missing_api_key');
  if (!gatekeeper.identify) return new RelayError('billing_unavailable');
  const caller = await gatekeeper.identify(key).catch(() => undefined);
  if (caller === undefined) return new RelayError('billing_unavailable');
  return caller ?? new RelayError('invalid_api_key');
}

/**
 * The client's address: the peer (or the client a trusted peer's PROXY header
 * named), then, from a trusted peer, what its forwarding header says.
 */
export function clientAddressOf(incoming: IncomingMessage, options: ClientAddressOptions | undefined): string {
  const peer = proxiedSource(incoming.socket) ?? canonicalAddress(incoming.socket.remoteAddress ?? 'unknown');
  if (options === undefined) return peer;
  const header = incoming.headers[options.forwardedHeader];
  return resolveClientAddress(peer, Array.isArray(header) ? header.join(', ') : header, options);
}

/**
 * Whether a key may travel in the clear: over TLS, or from this machine.
 * Loopback is judged on the client, not the peer: a balancer on this machine
 * does not make every client local.
 */
export function isTrustedTransport(incoming: IncomingMessage, clientAddress: string): boolean {
  return Boolean((incoming.socket as { encrypted?: boolean }).encrypted) || isLoopback(clientAddress);
}

export function readHandshake(c: Context<HandshakeEnv>, incoming: IncomingMessage, clientAddresses?: ClientAddressOptions): Handshake {
  const protocols = parseOfferedProtocols(c.req.header('sec-websocket-protocol'));
  // A header key always wins: a subprotocol list must never override it.
  const headerKey = bearer(c.req.header('authorization')) ?? c.req.header('api-key') ?? undefined;
  const key = headerKey ?? protocols.key;
  const intent = c.req.query('intent') === 'transcription' ? 'transcription' : undefined;
  const ip = clientAddressOf(incoming, clientAddresses);
  const betaHeader = (c.req.header('openai-beta') ?? '').split(',').some((v) => v.trim() === 'realtime=v1');
  return {
    protocols,
    beta: betaHeader || protocols.beta,
    browser: headerKey === undefined && protocols.offersRealtime,
    attempt: {
      key,
      keySource: headerKey !== undefined ? 'header' : protocols.key !== undefined ? 'subprotocol' : 'none',
      // A client secret carries its own model: none is assumed for it.
      model: c.req.query('model') ?? (intent && !isClientSecret(key) ? 'gpt-4o-transcribe' : undefined),
      intent,
      ip,
      origin: c.req.header('origin'),
      trustedTransport: isTrustedTransport(incoming, ip),
    },
  };
}

function refuse(c: Context<HandshakeEnv>, error: RelayError): Response {
  const headers: Record<string, string> = {};
  if (error.retryAfterSeconds !== undefined || error.status === 429) headers['Retry-After'] = String(error.retryAfterSeconds ?? 1);
  return c.json(error.toBody(), error.status as 400, headers);
}

export interface HandshakeOptions {
  gatekeeper: Gatekeeper;
  allowInsecureSubprotocolKey: boolean;
  allowedOrigins: string[];
  /** Trusted proxies and the header they name the client in; without it the peer is the client. */
  clientAddresses?: ClientAddressOptions;
  isShuttingDown(): boolean;
}

/**
 * Everything decided before the 101: who the caller is, which model, whether
 * they may open a session now. Header-authenticated clients get the real HTTP
 * status and OpenAI's JSON error body; browser clients, which cannot read a
 * refused handshake, get the upgrade followed by an `error` event and a close
 * code they can read.
 */
export function handshake(options: HandshakeOptions): MiddlewareHandler<HandshakeEnv> {
  return createMiddleware<HandshakeEnv>(async function handshakeMiddleware(c, next) {
    if (c.req.header('upgrade')?.toLowerCase() !== 'websocket') {
      return c.json(errorBody('upgrade_required'), ERRORS.upgrade_required.status);
    }
    if (options.isShuttingDown()) return refuse(c, new RelayError('server_shutting_down'));
    const shake = readHandshake(c, c.env.incoming, options.clientAddresses);
    c.set('handshake', shake);
    const { attempt, protocols } = shake;
    // A browser that does not offer `realtime` would abort on our answer anyway.
    if (protocols.key !== undefined && !protocols.offersRealtime) return refuse(c, new RelayError('subprotocol_required'));
    if (attempt.origin && options.allowedOrigins.length > 0 && !options.allowedOrigins.includes(attempt.origin)) {
      return refuse(c, new RelayError('origin_not_allowed'));
    }
    try {
      // A client secret is short-lived and bound to one kind of session: made to be handed to
      // a page, it is accepted in a subprotocol over any transport (origins still apply).
      const secret = isClientSecret(attempt.key);
      if (attempt.keySource === 'subprotocol' && !secret && !attempt.trustedTransport && !options.allowInsecureSubprotocolKey) {
        throw new RelayError('insecure_key_transport');
      }
      if (attempt.model === undefined && !secret) throw new RelayError('missing_model');
      c.set('admission', await options.gatekeeper.admit(attempt));
    } catch (error) {
      const relayError = error instanceof RelayError ? error : new RelayError('internal_error', undefined, { cause: error });
      if (!shake.browser) return refuse(c, relayError);
      c.set('refusal', relayError);
    }
    await next();
  });
}
