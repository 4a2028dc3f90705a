/**
 * OpenAI's SIP interface on the simulator: it "places" a phone call (a call
 * ringing at the simulator, announced with a signed `realtime.call.incoming`
 * webhook, as OpenAI's SIP trunk announces one), and serves the call control
 * endpoints `POST /v1/realtime/calls/{id}/accept|reject|refer`. An accepted
 * call is a WebRTC call without media: its session runs, sideband sockets
 * join it, hangup ends it. Once someone listens on a sideband, the caller
 * "speaks" its scripted turns, one response each, one after another.
 *
 * Test controls (no key): `POST /sim/sip/calls` places a call,
 * `GET /sim/sip/calls/{id}` tells its state, `POST /sim/sip/calls/{id}/redeliver`
 * sends its webhook again under the same id, `POST /sim/sip/calls/{id}/hangup`
 * ends it from the caller's side, `POST /sim/sip/calls/{id}/drop-sidebands`
 * cuts its sideband sockets.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Webhook } from 'standardwebhooks';
import { SimulatedCall } from './call.js';
import { bearerToken, recordHandshake, refuseCredential } from './handshake.js';
import type { HandshakePolicy } from './handshake.js';
import type { SessionSettings } from './session.js';
import { isObject } from './shapes.js';
import type { Json } from './shapes.js';

const CONTROL_PATH = /^\/v1\/realtime\/calls\/([^/]+)\/(accept|reject|refer)$/;
const SIM_CALLS = '/sim/sip/calls';
const SIM_CALL = /^\/sim\/sip\/calls\/([^/]+)(?:\/(redeliver|hangup|drop-sidebands))?$/;
const MAX_BODY_BYTES = 64 * 1024;
const DEFAULT_MODEL = 'gpt-realtime';

export interface SipWebhookTarget {
  url: string;
  /** Standard Webhooks secret, whsec_… */
  secret: string;
}

export interface PlaceCallRequest {
  /** The called number: the user part of the `To` header. Default +15550100000. */
  to?: string;
  from?: string;
  /** More SIP headers, after From and To. */
  headers?: Array<{ name: string; value: string }>;
  /** Responses the caller's speech starts once a sideband listens; `usage` is what each `response.done` reports. */
  turns?: Array<{ usage?: unknown }>;
  /** The caller hangs up after its last turn. */
  hangUpAfterTurns?: boolean;
  /** Where the webhook goes; by default the simulator's own setting. */
  webhook?: SipWebhookTarget;
}

export interface PlacedCall {
  callId: string;
  webhookId: string;
  /** The receiver's answer; null when it could not be reached. */
  webhookStatus: number | null;
}

export interface SipCallState {
  callId: string;
  state: 'ringing' | 'accepted' | 'rejected' | 'referred' | 'ended';
  rejectStatus: number | null;
  referTarget: string | null;
  /** The session config the call was accepted with. */
  session: Json | null;
  turnsDone: number;
  webhookDeliveries: number;
}

interface SipCall extends SipCallState {
  request: PlaceCallRequest;
  target: SipWebhookTarget;
  body: string;
  call: SimulatedCall | null;
  nextTurn: number;
  webhookId: string;
}

class Problem extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) }).end(payload);
}

function sendProblem(res: ServerResponse, problem: Problem): void {
  sendJson(res, problem.status, { error: { message: problem.message, type: problem.status >= 500 ? 'server_error' : 'invalid_request_error', param: null, code: problem.code } });
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new Problem(413, `Request body too large: at most ${MAX_BODY_BYTES} bytes.`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Problem(400, 'The body is not JSON.', 'invalid_json');
  }
  if (!isObject(value)) throw new Problem(400, 'The body is not a JSON object.', 'invalid_json');
  return value as Record<string, unknown>;
}

function publicState(call: SipCall): SipCallState {
  const { callId, state, rejectStatus, referTarget, session, turnsDone, webhookDeliveries } = call;
  return { callId, state, rejectStatus, referTarget, session, turnsDone, webhookDeliveries };
}

export interface SipSwitchOptions {
  policy: HandshakePolicy;
  /** The simulator's live calls (WebRTC and accepted phone calls): hangup and sidebands find them there. */
  calls: Map<string, SimulatedCall>;
  sessionSettings(): SessionSettings;
  webhook?: SipWebhookTarget;
}

export class SipSwitch {
  private readonly sipCalls = new Map<string, SipCall>();
  private webhook: SipWebhookTarget | undefined;

  constructor(private readonly options: SipSwitchOptions) {
    if (options.webhook) this.setWebhook(options.webhook);
  }

