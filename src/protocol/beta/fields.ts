/**
 * The field-by-field correspondence between the flat beta objects and the
 * nested GA ones, and the value conversions some fields need on the way.
 *
 * Each mapping names a flat beta key and the path of its GA home. Moving a
 * field is lossless both ways for the values a valid client can send; fields
 * no mapping names travel unchanged at the top level.
 */
import { isJsonObject, type JsonObject } from '../json.js';

export interface FieldMapping {
  readonly beta: string;
  readonly ga: readonly string[];
  readonly toGa?: (value: unknown) => unknown;
  readonly toBeta?: (value: unknown) => unknown;
}

const BETA_TO_GA_FORMAT: Readonly<Record<string, JsonObject>> = {
  pcm16: { type: 'audio/pcm', rate: 24000 },
  g711_ulaw: { type: 'audio/pcmu' },
  g711_alaw: { type: 'audio/pcma' },
};

/** 'pcm16' | 'g711_ulaw' | 'g711_alaw' → GA format object; anything else is left for upstream to judge. */
export function audioFormatToGa(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  // Own properties only: the value comes from the client.
  const format = Object.hasOwn(BETA_TO_GA_FORMAT, value) ? BETA_TO_GA_FORMAT[value] : undefined;
  return format ? { ...format } : value;
}

export function audioFormatToBeta(value: unknown): unknown {
  if (!isJsonObject(value)) return value;
  const rate = value['rate'];
  switch (value['type']) {
    case 'audio/pcm':
      // GA accepts PCM at 24 kHz only, which is exactly beta's pcm16.
      return rate === undefined || rate === 24000 ? 'pcm16' : value;
    case 'audio/pcmu':
      return 'g711_ulaw';
    case 'audio/pcma':
      return 'g711_alaw';
    default:
      return value;
  }
}

/**
 * Beta asked for ['text'] or ['text', 'audio'] (audio always came with its
 * transcript); GA takes exactly one of ['text'] or ['audio'] and still sends
 * the transcript of audio. So any beta set holding audio becomes ['audio'].
 */
export function modalitiesToGa(value: unknown): unknown {
  if (!Array.isArray(value)) return value;
  if (value.includes('audio')) return ['audio'];
  if (value.includes('text')) return ['text'];
  return value;
}

export function modalitiesToBeta(value: unknown): unknown {
  if (!Array.isArray(value)) return value;
  return value.includes('audio') ? ['text', 'audio'] : value;
}

/** GA requires `type`; beta defaulted a missing one to server VAD. */
export function turnDetectionToGa(value: unknown): unknown {
  if (!isJsonObject(value) || value['type'] !== undefined) return value;
  return { type: 'server_vad', ...value };
}

/**
 * Beta documented the Chat Completions spelling `{type:'function', function:{name}}`
 * for a forced function; GA takes `{type:'function', name}`.
 */
export function toolChoiceToGa(value: unknown): unknown {
  if (!isJsonObject(value) || value['type'] !== 'function' || value['name'] !== undefined) return value;
  const fn = value['function'];
  if (!isJsonObject(fn) || typeof fn['name'] !== 'string') return value;
  const { function: _nested, ...rest } = value;
  return { ...rest, name: fn['name'] };
}

function setPath(target: JsonObject, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const child = node[key];
    // Copy containers on the way down: the caller's objects are never mutated.
    const copy = isJsonObject(child) ? { ...child } : {};
    node[key] = copy;
    node = copy;
  }
  node[path[path.length - 1]!] = value;
}

/**
 * Removes the value at `path` from `target` (copying containers first) and
 * returns it; containers left empty are removed too. Undefined when absent.
 */
function takePath(target: JsonObject, path: readonly string[]): unknown {
  const [head, ...rest] = path;
  if (head === undefined || !Object.hasOwn(target, head)) return undefined;
  if (rest.length === 0) {
    const value = target[head];
    delete target[head];
    return value;
  }
  const child = target[head];
  if (!isJsonObject(child)) return undefined;
  const copy = { ...child };
  const value = takePath(copy, rest);
  if (Object.keys(copy).length === 0) delete target[head];
  else target[head] = copy;
  return value;
}

/**
 * Flat beta object → nested GA object. `base` supplies GA-only fields (such
 * as the session `type`); keys in `dropped` have no GA home and are left out.
 */
export function nestFields(
  beta: JsonObject,
  mappings: readonly FieldMapping[],
  dropped: ReadonlySet<string>,
  base: JsonObject = {},
): JsonObject {
  const byBetaKey = new Map(mappings.map((m) => [m.beta, m]));
  const ga: JsonObject = { ...base };
  for (const [key, value] of Object.entries(beta)) {
    if (dropped.has(key)) continue;
    const mapping = byBetaKey.get(key);
    if (!mapping) {
      if (!Object.hasOwn(base, key)) ga[key] = value;
      continue;
    }
    setPath(ga, mapping.ga, mapping.toGa ? mapping.toGa(value) : value);
  }
  return ga;
}

/**
 * Nested GA object → flat beta object; keys in `removed` (such as the session
 * `type`) are not carried over. Returns `ga` itself when nothing applies.
 */
export function flattenFields(
  ga: JsonObject,
  mappings: readonly FieldMapping[],
  removed: ReadonlySet<string> = new Set(),
): JsonObject {
  const applies = mappings.some((m) => pathExists(ga, m.ga)) || Object.keys(ga).some((key) => removed.has(key));
  if (!applies) return ga;
  const rest: JsonObject = {};
  for (const [key, value] of Object.entries(ga)) if (!removed.has(key)) rest[key] = value;
  const beta: JsonObject = {};
  for (const mapping of mappings) {
    const had = pathExists(rest, mapping.ga);
    const value = takePath(rest, mapping.ga);
    if (had) beta[mapping.beta] = mapping.toBeta ? mapping.toBeta(value) : value;
  }
  return { ...rest, ...beta };
}

function pathExists(target: JsonObject, path: readonly string[]): boolean {
  let node: unknown = target;
  for (const key of path) {
    if (!isJsonObject(node) || !Object.hasOwn(node, key)) return false;
    node = node[key];
  }
  return true;
}
