// streamEntry's failures: a large entry whose write fails is a workspace failure naming the file, not damaged data.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { readDirectoryFromFile } from '../src/archive/central-directory.ts';
import { Budget, streamEntry } from '../src/archive/entry-data.ts';
import { ArchiveError, RelayError } from '../src/runtime/errors.ts';
import { pythonZip } from './helpers/archives.ts';

const dir = mkdtempSync(join(tmpdir(), 'artifact-relay-entry-stream-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// 3 MiB: several inflated pieces, so the failing write is not the last one.
const body = Buffer.concat([randomBytes(1 << 20), Buffer.from('log line 42 of the build\n'.repeat(84_000))]);
const zip = pythonZip(join(dir, 'large.zip'), [{ name: 'large.bin', data: body }]);

/** Streams the one entry of `zip`, handing each piece to `write`. */
async function streamLarge(write: (data: Buffer) => Promise<unknown>): Promise<number> {
  const directory = await readDirectoryFromFile(zip);
  const rec = directory.record(0);
  const fh = await open(zip, 'r');
  try {
    return await streamEntry(fh, rec, rec.path, new Budget({ maxBytes: 1 << 30, maxFiles: 10, maxRatio: 0 }), undefined, write);
  } finally {
    await fh.close();
  }
}

describe('streamEntry', () => {
  test('every piece is handed over in order, byte for byte', async () => {
    const pieces: Buffer[] = [];
    const size = await streamLarge(async (data) => pieces.push(Buffer.from(data)));
    assert.equal(size, body.length);
    assert.ok(pieces.length > 2, `${pieces.length} pieces`);
    assert.ok(Buffer.concat(pieces).equals(body));
  });

  test('a write that fails (a full disk) fails with its own cause and the file, not as damaged data', async () => {
    let writes = 0;
    await assert.rejects(
      streamLarge(async () => {
        if (++writes === 2) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      }),
      (err: unknown) => {
        assert.ok(err instanceof RelayError && !(err instanceof ArchiveError), String(err));
        assert.match(err.message, /Cannot write large\.bin: ENOSPC: no space left on device, write/);
        assert.match(err.advice ?? '', /free disk space/);
        assert.equal(err.details.code, 'ENOSPC');
        return true;
      },
    );
    assert.equal(writes, 2, 'nothing is written after the failed write');
  });
});
