// Input parsing: precedence (flag, INPUT_*, component.yml default), list syntaxes, sizes, upstream detection.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsageError } from '../src/runtime/errors.ts';
import { expandVariables, parseBytes, readInputs, splitArgv, splitList } from '../src/inputs/parse.ts';
import { readCleanupSettings } from '../src/inputs/cleanup-settings.ts';
import { readFetchSettings, resolveTokenType } from '../src/inputs/settings.ts';
import { componentSpec } from '../src/inputs/spec.ts';
import { jobNameMatcher, safeFolderName } from '../src/sources/match.ts';
import { detectUpstream } from '../src/inputs/upstream.ts';

const fetchSpec = componentSpec.commands.fetch;
const settingsFor = (argv: string[], env: NodeJS.ProcessEnv) => {
  const { flags } = splitArgv(argv, ['fetch']);
  return readFetchSettings(readInputs(fetchSpec, flags, env), env, '/work');
};
const CI = {
  CI_SERVER_URL: 'https://gitlab.example.com',
  CI_API_V4_URL: 'https://gitlab.example.com/api/v4',
  CI_JOB_TOKEN: 'job-token-value',
  CI_PROJECT_ID: '7',
  CI_PROJECT_DIR: '/builds/g/p',
};

describe('lists, sizes, variables', () => {
  test("lists split on commas and newlines; a JSON array (GitLab's interpolation of an array input) keeps commas", () => {
    assert.deepEqual(splitList('a, b\nc,,'), ['a', 'b', 'c']);
    assert.deepEqual(splitList('["build: [linux, amd64]", "test 1/3"]'), ['build: [linux, amd64]', 'test 1/3']);
    assert.deepEqual(splitList('[not json'), ['[not json']);
  });
  test('sizes', () => {
    assert.equal(parseBytes('10GiB'), 10 * 2 ** 30);
    assert.equal(parseBytes('500 MB'), 500e6);
    assert.equal(parseBytes('1.5k'), 1536);
    assert.equal(parseBytes('lots'), undefined);
  });
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal ${VAR} is the syntax under test
  test('$VAR and ${VAR} expand; unset ones become empty', () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal ${B} is the input under test
    assert.equal(expandVariables('$A/${B}/$C', { A: '1', B: '2' }), '1/2/');
  });
});

describe('precedence and validation', () => {
  test('flag over INPUT_* over default; defaults expand CI variables', () => {
    const env = { ...CI, INPUT_PATH: 'from-env', INPUT_RETRIES: '2' };
    const s = settingsFor(['--job-id', '5', '--path', 'from-flag'], env);
    assert.equal(s.dest, '/builds/g/p/from-flag');
    assert.equal(s.retries, 2);
    assert.equal(s.token, 'job-token-value');
    assert.equal(s.tokenType, 'job');
    assert.equal(s.apiUrl, 'https://gitlab.example.com/api/v4');
    assert.equal(s.project, '7');
    assert.equal(settingsFor(['--job-id', '5'], env).dest, '/builds/g/p/from-env');
  });
  test('server_url given explicitly wins over CI_API_V4_URL', () => {
    assert.equal(settingsFor(['--job-id', '5', '--server-url', 'https://other.example/'], CI).apiUrl, 'https://other.example/api/v4');
  });
  test('token_type auto', () => {
    assert.equal(resolveTokenType('glcbt-abc', 'auto', {}), 'job');
    assert.equal(resolveTokenType('glpat-abc', 'auto', {}), 'private');
    assert.equal(resolveTokenType('x', 'auto', { CI_JOB_TOKEN: 'x' }), 'job');
    assert.equal(resolveTokenType('', 'auto', {}), 'none');
    assert.equal(resolveTokenType('glpat-abc', 'oauth', {}), 'oauth');
  });
  test('accept_status knows every GitLab job status, waiting_for_callback included (has_status.rb)', () => {
    assert.deepEqual(settingsFor(['--job-id', '5', '--accept-status', 'success,waiting_for_callback'], CI).acceptStatus, [
      'success',
      'waiting_for_callback',
    ]);
  });
  test('mistakes are UsageErrors naming the input', () => {
    const cases: [string[], string][] = [
      [['--job-id', '0'], 'job_id'],
      [['--pipeline', 'abc', '--job', 'b'], 'pipeline'],
      [['--job-id', '5', '--accept-status', 'great'], 'accept_status'],
      [['--job-id', '5', '--layout', 'flat'], 'layout'],
      [['--job-id', '5', '--wait', '-1'], 'wait'],
      [['--ref', 'main', '--job', 'b*'], 'job'],
    ];
    for (const [argv, input] of cases) {
      assert.throws(
        () => settingsFor(argv, CI),
        (err: unknown) => err instanceof UsageError && err.input === input,
        argv.join(' '),
      );
    }
  });
});

