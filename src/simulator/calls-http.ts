/**
 * OpenAI's call endpoints on the simulator: `POST /v1/realtime/calls` (an SDP
 * offer, plain or with a session config in a multipart form),
 * `POST /v1/realtime/calls/{call_id}/hangup`, and for phone calls `/accept`,
 * `/reject` and `/refer`, with the CORS a page on another origin needs.
 * Refusals use OpenAI's error envelope and leave nothing open.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SimulatedCall } from './call.js';
import { bearerToken, openAIError, recordHandshake, refuseCredential } from './handshake.js';
import type { HandshakePolicy } from './handshake.js';
import type { SessionSettings } from './session.js';
import { isObject } from './shapes.js';
import type { Json } from './shapes.js';
import { answerOffer, looksLikeSdpOffer } from './webrtc-peer.js';

const CALLS_PATH = '/v1/realtime/calls';
const CALL_ACTION_PATH = /^\/v1\/realtime\/calls\/([^/]+)\/(hangup|accept|reject|refer)$/;
type CallAction = 'hangup' | 'accept' | 'reject' | 'refer';
/** An SDP offer is a few kilobytes; anything far larger is not one. */
const MAX_BODY_BYTES = 256 * 1024;
const DEFAULT_MODEL = 'gpt-realtime';

const CORS_HEADERS = {
  'Access-Control-Allow-Origin': '*',
  // The Agents SDK's browser transport reads the call id from Location.
  'Access-Control-Expose-Headers': 'Location',
};

export interface CallRoutes {
  /** Answers the request when it is one of the call endpoints; false when it is not. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

export interface CallRoutesOptions {
  policy: HandshakePolicy;
  calls: Map<string, SimulatedCall>;
  /** Settings for a new call's session (numbered with the simulator's other sessions). */
  sessionSettings(): SessionSettings;
  /** False once the simulator is closing: a call answered meanwhile is ended at once. */
  accepting(): boolean;
  /** Told once when a call ends, however it ends. */
  callEnded(call: SimulatedCall): void;
  connectTimeoutMs: number;
}

class RequestProblem extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, { ...CORS_HEADERS, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) }).end(payload);
}

