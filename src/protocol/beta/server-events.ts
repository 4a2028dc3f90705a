/**
 * Upstream → client: turns GA server events into what a beta client expects.
 *
 * Pure renames (text, audio and transcript streams) rewrite only the `type`
 * bytes, so audio deltas are never parsed. Events carrying sessions,
 * responses, items or content parts are parsed and re-serialised, and only
 * when something in them actually changes.
 */
import { renameEventType } from './event-type.js';
import { gaItemToBeta, gaPartToBeta } from './items.js';
import { parseObject, isJsonObject, type JsonObject } from '../json.js';
import { gaResponseToBeta } from './response.js';
import { gaSessionToBeta, isTranscriptionSession } from './session.js';

/** GA stream prefixes and the beta names of the same streams. */
const RENAMED_PREFIXES: readonly (readonly [ga: string, beta: string])[] = [
  ['response.output_text.', 'response.text.'],
  ['response.output_audio.', 'response.audio.'],
  ['response.output_audio_transcript.', 'response.audio_transcript.'],
];

type Rewrite = (event: JsonObject) => JsonObject;

function rewriteField(field: string, convert: (value: unknown) => unknown): Rewrite {
  return (event) => {
    const value = event[field];
    const converted = convert(value);
    return converted === value ? event : { ...event, [field]: converted };
  };
}

function rewriteSession(kind: 'created' | 'updated'): Rewrite {
  return (event) => {
    const session = event['session'];
    if (!isJsonObject(session)) return event;
    // Beta reported transcription sessions under their own event names.
    const type = isTranscriptionSession(session) ? `transcription_session.${kind}` : event['type'];
    return { ...event, type, session: gaSessionToBeta(session) };
  };
}

const rewriteItem = rewriteField('item', gaItemToBeta);
const rewritePart = rewriteField('part', gaPartToBeta);
const rewriteResponse = rewriteField('response', (value) => (isJsonObject(value) ? gaResponseToBeta(value) : value));

const REWRITES: ReadonlyMap<string, Rewrite> = new Map(
  Object.entries({
    'session.created': rewriteSession('created'),
    'session.updated': rewriteSession('updated'),
    'conversation.item.added': (event) => ({ ...rewriteItem(event), type: 'conversation.item.created' }),
    'conversation.item.retrieved': rewriteItem,
    'response.output_item.added': rewriteItem,
    'response.output_item.done': rewriteItem,
    'response.content_part.added': rewritePart,
    'response.content_part.done': rewritePart,
    'response.created': rewriteResponse,
    'response.done': rewriteResponse,
  } satisfies Record<string, Rewrite>),
);

/** Not sent to beta clients: beta had no `conversation.item.done`, only `conversation.item.created`. */
const DROPPED: ReadonlySet<string> = new Set(['conversation.item.done']);

function betaNameOf(type: string): string | undefined {
  for (const [ga, beta] of RENAMED_PREFIXES) if (type.startsWith(ga)) return beta + type.slice(ga.length);
  return undefined;
}

function rewriteParsed(data: Buffer, rewrite: Rewrite): Buffer {
  const event = parseObject(data.toString('utf8'));
  if (!event) return data;
  const translated = rewrite(event);
  return translated === event ? data : Buffer.from(JSON.stringify(translated), 'utf8');
}

/**
 * `type` is the frame's top-level type as the relay already read it. Returns
 * `data` itself when the event needs no change, a new Buffer when it does,
 * and null when a beta client must not see it.
 */
export function translateServerEvent(data: Buffer, type: string): Buffer | null {
  if (DROPPED.has(type)) return null;
  const betaName = betaNameOf(type);
  if (betaName !== undefined) {
    return (
      renameEventType(data, type, betaName) ??
      rewriteParsed(data, (event) => (event['type'] === type ? { ...event, type: betaName } : event))
    );
  }
  const rewrite = REWRITES.get(type);
  return rewrite ? rewriteParsed(data, rewrite) : data;
}