describe('upstream detection', () => {
  test('CI_UPSTREAM_* first, then UPSTREAM_*; half-set pairs are ignored', () => {
    assert.deepEqual(
      detectUpstream({ CI_UPSTREAM_PROJECT_ID: '3', CI_UPSTREAM_PIPELINE_ID: '9', UPSTREAM_PROJECT_ID: '4', UPSTREAM_PIPELINE_ID: '10' }),
      {
        project: '3',
        pipelineId: 9,
        variables: 'CI_UPSTREAM_PROJECT_ID + CI_UPSTREAM_PIPELINE_ID',
      },
    );
    assert.equal(detectUpstream({ UPSTREAM_PROJECT_PATH: 'g/app', UPSTREAM_PIPELINE_ID: '10' })?.project, 'g/app');
    assert.equal(detectUpstream({ UPSTREAM_PIPELINE_ID: '10' }), undefined);
    assert.equal(detectUpstream({ CI_UPSTREAM_PIPELINE_ID: '10' }), undefined);
  });
  test('job alone selects the upstream pipeline and project', () => {
    const s = settingsFor(['--job', 'build'], { ...CI, CI_UPSTREAM_PROJECT_ID: '3', CI_UPSTREAM_PIPELINE_ID: '9' });
    assert.equal(s.selector, 'upstream');
    assert.equal(s.project, '3');
    assert.equal(s.pipelineId, 9);
  });
  test('project defaults to the upstream project for every selector, as documented', () => {
    const env = { ...CI, CI_UPSTREAM_PROJECT_ID: '3', CI_UPSTREAM_PIPELINE_ID: '9' };
    assert.equal(settingsFor(['--ref', 'main', '--job', 'build'], env).project, '3');
    assert.equal(settingsFor(['--job-id', '12'], env).projectSource, 'upstream');
    assert.equal(settingsFor(['--job-id', '12', '--project', 'g/other'], env).project, 'g/other');
    assert.equal(settingsFor(['--job-id', '12'], CI).project, '7');
  });
  test('a multi-project downstream told only the upstream project searches its trigger jobs', () => {
    const s = settingsFor(['--job', 'build', '--project', 'g/app'], { ...CI, CI_PIPELINE_SOURCE: 'pipeline', CI_PIPELINE_ID: '55' });
    assert.equal(s.selector, 'bridge');
    assert.equal(s.ownPipelineId, 55);
    assert.throws(
      () => settingsFor(['--job', 'build', '--project', 'g/app'], { ...CI, CI_PIPELINE_SOURCE: 'push', CI_PIPELINE_ID: '55' }),
      UsageError,
    );
  });
  test('without any upstream, job alone is exit 2 explaining the options', () => {
    assert.throws(
      () => settingsFor(['--job', 'build'], { ...CI, CI_PIPELINE_SOURCE: 'push' }),
      (err: unknown) =>
        err instanceof UsageError && /source is push/.test(err.message) && /UPSTREAM_PIPELINE_ID: \$CI_PIPELINE_ID/.test(err.message),
    );
  });
});

describe('job names', () => {
  test('exact and glob matching; * crosses "/"', () => {
    assert.ok(jobNameMatcher('test 1/3')('test 1/3'));
    assert.ok(!jobNameMatcher('test')('test 1/3'));
    assert.ok(jobNameMatcher('test */3')('test 2/3'));
    assert.ok(jobNameMatcher('docs:*')('docs:api'));
    assert.ok(jobNameMatcher('build: [[]linux*')('build: [linux, amd64]'));
    assert.ok(!jobNameMatcher('b?ild')('build 2'));
  });
  test('folder names are safe', () => {
    assert.equal(safeFolderName('test 1/3'), 'test_1_3');
    assert.equal(safeFolderName('build: [linux, amd64]'), 'build_linux_amd64');
    assert.equal(safeFolderName('..'), 'job');
    assert.equal(safeFolderName('../../etc'), 'etc');
  });
});

