/**
 * The simulator's incoming phone calls, as OpenAI's SIP trunk places them: a
 * ringing call without media (answered at `POST /v1/realtime/calls/{id}/accept`,
 * `/reject` or `/refer`, see calls-http), announced by a signed
 * `realtime.call.incoming` webhook. Once accepted and joined by a sideband,
 * the caller "speaks" its scripted turns: one response each, the next once
 * the last is done, and may hang up after the last.
 *
 * Test controls over HTTP (no key): `POST /sim/sip/calls` places a call,
 * `GET /sim/sip/calls/{id}` tells its state, `POST /sim/sip/calls/{id}/redeliver`
 * sends its webhook again under the same id, `POST /sim/sip/calls/{id}/hangup`
 * ends it from the caller's side, `POST /sim/sip/calls/{id}/drop-sidebands`
 * cuts its sideband sockets.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Webhook } from 'standardwebhooks';
import { SimulatedCall } from './call.js';
import { newCallId } from './calls-http.js';
import { deliverWebhook, incomingCallEvent, newWebhookId, webhookSigner, type SipHeader, type WebhookDelivery } from './incoming-call.js';
import type { SessionSettings } from './session.js';
import { isObject } from './shapes.js';
import type { Json } from './shapes.js';
import type { IncomingCallOptions, PlacedCall, SipCallState } from './types.js';

const SIM_CALLS = '/sim/sip/calls';
const SIM_CALL = /^\/sim\/sip\/calls\/([^/]+)(?:\/(redeliver|hangup|drop-sidebands))?$/;
const MAX_BODY_BYTES = 64 * 1024;

interface Target {
  url: string;
  signer: Webhook;
}

interface PhoneCall {
  call: SimulatedCall;
  event: Json;
  webhookId: string;
  target: Target | null;
  turns: Array<{ usage?: unknown }>;
  hangUpAfterTurns: boolean;
  nextTurn: number;
  turnsDone: number;
  deliveries: number;
}

export interface PhoneLineOptions {
  /** The simulator's live calls: hangup, accept and sidebands find a call there. */
  calls: Map<string, SimulatedCall>;
  sessionSettings(): SessionSettings;
  connectTimeoutMs: number;
  onEnded(call: SimulatedCall): void;
  isClosing(): boolean;
  webhook?: { url: string; secret: string };
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

/** A bare number is dialled at OpenAI's SIP domain; anything else is the To header as given. */
function toHeader(to: string | undefined): string {
  if (to === undefined) return 'sip:+15550199@sip.api.openai.com';
  return /[:<]/.test(to) ? to : `<sip:${to}@sip.api.openai.com>`;
}

export class PhoneLine {
  private readonly placed = new Map<string, PhoneCall>();
  private webhook: Target | null;

  constructor(private readonly options: PhoneLineOptions) {
    this.webhook = options.webhook ? { url: options.webhook.url, signer: webhookSigner(options.webhook.secret) } : null;
  }

  setWebhook(target: { url: string; secret: string }): void {
    this.webhook = { url: target.url, signer: webhookSigner(target.secret) };
  }

  /** Rings a call and announces it; resolves after the webhook was posted, when one is configured. */
  async place(request: IncomingCallOptions = {}): Promise<PlacedCall> {
    if (this.options.isClosing()) throw new Error('simulator: closed');
    const id = newCallId();
    const phone: Partial<PhoneCall> = {};
    const base = this.options.sessionSettings();
    const serialize = base.tap?.serialize;
    // The caller speaks its next turn once the last response is done.
    const settings: SessionSettings = {
      ...base,
      tap: {
        ...base.tap,
        serialize: (event) => {
          if (event.type === 'response.done') setImmediate(() => this.turnDone(phone as PhoneCall));
          return serialize ? serialize(event) : JSON.stringify(event);
        },
      },
    };
    const opening = { sessionType: 'realtime' as const, model: 'gpt-realtime', missingModel: false, betaRequested: false };
    const call = new SimulatedCall({ id, peer: null, settings, opening, connectTimeoutMs: this.options.connectTimeoutMs, onEnded: this.options.onEnded });
    const sipHeaders: SipHeader[] = [
      { name: 'From', value: request.from ?? '"Caller" <sip:+15550100@pstn.example>;tag=sim' },
      { name: 'To', value: toHeader(request.to) },
      { name: 'Call-ID', value: `${id}@simulator` },
      ...(request.sipHeaders ?? []),
    ];
    Object.assign(phone, {
      call,
      event: incomingCallEvent(id, sipHeaders),
      webhookId: newWebhookId(),
      target: request.webhook ? { url: request.webhook.url, signer: webhookSigner(request.webhook.secret) } : this.webhook,
      turns: request.turns ?? [],
      hangUpAfterTurns: request.hangUpAfterTurns ?? false,
      nextTurn: 0,
      turnsDone: 0,
      deliveries: 0,
    } satisfies PhoneCall);
    this.placed.set(id, phone as PhoneCall);
    this.options.calls.set(id, call);
    call.onJoined = () => {
      call.onJoined = null;
      setImmediate(() => this.speak(phone as PhoneCall));
    };
    return { callId: id, webhookId: phone.webhookId!, webhook: await this.deliver(phone as PhoneCall) };
  }

