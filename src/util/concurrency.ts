/**
 * The one worker pool: runs `fn` over `items`, in order, at most `limit` at a time. After a failure no new item starts;
 * it settles once every running call has settled (nothing still runs when it rejects), and the first failure wins.
 */
export async function runPool<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const i = next++;
      try {
        await fn(items[i] as T, i);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.err;
}

/** Runs `fn` over `items` with at most `limit` at a time (runPool); results keep the items' order. The first failure wins. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  await runPool(items, limit, async (item, i) => {
    results[i] = await fn(item, i);
  });
  return results;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
