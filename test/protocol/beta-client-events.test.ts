import { afterEach, describe, expect, it, vi } from 'vitest';
import { DROPPED_BETA_SESSION_FIELDS, translateClientEvent } from '../../src/protocol/beta/index.js';

type Json = Record<string, unknown>;

function translated(event: Json): Json {
  const result = translateClientEvent(JSON.stringify(event));
  if (!('frame' in result)) throw new Error(`dropped: ${result.reason}`);
  return JSON.parse(result.frame) as Json;
}

function gaSessionFor(session: Json): Json {
  return translated({ type: 'session.update', session }).session as Json;
}

function gaResponseFor(response: Json): Json {
  return translated({ type: 'response.create', response }).response as Json;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('session.update from a beta client', () => {
  const cases: [string, Json, Json][] = [
    ['modalities text+audio → output_modalities audio', { modalities: ['text', 'audio'] }, { output_modalities: ['audio'] }],
    ['modalities audio+text → output_modalities audio', { modalities: ['audio', 'text'] }, { output_modalities: ['audio'] }],
    ['modalities text → output_modalities text', { modalities: ['text'] }, { output_modalities: ['text'] }],
    ['voice → audio.output.voice', { voice: 'verse' }, { audio: { output: { voice: 'verse' } } }],
    ['speed → audio.output.speed', { speed: 1.25 }, { audio: { output: { speed: 1.25 } } }],
    ['input_audio_format pcm16 → audio/pcm 24 kHz', { input_audio_format: 'pcm16' }, { audio: { input: { format: { type: 'audio/pcm', rate: 24000 } } } }],
    ['input_audio_format g711_ulaw → audio/pcmu', { input_audio_format: 'g711_ulaw' }, { audio: { input: { format: { type: 'audio/pcmu' } } } }],
    ['input_audio_format g711_alaw → audio/pcma', { input_audio_format: 'g711_alaw' }, { audio: { input: { format: { type: 'audio/pcma' } } } }],
    ['input_audio_format constructor is passed on as given, for upstream to judge', { input_audio_format: 'constructor' }, { audio: { input: { format: 'constructor' } } }],
    ['output_audio_format toString is passed on as given, for upstream to judge', { output_audio_format: 'toString' }, { audio: { output: { format: 'toString' } } }],
    ['output_audio_format pcm16 → audio/pcm 24 kHz', { output_audio_format: 'pcm16' }, { audio: { output: { format: { type: 'audio/pcm', rate: 24000 } } } }],
    ['output_audio_format g711_ulaw → audio/pcmu', { output_audio_format: 'g711_ulaw' }, { audio: { output: { format: { type: 'audio/pcmu' } } } }],
    ['output_audio_format g711_alaw → audio/pcma', { output_audio_format: 'g711_alaw' }, { audio: { output: { format: { type: 'audio/pcma' } } } }],
    [
      'turn_detection → audio.input.turn_detection',
      { turn_detection: { type: 'semantic_vad', eagerness: 'low', create_response: false } },
      { audio: { input: { turn_detection: { type: 'semantic_vad', eagerness: 'low', create_response: false } } } },
    ],
    [
      'turn_detection without type gets beta\'s default server_vad',
      { turn_detection: { silence_duration_ms: 800 } },
      { audio: { input: { turn_detection: { type: 'server_vad', silence_duration_ms: 800 } } } },
    ],
    ['turn_detection null turns it off', { turn_detection: null }, { audio: { input: { turn_detection: null } } }],
    [
      'input_audio_transcription → audio.input.transcription',
      { input_audio_transcription: { model: 'gpt-4o-transcribe', language: 'de', prompt: 'names' } },
      { audio: { input: { transcription: { model: 'gpt-4o-transcribe', language: 'de', prompt: 'names' } } } },
    ],
    ['input_audio_transcription null', { input_audio_transcription: null }, { audio: { input: { transcription: null } } }],
    [
      'input_audio_noise_reduction → audio.input.noise_reduction',
      { input_audio_noise_reduction: { type: 'far_field' } },
      { audio: { input: { noise_reduction: { type: 'far_field' } } } },
    ],
    ['input_audio_noise_reduction null', { input_audio_noise_reduction: null }, { audio: { input: { noise_reduction: null } } }],
    ['max_response_output_tokens → max_output_tokens', { max_response_output_tokens: 512 }, { max_output_tokens: 512 }],
    ['max_response_output_tokens inf', { max_response_output_tokens: 'inf' }, { max_output_tokens: 'inf' }],
    ['instructions unchanged', { instructions: 'Be brief.' }, { instructions: 'Be brief.' }],
    [
      'tools unchanged',
      { tools: [{ type: 'function', name: 'lookup', description: 'd', parameters: { type: 'object' } }] },
      { tools: [{ type: 'function', name: 'lookup', description: 'd', parameters: { type: 'object' } }] },
    ],
    ['tool_choice string unchanged', { tool_choice: 'required' }, { tool_choice: 'required' }],
    [
      'tool_choice in the Chat Completions spelling → GA function choice',
      { tool_choice: { type: 'function', function: { name: 'lookup' } } },
      { tool_choice: { type: 'function', name: 'lookup' } },
    ],
    ['tool_choice GA function choice unchanged', { tool_choice: { type: 'function', name: 'lookup' } }, { tool_choice: { type: 'function', name: 'lookup' } }],
    ['tracing auto unchanged', { tracing: 'auto' }, { tracing: 'auto' }],
    ['tracing object unchanged', { tracing: { workflow_name: 'w', group_id: 'g' } }, { tracing: { workflow_name: 'w', group_id: 'g' } }],
    ['tracing null unchanged', { tracing: null }, { tracing: null }],
    ['model unchanged', { model: 'gpt-realtime' }, { model: 'gpt-realtime' }],
    ['temperature dropped', { temperature: 0.8 }, {}],
    ['client_secret dropped', { client_secret: { expires_after: { anchor: 'created_at', seconds: 600 } } }, {}],
  ];

  it.each(cases)('%s', (_name, beta, gaFields) => {
    expect(gaSessionFor(beta)).toEqual({ type: 'realtime', ...gaFields });
  });

  it('merges input and output audio settings into one audio object', () => {
    expect(
      gaSessionFor({ voice: 'ash', input_audio_format: 'g711_ulaw', output_audio_format: 'g711_ulaw', turn_detection: null }),
    ).toEqual({
      type: 'realtime',
      audio: {
        input: { format: { type: 'audio/pcmu' }, turn_detection: null },
        output: { format: { type: 'audio/pcmu' }, voice: 'ash' },
      },
    });
  });

  it('keeps the event id and event type', () => {
    const event = translated({ type: 'session.update', event_id: 'evt_1', session: { voice: 'ash' } });
    expect(event.type).toBe('session.update');
    expect(event.event_id).toBe('evt_1');
  });

  it('forwards a session already in GA shape unchanged', () => {
    const frame = JSON.stringify({ type: 'session.update', session: { type: 'realtime', output_modalities: ['text'] } });
    expect(translateClientEvent(frame)).toEqual({ frame });
    expect((translateClientEvent(frame) as { frame: string }).frame).toBe(frame);
  });
});

describe('response.create from a beta client', () => {
  const cases: [string, Json, Json][] = [
    ['modalities → output_modalities', { modalities: ['text', 'audio'] }, { output_modalities: ['audio'] }],
    ['text-only modalities', { modalities: ['text'] }, { output_modalities: ['text'] }],
    ['voice → audio.output.voice', { voice: 'coral' }, { audio: { output: { voice: 'coral' } } }],
    ['output_audio_format → audio.output.format', { output_audio_format: 'g711_alaw' }, { audio: { output: { format: { type: 'audio/pcma' } } } }],
    ['max_response_output_tokens → max_output_tokens', { max_response_output_tokens: 200 }, { max_output_tokens: 200 }],
    ['instructions unchanged', { instructions: 'Say hi.' }, { instructions: 'Say hi.' }],
    ['tools unchanged', { tools: [{ type: 'function', name: 'f', parameters: {} }] }, { tools: [{ type: 'function', name: 'f', parameters: {} }] }],
    ['tool_choice unchanged', { tool_choice: 'none' }, { tool_choice: 'none' }],
    ['tool_choice nested function → GA', { tool_choice: { type: 'function', function: { name: 'f' } } }, { tool_choice: { type: 'function', name: 'f' } }],
    ['conversation unchanged', { conversation: 'none' }, { conversation: 'none' }],
    ['metadata unchanged', { metadata: { topic: 'billing' } }, { metadata: { topic: 'billing' } }],
    ['temperature dropped', { temperature: 0.7 }, {}],
    [
      'input: assistant text/audio parts renamed, user parts kept',
      {
        input: [
          { type: 'item_reference', id: 'item_1' },
          { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] },
          { type: 'message', role: 'assistant', content: [{ type: 'text', text: 'hello' }, { type: 'audio', transcript: 'hello' }] },
        ],
      },
      {
        input: [
          { type: 'item_reference', id: 'item_1' },
          { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] },
          { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'hello' }, { type: 'output_audio', transcript: 'hello' }] },
        ],
      },
    ],
  ];

  it.each(cases)('%s', (_name, beta, ga) => {
    expect(gaResponseFor(beta)).toEqual(ga);
  });

  it('forwards a response.create without options as the same frame', () => {
    const frame = '{"type":"response.create"}';
    expect((translateClientEvent(frame) as { frame: string }).frame).toBe(frame);
  });
});

