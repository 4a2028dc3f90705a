import type { Hono } from 'hono';
import type { Actor } from 'xstate';
import type { RelayError } from '../../errors.js';
import type { SessionMachine } from '../../machines/session.js';
import type { CallLink } from '../call-link.js';
import type { Admission, Gatekeeper, PhoneDirectory } from '../ports.js';
import type { LinkTimings, SessionObserver } from '../session-link.js';
import type { UpgradeEnv } from '../upgrade.js';
import type { Upstream } from '../upstream.js';
import { CallDesk } from './call-desk.js';
import { tenantCallControl } from './tenant-control.js';
import { sipWebhook } from './webhook.js';

/** How an incoming call ended before any session began, for logs and metrics. */
export type PhoneCallOutcome = 'unrouted' | 'refused' | 'busy' | 'forwarded' | 'tenant_rejected' | 'tenant_referred' | 'tenant_timeout' | 'forward_failed' | 'accepted' | 'accept_failed';

export interface PhoneCallEvents {
  /** An incoming call was decided (every call is, once). `reason` explains a refusal. */
  decided?(call: { upstreamCallId: string; callId: string | null; keyName: string | null; outcome: PhoneCallOutcome; sipStatus: number | null; reason: string | null }): void;
  /** A webhook was refused or ignored. */
  webhook?(verdict: 'invalid_signature' | 'invalid_event' | 'replayed' | 'ignored' | 'not_configured'): void;
  /** A call control request to the upstream failed (the call may be left to ring out). */
  controlFailed?(upstreamCallId: string, action: string, error: RelayError): void;
}

export interface PhoneCallsOptions {
  /** OPENAI_WEBHOOK_SECRET; without it the webhook refuses every request. */
  webhookSecret: string | undefined;
  directory: PhoneDirectory;
  gatekeeper: Gatekeeper;
  /** The upstream whose SIP trunk the calls come in on; null when none takes calls. */
  upstream: Upstream | null;
  statuses: { unrouted: number; refused: number; busy: number };
  tenantTimeoutMs: number;
  timings: LinkTimings;
  observer?: SessionObserver;
  events?: PhoneCallEvents;
  isShuttingDown(): boolean;
  run(link: CallLink, admission: Admission): Actor<SessionMachine>;
  findCall(callId: string): { link: CallLink; actor: Actor<SessionMachine> } | undefined;
}

export interface PhoneCalls {
  /** `POST /v1/sip/webhook`. */
  webhook: Hono<UpgradeEnv>;
  /** `POST /v1/realtime/calls/{id}/accept|reject|refer`, for the tenant that owns the call. */
  control: Hono<UpgradeEnv>;
  /** Rejects every call still waiting for its tenant (shutdown). */
  close(): Promise<void>;
}

/**
 * OpenAI's SIP interface through the relay. The operator registers
 * `POST /v1/sip/webhook` with OpenAI; each verified, first-seen
 * `realtime.call.incoming` is routed to a tenant's key. A route without a
 * tenant webhook is accepted at once and metered as one session (transport
 * `sip`); with one, the event goes to the tenant re-signed with its secret
 * and the relay's call id, and the tenant accepts, rejects or refers through
 * the relay. Unrouted calls and keys that cannot pay are rejected upstream
 * before any audio is billed.
 */
export function phoneCalls(options: PhoneCallsOptions): PhoneCalls {
  const desk = new CallDesk(options);
  return { webhook: sipWebhook(options, desk), control: tenantCallControl(options, desk), close: () => desk.close() };
}
