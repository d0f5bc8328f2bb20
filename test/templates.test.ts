// The component templates (templates/<command>.yml) are generated from component.yml and must be valid
// GitLab CI: the `spec:` header and the body (after interpolation) against GitLab's CI JSON schema.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { ROOT, GITLAB_17_SPEC_KEYS, ciValidators, formatErrors, interpolate, arrayInString } from './helpers/ci-local.ts';
import type { Inputs, InputValue } from './helpers/ci-local.ts';
import { splitList } from '../src/inputs/parse.ts';

interface InputSpec {
  type?: string;
  default?: unknown;
  options?: unknown[];
  regex?: string;
  description?: string;
}
const component = parse(readFileSync(join(ROOT, 'component.yml'), 'utf8'), { merge: true }) as {
  commands: Record<string, { inputs: Record<string, InputSpec>; outputs?: Record<string, unknown> }>;
};
const commands = Object.keys(component.commands);
const packageVersion = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function loadTemplate(command: string) {
  const file = join(ROOT, 'templates', `${command}.yml`);
  const text = readFileSync(file, 'utf8');
  const docs = parseAllDocuments(text);
  assert.equal(docs.length, 2, `${file}: expected a spec header and a body separated by ---`);
  for (const d of docs) assert.deepEqual(d.errors, [], `${file}: YAML errors`);
  const header = docs[0].toJS() as { spec: { inputs: Record<string, InputSpec> } & Record<string, unknown> };
  const body = docs[1].toJS() as Record<string, any>;
  return { file, text, header, body };
}

function deepMerge(a: any, b: any): any {
  if (!a || !b || typeof a !== 'object' || typeof b !== 'object' || Array.isArray(a) || Array.isArray(b)) return b;
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = k in a ? deepMerge(a[k], v) : v;
  return out;
}

function defaults(inputs: Record<string, InputSpec>): Inputs {
  const out: Inputs = {};
  for (const [name, s] of Object.entries(inputs)) {
    assert.ok('default' in s, `input ${name} has no default: it would be mandatory`);
    out[name] = s.default as InputValue;
  }
  return out;
}

/** A non-default value for every input, valid for its type/options/regex. */
function testValues(inputs: Record<string, InputSpec>): Inputs {
  const out: Inputs = {};
  for (const [name, s] of Object.entries(inputs)) {
    const type = s.type ?? 'string';
    if (s.options) out[name] = s.options[s.options.length - 1] as InputValue;
    else if (type === 'array') out[name] = ['12', 'test 1/3', 'a,b'];
    else if (type === 'number') out[name] = 7;
    else if (type === 'boolean') out[name] = !s.default;
    else if (s.regex) out[name] = ['42', '5 MiB', '30d', '2026-01-31', `value-${name}`].find((v) => new RegExp(s.regex!).test(v)) ?? '';
    else if (name === 'token') out[name] = '$MY_MASKED_TOKEN';
    else if (name === 'job_name') out[name] = 'fetch upstream';
    else if (name === 'stage') out[name] = 'build';
    else out[name] = `value-${name}`;
    if (type === 'string' && s.regex) assert.match(String(out[name]), new RegExp(s.regex), `test value of ${name}`);
  }
  return out;
}

