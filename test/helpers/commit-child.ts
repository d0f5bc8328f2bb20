// A child process that commits a staged tree into a destination the way fetch does (run folder, signal handlers,
// commitStaging), announcing each commit step on stdout and pausing at step `pause` until a signal arrives. Bundled
// with esbuild by the test (plain node starts in tens of milliseconds), so a loop of signals stays fast.
//   node commit-child.mjs '{"dest": "...", "incoming": {"a.txt": "new"}, "pause": 3}'
import { mkdirSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describeInterruption, installSignalHandlers, removeOnInterrupt, waitForSignal } from '../../src/runtime/lifecycle.ts';
import { commitStaging, createRun, discardRun } from '../../src/workspace/staging.ts';

const spec = JSON.parse(process.argv[2]) as { dest: string; incoming: Record<string, string | { link: string }>; pause: number };
installSignalHandlers((signal, d) => writeSync(2, `${describeInterruption(signal, d)}\n`));
const run = await createRun(spec.dest);
const release = removeOnInterrupt(run.root);
for (const [p, v] of Object.entries(spec.incoming)) {
  const abs = join(run.staging, p);
  mkdirSync(dirname(abs), { recursive: true });
  if (typeof v === 'string') writeFileSync(abs, v);
  else symlinkSync(v.link, abs);
}
try {
  await commitStaging(run.staging, spec.dest, {
    overwrite: true,
    workDir: run.root,
    onStep: async (step) => {
      writeSync(1, `step ${step.index} ${step.phase}\n`);
      if (step.index === spec.pause) {
        writeSync(1, 'paused\n');
        await waitForSignal();
      }
    },
  });
  writeSync(1, 'committed\n');
} finally {
  await discardRun(run);
  release();
}