  /** Sends a call's webhook again under its first id, as a redelivery does. */
  async redeliver(callId: string): Promise<PlacedCall> {
    const phone = this.placed.get(callId);
    if (!phone) throw new Problem(404, `Call '${callId}' not found.`, 'call_not_found');
    return { callId, webhookId: phone.webhookId, webhook: await this.deliver(phone) };
  }

  private async deliver(phone: PhoneCall): Promise<WebhookDelivery | null> {
    if (!phone.target) return null;
    phone.deliveries++;
    return deliverWebhook(phone.target.url, phone.target.signer, phone.event, phone.webhookId);
  }

  state(callId: string): SipCallState | undefined {
    const phone = this.placed.get(callId);
    if (!phone) return undefined;
    const { call } = phone;
    const ending = call.isEnded ? call.endedBy : null;
    return {
      callId,
      state: ending?.by === 'reject' ? 'rejected' : ending?.by === 'refer' ? 'referred' : ending ? 'ended' : call.isRinging ? 'ringing' : 'accepted',
      rejectStatus: ending?.by === 'reject' ? ending.statusCode : null,
      referTarget: ending?.by === 'refer' ? ending.targetUri : null,
      session: call.acceptedWith,
      turnsDone: phone.turnsDone,
      webhookDeliveries: phone.deliveries,
    };
  }

  /** The caller hangs up an accepted call. */
  hangUp(callId: string): boolean {
    const phone = this.placed.get(callId);
    if (!phone || phone.call.isEnded || phone.call.isRinging) return false;
    phone.call.finish({ by: 'hangup' });
    return true;
  }

  dropSidebands(callId: string): number {
    return this.placed.get(callId)?.call.dropSidebands() ?? 0;
  }

  private speak(phone: PhoneCall): void {
    const { call, turns } = phone;
    if (call.isEnded) return;
    if (phone.nextTurn >= turns.length) {
      if (phone.hangUpAfterTurns && turns.length > 0) call.finish({ by: 'hangup' });
      return;
    }
    const turn = turns[phone.nextTurn++]!;
    const metadata = turn.usage === undefined ? undefined : { sim_usage: JSON.stringify(turn.usage) };
    call.act({ type: 'response.create', response: metadata ? { metadata } : {} } as Json);
  }

  private turnDone(phone: PhoneCall): void {
    phone.turnsDone++;
    if (phone.turnsDone === phone.nextTurn) this.speak(phone);
  }

  /** Answers the request when it is one of the test controls; false when it is not. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const path = new URL(req.url ?? '/', 'http://simulator').pathname;
    const sim = SIM_CALL.exec(path);
    if (path === SIM_CALLS && req.method === 'POST') {
      this.answer(req, res, (body) => this.place(body as IncomingCallOptions));
      return true;
    }
    if (sim && req.method === 'GET' && sim[2] === undefined) {
      req.resume();
      const state = this.state(decodeURIComponent(sim[1]!));
      if (state) sendJson(res, 200, state);
      else sendJson(res, 404, { error: { message: 'No such call.', type: 'invalid_request_error', param: null, code: 'call_not_found' } });
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
      .then((result) => sendJson(res, 200, result))
      .catch((error: unknown) => {
        req.resume();
        if (res.headersSent) return;
        const problem = error instanceof Problem ? error : new Problem(error instanceof RangeError ? 400 : 500, error instanceof RangeError ? error.message : 'The server had an error while processing your request.');
        sendJson(res, problem.status, { error: { message: problem.message, type: problem.status >= 500 ? 'server_error' : 'invalid_request_error', param: null, code: problem.code } });
      });
  }
}
