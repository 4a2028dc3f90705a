import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { translateClientEvent, translateServerEvent } from '../../src/protocol/beta/index.js';

type Json = Record<string, unknown>;

/** What a beta client sends, as upstream receives it. */
function upstreamSession(type: string, betaSession: Json): Json {
  const result = translateClientEvent(JSON.stringify({ type, session: betaSession }));
  if (!('frame' in result)) throw new Error('dropped');
  return (JSON.parse(result.frame) as { session: Json }).session;
}

/** What upstream reports, as a beta client receives it. */
function clientSession(gaSession: Json): Json {
  const data = Buffer.from(JSON.stringify({ type: 'session.updated', event_id: 'e', session: gaSession }));
  return (JSON.parse(translateServerEvent(data, 'session.updated')!.toString()) as { session: Json }).session;
}

/** JSON's view of a value (-0 becomes 0), which is all the wire can carry. */
function wire<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** Drops audio containers left empty by optional generation: they carry nothing to map. */
function pruneAudio(session: Json): Json {
  const audio = session.audio as Record<string, Json> | undefined;
  if (!audio) return session;
  const kept = Object.fromEntries(Object.entries(audio).filter(([, side]) => Object.keys(side).length > 0));
  const { audio: _audio, ...rest } = session;
  return Object.keys(kept).length > 0 ? { ...rest, audio: kept } : rest;
}

const word = fc.stringMatching(/^[a-z_]{1,12}$/);
const voice = fc.constantFrom('alloy', 'ash', 'ballad', 'coral', 'echo', 'sage', 'shimmer', 'verse', 'marin', 'cedar');
const betaFormat = fc.constantFrom('pcm16', 'g711_ulaw', 'g711_alaw');
const gaFormat = fc.constantFrom({ type: 'audio/pcm', rate: 24000 }, { type: 'audio/pcmu' }, { type: 'audio/pcma' });
const ratio = fc.double({ min: 0, max: 1, noNaN: true });

const serverVad = fc.record(
  {
    type: fc.constant('server_vad'),
    threshold: ratio,
    prefix_padding_ms: fc.nat(2000),
    silence_duration_ms: fc.nat(2000),
    create_response: fc.boolean(),
    interrupt_response: fc.boolean(),
  },
  { requiredKeys: ['type'] },
);
const semanticVad = fc.record(
  {
    type: fc.constant('semantic_vad'),
    eagerness: fc.constantFrom('low', 'medium', 'high', 'auto'),
    create_response: fc.boolean(),
    interrupt_response: fc.boolean(),
  },
  { requiredKeys: ['type'] },
);
const gaServerVad = fc.record(
  {
    type: fc.constant('server_vad'),
    threshold: ratio,
    prefix_padding_ms: fc.nat(2000),
    silence_duration_ms: fc.nat(2000),
    idle_timeout_ms: fc.option(fc.integer({ min: 5000, max: 30000 })),
    create_response: fc.boolean(),
    interrupt_response: fc.boolean(),
  },
  { requiredKeys: ['type'] },
);
const transcription = fc.option(
  fc.record(
    { model: fc.constantFrom('whisper-1', 'gpt-4o-transcribe', 'gpt-4o-mini-transcribe'), language: fc.constantFrom('en', 'de', 'ja'), prompt: fc.string() },
    { requiredKeys: [] },
  ),
);
const noiseReduction = fc.option(fc.record({ type: fc.constantFrom('near_field', 'far_field') }));
const tools = fc.array(
  fc.record({ type: fc.constant('function'), name: word, description: fc.string(), parameters: fc.constant({ type: 'object', properties: {} }) }),
  { maxLength: 3 },
);
const toolChoice = fc.oneof(fc.constantFrom('auto', 'none', 'required'), word.map((name) => ({ type: 'function', name })));
const maxTokens = fc.oneof(fc.integer({ min: 1, max: 4096 }), fc.constant('inf'));
const tracing = fc.oneof(
  fc.constant('auto'),
  fc.constant(null),
  fc.record({ workflow_name: fc.string(), group_id: fc.string(), metadata: fc.dictionary(word, fc.string()) }, { requiredKeys: [] }),
);

