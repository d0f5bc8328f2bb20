// Bundles src/main.ts into one ESM file that runs with `node` and needs no node_modules.
// component.yml is read here, at build time, and embedded as a constant.
import { build } from 'esbuild';
import { readFile, chmod } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('..', import.meta.url));
const spec = parse(await readFile(`${root}component.yml`, 'utf8'), { merge: true });
const pkg = JSON.parse(await readFile(`${root}package.json`, 'utf8'));
const outfile = `${root}dist/artifact-relay.mjs`;

await build({
  entryPoints: [`${root}src/main.ts`],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: false,
  sourcemap: false,
  legalComments: 'linked',
  logLevel: 'warning',
  // unzipper's Open.s3 (never used here) requires the AWS SDK lazily; keep it out of the bundle.
  external: ['@aws-sdk/client-s3'],
  define: {
    __COMPONENT_SPEC__: JSON.stringify(spec),
    __VERSION__: JSON.stringify(process.env.ARTIFACT_RELAY_VERSION || pkg.version),
  },
  banner: {
    // CommonJS dependencies (unzipper) call require(); give ESM output one.
    js: "#!/usr/bin/env node\nimport { createRequire as __arCreateRequire } from 'node:module';\nconst require = __arCreateRequire(import.meta.url);",
  },
});
await chmod(outfile, 0o755);
