// Bundles src/main.ts into one ESM file that runs with `node` and needs no node_modules.
// component.yml is read here, at build time, and embedded as a constant.
import { build } from 'esbuild';
import { readFile, chmod } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('..', import.meta.url));
const spec = parse(await readFile(`${root}component.yml`, 'utf8'), { merge: true });
const pkg = JSON.parse(await readFile(`${root}package.json`, 'utf8'));
const outfile = `${root}dist/artifact-relay.mjs`;

// ESM imports of Node's built-in modules are hoisted: left as they are, every one in the bundle (http, https, http2,
// tls, net, zlib, crypto, readline ... for got and unzipper) would load before the first line runs, even for
// --version. Each becomes a small CommonJS module instead (`module.exports = require('node:zlib')`), which esbuild
// evaluates where the importing module is first evaluated: with the commands, which main.ts imports lazily.
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(b) {
    b.onResolve({ filter: /^[a-z_:/]+$/ }, (args) =>
      args.kind === 'import-statement' && builtins.has(args.path)
        ? { path: args.path.replace(/^node:/, ''), namespace: 'lazy-builtin' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
      contents: `module.exports = require(${JSON.stringify(`node:${args.path}`)});`,
      loader: 'js',
    }));
  },
};

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
  plugins: [lazyBuiltins],
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