describe('transcription_session.update from a beta client', () => {
  it('becomes a GA session.update of type transcription', () => {
    const event = translated({
      type: 'transcription_session.update',
      event_id: 'evt_t',
      session: {
        input_audio_format: 'pcm16',
        input_audio_transcription: { model: 'gpt-4o-mini-transcribe', language: 'en', prompt: '' },
        turn_detection: { type: 'server_vad', threshold: 0.4, prefix_padding_ms: 200, silence_duration_ms: 300 },
        input_audio_noise_reduction: { type: 'near_field' },
        include: ['item.input_audio_transcription.logprobs'],
        modalities: ['text'],
        client_secret: { expires_at: { anchor: 'created_at', seconds: 60 } },
      },
    });
    expect(event).toEqual({
      type: 'session.update',
      event_id: 'evt_t',
      session: {
        type: 'transcription',
        audio: {
          input: {
            format: { type: 'audio/pcm', rate: 24000 },
            transcription: { model: 'gpt-4o-mini-transcribe', language: 'en', prompt: '' },
            turn_detection: { type: 'server_vad', threshold: 0.4, prefix_padding_ms: 200, silence_duration_ms: 300 },
            noise_reduction: { type: 'near_field' },
          },
        },
        include: ['item.input_audio_transcription.logprobs'],
      },
    });
  });
});

