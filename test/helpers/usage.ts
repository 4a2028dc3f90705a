import fc from 'fast-check';

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

/**
 * Objects shaped like a response usage whose every count is drawn from
 * `field`, each details object present or not; `cachedDetailsInstead`, when
 * given, may stand where the cached details would.
 */
export function usageShaped(field: fc.Arbitrary<unknown>, cachedDetailsInstead?: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  const maybe = <T>(arbitrary: fc.Arbitrary<T>) => fc.option(arbitrary, { nil: undefined });
  const cachedDetails = fc.record({ text_tokens: field, audio_tokens: field, image_tokens: field });
  return fc.record({
    total_tokens: field,
    input_tokens: field,
    output_tokens: field,
    input_token_details: maybe(
      fc.record({
        text_tokens: field,
        audio_tokens: field,
        image_tokens: field,
        cached_tokens: field,
        cached_tokens_details: maybe(cachedDetailsInstead ? fc.oneof(cachedDetails, cachedDetailsInstead) : cachedDetails),
      }),
    ),
    output_token_details: maybe(fc.record({ text_tokens: field, audio_tokens: field, reasoning_tokens: field })),
  });
}
