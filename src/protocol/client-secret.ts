/**
 * OpenAI's ephemeral client secrets (`ek_…`): the format of the secret, and
 * the parts of the session configuration it carries that decide which
 * session it opens (the session's type and model). Every other field of the
 * configuration is the upstream's business and passes through unread.
 */
export const CLIENT_SECRET_PREFIX = 'ek_';

export function isClientSecret(key: string | undefined): key is string {
  return key !== undefined && key.startsWith(CLIENT_SECRET_PREFIX);
}

/** `expires_after.seconds`: OpenAI's bounds and default. */
export const CLIENT_SECRET_TTL = { minSeconds: 10, maxSeconds: 7200, defaultSeconds: 600 } as const;

/** The model a session gets when its configuration names none, as OpenAI does. */
export const DEFAULT_MODEL = { realtime: 'gpt-realtime', transcription: 'gpt-4o-transcribe' } as const;

export type SessionType = keyof typeof DEFAULT_MODEL;

/** What a client secret binds its sessions to. */
export interface BoundSession {
  type: SessionType;
  /** The realtime model, or for a transcription session its transcription model; null when the configuration names none. */
  model: string | null;
  /** How the session is dialled: a transcription session with `?intent=transcription`. */
  intent: 'transcription' | undefined;
}

/** A configuration the relay cannot bind a session to; `param` names the field, `code` is OpenAI's. */
export interface SessionProblem {
  code: 'invalid_type' | 'invalid_value';
  param: string;
  message: string;
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Follows `path` through nested objects (a missing step reads as undefined); a step that is not an object is a problem. */
function dig(root: Record<string, unknown>, path: string[], param: string): { value: unknown } | SessionProblem {
  let value: unknown = root;
  for (const [i, step] of path.entries()) {
    if (value === undefined || value === null) return { value: undefined };
    if (!isObject(value)) return { code: 'invalid_type', param: [param, ...path.slice(0, i)].join('.'), message: 'must be an object' };
    value = value[step];
  }
  return { value };
}

/** Reads a session configuration (a client secret's `session`). */
export function bindSession(session: unknown, param = 'session'): BoundSession | SessionProblem {
  if (!isObject(session)) return { code: 'invalid_type', param, message: 'must be an object' };
  const type = session.type ?? 'realtime';
  if (type !== 'realtime' && type !== 'transcription') {
    return { code: 'invalid_value', param: `${param}.type`, message: `must be "realtime" or "transcription" (got ${JSON.stringify(type)})` };
  }
  const path = type === 'realtime' ? ['model'] : ['audio', 'input', 'transcription', 'model'];
  const found = dig(session, path, param);
  if ('code' in found) return found;
  const model = found.value;
  if (model !== undefined && model !== null && (typeof model !== 'string' || model.trim() === '')) {
    return { code: 'invalid_type', param: [param, ...path].join('.'), message: 'must be a non-empty string' };
  }
  return { type, model: typeof model === 'string' ? model : null, intent: type === 'transcription' ? 'transcription' : undefined };
}

export function isSessionProblem(value: BoundSession | SessionProblem): value is SessionProblem {
  return 'code' in value;
}

/** The configuration with its model set (the transcription model, for a transcription session). */
export function withModel(session: Record<string, unknown>, type: SessionType, model: string): Record<string, unknown> {
  if (type === 'realtime') return { ...session, type, model };
  const audio = isObject(session.audio) ? session.audio : {};
  const input = isObject(audio.input) ? audio.input : {};
  const transcription = isObject(input.transcription) ? input.transcription : {};
  return { ...session, type, audio: { ...audio, input: { ...input, transcription: { ...transcription, model } } } };
}

/**
 * The `session.update` that applies a client secret's configuration to a
 * session opened with it, as OpenAI applies it; null when the configuration
 * says nothing beyond the type and model the session was dialled with. The
 * model is left out: it was dialled (an Azure upstream knows it by its
 * deployment's name, not this one).
 */
export function sessionUpdateFor(session: Record<string, unknown>): string | null {
  const { model: _dialled, ...settings } = session;
  if (Object.keys(settings).every((name) => name === 'type')) return null;
  return JSON.stringify({ type: 'session.update', session: settings });
}
