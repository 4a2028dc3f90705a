/**
 * The upgrade request, judged the way OpenAI or Azure OpenAI would: which URL
 * shapes exist, which credential each expects, and the HTTP refusal sent when
 * the upgrade is not answered with a 101.
 */
import { STATUS_CODES } from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HandshakeRecord } from './types.js';

export type SessionType = 'realtime' | 'transcription';

export type HandshakeVerdict =
  | {
      accept: true;
      sessionType: SessionType;
      /** The model, or the Azure deployment; null for a transcription session without one. */
      model: string | null;
      /** OpenAI upgrades a request without a model, then reports `missing_model` and closes 4000. */
      missingModel: boolean;
      /** The retired beta shape was asked for (header or browser subprotocol). */
      betaRequested: boolean;
      /** `realtime` when the client offered it; the key-bearing entries are never echoed. */
      subprotocol: string | null;
    }
  | { accept: false; status: number; body: unknown };

export interface HandshakePolicy {
  azure: boolean;
  apiKey: string | undefined;
}

const KEY_PROTOCOL_PREFIX = 'openai-insecure-api-key.';
const BETA_PROTOCOL = 'openai-beta.realtime-v1';

export function recordHandshake(req: IncomingMessage): HandshakeRecord {
  const url = new URL(req.url ?? '/', 'http://simulator');
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return { path: url.pathname, query: Object.fromEntries(url.searchParams), headers };
}

function offeredProtocols(headers: HandshakeRecord['headers']): string[] {
  const raw = headers['sec-websocket-protocol'];
  return raw === undefined ? [] : raw.split(',').map((p) => p.trim()).filter((p) => p.length > 0);
}

export function bearerToken(headers: HandshakeRecord['headers']): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization ?? '');
  return match?.[1];
}

export function judgeHandshake(record: HandshakeRecord, policy: HandshakePolicy): HandshakeVerdict {
  const protocols = offeredProtocols(record.headers);
  const subprotocol = protocols.includes('realtime') ? 'realtime' : null;
  return policy.azure ? judgeAzure(record, policy, subprotocol) : judgeOpenAI(record, policy, protocols, subprotocol);
}

function judgeOpenAI(
  record: HandshakeRecord,
  policy: HandshakePolicy,
  protocols: string[],
  subprotocol: string | null,
): HandshakeVerdict {
  if (record.path !== '/v1/realtime') return { accept: false, status: 404, body: openAINotFound(record.path) };
  const fromProtocol = protocols.find((p) => p.startsWith(KEY_PROTOCOL_PREFIX))?.slice(KEY_PROTOCOL_PREFIX.length);
  const refusal = refuseCredential(bearerToken(record.headers) ?? fromProtocol, policy);
  if (refusal !== null) return { accept: false, ...refusal };
  const transcription = record.query.intent === 'transcription';
  const model = record.query.model ?? null;
  return {
    accept: true,
    sessionType: transcription ? 'transcription' : 'realtime',
    model,
    missingModel: !transcription && (model === null || model === ''),
    betaRequested: record.headers['openai-beta'] !== undefined || protocols.includes(BETA_PROTOCOL),
    subprotocol,
  };
}

/** OpenAI's 401 for a missing or (when the simulator has a key) wrong credential; null when it passes. */
export function refuseCredential(credential: string | undefined, policy: HandshakePolicy): { status: number; body: unknown } | null {
  if (credential === undefined || credential === '') {
    return { status: 401, body: openAIError("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", 'invalid_request_error', null) };
  }
  if (policy.apiKey !== undefined && credential !== policy.apiKey) {
    return { status: 401, body: openAIError('Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key') };
  }
  return null;
}

function judgeAzure(record: HandshakeRecord, policy: HandshakePolicy, subprotocol: string | null): HandshakeVerdict {
  const { path, query } = record;
  let model: string | undefined;
  let bearerAllowed = false;
  if (path === '/openai/v1/realtime' && query.model) {
    model = query.model;
    bearerAllowed = true; // the GA endpoint also takes Entra ID tokens
  } else if (path === '/openai/realtime' && query['api-version'] && query.deployment) {
    model = query.deployment;
  }
  if (model === undefined) return { accept: false, status: 404, body: { error: { code: '404', message: 'Resource not found' } } };
  const credential = record.headers['api-key'] ?? (bearerAllowed ? bearerToken(record.headers) : undefined);
  if (credential === undefined || credential === '' || (policy.apiKey !== undefined && credential !== policy.apiKey)) {
    return {
      accept: false,
      status: 401,
      body: { error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.' } },
    };
  }
  return {
    accept: true,
    sessionType: 'realtime',
    model,
    missingModel: false,
    betaRequested: record.headers['openai-beta'] !== undefined,
    subprotocol,
  };
}

export function openAIError(message: string, type: string, code: string | null): unknown {
  return { error: { message, type, param: null, code } };
}

function openAINotFound(path: string): unknown {
  return openAIError(`Invalid URL (GET ${path})`, 'invalid_request_error', null);
}

/** The body OpenAI sends with `status`, for a refusal fault that names none. */
export function defaultRefusalBody(status: number): unknown {
  switch (status) {
    case 400:
      return openAIError('Invalid request.', 'invalid_request_error', null);
    case 401:
      return openAIError('Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
    case 403:
      return openAIError('You are not allowed to access this resource.', 'invalid_request_error', 'forbidden');
    case 404:
      return openAIError('The model does not exist or you do not have access to it.', 'invalid_request_error', 'model_not_found');
    case 429:
      return openAIError('Rate limit reached for requests. Please try again later.', 'requests', 'rate_limit_exceeded');
    default:
      return status >= 500
        ? openAIError('The server had an error while processing your request. Sorry about that!', 'server_error', 'server_error')
        : openAIError(STATUS_CODES[status] ?? 'Request refused.', 'invalid_request_error', null);
  }
}

/**
 * Answers an upgrade request with a plain HTTP response. A string body is sent
 * as text, anything else as JSON, so a client's `unexpected-response` can read it.
 */
export function writeRefusal(socket: Duplex, status: number, body: unknown): void {
  const isText = typeof body === 'string';
  const payload = isText ? body : JSON.stringify(body);
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}`,
    `Content-Type: ${isText ? 'text/plain; charset=utf-8' : 'application/json'}`,
    `Content-Length: ${Buffer.byteLength(payload)}`,
    ...(status === 429 ? ['Retry-After: 1'] : []),
    'Connection: close',
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${payload}`);
}
