/** GA object shapes the simulator sends: sessions, errors, audio payloads. */
import type { SessionType } from './handshake.js';

export type Json = Record<string, unknown>;

const PCM_24K = { type: 'audio/pcm', rate: 24000 } as const;
const SESSION_LIFETIME_S = 3600;

function serverVad(): Json {
  return {
    type: 'server_vad',
    threshold: 0.5,
    prefix_padding_ms: 300,
    silence_duration_ms: 200,
    idle_timeout_ms: null,
    create_response: true,
    interrupt_response: true,
  };
}

export function initialSession(type: SessionType, id: string, model: string | null): Json {
  const expiresAt = Math.floor(Date.now() / 1000) + SESSION_LIFETIME_S;
  if (type === 'transcription') {
    return {
      type: 'transcription',
      object: 'realtime.transcription_session',
      id,
      expires_at: expiresAt,
      audio: { input: { format: { ...PCM_24K }, transcription: null, noise_reduction: null, turn_detection: serverVad() } },
      include: null,
    };
  }
  return {
    type: 'realtime',
    object: 'realtime.session',
    id,
    model,
    output_modalities: ['audio'],
    instructions: 'You are a simulated assistant. Answer briefly.',
    tools: [],
    tool_choice: 'auto',
    max_output_tokens: 'inf',
    tracing: null,
    truncation: 'auto',
    prompt: null,
    expires_at: expiresAt,
    audio: {
      input: { format: { ...PCM_24K }, transcription: null, noise_reduction: null, turn_detection: serverVad() },
      output: { format: { ...PCM_24K }, voice: 'alloy', speed: 1 },
    },
    include: null,
  };
}

/** Top-level session fields a GA `session.update` may carry; anything else (the flat beta shape) is refused. */
export const GA_SESSION_KEYS: Record<SessionType, ReadonlySet<string>> = {
  realtime: new Set([
    'type', 'model', 'output_modalities', 'instructions', 'audio', 'include', 'tracing',
    'tools', 'tool_choice', 'max_output_tokens', 'truncation', 'prompt',
  ]),
  transcription: new Set(['type', 'audio', 'include']),
};

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Merges a validated update into the session, one level deeper under
 * `audio.input` and `audio.output` so that setting a voice keeps the format.
 * The session's `type` never changes.
 */
export function mergeSession(session: Json, update: Json): Json {
  const merged: Json = { ...session };
  for (const [key, value] of Object.entries(update)) {
    if (key === 'type') continue;
    if (key === 'audio' && isObject(value) && isObject(session.audio)) {
      const audio: Json = { ...session.audio };
      for (const [direction, settings] of Object.entries(value)) {
        const current = audio[direction];
        audio[direction] = isObject(settings) && isObject(current) ? { ...current, ...settings } : settings;
      }
      merged.audio = audio;
    } else {
      merged[key] = value;
    }
  }
  return merged;
}

/** The transcription model configured on a session, if any. */
export function transcriptionModel(session: Json): string | undefined {
  const audio = session.audio;
  if (!isObject(audio) || !isObject(audio.input) || !isObject(audio.input.transcription)) return undefined;
  const model = audio.input.transcription.model;
  return typeof model === 'string' && model !== '' ? model : undefined;
}

export function outputAudioSettings(session: Json): Json {
  const audio = session.audio;
  if (isObject(audio) && isObject(audio.output)) return { format: audio.output.format, voice: audio.output.voice };
  return { format: { ...PCM_24K }, voice: 'alloy' };
}

export function errorBody(code: string | null, message: string, param: string | null, clientEventId: string | null): Json {
  return { type: 'invalid_request_error', code, message, param, event_id: clientEventId };
}

const audioPayloads = new Map<number, string>();

/**
 * Base64 of `bytes` bytes of a quiet 440 Hz PCM16 tone, built once per size:
 * every audio delta of that size reuses the same string.
 */
export function audioPayload(bytes: number): string {
  let payload = audioPayloads.get(bytes);
  if (payload === undefined) {
    const pcm = Buffer.alloc(bytes);
    for (let i = 0; i + 1 < bytes; i += 2) {
      pcm.writeInt16LE(Math.round(4000 * Math.sin((2 * Math.PI * 440 * (i / 2)) / 24000)), i);
    }
    payload = pcm.toString('base64');
    audioPayloads.set(bytes, payload);
  }
  return payload;
}

const WORDS = ['Hello', ' from', ' the', ' simulator', '.'];

/** The i-th word of every simulated text and transcript. */
export function word(i: number): string {
  return WORDS[i % WORDS.length]!;
}
