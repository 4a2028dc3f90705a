import { describe, expect, it } from 'vitest';
import { translateServerEvent } from '../../src/protocol/beta/index.js';
import { EVERY_KIND_OF_TOKEN_USAGE } from '../helpers/usage.js';

type Json = Record<string, unknown>;

function frameOf(event: Json): Buffer {
  return Buffer.from(JSON.stringify(event), 'utf8');
}

function translated(event: Json): Json | null {
  const out = translateServerEvent(frameOf(event), event.type as string);
  return out === null ? null : (JSON.parse(out.toString('utf8')) as Json);
}

describe('event renames for beta clients', () => {
  const renames: [string, string, Json][] = [
    ['response.output_text.delta', 'response.text.delta', { delta: 'Hel' }],
    ['response.output_text.done', 'response.text.done', { text: 'Hello' }],
    ['response.output_audio.delta', 'response.audio.delta', { delta: 'AAAA' }],
    ['response.output_audio.done', 'response.audio.done', {}],
    ['response.output_audio_transcript.delta', 'response.audio_transcript.delta', { delta: 'Hel' }],
    ['response.output_audio_transcript.done', 'response.audio_transcript.done', { transcript: 'Hello' }],
  ];

  it.each(renames)('%s arrives as %s with every other field intact', (ga, beta, fields) => {
    const common = { event_id: 'evt_1', response_id: 'resp_1', item_id: 'item_1', output_index: 0, content_index: 0 };
    expect(translated({ type: ga, ...common, ...fields })).toEqual({ type: beta, ...common, ...fields });
  });

  it('conversation.item.added arrives as conversation.item.created', () => {
    const item = { id: 'item_1', object: 'realtime.item', type: 'message', status: 'completed', role: 'user', content: [{ type: 'input_audio', transcript: null }] };
    expect(translated({ type: 'conversation.item.added', event_id: 'e', previous_item_id: 'item_0', item })).toEqual({
      type: 'conversation.item.created',
      event_id: 'e',
      previous_item_id: 'item_0',
      item,
    });
  });

  it('conversation.item.added renames assistant content parts too', () => {
    const event = translated({
      type: 'conversation.item.added',
      event_id: 'e',
      item: { id: 'i', type: 'message', role: 'assistant', content: [{ type: 'output_audio', transcript: 'Hi' }] },
    });
    expect(event).toEqual({
      type: 'conversation.item.created',
      event_id: 'e',
      item: { id: 'i', type: 'message', role: 'assistant', content: [{ type: 'audio', transcript: 'Hi' }] },
    });
  });

  it('does not send conversation.item.done, which beta never had', () => {
    expect(translateServerEvent(frameOf({ type: 'conversation.item.done', event_id: 'e', item: { id: 'i' } }), 'conversation.item.done')).toBeNull();
  });
});

