/**
 * `response.create` options (beta → GA) and response objects reported in
 * `response.created` / `response.done` (GA → beta). Usage is never touched:
 * the meter reads it from the GA frame, and beta spelled it the same way.
 */
import {
  audioFormatToBeta,
  audioFormatToGa,
  flattenFields,
  modalitiesToBeta,
  modalitiesToGa,
  nestFields,
  toolChoiceToGa,
  type FieldMapping,
} from './fields.js';
import { betaItemToGa, gaItemToBeta, mapItems } from './items.js';
import type { JsonObject } from '../json.js';
import { DROPPED_BETA_SESSION_FIELDS } from './session.js';

/** `response.create.response` fields whose place or spelling changed; the rest (instructions, tools, conversation, metadata, ...) keep theirs. */
export const RESPONSE_CREATE_FIELDS: readonly FieldMapping[] = [
  { beta: 'modalities', ga: ['output_modalities'], toGa: modalitiesToGa, toBeta: modalitiesToBeta },
  { beta: 'max_response_output_tokens', ga: ['max_output_tokens'] },
  { beta: 'tool_choice', ga: ['tool_choice'], toGa: toolChoiceToGa },
  { beta: 'voice', ga: ['audio', 'output', 'voice'] },
  { beta: 'output_audio_format', ga: ['audio', 'output', 'format'], toGa: audioFormatToGa, toBeta: audioFormatToBeta },
];

/**
 * The response object as the server reports it. Beta already called the
 * token cap `max_output_tokens` here (only its requests said
 * `max_response_output_tokens`), so that field keeps its name.
 */
export const RESPONSE_OBJECT_FIELDS: readonly FieldMapping[] = [
  { beta: 'modalities', ga: ['output_modalities'], toGa: modalitiesToGa, toBeta: modalitiesToBeta },
  { beta: 'voice', ga: ['audio', 'output', 'voice'] },
  { beta: 'output_audio_format', ga: ['audio', 'output', 'format'], toGa: audioFormatToGa, toBeta: audioFormatToBeta },
];

const DROPPED_FROM_RESPONSE_CREATE: ReadonlySet<string> = new Set(
  DROPPED_BETA_SESSION_FIELDS.filter((d) => d.events.includes('response.create')).map((d) => d.field),
);

export function betaResponseCreateToGa(options: JsonObject): JsonObject {
  const ga = nestFields(options, RESPONSE_CREATE_FIELDS, DROPPED_FROM_RESPONSE_CREATE);
  if (Object.hasOwn(ga, 'input')) ga['input'] = mapItems(ga['input'], betaItemToGa);
  return ga;
}

/** GA response object → beta; output items get beta content part types. Returns `response` itself when unchanged. */
export function gaResponseToBeta(response: JsonObject): JsonObject {
  const flat = flattenFields(response, RESPONSE_OBJECT_FIELDS);
  const output = mapItems(flat['output'], gaItemToBeta);
  if (output === flat['output']) return flat;
  return { ...flat, output };
}
