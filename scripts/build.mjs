// Bundles src/main.ts into one ESM file that runs with `node` and needs no node_modules.
// component.yml is read here, at build time, and embedded as a constant.
import { build } from 'esbuild';
import { readFile, chmod } from 'node:fs/promises';
import { builtinModules, createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('..', import.meta.url));
const spec = parse(await readFile(`${root}component.yml`, 'utf8'), { merge: true });
const pkg = JSON.parse(await readFile(`${root}package.json`, 'utf8'));
const outfile = `${root}dist/artifact-relay.mjs`;

// ESM imports of Node's built-in modules are hoisted: left as they are, every one in the bundle (http, https, http2,
// tls, net, zlib, crypto ... for got and unzipper) would load before the first line runs, even for --version, and each
// import reads every export of its module (on Node 24 `node:util` alone then loads its diff and colour code and sets
// process.stderr up). Each built-in becomes a small module instead that requires it and exports the names it has, one
// pure statement each: esbuild keeps only the names imported somewhere, and evaluates the module with the first module
// that imports it (the commands, which main.ts imports lazily, for most).
const require = createRequire(import.meta.url);
// tls and https (for got, and a CA file) load only when first used: an http:// server never needs them, and on
// Node 24 they cost a fetch's start some 10-15 ms of its 90 ms. The default export is a Proxy that loads the module on
// its first property read; a named export must be a function (a wrapper that loads it on its first call): any other
// named export that something imports throws as the module is evaluated, so every fetch test fails on it.
const ON_FIRST_USE = new Set(['tls', 'https']);
const onFirstUse = (id, names) =>
  [
    'let m;',
    `const load = () => (m ??= require(${JSON.stringify(id)}));`,
    'export default new Proxy({}, { get: (_, k) => load()[k], has: (_, k) => k in load() });',
    ...names.map((k) =>
      typeof require(id)[k] === 'function' && !/^[A-Z]/.test(k)
        ? `export const ${k} = /* @__PURE__ */ (() => (...a) => load().${k}(...a))();`
        : `export const ${k} = /* @__PURE__ */ (() => { throw new Error('${id}: ${k} is not a function: import the default export'); })();`,
    ),
  ].join('\n');
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(b) {
    b.onResolve({ filter: /^[a-z_:/]+$/ }, (args) =>
      args.kind === 'import-statement' && builtins.has(args.path)
        ? { path: args.path.replace(/^node:/, ''), namespace: 'lazy-builtin' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => {
      const id = `node:${args.path}`;
      const names = Object.keys(require(id)).filter((k) => /^[A-Za-z_$][\w$]*$/.test(k) && k !== 'default');
      if (ON_FIRST_USE.has(args.path)) return { contents: onFirstUse(id, names), loader: 'js' };
      return {
        contents: [
          `const m = require(${JSON.stringify(id)});`,
          'export default m;',
          ...names.map((k) => `const _${k} = /* @__PURE__ */ (() => m.${k})();\nexport { _${k} as ${k} };`),
        ].join('\n'),
        loader: 'js',
      };
    });
  },
};

// @sindresorhus/is (got's argument checks) builds two Intl.ListFormat at import, for its error messages only: that loads
// ICU's list-format data and code, 4.6 MB more file-backed RSS (pages of the node binary) and 1.7 MB anonymous, in every
// run that imports got (Node 20 and 24 alike). Built on first use instead.
const IS_MODULE = /[\\/]@sindresorhus[\\/]is[\\/]distribution[\\/]index\.js$/;
const lazyListFormat = {
  name: 'lazy-list-format',
  setup(b) {
    b.onLoad({ filter: IS_MODULE }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      const pattern = /const (\w+) = new Intl\.ListFormat\(([^)]*)\);/g;
      const contents = text.replace(pattern, (_, name, options) => {
        return `let ${name}Made;\nconst ${name} = { format: (list) => (${name}Made ??= new Intl.ListFormat(${options})).format(list) };`;
      });
      if (contents === text) throw new Error(`${args.path}: no Intl.ListFormat to defer (has @sindresorhus/is changed?)`);
      return { contents, loader: 'js' };
    });
  },
};

// got imports http2-wrapper (which loads node:http2 and, through it, the HTTP server) for its `http2` option, which
// artifact-relay never sets: on Node 24 loading node:http2 costs 3.7 MB of file-backed RSS and 2 MB anonymous. In its
// place, a stand-in that fails if HTTP/2 were ever asked for.
const noHttp2 = {
  name: 'no-http2',
  setup(b) {
    b.onResolve({ filter: /^http2-wrapper$/ }, () => ({ path: 'http2-wrapper', namespace: 'no-http2' }));
    b.onLoad({ filter: /.*/, namespace: 'no-http2' }, () => ({
      contents: [
        "const unused = () => { throw new Error('HTTP/2 is not supported (got option http2)'); };",
        'export default { get globalAgent() { return unused(); }, get auto() { return unused(); } };',
      ].join('\n'),
      loader: 'js',
    }));
  },
};

// hpagent (proxy agents, src/api/proxy.ts) extends https.Agent at import, which loads tls and https: a stand-in whose
// two constructors load it on first use, where a proxy is set.
const lazyHpagent = {
  name: 'lazy-hpagent',
  setup(b) {
    b.onResolve({ filter: /^hpagent$/ }, (args) =>
      args.kind === 'import-statement' ? { path: 'hpagent', namespace: 'lazy-hpagent', pluginData: args.resolveDir } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-hpagent' }, (args) => ({
      contents: [
        "const load = () => require('hpagent');",
        'export function HttpProxyAgent(options) { return new (load().HttpProxyAgent)(options); }',
        'export function HttpsProxyAgent(options) { return new (load().HttpsProxyAgent)(options); }',
      ].join('\n'),
      resolveDir: args.pluginData,
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
  // Less text to parse at every start (1.1 -> 0.75 MB; --version 655M -> 634M instructions on Node 20). Identifiers stay
  // as written, so stack traces (ARTIFACT_RELAY_DEBUG) and constructor names read as in the source.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: false,
  legalComments: 'linked',
  logLevel: 'warning',
  plugins: [lazyBuiltins, lazyListFormat, noHttp2, lazyHpagent],
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