describe('cleanup refusals: exit 2 before any request (the settings are read before a client exists)', () => {
  const cleanupFor = (argv: string[], env: NodeJS.ProcessEnv) => {
    const { flags } = splitArgv(argv, ['cleanup']);
    return readCleanupSettings(readInputs(componentSpec.commands.cleanup, flags, env), env, '/work');
  };
  const PAT = 'glpat-cleanupTokenValue0123456789';
  const JOB = CI.CI_JOB_TOKEN;
  const cases: [string, string[], NodeJS.ProcessEnv, string, RegExp][] = [
    [
      'no older_than and no expire_all',
      ['--project', 'grp/x'],
      { INPUT_TOKEN: PAT },
      'older_than',
      /older_than is empty and expire_all is false: refusing/,
    ],
    [
      'a job token by its prefix',
      ['--project', 'grp/x', '--older-than', '30d'],
      { INPUT_TOKEN: 'glcbt-abc' },
      'token',
      /is a CI\/CD job token/,
    ],
    ['$CI_JOB_TOKEN passed as token', ['--project', 'grp/x', '--older-than', '30d', '--token', JOB], {}, 'token', /is a CI\/CD job token/],
    ['no token at all', ['--project', 'grp/x', '--older-than', '30d'], {}, 'token', /^Input token is empty\. Cleanup deletes artifacts/],
    [
      'expire_all with a policy input',
      ['--project', 'grp/x', '--expire-all', 'true', '--older-than', '30d'],
      { INPUT_TOKEN: PAT },
      'expire_all',
      /cannot be combined with the policy inputs \(older_than\)/,
    ],
    [
      'a malformed age',
      ['--project', 'grp/x', '--older-than', '30 days'],
      { INPUT_TOKEN: PAT },
      'older_than',
      /"30 days" does not have the expected shape/,
    ],
    [
      'concurrency out of range',
      ['--project', 'grp/x', '--older-than', '30d', '--concurrency', '17'],
      { INPUT_TOKEN: PAT },
      'concurrency',
      /between 1 and 16/,
    ],
  ];
  for (const [label, argv, env, input, message] of cases) {
    test(label, () => {
      assert.throws(
        () => cleanupFor(argv, { ...CI, ...env }),
        (err: unknown) => err instanceof UsageError && err.exitCode === 2 && err.input === input && message.test(err.message),
      );
    });
  }
  test('a valid policy passes', () => {
    const s = cleanupFor(['--project', 'grp/x', '--older-than', '30d'], { ...CI, INPUT_TOKEN: PAT });
    assert.equal(s.tokenType, 'private');
    assert.deepEqual(s.projects, ['grp/x']);
  });
});

describe('ARTIFACT_RELAY_* knobs are read into the settings', () => {
  test('defaults', () => {
    const s = settingsFor(['--job-id', '5'], CI);
    assert.deepEqual(
      [s.pollMs, s.progressMs, s.overlap, s.overlapMinBytes, s.retryBaseMs, s.retryMaxWaitMs, s.rateLimitWindowMs],
      [3000, 5000, 'auto', 64 * 1024 * 1024, undefined, undefined, 60_000],
    );
  });
  test('set', () => {
    const s = settingsFor(['--job-id', '5'], {
      ...CI,
      ARTIFACT_RELAY_POLL_MS: '100',
      ARTIFACT_RELAY_PROGRESS_MS: '300',
      ARTIFACT_RELAY_OVERLAP: '0',
      ARTIFACT_RELAY_RETRY_BASE_MS: '20',
      ARTIFACT_RELAY_RETRY_MAX_WAIT_MS: '200',
      ARTIFACT_RELAY_OVERLAP_MIN_MB: '2',
      ARTIFACT_RELAY_RATE_WINDOW_MS: '150',
    });
    assert.deepEqual(
      [s.pollMs, s.progressMs, s.overlap, s.overlapMinBytes, s.retryBaseMs, s.retryMaxWaitMs, s.rateLimitWindowMs],
      [100, 300, 'never', 2 * 1024 * 1024, 20, 200, 150],
    );
    assert.equal(settingsFor(['--job-id', '5'], { ...CI, ARTIFACT_RELAY_OVERLAP: '1' }).overlap, 'always');
    assert.equal(settingsFor(['--job-id', '5'], { ...CI, ARTIFACT_RELAY_RETRY_BASE_MS: 'fast' }).retryBaseMs, undefined);
  });
  test('ARTIFACT_RELAY_WIDEN: auto by default, never, or an offset in KiB (0: ranges from the start)', () => {
    const widen = (v?: string) => settingsFor(['--job-id', '5'], { ...CI, ARTIFACT_RELAY_WIDEN: v }).widen;
    assert.deepEqual(
      [widen(), widen('auto'), widen('never'), widen(' NEVER '), widen('0'), widen('1024'), widen('-1'), widen('2.5')],
      ['auto', 'auto', 'never', 'never', 0, 1024 * 1024, 'auto', 'auto'],
    );
  });
});
