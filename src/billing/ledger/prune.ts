/**
 * A clean-up as a series of short deletions: each batch is one statement of
 * at most `limit` rows, so no lock is held long, and a pass stops after
 * `maxBatches` so that a large backlog is worked off over several passes
 * instead of one long one. Returns how many rows the pass deleted.
 */
export async function pruneInBatches(deleteBatch: (limit: number) => Promise<number>, limit: number, maxBatches: number): Promise<number> {
  let total = 0;
  for (let batch = 0; batch < maxBatches; batch += 1) {
    const deleted = await deleteBatch(limit);
    total += deleted;
    if (deleted < limit) break;
  }
  return total;
}
