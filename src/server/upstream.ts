import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import { RelayError, type ErrorCode } from '../errors.js';

/** One upstream the relay can dial. */
export interface Upstream {
  name: string;
  kind: 'openai' | 'azure' | 'azure-preview';
  /** e.g. https://api.openai.com/v1, https://res.openai.azure.com, ws://127.0.0.1:9000/v1 */
  baseUrl: string;
  apiKey: string;
  /** Models this upstream serves; empty means any. */
  models: string[];
  /** Model → the name this upstream knows it by (an Azure deployment, say). Billing prices the model. */
  deployments: Record<string, string>;
  /** Azure preview only. */
  apiVersion?: string;
  /** Lower is tried first. */
  priority: number;
}

export interface DialRequest {
  model: string;
  intent?: 'transcription';
}

export interface UpstreamRequest {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly servedModel: string;
}

/** Requests already built, per upstream and model: every session of a model dials the same URL with the same headers. */
const builtRequests = new WeakMap<Upstream, Map<string, UpstreamRequest>>();
/** The model comes from the client: at most this many are kept per upstream. */
const MAX_BUILT_REQUESTS = 64;

/** `upstreamRequest`, built once per upstream, model and intent and shared (frozen: ws copies the headers it sends). */
export function cachedUpstreamRequest(upstream: Upstream, request: DialRequest): UpstreamRequest {
  let built = builtRequests.get(upstream);
  if (built === undefined) builtRequests.set(upstream, (built = new Map()));
  const key = request.intent === undefined ? request.model : `${request.intent}\n${request.model}`;
  let found = built.get(key);
  if (found === undefined) {
    const fresh = upstreamRequest(upstream, request);
    found = Object.freeze({ ...fresh, headers: Object.freeze(fresh.headers) });
    if (built.size >= MAX_BUILT_REQUESTS) built.clear();
    built.set(key, found);
  }
  return found;
}

/** The URL and headers a dial to `upstream` uses. The client's own headers are never copied. */
export function upstreamRequest(upstream: Upstream, request: DialRequest): { url: string; headers: Record<string, string>; servedModel: string } {
  const servedModel = request.model;
  // Own properties only: the model name comes from the client.
  const deployment = Object.hasOwn(upstream.deployments, request.model) ? upstream.deployments[request.model]! : request.model;
  const base = new URL(upstream.baseUrl);
  base.protocol = base.protocol === 'http:' || base.protocol === 'ws:' ? 'ws:' : 'wss:';
  const root = base.pathname.replace(/\/+$/, '');
  const params = new URLSearchParams();
  let path: string;
  const headers: Record<string, string> = {};
  if (upstream.kind === 'openai') {
    path = `${root}/realtime`;
    if (request.intent === 'transcription') params.set('intent', 'transcription');
    else params.set('model', deployment);
    headers.Authorization = `Bearer ${upstream.apiKey}`;
  } else if (upstream.kind === 'azure') {
    path = `${root}/openai/v1/realtime`;
    if (request.intent === 'transcription') params.set('intent', 'transcription');
    params.set('model', deployment);
    headers['api-key'] = upstream.apiKey;
  } else {
    path = `${root}/openai/realtime`;
    params.set('api-version', upstream.apiVersion ?? '2025-04-01-preview');
    params.set('deployment', deployment);
    if (request.intent === 'transcription') params.set('intent', 'transcription');
    headers['api-key'] = upstream.apiKey;
  }
  base.pathname = path;
  base.search = params.toString();
  return { url: base.toString(), headers, servedModel };
}

export interface DialedUpstream {
  socket: WebSocket;
  upstream: Upstream;
  servedModel: string;
  /** Frames that arrived before a reader took over, the first one included. */
  early: Buffer[];
  /**
   * Stops collecting early frames and the early close; the caller's own
   * listeners take over. `closed` is how the socket closed if it did before
   * then (its close event will not come again).
   */
  takeOver(): { frames: Buffer[]; closed: { code: number; reason: Buffer } | null };
}

const MAX_ERROR_BODY = 16 * 1024;

