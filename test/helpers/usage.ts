/**
 * A GA response usage with every kind of token in play: text, audio and
 * image, cached and not, each detail adding up to its total. A wrong rate or
 * a wrong split anywhere changes what it costs.
 */
export const EVERY_KIND_OF_TOKEN_USAGE = {
  total_tokens: 1500,
  input_tokens: 1000,
  output_tokens: 500,
  input_token_details: {
    text_tokens: 300,
    audio_tokens: 600,
    image_tokens: 100,
    cached_tokens: 350,
    cached_tokens_details: { text_tokens: 100, audio_tokens: 200, image_tokens: 50 },
  },
  output_token_details: { text_tokens: 200, audio_tokens: 300 },
};