describe('session.created / session.updated for beta clients', () => {
  const cases: [string, Json, Json][] = [
    ['output_modalities audio → modalities text+audio', { output_modalities: ['audio'] }, { modalities: ['text', 'audio'] }],
    ['output_modalities text → modalities text', { output_modalities: ['text'] }, { modalities: ['text'] }],
    ['audio.output.voice → voice', { audio: { output: { voice: 'marin' } } }, { voice: 'marin' }],
    ['audio.output.speed → speed', { audio: { output: { speed: 0.9 } } }, { speed: 0.9 }],
    ['audio.input.format audio/pcm → pcm16', { audio: { input: { format: { type: 'audio/pcm', rate: 24000 } } } }, { input_audio_format: 'pcm16' }],
    ['audio.input.format audio/pcmu → g711_ulaw', { audio: { input: { format: { type: 'audio/pcmu' } } } }, { input_audio_format: 'g711_ulaw' }],
    ['audio.input.format audio/pcma → g711_alaw', { audio: { input: { format: { type: 'audio/pcma' } } } }, { input_audio_format: 'g711_alaw' }],
    ['audio.output.format audio/pcm → pcm16', { audio: { output: { format: { type: 'audio/pcm', rate: 24000 } } } }, { output_audio_format: 'pcm16' }],
    ['audio.output.format audio/pcmu → g711_ulaw', { audio: { output: { format: { type: 'audio/pcmu' } } } }, { output_audio_format: 'g711_ulaw' }],
    ['audio.output.format audio/pcma → g711_alaw', { audio: { output: { format: { type: 'audio/pcma' } } } }, { output_audio_format: 'g711_alaw' }],
    [
      'audio.input.turn_detection → turn_detection',
      { audio: { input: { turn_detection: { type: 'server_vad', threshold: 0.5, idle_timeout_ms: null } } } },
      { turn_detection: { type: 'server_vad', threshold: 0.5, idle_timeout_ms: null } },
    ],
    ['audio.input.transcription → input_audio_transcription', { audio: { input: { transcription: { model: 'whisper-1' } } } }, { input_audio_transcription: { model: 'whisper-1' } }],
    ['audio.input.noise_reduction → input_audio_noise_reduction', { audio: { input: { noise_reduction: null } } }, { input_audio_noise_reduction: null }],
    ['max_output_tokens → max_response_output_tokens', { max_output_tokens: 'inf' }, { max_response_output_tokens: 'inf' }],
    ['instructions unchanged', { instructions: 'Be kind.' }, { instructions: 'Be kind.' }],
    ['tools unchanged', { tools: [{ type: 'function', name: 'f' }] }, { tools: [{ type: 'function', name: 'f' }] }],
    ['tool_choice unchanged', { tool_choice: 'auto' }, { tool_choice: 'auto' }],
    ['tracing unchanged', { tracing: null }, { tracing: null }],
    ['id, object, model and expires_at unchanged', { id: 'sess_1', object: 'realtime.session', model: 'gpt-realtime', expires_at: 1 }, { id: 'sess_1', object: 'realtime.session', model: 'gpt-realtime', expires_at: 1 }],
  ];

  it.each(cases)('%s', (_name, gaFields, betaFields) => {
    for (const type of ['session.created', 'session.updated']) {
      expect(translated({ type, event_id: 'e', session: { type: 'realtime', ...gaFields } })).toEqual({ type, event_id: 'e', session: betaFields });
    }
  });

  it('flattens a whole GA session as OpenAI sends it', () => {
    const session = {
      type: 'realtime',
      object: 'realtime.session',
      id: 'sess_C9G5QPteg4UIbotdKLoYQ',
      model: 'gpt-realtime-2025-08-28',
      output_modalities: ['audio'],
      instructions: 'Be brief.',
      tools: [],
      tool_choice: 'auto',
      max_output_tokens: 'inf',
      tracing: null,
      prompt: null,
      expires_at: 1756324625,
      audio: {
        input: {
          format: { type: 'audio/pcm', rate: 24000 },
          transcription: null,
          noise_reduction: null,
          turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 200, idle_timeout_ms: null, create_response: true, interrupt_response: true },
        },
        output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'marin', speed: 1 },
      },
      include: null,
    };
    expect(translated({ type: 'session.created', event_id: 'e', session })).toEqual({
      type: 'session.created',
      event_id: 'e',
      session: {
        object: 'realtime.session',
        id: 'sess_C9G5QPteg4UIbotdKLoYQ',
        model: 'gpt-realtime-2025-08-28',
        modalities: ['text', 'audio'],
        instructions: 'Be brief.',
        tools: [],
        tool_choice: 'auto',
        max_response_output_tokens: 'inf',
        tracing: null,
        prompt: null,
        expires_at: 1756324625,
        input_audio_format: 'pcm16',
        input_audio_transcription: null,
        input_audio_noise_reduction: null,
        turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 200, idle_timeout_ms: null, create_response: true, interrupt_response: true },
        output_audio_format: 'pcm16',
        voice: 'marin',
        speed: 1,
        include: null,
      },
    });
  });

  it.each([
    ['session.created', 'transcription_session.created'],
    ['session.updated', 'transcription_session.updated'],
  ])('a transcription %s arrives as %s in the beta transcription shape', (ga, beta) => {
    const session = {
      type: 'transcription',
      object: 'realtime.transcription_session',
      id: 'sess_t',
      audio: {
        input: {
          format: { type: 'audio/pcmu' },
          transcription: { model: 'gpt-4o-transcribe', language: 'en', prompt: '' },
          noise_reduction: { type: 'near_field' },
          turn_detection: { type: 'server_vad', threshold: 0.5 },
        },
      },
      include: ['item.input_audio_transcription.logprobs'],
    };
    expect(translated({ type: ga, event_id: 'e', session })).toEqual({
      type: beta,
      event_id: 'e',
      session: {
        object: 'realtime.transcription_session',
        id: 'sess_t',
        input_audio_format: 'g711_ulaw',
        input_audio_transcription: { model: 'gpt-4o-transcribe', language: 'en', prompt: '' },
        input_audio_noise_reduction: { type: 'near_field' },
        turn_detection: { type: 'server_vad', threshold: 0.5 },
        include: ['item.input_audio_transcription.logprobs'],
      },
    });
  });
});