/** Beta sessions over every mapped field. Modalities take the two sets beta accepted, in beta's own order. */
const betaSession = fc.record(
  {
    modalities: fc.constantFrom(['text'], ['text', 'audio']),
    voice,
    speed: fc.double({ min: 0.25, max: 1.5, noNaN: true }),
    input_audio_format: betaFormat,
    output_audio_format: betaFormat,
    turn_detection: fc.option(fc.oneof(serverVad, semanticVad)),
    input_audio_transcription: transcription,
    input_audio_noise_reduction: noiseReduction,
    instructions: fc.string(),
    tools,
    tool_choice: toolChoice,
    max_response_output_tokens: maxTokens,
    tracing,
  },
  { requiredKeys: [] },
);

const gaSession = fc
  .record(
    {
      output_modalities: fc.constantFrom(['audio'], ['text']),
      instructions: fc.string(),
      tools,
      tool_choice: toolChoice,
      max_output_tokens: maxTokens,
      tracing,
      audio: fc.record(
        {
          input: fc.record(
            { format: gaFormat, transcription, noise_reduction: noiseReduction, turn_detection: fc.option(fc.oneof(gaServerVad, semanticVad)) },
            { requiredKeys: [] },
          ),
          output: fc.record({ format: gaFormat, voice, speed: fc.double({ min: 0.25, max: 1.5, noNaN: true }) }, { requiredKeys: [] }),
        },
        { requiredKeys: [] },
      ),
    },
    { requiredKeys: [] },
  )
  .map((session) => pruneAudio({ type: 'realtime', ...session }));

const betaTranscriptionSession = fc.record(
  {
    input_audio_format: betaFormat,
    input_audio_transcription: transcription,
    input_audio_noise_reduction: noiseReduction,
    turn_detection: fc.option(serverVad),
    include: fc.constant(['item.input_audio_transcription.logprobs']),
  },
  { requiredKeys: [] },
);

const gaTranscriptionSession = fc
  .record(
    {
      audio: fc.record({
        input: fc.record(
          { format: gaFormat, transcription, noise_reduction: noiseReduction, turn_detection: fc.option(gaServerVad) },
          { requiredKeys: [] },
        ),
      }),
      include: fc.constant(['item.input_audio_transcription.logprobs']),
    },
    { requiredKeys: [] },
  )
  .map((session) => pruneAudio({ type: 'transcription', ...session }));

describe('beta ⇄ GA session round trips', () => {
  it('a beta session sent upstream and reported back keeps every field', () => {
    fc.assert(
      fc.property(betaSession, (session) => {
        expect(clientSession(upstreamSession('session.update', session))).toEqual(wire(session));
      }),
      { numRuns: 500 },
    );
  });

  it('a GA session reported to a beta client and sent back is the same GA session', () => {
    fc.assert(
      fc.property(gaSession, (session) => {
        expect(upstreamSession('session.update', clientSession(session))).toEqual(wire(session));
      }),
      { numRuns: 500 },
    );
  });

  it('a beta transcription session sent upstream and reported back keeps every field', () => {
    fc.assert(
      fc.property(betaTranscriptionSession, (session) => {
        expect(clientSession(upstreamSession('transcription_session.update', session))).toEqual(wire(session));
      }),
      { numRuns: 300 },
    );
  });

  it('a GA transcription session reported to a beta client and sent back is the same GA session', () => {
    fc.assert(
      fc.property(gaTranscriptionSession, (session) => {
        expect(upstreamSession('transcription_session.update', clientSession(session))).toEqual(wire(session));
      }),
      { numRuns: 300 },
    );
  });

  it('every beta session reaches upstream nested: no beta-only keys remain', () => {
    const betaOnly = [
      'modalities', 'voice', 'speed', 'input_audio_format', 'output_audio_format', 'turn_detection',
      'input_audio_transcription', 'input_audio_noise_reduction', 'max_response_output_tokens',
    ];
    fc.assert(
      fc.property(betaSession, (session) => {
        const ga = upstreamSession('session.update', session);
        for (const key of betaOnly) expect(ga).not.toHaveProperty(key);
      }),
      { numRuns: 200 },
    );
  });

  it('every GA session a beta client sees is flat: no GA-only keys remain', () => {
    fc.assert(
      fc.property(gaSession, (session) => {
        const beta = clientSession(session);
        for (const key of ['type', 'audio', 'output_modalities', 'max_output_tokens']) expect(beta).not.toHaveProperty(key);
      }),
      { numRuns: 200 },
    );
  });
});
