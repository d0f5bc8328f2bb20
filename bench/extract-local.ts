// Contender (c2): artifact-relay's own extraction of a local zip, with caps out of the way.
// Usage: node bench/.build/extract-local.mjs ZIP DIR (bundled by bench/run.ts), or node --import tsx bench/extract-local.ts ZIP DIR
import { mkdir } from 'node:fs/promises';
import { extractArchive } from '../src/archive/extract.ts';

const [zip, dir] = process.argv.slice(2);
if (!zip || !dir) {
  console.error('usage: extract-local ZIP DIR');
  process.exit(2);
}
await mkdir(dir, { recursive: true });
const concurrency = process.env.BENCH_CONCURRENCY ? Number(process.env.BENCH_CONCURRENCY) : undefined;
const r = await extractArchive(zip, dir, { maxBytes: 2 ** 50, maxFiles: 10_000_000, maxRatio: 0, concurrency });
console.error(`extracted ${r.files} files, ${r.directories} dirs, ${r.symlinks} symlinks, ${r.bytes} bytes`);
