// The V8 settings a command makes at run time (src/runtime/v8-flags.ts), each in a fresh node started without flags,
// as the image's wrapper starts it: gc without --expose-gc on the command line (a worker thread started after has
// its own), and no Turbofan (the optimising compile of a function goes no further than Maglev).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

const MODULE = pathToFileURL(new URL('../src/runtime/v8-flags.ts', import.meta.url).pathname).href;

/** Runs `code` (an ES module importing the settings as `flags`) in a new node; its stdout. */
function inNewNode(code: string, nodeFlags: string[] = []): string {
  return execFileSync(
    process.execPath,
    [...nodeFlags, '--import', 'tsx', '--input-type=module', '-e', `import * as flags from ${JSON.stringify(MODULE)};\n${code}`],
    { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } },
  ).trim();
}

test('exposeGc gives globalThis.gc (minor and full collections work), and a worker thread started after has gc too', () => {
  const out = inNewNode(`
    import { Worker } from 'node:worker_threads';
    const before = typeof globalThis.gc;
    flags.exposeGc();
    globalThis.gc({ type: 'minor' });
    globalThis.gc();
    const w = new Worker("require('node:worker_threads').parentPort.postMessage(typeof gc)", { eval: true, execArgv: [] });
    w.once('message', (inThread) => console.log([before, typeof globalThis.gc, inThread].join(' ')));
  `);
  assert.equal(out, 'undefined function function');
});

test('leanerCompiles: an optimising compile stops at Maglev (V8 12 on), where without it Turbofan compiles', () => {
  const probe = (tune: boolean) =>
    Number(
      inNewNode(
        `
        ${tune ? 'flags.leanerCompiles();' : ''}
        function hot(a) { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * 2; return s; }
        const a = new Float64Array(10);
        %PrepareFunctionForOptimization(hot); hot(a); hot(a); %OptimizeFunctionOnNextCall(hot); hot(a);
        console.log(%GetOptimizationStatus(hot));
      `,
        ['--allow-natives-syntax'],
      ),
    );
  const TURBOFANNED = 1 << 6; // V8's OptimizationStatus::kTurboFanned
  assert.ok(probe(false) & TURBOFANNED, 'Turbofan compiles by default');
  const v8Major = Number(process.versions.v8.split('.')[0]);
  assert.equal(Boolean(probe(true) & TURBOFANNED), v8Major < 12, 'no Turbofan where Maglev is there (V8 12 on)');
});