describe('response.created / response.done for beta clients', () => {
  const gaResponse = {
    object: 'realtime.response',
    id: 'resp_1',
    status: 'completed',
    status_details: null,
    conversation_id: 'conv_1',
    output_modalities: ['audio'],
    max_output_tokens: 'inf',
    audio: { output: { format: { type: 'audio/pcmu' }, voice: 'cedar' } },
    metadata: { topic: 't' },
    output: [
      { id: 'item_1', object: 'realtime.item', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_audio', transcript: 'Hello' }] },
      { id: 'item_2', object: 'realtime.item', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hi' }] },
      { id: 'item_3', object: 'realtime.item', type: 'function_call', status: 'completed', name: 'f', call_id: 'c', arguments: '{}' },
    ],
    usage: EVERY_KIND_OF_TOKEN_USAGE,
  };

  it.each(['response.created', 'response.done'])('%s carries the beta response fields, usage untouched', (type) => {
    const event = translated({ type, event_id: 'e', response: gaResponse });
    expect(event).toEqual({
      type,
      event_id: 'e',
      response: {
        object: 'realtime.response',
        id: 'resp_1',
        status: 'completed',
        status_details: null,
        conversation_id: 'conv_1',
        modalities: ['text', 'audio'],
        // Beta reported the cap under this very name; only beta requests said max_response_output_tokens.
        max_output_tokens: 'inf',
        voice: 'cedar',
        output_audio_format: 'g711_ulaw',
        metadata: { topic: 't' },
        output: [
          { id: 'item_1', object: 'realtime.item', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'audio', transcript: 'Hello' }] },
          { id: 'item_2', object: 'realtime.item', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'text', text: 'Hi' }] },
          { id: 'item_3', object: 'realtime.item', type: 'function_call', status: 'completed', name: 'f', call_id: 'c', arguments: '{}' },
        ],
        usage: EVERY_KIND_OF_TOKEN_USAGE,
      },
    });
  });

  it('output_modalities text → modalities text', () => {
    const event = translated({ type: 'response.created', event_id: 'e', response: { id: 'r', output_modalities: ['text'], output: [] } });
    expect(event?.response).toEqual({ id: 'r', modalities: ['text'], output: [] });
  });
});

describe('items and content parts for beta clients', () => {
  it.each([
    ['output_text', 'text', { text: 'Hi' }],
    ['output_audio', 'audio', { transcript: 'Hi' }],
  ])('content part %s arrives as %s', (ga, beta, fields) => {
    for (const type of ['response.content_part.added', 'response.content_part.done']) {
      const common = { event_id: 'e', response_id: 'r', item_id: 'i', output_index: 0, content_index: 0 };
      expect(translated({ type, ...common, part: { type: ga, ...fields } })).toEqual({ type, ...common, part: { type: beta, ...fields } });
    }
  });

  it.each(['response.output_item.added', 'response.output_item.done', 'conversation.item.retrieved'])('%s gets beta content part types', (type) => {
    const item = { id: 'i', type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'a' }, { type: 'output_audio', transcript: 'b' }] };
    expect(translated({ type, event_id: 'e', item })).toEqual({
      type,
      event_id: 'e',
      item: { ...item, content: [{ type: 'text', text: 'a' }, { type: 'audio', transcript: 'b' }] },
    });
  });

  it.each([
    ['response.output_item.added', { type: 'response.output_item.added', event_id: 'e', item: { id: 'i', type: 'function_call', name: 'f', arguments: '' } }],
    ['response.output_item.done', { type: 'response.output_item.done', event_id: 'e', item: { id: 'i', type: 'message', role: 'assistant', content: [] } }],
    ['response.content_part.added', { type: 'response.content_part.added', event_id: 'e', part: { type: 'text', text: '' } }],
    ['conversation.item.retrieved', { type: 'conversation.item.retrieved', event_id: 'e', item: { id: 'i', role: 'user', content: [{ type: 'input_text', text: 'x' }] } }],
  ])('forwards a %s that needs nothing renamed as the same buffer', (type, event) => {
    const data = frameOf(event);
    expect(translateServerEvent(data, type)).toBe(data);
  });
});

describe('events beta and GA share', () => {
  it.each([
    { type: 'error', event_id: 'e', error: { type: 'invalid_request_error', code: 'x', message: 'm', param: null, event_id: null } },
    { type: 'conversation.created', event_id: 'e', conversation: { id: 'conv_1', object: 'realtime.conversation' } },
    { type: 'input_audio_buffer.committed', event_id: 'e', item_id: 'i', previous_item_id: null },
    { type: 'input_audio_buffer.speech_started', event_id: 'e', audio_start_ms: 10, item_id: 'i' },
    { type: 'conversation.item.input_audio_transcription.completed', event_id: 'e', item_id: 'i', content_index: 0, transcript: 't', usage: { type: 'duration', seconds: 3 } },
    { type: 'response.function_call_arguments.delta', event_id: 'e', delta: '{"a"' },
    { type: 'rate_limits.updated', event_id: 'e', rate_limits: [] },
    { type: 'output_audio_buffer.started', event_id: 'e', response_id: 'r' },
    { type: 'some.future_event', event_id: 'e', payload: { type: 'response.output_audio.delta' } },
    { type: 'constructor', event_id: 'e' },
  ])('forwards $type as the same buffer', (event) => {
    const data = frameOf(event);
    expect(translateServerEvent(data, event.type)).toBe(data);
  });
});
