let cached: number | undefined;

/** The process umask, read once (process.umask() without an argument is deprecated). */
export function umask(): number {
  if (cached === undefined) {
    const old = process.umask(0o022);
    process.umask(old);
    cached = old;
  }
  return cached;
}
