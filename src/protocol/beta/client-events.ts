/**
 * Client → upstream: rewrites the few beta client events whose shape GA
 * changed. Every other frame, audio appends and unknown types included, is
 * returned as the very same string, unparsed: the relay never refuses a frame
 * because it does not know its type.
 */
import { readEventType } from './event-type.js';
import { betaItemToGa } from './items.js';
import { isJsonObject, parseObject, type JsonObject } from '../json.js';
import { betaResponseCreateToGa } from './response.js';
import { betaSessionToGa, betaTranscriptionSessionToGa } from './session.js';

/**
 * What to send upstream for one client frame. Every current mapping yields a
 * frame; `drop` is part of the contract so the caller already handles an
 * event that must never reach upstream.
 */
export type ClientTranslation = { frame: string } | { drop: true; reason: string };

type Rewrite = (event: JsonObject) => JsonObject;

/** A session that already carries `type` is GA-shaped: the client spoke GA despite its beta header. */
function isGaSession(session: JsonObject): boolean {
  return session['type'] === 'realtime' || session['type'] === 'transcription';
}

const REWRITES: ReadonlyMap<string, Rewrite> = new Map(
  Object.entries({
    'session.update': (event) => {
      const session = event['session'];
      if (!isJsonObject(session) || isGaSession(session)) return event;
      return { ...event, session: betaSessionToGa(session) };
    },
    // GA folded transcription sessions into session.update with a session type.
    'transcription_session.update': (event) => {
      const session = event['session'];
      if (!isJsonObject(session)) return event;
      return { ...event, type: 'session.update', session: betaTranscriptionSessionToGa(session) };
    },
    'response.create': (event) => {
      const response = event['response'];
      if (!isJsonObject(response)) return event;
      return { ...event, response: betaResponseCreateToGa(response) };
    },
    'conversation.item.create': (event) => {
      const item = betaItemToGa(event['item']);
      return item === event['item'] ? event : { ...event, item };
    },
  } satisfies Record<string, Rewrite>),
);

/** Whether a client event of this type may need rewriting; the rest pass without being read. */
export function isTranslatedClientEvent(type: string): boolean {
  return REWRITES.has(type);
}

function typeOf(frame: string): string | undefined {
  const type = readEventType(frame);
  if (type !== null) return type;
  // Only frames spelling their type with escapes get here; none of OpenAI's SDKs do.
  const event = parseObject(frame);
  return typeof event?.['type'] === 'string' ? event['type'] : undefined;
}

/** `frame` is a client text frame already known to be JSON; untouched frames come back as the same string. */
export function translateClientEvent(frame: string): ClientTranslation {
  const type = typeOf(frame);
  const rewrite = type === undefined ? undefined : REWRITES.get(type);
  if (!rewrite) return { frame };
  const event = parseObject(frame);
  if (!event) return { frame };
  const translated = rewrite(event);
  return translated === event ? { frame } : { frame: JSON.stringify(translated) };
}