test('templates are up to date with component.yml (npm run templates -- --check)', () => {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/templates.mjs'), '--check'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

for (const command of commands) {
  const spec = component.commands[command];

  test(`templates/${command}.yml: spec header is valid GitLab 17.x CI (unpatched ci.json; spec:inputs only, no $[[ component.* ]])`, () => {
    const { header, text } = loadTemplate(command);
    assert.ok(text.startsWith('# Generated from component.yml by npm run templates; do not edit.'));
    // GitLab 17.0-18.5 reject any header key but inputs, and know no component interpolation: the consuming
    // pipeline would fail at creation. gitlab-ci-local 4.73.0's ci.json, unpatched, is such a schema.
    const { plain } = ciValidators();
    assert.ok(plain(header), `17.x schema: ${formatErrors(plain.errors)}`);
    assert.deepEqual(Object.keys(header.spec), GITLAB_17_SPEC_KEYS, 'spec: keys GitLab 17.x allows');
    assert.ok(!/\$\[\[\s*component\./.test(text), '$[[ component.* ]] is unknown before GitLab 18.6');
    // The image version comes from an input whose default is this package's version, not from the component context.
    assert.equal(header.spec.inputs.image_tag.default, packageVersion, 'image_tag defaults to package.json version');
    for (const [name, s] of Object.entries(header.spec.inputs)) {
      const type = s.type ?? 'string';
      assert.ok(['string', 'number', 'boolean', 'array'].includes(type), `${name}: type ${type}`);
      assert.ok(typeof s.description === 'string' && s.description.length > 0, `${name}: description`);
      if (s.options) {
        assert.notEqual(type, 'boolean', `${name}: options are not allowed with boolean`);
        assert.ok(s.options.includes(s.default), `${name}: default ${String(s.default)} not in options`);
      }
      if (s.regex) {
        assert.equal(type, 'string', `${name}: regex is for strings only`);
        assert.doesNotThrow(() => new RegExp(s.regex!), `${name}: regex`);
        assert.ok(!/\(\?[=!<]|\\[1-9]/.test(s.regex), `${name}: regex uses lookaround/backrefs, not RE2`);
        assert.match(String(s.default), new RegExp(s.regex), `${name}: default does not match its regex`);
      }
      if (type === 'array') assert.ok(Array.isArray(s.default), `${name}: array default`);
      if (type === 'number') assert.equal(typeof s.default, 'number', `${name}: number default`);
      if (type === 'boolean') assert.equal(typeof s.default, 'boolean', `${name}: boolean default`);
      if (typeof s.default === 'string')
        assert.ok(!/\$[A-Za-z_{]/.test(s.default), `${name}: GitLab does not expand variables in spec defaults`);
    }
  });

  test(`templates/${command}.yml: every component.yml input is a spec input and an INPUT_* variable`, () => {
    const { header, body } = loadTemplate(command);
    const job = Object.values(body)[0];
    for (const [name, s] of Object.entries(spec.inputs)) {
      const t = header.spec.inputs[name];
      assert.ok(t, `input ${name} missing from spec:inputs`);
      assert.equal(t.type ?? 'string', s.type ?? 'string', `${name}: type`);
      assert.deepEqual(t.options, s.options, `${name}: options`);
      const v = job.variables[`INPUT_${name.toUpperCase()}`];
      assert.ok(typeof v === 'string' && v.includes(`$[[ inputs.${name} ]]`), `${name}: INPUT_${name.toUpperCase()} is ${v}`);
    }
    assert.equal(job.script.at(-1), `artifact-relay ${command}`);
    assert.equal(job.script.length, spec.inputs.path ? 2 : 1, 'fetch empties its destination first; cleanup only runs');
    assert.deepEqual(Object.keys(body), ['$[[ inputs.job_name ]]'], 'one job, no global keywords');
  });

  for (const which of ['defaults', 'test inputs'] as const) {
    test(`templates/${command}.yml: body is valid GitLab CI with ${which}; no checkout, no inherited artifacts, no cache`, () => {
      const { header, body } = loadTemplate(command);
      const inputs = which === 'defaults' ? defaults(header.spec.inputs) : testValues(header.spec.inputs);
      const config = interpolate(body, inputs) as Record<string, any>;
      const { plain } = ciValidators();
      // The merged pipeline needs the stage to exist.
      const pipeline = { stages: ['build', 'test'], ...config };
      assert.ok(plain(pipeline), `${formatErrors(plain.errors)}\n${JSON.stringify(config, null, 2)}`);
      const job = config[String(inputs.job_name)];
      assert.ok(job, `job ${String(inputs.job_name)} missing`);
      assert.equal(job.stage, inputs.stage);
      assert.equal(job.image.name, `${String(inputs.image_repository)}:${String(inputs.image_tag)}`);
      if (which === 'defaults') assert.equal(job.image.name, `registry.gitlab.com/artifact-relay/artifact-relay:${packageVersion}`);
      assert.deepEqual(job.image.entrypoint, ['']);
      // What the job clones and downloads (README table): GIT_STRATEGY from the input (empty by default), no
      // artifacts of earlier jobs (dependencies: [] also wins over a merged-in needs), no cache.
      assert.equal(job.variables.GIT_STRATEGY, inputs.git_strategy);
      if (which === 'defaults') assert.equal(job.variables.GIT_STRATEGY, 'empty');
      assert.deepEqual(job.dependencies, []);
      assert.deepEqual(job.cache, []);
      assert.equal(job.needs, undefined, 'no needs: the job keeps stage ordering');
      // What it uploads: only what the bundle writes.
      const uploads = ['path', 'summary', 'report', 'storage_report'].filter((n) => n in spec.inputs).map((n) => inputs[n]);
      assert.deepEqual(job.artifacts.paths, uploads);
      if (spec.inputs.path) {
        assert.match(job.script[0], new RegExp(`^if \\[ "${String(inputs.clean)}" = true \\]; then$`, 'm'), 'clean input interpolated');
        assert.ok(!job.script[0].includes('$[['), 'nothing left to interpolate in the clean step');
      }
      for (const [key, value] of Object.entries(job.variables as Record<string, unknown>)) {
        // GitLab's validator accepts strings (and integers) only; arrays and booleans would fail.
        assert.equal(typeof value, 'string', `${key} must be a string, got ${JSON.stringify(value)}`);
        const name = key.replace(/^INPUT_/, '').toLowerCase();
        const input = inputs[name];
        if (Array.isArray(input)) {
          assert.equal((value as string).trim(), arrayInString(input));
          assert.deepEqual(
            splitList(value as string),
            input.filter((s) => s.trim() !== ''),
            `${key}: bundle must read the list back`,
          );
        } else {
          assert.equal((value as string).trim(), String(input), key);
        }
      }
      if (spec.inputs.dotenv) assert.equal(job.artifacts.reports.dotenv, inputs.dotenv);
    });
  }
}

test('the unpatched 17.x schema rejects a spec:component header, as GitLab before 18.6 does', () => {
  const { plain } = ciValidators();
  assert.equal(plain({ spec: { component: ['version', 'reference'], inputs: {} } }), false);
  assert.equal(plain({ spec: { inputs: { a: { type: 'string', default: 'x' } } } }), true);
  assert.throws(() => interpolate({ image: 'x:$[[ component.version ]]' }, {}), /GitLab 17\.x has no component interpolation/);
});

test('.gitlab-ci.yml of the component project is valid GitLab CI and passes known inputs', () => {
  const config = parse(readFileSync(join(ROOT, '.gitlab-ci.yml'), 'utf8')) as Record<string, any>;
  const { plain } = ciValidators();
  assert.ok(plain(config), formatErrors(plain.errors));
  const includes = ([] as any[]).concat(config.include ?? []);
  assert.ok(includes.length > 0, 'the project pipeline should test its own component');
  for (const inc of includes) {
    if (!inc.component) continue;
    const m = /\/([^/@]+)@\$CI_COMMIT_SHA$/.exec(inc.component);
    assert.ok(m, `${inc.component}: self-tests include by $CI_COMMIT_SHA`);
    assert.ok(commands.includes(m[1]), `${inc.component}: no such command`);
    const { header } = loadTemplate(m[1]);
    for (const name of Object.keys(inc.inputs ?? {})) assert.ok(name in header.spec.inputs, `${inc.component}: unknown input ${name}`);
    assert.ok(inc.inputs?.image_tag, 'included by SHA: the default image_tag (the released version) is not this build');
  }
  // The pipeline GitLab would run: the included component jobs (inputs interpolated, version null as with
  // an include by SHA) merged with the project's jobs of the same name.
  const merged: Record<string, any> = { ...config };
  delete merged.include;
  for (const inc of includes) {
    if (!inc.component) continue;
    const command = /\/([^/@]+)@/.exec(inc.component)![1];
    const { header, body } = loadTemplate(command);
    const inputs = { ...defaults(header.spec.inputs), ...(inc.inputs as Inputs) };
    const jobs = interpolate(body, inputs) as Record<string, any>;
    for (const [name, job] of Object.entries(jobs)) merged[name] = deepMerge(job, config[name] ?? {});
  }
  assert.ok(plain(merged), `merged pipeline: ${formatErrors(plain.errors)}`);
  for (const [name, job] of Object.entries(merged)) {
    if (!job || typeof job !== 'object' || Array.isArray(job) || ['workflow', 'variables', 'default'].includes(name)) continue;
    if (job.stage) assert.ok(config.stages.includes(job.stage), `${name}: stage ${job.stage} is not in stages`);
    for (const need of job.needs ?? [])
      assert.ok(merged[typeof need === 'string' ? need : need.job], `${name} needs unknown job ${JSON.stringify(need)}`);
  }
  const release = Object.values(config).find((j: any) => j && typeof j === 'object' && j.release) as any;
  assert.ok(release, 'a job with the release: keyword publishes to the catalog');
  // A release tag must be the templates' default image_tag, checked on the same tags as the release job.
  const versionCheck = Object.values(config).find((j: any) =>
    j?.script?.some?.((l: string) => l.includes('scripts/templates.mjs --check --tag "$CI_COMMIT_TAG"')),
  ) as any;
  assert.ok(versionCheck, 'a job checks that the tag is the package version');
  assert.deepEqual(versionCheck.rules, release.rules, 'the version check runs on every tag the release job runs on');
  assert.ok(config.stages.indexOf(versionCheck.stage) < config.stages.indexOf(release.stage), 'checked before the release');
});

test('release: templates.mjs --check --tag passes only for the package version (the default image_tag)', () => {
  const run = (tag: string) =>
    spawnSync(process.execPath, [join(ROOT, 'scripts/templates.mjs'), '--check', '--tag', tag], { encoding: 'utf8' });
  const ok = run(packageVersion);
  assert.equal(ok.status, 0, `${ok.stdout}${ok.stderr}`);
  const bad = run(`${packageVersion}9`);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /is not package\.json's version/);
});

/** fetch's first script step, interpolated with the defaults (and `clean`), run by /bin/sh as the job runs it. */
function runClean(projectDir: string, path: string, clean = true) {
  const { header, body } = loadTemplate('fetch');
  const config = interpolate(body, { ...defaults(header.spec.inputs), clean }) as Record<string, any>;
  const script = (Object.values(config)[0] as { script: string[] }).script[0];
  return spawnSync('sh', ['-c', script], {
    cwd: projectDir,
    env: { PATH: process.env.PATH, CI_PROJECT_DIR: projectDir, INPUT_PATH: path },
    encoding: 'utf8',
  });
}

function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

test('fetch clean step: empties the project directory for path ".", only the destination otherwise, never outside', () => {
  const root = mkdtempSync(join(tmpdir(), 'ar-clean-'));
  try {
    const project = join(root, 'project');
    const outside = join(root, 'outside');
    const seed = () => {
      rmSync(project, { recursive: true, force: true });
      for (const d of ['.git/objects', 'src', 'out/sub']) mkdirSync(join(project, d), { recursive: true });
      for (const f of ['.git/HEAD', 'src/main.c', 'README.md', '.hidden', 'out/sub/stale.txt']) writeFileSync(join(project, f), 'x');
      mkdirSync(join(outside, 'sub'), { recursive: true });
      writeFileSync(join(outside, 'sub/precious'), 'x');
      symlinkSync(outside, join(project, 'link'));
    };

    // path . (the default): every entry goes, dotfiles and .git included; the symlink, not its target.
    for (const dot of ['.', './', './.']) {
      seed();
      const r = runClean(project, dot);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(readdirSync(project), [], `path ${dot}`);
      assert.deepEqual(tree(outside), ['sub', 'sub/precious']);
    }
    // Another path: only that folder goes (it would be uploaded); the rest is not in the artifacts anyway.
    seed();
    let r = runClean(project, 'out');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(project).sort(), ['.git', '.hidden', 'README.md', 'link', 'src']);
    r = runClean(project, 'not-there-yet/deeper');
    assert.equal(r.status, 0, r.stderr);
    // Never outside the project directory.
    for (const outward of ['..', '../outside', 'src/../../outside', '/tmp', join(outside, 'sub'), 'link/sub']) {
      seed();
      r = runClean(project, outward);
      assert.equal(r.status, 2, `${outward}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /not inside the project directory|leads out of the project directory/);
      assert.deepEqual(tree(outside), ['sub', 'sub/precious'], outward);
      assert.ok(readdirSync(project).includes('src'), outward);
    }
    // clean: false leaves everything.
    seed();
    r = runClean(project, '.', false);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(project).sort(), ['.git', '.hidden', 'README.md', 'link', 'out', 'src']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