export function statusError(status: number, body: string): RelayError {
  let message = body.trim();
  try {
    const parsed = JSON.parse(body) as { error?: { message?: string } };
    if (parsed?.error?.message) message = parsed.error.message;
  } catch {
    // A plain-text body is reported as it is.
  }
  const code: ErrorCode =
    status === 401 || status === 403 ? 'upstream_auth_failed' : status === 429 ? 'upstream_rate_limited' : status >= 500 ? 'upstream_unavailable' : 'upstream_rejected';
  const detail = message ? `: ${message.slice(0, 300)}` : '';
  return new RelayError(code, `The upstream answered HTTP ${status}${detail}`, { status: status >= 500 ? 502 : status });
}

function readBody(response: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = () => resolve(Buffer.concat(chunks).toString('utf8'));
    response.on('data', (chunk: Buffer) => {
      if (size < MAX_ERROR_BODY) chunks.push(chunk);
      size += chunk.length;
    });
    response.once('end', finish);
    response.once('error', finish);
    response.once('close', finish);
  });
}

/** Whether a failed dial may be retried on another upstream (the client has seen nothing yet). */
export function isFailoverable(error: RelayError): boolean {
  return (
    error.code === 'upstream_unavailable' ||
    error.code === 'upstream_timeout' ||
    error.code === 'upstream_rate_limited' ||
    error.code === 'upstream_error' ||
    error.code === 'upstream_auth_failed' ||
    error.code === 'upstream_closed'
  );
}

/**
 * Opens a socket to one upstream and resolves when its first frame arrives,
 * which is when the session is known to be live (and failover stops).
 * Rejects with a RelayError carrying the upstream's status and message.
 */
export function dialOnce(upstream: Upstream, request: DialRequest, signal: AbortSignal): Promise<DialedUpstream> {
  const { url, headers, servedModel } = cachedUpstreamRequest(upstream, request);
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers, perMessageDeflate: false, maxPayload: 256 * 1024 * 1024, followRedirects: false });
    let settled = false;
    const collect = (data: WebSocket.RawData) => {
      if (settled) return;
      settled = true;
      cleanupDial();
      socket.off('message', collect);
      // The dialled socket holds none of the dial's closures: it lives as long as the session.
      resolve(new EarlySocket(socket, upstream, servedModel, data as Buffer));
    };
    const fail = (error: RelayError) => {
      if (settled) return;
      settled = true;
      cleanupDial();
      socket.off('message', collect);
      socket.on('error', ignore);
      socket.terminate();
      reject(error);
    };
    const onUnexpectedResponse = (_req: unknown, response: IncomingMessage) => {
      void readBody(response).then((body) => fail(statusError(response.statusCode ?? 502, body)));
    };
    const onError = (error: Error) => fail(new RelayError('upstream_unavailable', `The upstream could not be reached: ${error.message}`, { cause: error }));
    // Only an upgraded socket closes without an error first: it accepted, then closed before its first
    // frame. Nothing reached the client yet, so it is a failed dial like a refusal.
    const onClose = (code: number, reason: Buffer) =>
      fail(new RelayError('upstream_closed', `The upstream closed the connection before its first frame (${code}${reason.length ? ` ${reason.toString()}` : ''})`));
    const onAbort = () => fail(new RelayError('upstream_timeout'));
    const cleanupDial = () => {
      socket.off('unexpected-response', onUnexpectedResponse);
      socket.off('error', onError);
      socket.off('close', onClose);
      signal.removeEventListener('abort', onAbort);
    };

    socket.on('message', collect);
    socket.on('unexpected-response', onUnexpectedResponse);
    socket.on('error', onError);
    socket.on('close', onClose);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** A socket past its first frame: it collects frames and its close until a reader takes over. */
class EarlySocket implements DialedUpstream {
  readonly early: Buffer[];
  private earlyClose: { code: number; reason: Buffer } | null = null;

  constructor(
    readonly socket: WebSocket,
    readonly upstream: Upstream,
    readonly servedModel: string,
    first: Buffer,
  ) {
    this.early = [first];
    socket.on('message', this.collect);
    socket.once('close', this.collectClose);
  }

  private readonly collect = (data: WebSocket.RawData): void => {
    this.early.push(data as Buffer);
  };

  private readonly collectClose = (code: number, reason: Buffer): void => {
    this.earlyClose = { code, reason };
  };

  takeOver(): { frames: Buffer[]; closed: { code: number; reason: Buffer } | null } {
    this.socket.off('message', this.collect);
    this.socket.off('close', this.collectClose);
    const closed = this.earlyClose;
    this.earlyClose = null;
    return { frames: this.early.splice(0), closed };
  }
}

function ignore(): void {}
