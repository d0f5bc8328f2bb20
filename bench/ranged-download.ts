// The download alone, through artifact-relay's own code (bench/ranged.ts runs it): the archive's tail by Range (its
// size and validators), then src/workspace/file-sink.ts's parallel download into a file (ranges written at their
// offsets, the sha256 read back in order), or its one-connection download with --connections 1; nothing unpacked.
// node --import tsx bench/ranged-download.ts API_URL TOKEN ARCHIVE_PATH FILE CONNECTIONS
import { createGitLabClient } from '../src/api/client.ts';
import { downloadToFile, downloadToFileParallel } from '../src/workspace/file-sink.ts';

const [apiUrl, token, path, file, n] = process.argv.slice(2) as [string, string, string, string, string];
const connections = Number(n);
const client = createGitLabClient({ apiUrl, token, tokenType: 'private', retries: 2, timeoutMs: 60_000 });
const started = performance.now();
let result: Awaited<ReturnType<typeof downloadToFile>>;
if (connections > 1) {
  const tail = await client.readRange(path, undefined, -64 * 1024);
  if (!tail) throw new Error('the server ignores Range');
  result = await downloadToFileParallel(client, path, undefined, file, {
    total: tail.total,
    validators: { etag: tail.etag, lastModified: tail.lastModified },
    connections,
  });
} else result = await downloadToFile(client, path, undefined, file);
console.log(
  `Downloaded ${result.bytes} bytes in ${((performance.now() - started) / 1000).toFixed(2)} s (nothing unpacked); sha256 ${result.sha256}`,
);