  setWebhook(target: SipWebhookTarget): void {
    new Webhook(target.secret); // Throws for a secret that is not one.
    this.webhook = target;
  }

  state(callId: string): SipCallState | undefined {
    const call = this.sipCalls.get(callId);
    return call ? publicState(call) : undefined;
  }

  /** Rings a new call and announces it with a signed webhook; resolves once the receiver answered (or could not be reached). */
  async place(request: PlaceCallRequest = {}): Promise<PlacedCall> {
    const target = request.webhook ?? this.webhook;
    if (!target) throw new Problem(400, 'No webhook to announce the call to: set SIM_SIP_WEBHOOK_URL and SIM_SIP_WEBHOOK_SECRET, or pass "webhook".', 'no_webhook');
    new Webhook(target.secret);
    const callId = `rtc_${randomBytes(12).toString('hex')}`;
    const to = request.to ?? '+15550100000';
    const from = request.from ?? '+15550199999';
    const body = JSON.stringify({
      object: 'event',
      id: `evt_${randomBytes(12).toString('hex')}`,
      type: 'realtime.call.incoming',
      created_at: Math.floor(Date.now() / 1000),
      data: {
        call_id: callId,
        sip_headers: [
          { name: 'From', value: `"Caller" <sip:${from}@carrier.example>;tag=${randomBytes(4).toString('hex')}` },
          { name: 'To', value: `<sip:${to}@sip.api.openai.com>` },
          { name: 'Call-ID', value: `${randomBytes(8).toString('hex')}@carrier.example` },
          ...(request.headers ?? []),
        ],
      },
    });
    const webhookId = `wh_${randomBytes(12).toString('hex')}`;
    const call: SipCall = { callId, state: 'ringing', rejectStatus: null, referTarget: null, session: null, turnsDone: 0, webhookDeliveries: 0, request, target, body, call: null, nextTurn: 0, webhookId };
    this.sipCalls.set(callId, call);
    return { callId, webhookId, webhookStatus: await this.deliver(call, webhookId) };
  }

  /** Sends a call's webhook again under its first id, as a redelivery does. */
  async redeliver(callId: string): Promise<PlacedCall> {
    const call = this.sipCalls.get(callId);
    if (!call) throw new Problem(404, `Call '${callId}' not found.`, 'call_not_found');
    return { callId, webhookId: call.webhookId, webhookStatus: await this.deliver(call, call.webhookId) };
  }

