import type { ActorRefLike, AnyActorRef, AnyEventObject, InspectionEvent } from 'xstate';
import { REDACTED, errorView, redactValue } from './redact.js';

/**
 * What the inspector may see of a session. The machine's context also holds
 * `ports` (the session's two legs: both sockets, the upstream's key, the bill)
 * and, once written, the settlement;
 * only these serialisable lifecycle fields leave the process.
 */
export const INSPECTABLE_CONTEXT = [
  'sessionId',
  'responseInFlight',
  'responseId',
  'cause',
  'drain',
  'clientClosed',
  'targetClosed',
  'upstreamOpened',
  'closeCodes',
  'timings',
] as const;

export function sanitizeContext(context: unknown): Record<string, unknown> | undefined {
  if (typeof context !== 'object' || context === null) return undefined;
  const source = context as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const field of INSPECTABLE_CONTEXT) {
    if (field in source) out[field] = redactValue(source[field]);
  }
  // The ports stay in the process; which transport they are (websocket, webrtc) is worth seeing.
  const transport = (source.ports as { transport?: unknown } | undefined)?.transport;
  if (typeof transport === 'string') out.transport = transport;
  return out;
}

/**
 * Events as the inspector may see them. `xstate.init` carries the actor's
 * input (for the session and each of its children: `ports`); an actor's
 * error may carry a request or a response as its cause. Frame payloads never
 * reach the machine, but any audio- or key-looking field is redacted anyway.
 */
export function sanitizeEvent(event: AnyEventObject): AnyEventObject {
  const type = typeof event?.type === 'string' ? event.type : 'unknown';
  if (type === 'xstate.init') return 'input' in event ? { type, input: REDACTED } : { type };
  if (type.startsWith('xstate.error.actor.')) return { type, error: errorView((event as { error?: unknown }).error) };
  if (type.startsWith('xstate.done.actor.')) return { type, output: redactValue((event as { output?: unknown }).output) };
  return redactValue(event) as AnyEventObject;
}

interface SnapshotLike {
  status?: unknown;
  value?: unknown;
  context?: unknown;
  children?: Record<string, unknown>;
  tags?: Iterable<string>;
  output?: unknown;
  error?: unknown;
}

/**
 * A snapshot as the inspector may see it. Machine snapshots keep their value,
 * status, tags, child ids and the lifecycle context; callback and promise
 * actors keep their status and output (their `input` is the ports: dropped).
 */
export function sanitizeSnapshot(snapshot: unknown): Record<string, unknown> {
  if (typeof snapshot !== 'object' || snapshot === null) return { status: 'active' };
  const source = snapshot as SnapshotLike;
  const out: Record<string, unknown> = { status: source.status };
  if ('value' in source) out.value = redactValue(source.value);
  if ('context' in source) out.context = sanitizeContext(source.context);
  if (source.children && typeof source.children === 'object') {
    out.children = Object.fromEntries(Object.keys(source.children).map((id) => [id, { xstate$$type: 1, id }]));
  }
  if (source.tags) out.tags = [...source.tags];
  if (source.output !== undefined) out.output = redactValue(source.output);
  if (source.error !== undefined) out.error = errorView(source.error);
  return out;
}

/** The fields of an actor the inspector's converter reads; nothing else of it is reachable. */
interface ActorView {
  id: string;
  sessionId: string;
  logic: { config: unknown };
  _parent: { sessionId: string } | undefined;
  getSnapshot(): Record<string, unknown>;
}

function actorView(actor: ActorRefLike): ActorView {
  const internal = actor as ActorRefLike & { id: string; sessionId: string; logic?: { config?: unknown }; _parent?: ActorRefLike & { sessionId: string } };
  // A machine's config is its static definition (shown as the diagram); a callback's is its function.
  const config = internal.logic?.config;
  return {
    // A session shows under the relay's session id (as in logs and /admin), not as one more "session".
    get id() {
      if (internal._parent) return internal.id;
      const context = (actor.getSnapshot() as { context?: { sessionId?: unknown } } | undefined)?.context;
      return typeof context?.sessionId === 'string' ? context.sessionId : internal.id;
    },
    sessionId: internal.sessionId,
    logic: { config: typeof config === 'object' ? config : undefined },
    _parent: internal._parent ? { sessionId: internal._parent.sessionId } : undefined,
    // Read when the inspector converts the event, as it would read the real actor.
    getSnapshot: () => sanitizeSnapshot(actor.getSnapshot()),
  };
}

/**
 * The inspection event with everything secret taken out, or null for the
 * kinds the Stately inspector does not show (microsteps, actions).
 */
export function sanitizeInspectionEvent(event: InspectionEvent): InspectionEvent | null {
  switch (event.type) {
    case '@xstate.actor':
      return { ...event, actorRef: actorView(event.actorRef) as unknown as AnyActorRef };
    case '@xstate.event':
      return {
        ...event,
        actorRef: actorView(event.actorRef) as unknown as AnyActorRef,
        sourceRef: event.sourceRef ? (actorView(event.sourceRef) as unknown as AnyActorRef) : undefined,
        event: sanitizeEvent(event.event),
      };
    case '@xstate.snapshot':
      return {
        ...event,
        actorRef: actorView(event.actorRef) as unknown as AnyActorRef,
        event: sanitizeEvent(event.event),
        snapshot: sanitizeSnapshot(event.snapshot) as unknown as typeof event.snapshot,
      };
    default:
      return null;
  }
}