function sendProblem(res: ServerResponse, problem: RequestProblem): void {
  const type = problem.status >= 500 ? 'server_error' : 'invalid_request_error';
  sendJson(res, problem.status, { error: { message: problem.message, type, param: problem.param, code: problem.code } });
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new RequestProblem(413, `Request body too large: at most ${MAX_BODY_BYTES} bytes.`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** A JSON object body; an empty body reads as `{}`. */
async function readJsonBody(req: IncomingMessage): Promise<Json> {
  const raw = (await readBody(req)).toString('utf8');
  if (raw.trim() === '') return {};
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw new RequestProblem(400, 'We could not parse the JSON body of your request.', null, 'invalid_json');
  }
  if (!isObject(body)) throw new RequestProblem(400, 'The request body must be a JSON object.', null, 'invalid_json');
  return body;
}

interface CallRequest {
  offerSdp: string;
  session: Json;
}

/** The offer and the session config, from either of the two shapes OpenAI accepts. */
async function readCallRequest(req: IncomingMessage, contentType: string): Promise<CallRequest> {
  const mediaType = contentType.split(';')[0]!.trim().toLowerCase();
  if (mediaType === 'application/sdp') {
    return { offerSdp: (await readBody(req)).toString('utf8'), session: {} };
  }
  if (mediaType === 'multipart/form-data') {
    let form: FormData;
    try {
      form = await new Response(await readBody(req), { headers: { 'content-type': contentType } }).formData();
    } catch (err) {
      if (err instanceof RequestProblem) throw err;
      throw new RequestProblem(400, 'Invalid multipart/form-data body.');
    }
    const sdp = form.get('sdp');
    if (sdp === null) throw new RequestProblem(400, "Missing required parameter: 'sdp'.", 'sdp', 'missing_required_parameter');
    const offerSdp = typeof sdp === 'string' ? sdp : await sdp.text();
    const rawSession = form.get('session');
    if (rawSession === null) return { offerSdp, session: {} };
    let session: unknown;
    try {
      session = JSON.parse(typeof rawSession === 'string' ? rawSession : await rawSession.text());
    } catch {
      throw new RequestProblem(400, "Invalid 'session': expected a JSON object.", 'session', 'invalid_value');
    }
    if (!isObject(session)) throw new RequestProblem(400, "Invalid 'session': expected a JSON object.", 'session', 'invalid_value');
    if (session.type !== undefined && session.type !== 'realtime') {
      throw new RequestProblem(400, `Invalid value: '${String(session.type)}'. Supported values are: 'realtime'.`, 'session.type', 'invalid_value');
    }
    return { offerSdp, session };
  }
  throw new RequestProblem(400, `Unsupported content type: '${mediaType}'. Send the SDP offer as application/sdp or multipart/form-data.`, null, 'unsupported_content_type');
}

export function createCallRoutes({ policy, calls, sessionSettings, accepting, callEnded, connectTimeoutMs }: CallRoutesOptions): CallRoutes {
  function authorize(req: IncomingMessage): RequestProblem | null {
    const refusal = refuseCredential(bearerToken(recordHandshake(req).headers), policy);
    if (refusal === null) return null;
    const body = refusal.body as { error: { message: string; code: string | null } };
    return new RequestProblem(refusal.status, body.error.message, null, body.error.code);
  }

  async function createCall(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const denied = authorize(req);
    if (denied !== null) {
      req.resume();
      sendProblem(res, denied);
      return;
    }
    const { offerSdp, session } = await readCallRequest(req, req.headers['content-type'] ?? '');
    if (!looksLikeSdpOffer(offerSdp)) throw new RequestProblem(400, 'Invalid SDP offer.', 'sdp', 'invalid_offer');
    const model = typeof session.model === 'string' && session.model !== '' ? session.model : url.searchParams.get('model') || DEFAULT_MODEL;
    let peer;
    try {
      peer = await answerOffer(offerSdp);
    } catch {
      throw new RequestProblem(400, 'Invalid SDP offer.', 'sdp', 'invalid_offer');
    }
    if (!accepting()) {
      await peer.pc.close().catch(() => {});
      throw new RequestProblem(503, 'The simulator is shutting down.');
    }
    const id = newCallId();
    const opening = { sessionType: 'realtime' as const, model, missingModel: false, betaRequested: false };
    const call = new SimulatedCall({ id, peer, settings: sessionSettings(), opening, connectTimeoutMs, onEnded: callEnded });
    const problem = call.configure({ ...session, model });
    if (problem !== null) {
      call.end(1000, '');
      throw new RequestProblem(400, problem, /'([^']+)'/.exec(problem)?.[1] ?? null, 'unknown_parameter');
    }
    calls.set(id, call);
    // The client may already be gone; the peer then never connects, and the call ends with the simulator.
    res.writeHead(201, { ...CORS_HEADERS, 'Content-Type': 'application/sdp', Location: `${CALLS_PATH}/${id}`, 'Content-Length': Buffer.byteLength(peer.answerSdp) }).end(peer.answerSdp);
  }

  async function act(req: IncomingMessage, res: ServerResponse, callId: string, action: CallAction): Promise<void> {
    const denied = authorize(req);
    if (denied !== null) {
      req.resume();
      return sendProblem(res, denied);
    }
    const body = action === 'hangup' ? (req.resume(), {}) : await readJsonBody(req);
    const call = calls.get(callId);
    if (call === undefined) throw new RequestProblem(404, `Call '${callId}' not found.`, 'call_id', 'call_not_found');
    switch (action) {
      case 'hangup':
        call.finish({ by: 'hangup' });
        break;
      case 'accept': {
        if (!call.isRinging) throw new RequestProblem(400, `Call '${callId}' is not ringing: only an incoming phone call can be accepted, once.`, 'call_id', 'call_not_ringing');
        if (body.type !== 'realtime') throw new RequestProblem(400, `Invalid value: '${String(body.type)}'. Supported values are: 'realtime'.`, 'type', 'invalid_value');
        const problem = call.accept(body);
        if (problem !== null) throw new RequestProblem(400, problem, null, 'unknown_parameter');
        break;
      }
      case 'reject': {
        if (!call.isRinging) throw new RequestProblem(400, `Call '${callId}' is not ringing: only an incoming phone call can be rejected.`, 'call_id', 'call_not_ringing');
        const statusCode = body.status_code ?? 603;
        if (typeof statusCode !== 'number' || !Number.isInteger(statusCode) || statusCode < 400 || statusCode > 699) {
          throw new RequestProblem(400, 'Invalid value: status_code must be a SIP final status from 400 to 699.', 'status_code', 'invalid_value');
        }
        call.finish({ by: 'reject', statusCode });
        break;
      }
      case 'refer': {
        if (!call.isPhoneCall) throw new RequestProblem(400, `Call '${callId}' is not a phone call: only a SIP call can be referred.`, 'call_id', 'call_not_sip');
        const target = body.target_uri;
        if (typeof target !== 'string' || !/^(sip|sips|tel):\S+$/.test(target)) {
          throw new RequestProblem(400, "Invalid value: target_uri must be a sip:, sips: or tel: URI.", 'target_uri', typeof target === 'string' ? 'invalid_value' : 'missing_required_parameter');
        }
        call.finish({ by: 'refer', targetUri: target });
        break;
      }
    }
    res.writeHead(200, { ...CORS_HEADERS, 'Content-Length': 0 }).end();
  }

  function preflight(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    res
      .writeHead(204, {
        ...CORS_HEADERS,
        'Access-Control-Allow-Methods': 'POST, OPTIONS',
        'Access-Control-Allow-Headers': 'Authorization, Content-Type, X-OpenAI-Agents-SDK',
        'Access-Control-Max-Age': '600',
      })
      .end();
  }

  return {
    handle(req, res) {
      const url = new URL(req.url ?? '/', 'http://simulator');
      const path = url.pathname;
      const actionMatch = CALL_ACTION_PATH.exec(path);
      if (path !== CALLS_PATH && actionMatch === null) return false;
      if (req.method === 'OPTIONS') {
        preflight(req, res);
        return true;
      }
      if (req.method !== 'POST') return false;
      const answering = actionMatch !== null ? act(req, res, decodeURIComponent(actionMatch[1]!), actionMatch[2] as CallAction) : createCall(req, res, url);
      answering.catch((err: unknown) => {
        req.resume();
        if (res.headersSent) return;
        sendProblem(res, err instanceof RequestProblem ? err : new RequestProblem(500, 'The server had an error while processing your request.'));
      });
      return true;
    },
  };
}

export function newCallId(): string {
  return `rtc_${randomBytes(12).toString('hex')}`;
}

/** OpenAI's 404 for a sideband upgrade naming a call that does not exist (or has ended). */
export function unknownCallBody(callId: string): unknown {
  return openAIError(`Call '${callId}' not found.`, 'invalid_request_error', 'call_not_found');
}

/** The refusal of a sideband upgrade to a phone call nobody has accepted yet. */
export function ringingCallBody(callId: string): unknown {
  return openAIError(`Call '${callId}' has not been accepted: accept it before joining its session.`, 'invalid_request_error', 'call_not_accepted');
}