  private async deliver(call: SipCall, webhookId: string): Promise<number | null> {
    call.webhookDeliveries++;
    const now = new Date();
    try {
      const response = await fetch(call.target.url, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'webhook-id': webhookId,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': new Webhook(call.target.secret).sign(webhookId, now, call.body),
        },
        body: call.body,
        redirect: 'manual',
        signal: AbortSignal.timeout(10_000),
      });
      await response.body?.cancel().catch(() => undefined);
      return response.status;
    } catch {
      return null;
    }
  }

  /** Ends an accepted call from the caller's side. */
  hangUp(callId: string): boolean {
    const call = this.sipCalls.get(callId);
    if (!call?.call) return false;
    call.call.end(1000, '');
    return true;
  }

  dropSidebands(callId: string): number {
    return this.sipCalls.get(callId)?.call?.dropSidebands() ?? 0;
  }

  private authorize(req: IncomingMessage): void {
    const refusal = refuseCredential(bearerToken(recordHandshake(req).headers), this.options.policy);
    if (refusal === null) return;
    const body = refusal.body as { error: { message: string; code: string | null } };
    throw new Problem(refusal.status, body.error.message, body.error.code);
  }

  private ringing(callId: string): SipCall {
    const call = this.sipCalls.get(callId);
    if (!call) throw new Problem(404, `Call '${callId}' not found.`, 'call_not_found');
    if (call.state !== 'ringing') throw new Problem(400, `Call '${callId}' is ${call.state}, not ringing.`, 'call_not_ringing');
    return call;
  }

  private accept(call: SipCall, body: Record<string, unknown>): void {
    if (body.type !== undefined && body.type !== 'realtime') throw new Problem(400, `Invalid value: '${String(body.type)}'. Supported values are: 'realtime'.`, 'invalid_value');
    const model = typeof body.model === 'string' && body.model !== '' ? body.model : DEFAULT_MODEL;
    const base = this.options.sessionSettings();
    const serialize = base.tap?.serialize;
    // The caller speaks its next turn once the last response is done.
    const settings: SessionSettings = {
      ...base,
      tap: {
        ...base.tap,
        serialize: (event) => {
          if (event.type === 'response.done') setImmediate(() => this.turnDone(call));
          return serialize ? serialize(event) : JSON.stringify(event);
        },
      },
    };
    const simulated = new SimulatedCall(call.callId, null, settings, { sessionType: 'realtime', model, missingModel: false, betaRequested: false }, (ended) => {
      this.options.calls.delete(ended.id);
      call.state = call.state === 'referred' ? 'referred' : 'ended';
    });
    const { type: _type, ...session } = body;
    const problem = simulated.configure({ ...session, model } as Json);
    if (problem !== null) {
      simulated.end(1000, '');
      throw new Problem(400, problem, 'unknown_parameter');
    }
    call.state = 'accepted';
    call.session = { ...session, model } as Json;
    call.call = simulated;
    this.options.calls.set(call.callId, simulated);
    simulated.onJoined = () => {
      simulated.onJoined = null;
      setImmediate(() => this.speak(call));
    };
  }

  private speak(call: SipCall): void {
    const turns = call.request.turns ?? [];
    if (!call.call || call.call.isEnded) return;
    if (call.nextTurn >= turns.length) {
      if (call.request.hangUpAfterTurns && turns.length > 0) call.call.end(1000, '');
      return;
    }
    const turn = turns[call.nextTurn++]!;
    const metadata = turn.usage === undefined ? undefined : { sim_usage: JSON.stringify(turn.usage) };
    call.call.act({ type: 'response.create', response: metadata ? { metadata } : {} } as Json);
  }

  private turnDone(call: SipCall): void {
    call.turnsDone++;
    if (call.turnsDone === call.nextTurn) this.speak(call);
  }

  /** Answers the request when it is one of the SIP endpoints; false when it is not. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const path = new URL(req.url ?? '/', 'http://simulator').pathname;
    const control = CONTROL_PATH.exec(path);
    const sim = SIM_CALL.exec(path);
    if (req.method === 'POST' && control) {
      this.answer(req, res, async (body) => {
        this.authorize(req);
        const action = control[2]!;
        const live = this.sipCalls.get(decodeURIComponent(control[1]!));
        // A live call is transferred too: it ends here once referred.
        const call = action === 'refer' && live?.state === 'accepted' ? live : this.ringing(decodeURIComponent(control[1]!));
        if (action === 'accept') this.accept(call, body);
        else if (action === 'reject') {
          const status = body.status_code ?? 603;
          if (typeof status !== 'number' || !Number.isInteger(status) || status < 400 || status > 699) throw new Problem(400, "Invalid 'status_code': expected a SIP status from 400 to 699.", 'invalid_value');
          call.state = 'rejected';
          call.rejectStatus = status;
        } else {
          if (typeof body.target_uri !== 'string' || !/^(sips?|tel):/.test(body.target_uri)) throw new Problem(400, "Missing required parameter: 'target_uri'.", 'missing_required_parameter');
          call.state = 'referred';
          call.referTarget = body.target_uri;
          call.call?.end(1000, '');
        }
        return null;
      });
      return true;
    }
    if (path === SIM_CALLS && req.method === 'POST') {
      this.answer(req, res, async (body) => this.place(body as PlaceCallRequest));
      return true;
    }
    if (sim && req.method === 'GET' && sim[2] === undefined) {
      req.resume();
      const state = this.state(decodeURIComponent(sim[1]!));
      if (state) sendJson(res, 200, state);
      else sendProblem(res, new Problem(404, 'No such call.', 'call_not_found'));
      return true;
    }
    if (sim && req.method === 'POST' && sim[2] !== undefined) {
      const callId = decodeURIComponent(sim[1]!);
      this.answer(req, res, async () => {
        if (sim[2] === 'redeliver') return this.redeliver(callId);
        if (sim[2] === 'hangup') return { hungUp: this.hangUp(callId) };
        return { dropped: this.dropSidebands(callId) };
      });
      return true;
    }
    return false;
  }

  private answer(req: IncomingMessage, res: ServerResponse, work: (body: Record<string, unknown>) => Promise<unknown>): void {
    readJson(req)
      .then(work)
      .then((result) => (result === null ? res.writeHead(200, { 'Content-Length': 0 }).end() : sendJson(res, 200, result)))
      .catch((error: unknown) => {
        req.resume();
        if (res.headersSent) return;
        sendProblem(res, error instanceof Problem ? error : new Problem(500, 'The server had an error while processing your request.'));
      });
  }

  /** Ends every phone call (the simulator is closing). */
  close(): void {
    for (const call of this.sipCalls.values()) call.call?.end(1001, '');
  }
}
