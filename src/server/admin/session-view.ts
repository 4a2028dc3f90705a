import { formatUsd } from '../../billing/prices.js';
import { stateName } from '../../machines/session.js';
import type { Transport } from '../ports.js';
import type { LiveSession } from '../registry.js';

/** One live session as the admin API and the live page show it. */
export interface SessionView {
  id: string;
  key: { id: string; name: string };
  /** The client's address (the one a trusted proxy named, behind a load balancer). */
  client_address: string;
  model: string;
  /** websocket, or webrtc / sip (a call: its events are read over the upstream's sideband, nothing is forwarded). */
  transport: Transport;
  /** The upstream's name and the model it serves; null until the dial succeeds. */
  upstream: { name: string; model: string } | null;
  /** The session machine's state: connecting, relaying, draining, or one of the ending's (closed.closing, closed.settling, closed.ended). */
  state: string;
  started_at: string;
  age_ms: number;
  client_to_upstream: { frames: number; bytes: number };
  upstream_to_client: { frames: number; bytes: number };
  /** A response was requested or created and its `response.done` has not arrived. */
  response_in_flight: boolean;
  response_id: string | null;
  /** What the session has been charged so far, USD. */
  spend: string;
  spend_nano: string;
}

export function sessionView({ link, actor }: LiveSession, now = Date.now()): SessionView {
  const snapshot = actor.getSnapshot();
  const stats = link.stats;
  const spendNano = link.spendNano;
  return {
    id: link.sessionId,
    key: { id: link.caller.keyId, name: link.caller.keyName },
    client_address: link.clientAddress,
    model: link.model,
    transport: link.transport,
    upstream: link.dialed ? { name: link.dialed.upstream.name, model: link.dialed.servedModel } : null,
    state: stateName(snapshot.value),
    started_at: link.startedAt.toISOString(),
    age_ms: Math.max(0, now - link.startedAt.getTime()),
    client_to_upstream: { frames: stats.framesIn, bytes: stats.bytesIn },
    upstream_to_client: { frames: stats.framesOut, bytes: stats.bytesOut },
    response_in_flight: snapshot.context.responseInFlight,
    response_id: snapshot.context.responseId,
    spend: formatUsd(spendNano),
    spend_nano: spendNano.toString(),
  };
}
