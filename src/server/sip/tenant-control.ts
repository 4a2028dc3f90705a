import type { Context } from 'hono';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { RelayError, asRelayError } from '../../errors.js';
import { isClientSecret } from '../../protocol/client-secret.js';
import { refuse, refuseWith } from '../calls.js';
import { bearer, identifyCaller } from '../handshake.js';
import type { Admission } from '../ports.js';
import type { UpgradeEnv } from '../upgrade.js';
import type { CallDesk } from './call-desk.js';
import { jsonBody } from './http.js';
import type { PendingCall } from './pending.js';
import type { PhoneCallOutcome, PhoneCallsOptions } from './phone-calls.js';

const MAX_CONTROL_BYTES = 64 * 1024;
const REFER_TARGET = '"target_uri" is a sip:, sips: or tel: URI of at most 256 characters.';
const TARGET_URI = /^(sips?|tel):[^\s\u0000-\u001f\u007f<>"]{1,250}$/i;

/**
 * `POST /v1/realtime/calls/{id}/accept|reject|refer` for the tenant whose
 * route forwarded the call, with its relay key; any other key is told the
 * call does not exist. Accepting starts the call's metered session.
 */
export function tenantCallControl(options: PhoneCallsOptions, desk: CallDesk): Hono<UpgradeEnv> {
  const { statuses } = options;
  const { pending } = desk;

  const controlApp = new Hono<UpgradeEnv>();
  controlApp.post(
    '/:callId/:action{accept|reject|refer}',
    bodyLimit({ maxSize: MAX_CONTROL_BYTES, onError: (c) => refuse(c, 'request_too_large') }),
    async (c) => {
      const key = bearer(c.req.header('authorization'));
      // A client secret is handed to a browser: it must not answer, refuse or transfer its key's phone calls.
      if (key !== undefined && isClientSecret(key)) return refuse(c, 'client_secret_not_allowed');
      const caller = await identifyCaller(options.gatekeeper, key);
      if (caller instanceof RelayError) return refuseWith(c, caller);
      const callId = c.req.param('callId');
      const action = c.req.param('action') as 'accept' | 'reject' | 'refer';
      const body = await jsonBody(c);
      if (body === null) return refuse(c, 'invalid_json');
      const waiting = pending.get(callId);
      // Another key's call is not told apart from no call at all.
      if (waiting && waiting.admission.caller.keyId === caller.keyId) return decide(c, waiting, action, body);
      const live = options.findCall(callId);
      if (!live || live.link.transport !== 'sip' || live.link.caller.keyId !== caller.keyId) return refuse(c, 'call_not_found');
      if (action !== 'refer') return refuse(c, 'call_not_pending');
      const target = referTarget(body);
      if (target === null) return refuse(c, 'invalid_call_control', REFER_TARGET);
      const { upstream, upstreamCallId } = live.link.call;
      if (!upstream || !upstreamCallId) return refuse(c, 'call_not_pending');
      // The upstream ends the call once it is transferred; its session then settles.
      const failure = await desk.control(upstream, upstreamCallId, 'refer', { target_uri: target });
      return failure ? refuseWith(c, failure) : c.body(null, 200);
    },
  );

  function referTarget(body: Record<string, unknown>): string | null {
    const target = body.target_uri;
    return typeof target === 'string' && TARGET_URI.test(target) ? target : null;
  }

  async function decide(c: Context, waiting: PendingCall, action: 'accept' | 'reject' | 'refer', body: Record<string, unknown>): Promise<Response> {
    const decided = (outcome: PhoneCallOutcome, sipStatus: number | null, reason: string | null = null) => desk.decided(waiting, outcome, sipStatus, reason);
    if (action === 'reject') {
      const status = body.status_code ?? statuses.refused;
      if (typeof status !== 'number' || !Number.isInteger(status) || status < 400 || status > 699) return refuse(c, 'invalid_call_control', '"status_code" is a SIP status from 400 to 699.');
      if (!pending.take(waiting.callId)) return refuse(c, 'call_not_pending');
      waiting.admission.release();
      decided('tenant_rejected', status);
      const failure = await desk.reject(waiting.upstream, waiting.upstreamCallId, status);
      return failure ? refuseWith(c, failure) : c.body(null, 200);
    }
    if (action === 'refer') {
      const target = referTarget(body);
      if (target === null) return refuse(c, 'invalid_call_control', REFER_TARGET);
      if (!pending.take(waiting.callId)) return refuse(c, 'call_not_pending');
      waiting.admission.release();
      decided('tenant_referred', null, target);
      const failure = await desk.control(waiting.upstream, waiting.upstreamCallId, 'refer', { target_uri: target });
      return failure ? refuseWith(c, failure) : c.body(null, 200);
    }
    if (body.type !== undefined && body.type !== 'realtime') return refuse(c, 'invalid_call_control', 'A call is accepted with a "realtime" session.');
    const session = { ...waiting.route.session, ...body };
    delete session.type;
    const model = typeof session.model === 'string' && session.model ? session.model : String(waiting.route.session.model);
    let call = waiting;
    if (model !== waiting.admission.model) {
      // Another model than the route's: admitted again for it, the route's slot given back.
      let admission: Admission;
      try {
        admission = await options.gatekeeper.admitRouted!(waiting.route.keyId, model);
      } catch (error) {
        return refuseWith(c, asRelayError(error, 'billing_unavailable'));
      }
      if (admission.model !== waiting.admission.model) {
        if (!pending.get(waiting.callId)) {
          admission.release();
          return refuse(c, 'call_not_pending');
        }
        waiting.admission.release();
        call = { ...waiting, admission };
      } else {
        admission.release();
      }
    }
    if (!pending.take(waiting.callId)) {
      if (call !== waiting) call.admission.release();
      return refuse(c, 'call_not_pending');
    }
    const failure = await desk.start(call, session);
    decided(failure ? 'accept_failed' : 'accepted', null, failure?.code ?? null);
    return failure ? refuseWith(c, failure) : c.body(null, 200);
  }

  return controlApp;
}
