/**
 * Beta session objects (flat) ⇄ GA session objects (nested under `audio`).
 * Covers both conversation sessions (`type: 'realtime'`) and transcription
 * sessions (`type: 'transcription'`, beta's `transcription_session.*`).
 */
import {
  audioFormatToBeta,
  audioFormatToGa,
  flattenFields,
  modalitiesToBeta,
  modalitiesToGa,
  nestFields,
  toolChoiceToGa,
  turnDetectionToGa,
  type FieldMapping,
} from './fields.js';
import type { JsonObject } from '../json.js';

const INPUT_AUDIO_FIELDS: readonly FieldMapping[] = [
  { beta: 'input_audio_format', ga: ['audio', 'input', 'format'], toGa: audioFormatToGa, toBeta: audioFormatToBeta },
  { beta: 'input_audio_transcription', ga: ['audio', 'input', 'transcription'] },
  { beta: 'input_audio_noise_reduction', ga: ['audio', 'input', 'noise_reduction'] },
  { beta: 'turn_detection', ga: ['audio', 'input', 'turn_detection'], toGa: turnDetectionToGa },
];

/** Session fields whose place or spelling changed; the rest (instructions, tools, tracing, model, ...) keep theirs. */
export const SESSION_FIELDS: readonly FieldMapping[] = [
  { beta: 'modalities', ga: ['output_modalities'], toGa: modalitiesToGa, toBeta: modalitiesToBeta },
  { beta: 'max_response_output_tokens', ga: ['max_output_tokens'] },
  { beta: 'tool_choice', ga: ['tool_choice'], toGa: toolChoiceToGa },
  ...INPUT_AUDIO_FIELDS,
  { beta: 'output_audio_format', ga: ['audio', 'output', 'format'], toGa: audioFormatToGa, toBeta: audioFormatToBeta },
  { beta: 'voice', ga: ['audio', 'output', 'voice'] },
  { beta: 'speed', ga: ['audio', 'output', 'speed'] },
];

export const TRANSCRIPTION_SESSION_FIELDS: readonly FieldMapping[] = INPUT_AUDIO_FIELDS;

export interface DroppedBetaField {
  readonly field: string;
  /** The beta client events the field is dropped from. */
  readonly events: readonly string[];
  readonly reason: string;
}

/** Beta fields with no GA place: GA rejects unknown parameters, so these are left out rather than forwarded. */
export const DROPPED_BETA_SESSION_FIELDS: readonly DroppedBetaField[] = [
  {
    field: 'temperature',
    events: ['session.update', 'response.create'],
    reason: 'GA Realtime sessions and responses have no sampling temperature; the model default applies.',
  },
  {
    field: 'client_secret',
    events: ['session.update', 'transcription_session.update'],
    reason: 'An ephemeral key\'s expiry is set when it is minted (POST /v1/realtime/client_secrets), not over the socket.',
  },
  {
    field: 'modalities',
    events: ['transcription_session.update'],
    reason: 'A GA transcription session produces no model output, so it has no output modalities.',
  },
];

function droppedFrom(event: string): ReadonlySet<string> {
  return new Set(DROPPED_BETA_SESSION_FIELDS.filter((d) => d.events.includes(event)).map((d) => d.field));
}

const DROPPED_FROM_SESSION_UPDATE = droppedFrom('session.update');
const DROPPED_FROM_TRANSCRIPTION_UPDATE = droppedFrom('transcription_session.update');
const GA_ONLY_KEYS: ReadonlySet<string> = new Set(['type']);

export function betaSessionToGa(session: JsonObject): JsonObject {
  return nestFields(session, SESSION_FIELDS, DROPPED_FROM_SESSION_UPDATE, { type: 'realtime' });
}

export function betaTranscriptionSessionToGa(session: JsonObject): JsonObject {
  return nestFields(session, TRANSCRIPTION_SESSION_FIELDS, DROPPED_FROM_TRANSCRIPTION_UPDATE, { type: 'transcription' });
}

/** GA session (either type) → the beta shape of the same kind. */
export function gaSessionToBeta(session: JsonObject): JsonObject {
  const fields = isTranscriptionSession(session) ? TRANSCRIPTION_SESSION_FIELDS : SESSION_FIELDS;
  return flattenFields(session, fields, GA_ONLY_KEYS);
}

export function isTranscriptionSession(session: JsonObject): boolean {
  return session['type'] === 'transcription';
}
