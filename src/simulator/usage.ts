/** The usage the simulator reports, as a pure function of what the session did. */

export interface RealtimeUsage {
  total_tokens: number;
  input_tokens: number;
  output_tokens: number;
  input_token_details: {
    text_tokens: number;
    audio_tokens: number;
    image_tokens: number;
    cached_tokens: number;
    cached_tokens_details: { text_tokens: number; audio_tokens: number; image_tokens: number };
  };
  output_token_details: { text_tokens: number; audio_tokens: number };
}

export interface UsageInputs {
  /** Responses created earlier in the same session, cancelled ones included. */
  priorResponses: number;
  /** Decoded input audio bytes appended since the previous response.create. */
  inputAudioBytes: number;
  /** Text-bearing deltas actually sent: output text, audio transcript or function-call arguments. */
  textDeltas: number;
  /** Audio deltas actually sent. */
  audioDeltas: number;
}

/** 100 ms of 24 kHz PCM16: OpenAI's rate of one input audio token. */
export const INPUT_AUDIO_BYTES_PER_TOKEN = 4800;

/**
 * The rule, so that tests can state exact bills:
 * - input text tokens = 10 + 5 × prior responses (the conversation grows);
 * - input audio tokens = ceil(input audio bytes / 4800), one per 100 ms;
 * - image tokens = 0;
 * - cached tokens = min(input text tokens, 8 × prior responses), all of them text;
 * - output text tokens = text deltas sent; output audio tokens = 2 × audio deltas sent;
 * - input, output and total tokens are the consistent sums.
 * A cancelled response passes only the deltas it actually sent.
 */
export function simulatedUsage(inputs: UsageInputs): RealtimeUsage {
  const inputText = 10 + 5 * inputs.priorResponses;
  const inputAudio = Math.ceil(inputs.inputAudioBytes / INPUT_AUDIO_BYTES_PER_TOKEN);
  const cachedText = Math.min(inputText, 8 * inputs.priorResponses);
  const outputText = inputs.textDeltas;
  const outputAudio = 2 * inputs.audioDeltas;
  const inputTokens = inputText + inputAudio;
  const outputTokens = outputText + outputAudio;
  return {
    total_tokens: inputTokens + outputTokens,
    input_tokens: inputTokens,
    output_tokens: outputTokens,
    input_token_details: {
      text_tokens: inputText,
      audio_tokens: inputAudio,
      image_tokens: 0,
      cached_tokens: cachedText,
      cached_tokens_details: { text_tokens: cachedText, audio_tokens: 0, image_tokens: 0 },
    },
    output_token_details: { text_tokens: outputText, audio_tokens: outputAudio },
  };
}

/** The transcript every committed audio buffer is transcribed to; three words, so three output tokens. */
export const SIMULATED_TRANSCRIPT = 'hello from simulator';

export type TranscriptionUsage =
  | { type: 'duration'; seconds: number }
  | {
      type: 'tokens';
      input_tokens: number;
      output_tokens: number;
      total_tokens: number;
      input_token_details: { text_tokens: number; audio_tokens: number };
    };

/**
 * `whisper-1` bills by duration: ceil(bytes / 48000) seconds. Other models bill
 * tokens: ceil(bytes / 4800) audio tokens in, one token per transcript word out.
 */
export function simulatedTranscriptionUsage(model: string, audioBytes: number): TranscriptionUsage {
  if (model === 'whisper-1') return { type: 'duration', seconds: Math.ceil(audioBytes / 48000) };
  const audioTokens = Math.ceil(audioBytes / INPUT_AUDIO_BYTES_PER_TOKEN);
  const outputTokens = SIMULATED_TRANSCRIPT.split(' ').length;
  return {
    type: 'tokens',
    input_tokens: audioTokens,
    output_tokens: outputTokens,
    total_tokens: audioTokens + outputTokens,
    input_token_details: { text_tokens: 0, audio_tokens: audioTokens },
  };
}
