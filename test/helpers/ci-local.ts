// Helpers for the component tests: GitLab's CI JSON schema (ci.json, inlined in gitlab-ci-local's bundle),
// GitLab-style input interpolation, and running a pipeline through gitlab-ci-local in a temporary git repo.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, mkdtempSync, mkdirSync, cpSync, symlinkSync, writeFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { assertBundleFresh } from './run.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);

type Schema = { [k: string]: any };

/**
 * Extracts GitLab's CI schema (ci.json, draft-07) from gitlab-ci-local's bundle, where it is inlined as a
 * JavaScript object literal starting `{$schema:"http://json-schema.org/draft-07/schema#",$id:"https://gitlab.com/.gitlab-ci.yml"`.
 */
function loadGitlabCiSchema(): Schema {
  const bundle = readFileSync(require.resolve('gitlab-ci-local/dist/index.js'), 'utf8');
  const marker = '{$schema:"http://json-schema.org/draft-07/schema#",$id:"https://gitlab.com/.gitlab-ci.yml"';
  const start = bundle.indexOf(marker);
  if (start < 0) throw new Error('ci.json not found in gitlab-ci-local/dist/index.js: was gitlab-ci-local upgraded?');
  let depth = 0;
  let quote: string | null = null;
  let end = start;
  for (; end < bundle.length; end++) {
    const c = bundle[end];
    if (quote) {
      if (c === '\\') end++;
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') quote = c;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) break;
  }
  const schema = runInNewContext(`(${bundle.slice(start, end + 1)})`) as Schema;
  return JSON.parse(JSON.stringify(schema)) as Schema;
}

/**
 * The header keys GitLab 17.x allows in `spec:` (lib/gitlab/ci/config/header/spec.rb, `ALLOWED_KEYS = %i[inputs]`
 * until `component` was added around 18.6): any other key makes the including pipeline invalid.
 */
export const GITLAB_17_SPEC_KEYS = ['inputs'];

let cached: { plain: ValidateFunction } | undefined;

/**
 * Validators for a whole CI config. `plain` is gitlab-ci-local 4.73.0's ci.json as shipped, unpatched: a 17.x-era
 * schema whose `spec` knows `inputs` only, as GitLab 17.x does.
 */
export function ciValidators() {
  if (cached) return cached;
  const schema = loadGitlabCiSchema();
  cached = { plain: new Ajv({ strict: false, allErrors: true, validateFormats: false }).compile(schema) };
  return cached;
}

export function formatErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`).join('\n');
}

export type InputValue = string | number | boolean | string[];
export type Inputs = Record<string, InputValue>;

/** How GitLab writes an array into a larger string: Ruby's inspect, `["a", "b"]` (JSON for plain strings). */
export function arrayInString(value: unknown[]): string {
  return `[${value.map((v) => JSON.stringify(v)).join(', ')}]`;
}

const BLOCK = /\$\[\[\s*(inputs|component)\.([\w-]+)\s*(?:\|[^\]]*)?\]\]/g;
const WHOLE = /^\$\[\[\s*(inputs|component)\.([\w-]+)\s*(?:\|[^\]]*)?\]\]$/;

/**
 * Interpolates `$[[ inputs.x ]]` (and, only when a component context is given, as on GitLab 18.6+ with
 * spec:component, `$[[ component.x ]]`) in a parsed YAML document the way GitLab does: a block that is a whole
 * value keeps the input's type; inside a larger string it becomes text (null: empty). Unknown inputs throw, and so
 * does `component.*` without a context (GitLab 17.x knows no component interpolation).
 */
export function interpolate(doc: unknown, inputs: Inputs, component?: Record<string, string | null>): unknown {
  const lookup = (kind: string, key: string): unknown => {
    if (kind === 'inputs') {
      if (!(key in inputs)) throw new Error(`unknown interpolation key inputs.${key}`);
      return inputs[key];
    }
    if (!component) throw new Error(`$[[ component.${key} ]]: GitLab 17.x has no component interpolation`);
    if (!(key in component)) throw new Error(`component.${key} is not declared in spec:component`);
    return component[key];
  };
  const str = (s: string): unknown => {
    const whole = WHOLE.exec(s);
    if (whole) {
      const v = lookup(whole[1], whole[2]);
      return v === null ? '' : v;
    }
    return s.replace(BLOCK, (_m, kind: string, key: string) => {
      const v = lookup(kind, key);
      if (v === null || v === undefined) return '';
      return Array.isArray(v) ? arrayInString(v) : String(v);
    });
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return str(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, val] of Object.entries(v)) out[String(str(k))] = walk(val);
      return out;
    }
    return v;
  };
  return walk(doc);
}

// ---------------------------------------------------------------------------------------------------------
// gitlab-ci-local end to end

export interface CiLocalRepo {
  dir: string;
  binDir: string;
  cleanup(): void;
}

/**
 * A temporary git repository holding the component's templates/ and the given .gitlab-ci.yml, with a remote
 * that makes `include: component: <host>/<projectPath>/<name>@$CI_COMMIT_SHA` resolve locally. `artifact-relay`
 * is put on PATH (binDir) as a symlink to the built bundle.
 */
export function makeCiLocalRepo(opts: {
  gitlabCi: string;
  projectPath: string;
  host?: string;
  files?: Record<string, string>;
}): CiLocalRepo {
  assertBundleFresh();
  const dir = mkdtempSync(join(tmpdir(), 'ar-ci-local-'));
  const binDir = join(dir, '.bin');
  const repo = join(dir, 'repo');
  mkdirSync(binDir);
  mkdirSync(repo);
  symlinkSync(join(ROOT, 'dist/artifact-relay.mjs'), join(binDir, 'artifact-relay'));
  cpSync(join(ROOT, 'templates'), join(repo, 'templates'), { recursive: true });
  writeFileSync(join(repo, '.gitlab-ci.yml'), opts.gitlabCi);
  for (const [name, content] of Object.entries(opts.files ?? {})) {
    mkdirSync(dirname(join(repo, name)), { recursive: true });
    writeFileSync(join(repo, name), content);
  }
  const git = (...args: string[]) => {
    const r = spawnSync('git', args, { cwd: repo, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  };
  git('init', '-q', '-b', 'main');
  git('config', 'user.email', 'test@example.com');
  git('config', 'user.name', 'test');
  git('remote', 'add', 'origin', `git@${opts.host ?? 'gitlab.example.com'}:${opts.projectPath}.git`);
  git('add', '-A');
  git('commit', '-q', '-m', 'test');
  return { dir: repo, binDir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface CiLocalResult {
  status: number | null;
  output: string;
}

/** Runs gitlab-ci-local (the devDependency, pinned) in `cwd` with the shell executor. */
export function runCiLocal(cwd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 180_000): Promise<CiLocalResult> {
  const bin = require.resolve('gitlab-ci-local/dist/index.js');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, '--force-shell-executor', '--no-color', '--mount-cache=false', ...args], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
  });
}