describe('conversation.item.create from a beta client', () => {
  it('renames assistant text and audio parts to their GA names', () => {
    const event = translated({
      type: 'conversation.item.create',
      previous_item_id: null,
      item: { type: 'message', role: 'assistant', content: [{ type: 'text', text: 'Hello' }, { type: 'audio', transcript: 'Hi' }] },
    });
    expect(event).toEqual({
      type: 'conversation.item.create',
      previous_item_id: null,
      item: { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Hello' }, { type: 'output_audio', transcript: 'Hi' }] },
    });
  });

  it.each([
    ['a user message', { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }, { type: 'input_audio', audio: 'AAAA' }] }],
    ['a system message', { type: 'message', role: 'system', content: [{ type: 'input_text', text: 'rules' }] }],
    ['a function output', { type: 'function_call_output', call_id: 'c1', output: '{}' }],
  ])('forwards %s as the same frame', (_name, item) => {
    const frame = JSON.stringify({ type: 'conversation.item.create', item });
    expect((translateClientEvent(frame) as { frame: string }).frame).toBe(frame);
  });
});

describe('frames that need no translation', () => {
  it('forwards an audio append as the same string without parsing it', () => {
    const frame = JSON.stringify({ type: 'input_audio_buffer.append', audio: 'A'.repeat(1 << 20) });
    const parse = vi.spyOn(JSON, 'parse');
    const result = translateClientEvent(frame);
    expect(parse).not.toHaveBeenCalled();
    expect((result as { frame: string }).frame).toBe(frame);
  });

  it('finds the type of an audio append whose type follows the audio', () => {
    const frame = `{"audio":"${'B'.repeat(4096)}","type":"input_audio_buffer.append"}`;
    const parse = vi.spyOn(JSON, 'parse');
    expect((translateClientEvent(frame) as { frame: string }).frame).toBe(frame);
    expect(parse).not.toHaveBeenCalled();
  });

  it.each([
    '{"type":"input_audio_buffer.commit"}',
    '{"type":"input_audio_buffer.clear"}',
    '{"type":"output_audio_buffer.clear"}',
    '{"type":"response.cancel","response_id":"resp_1"}',
    '{"type":"conversation.item.truncate","item_id":"i","content_index":0,"audio_end_ms":10}',
    '{"type":"conversation.item.delete","item_id":"i"}',
    '{"type":"conversation.item.retrieve","item_id":"i"}',
    '{"type":"some.future_event","x":1}',
    '{"type":"toString"}',
    '{"no_type":true}',
    '[1,2,3]',
    '{"type":"session.update","session":"not an object"}',
  ])('forwards %s as the same string', (frame) => {
    expect((translateClientEvent(frame) as { frame: string }).frame).toBe(frame);
  });

  it('reads a type spelled with escapes by parsing', () => {
    const frame = '{"t\\u0079pe":"session.update","session":{"voice":"ash"}}';
    expect(JSON.parse((translateClientEvent(frame) as { frame: string }).frame)).toEqual({
      type: 'session.update',
      session: { type: 'realtime', audio: { output: { voice: 'ash' } } },
    });
  });
});

describe('DROPPED_BETA_SESSION_FIELDS', () => {
  it('gives every dropped field a one-line reason', () => {
    expect(DROPPED_BETA_SESSION_FIELDS.length).toBeGreaterThan(0);
    for (const dropped of DROPPED_BETA_SESSION_FIELDS) {
      expect(dropped.reason).toMatch(/^\S.*\.$/);
      expect(dropped.reason).not.toContain('\n');
    }
  });

  it.each(DROPPED_BETA_SESSION_FIELDS.flatMap((d) => d.events.map((event) => [d.field, event] as const)))(
    'keeps %s out of what %s sends upstream',
    (field, event) => {
      const options = { [field]: field === 'modalities' ? ['text'] : 1, instructions: 'kept' };
      const body = event === 'response.create' ? { type: event, response: options } : { type: event, session: options };
      const ga = translated(body);
      const sent = (event === 'response.create' ? ga.response : ga.session) as Json;
      expect(sent).not.toHaveProperty(field);
      if (event !== 'transcription_session.update') expect(sent.instructions).toBe('kept');
    },
  );
});
