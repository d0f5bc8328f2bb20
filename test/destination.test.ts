// The destination must be inside the project ($CI_PROJECT_DIR) unless allow_outside_project says otherwise:
// `path: ..`, an absolute path elsewhere, a parent that is a symlink to elsewhere (issue 11 item 2).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UsageError } from '../src/runtime/errors.ts';
import { readInputs, splitArgv } from '../src/inputs/parse.ts';
import { readFetchSettings } from '../src/inputs/settings.ts';
import { componentSpec } from '../src/inputs/spec.ts';

let box: string;
let project: string;
before(() => {
  box = mkdtempSync(join(tmpdir(), 'destination-'));
  project = join(box, 'project');
  mkdirSync(join(project, 'inner'), { recursive: true });
  mkdirSync(join(box, 'elsewhere'));
  symlinkSync(join(box, 'elsewhere'), join(project, 'out-link'));
  symlinkSync('inner', join(project, 'in-link'));
  symlinkSync(join(box, 'missing'), join(project, 'dangling'));
});
after(() => rmSync(box, { recursive: true, force: true }));

const settingsFor = (argv: string[]) => {
  const env = {
    CI_API_V4_URL: 'https://gitlab.example.com/api/v4',
    CI_JOB_TOKEN: 'job-token-value',
    CI_PROJECT_ID: '7',
    CI_PROJECT_DIR: project,
  };
  const { flags } = splitArgv(['--job-id', '5', ...argv], ['fetch']);
  return readFetchSettings(readInputs(componentSpec.commands.fetch, flags, env), env, '/nowhere');
};

describe('destination inside the project', () => {
  for (const [label, path] of [
    ['path: ..', '..'],
    ['path: ../elsewhere', '../elsewhere'],
    ['an absolute path outside the project', '/tmp/artifact-relay-elsewhere'],
    ['a parent that is a symlink to elsewhere', 'out-link/sub'],
    ['the destination itself a symlink to elsewhere', 'out-link'],
    ['a dangling symlink on the way', 'dangling/sub'],
    ['inner/../../elsewhere', 'inner/../../elsewhere'],
  ]) {
    test(`refused, exit 2 naming path: ${label}`, () => {
      assert.throws(
        () => settingsFor(['--path', path]),
        (err: unknown) => {
          assert.ok(err instanceof UsageError, String(err));
          assert.equal(err.exitCode, 2);
          assert.equal(err.input, 'path');
          assert.match(err.message, /^Input path: .*outside the project directory/);
          assert.match(err.advice ?? '', /allow_outside_project: true/);
          return true;
        },
      );
    });
  }
  test('accepted: the project itself, folders inside, a symlink to a folder inside, an absolute path inside', () => {
    for (const path of ['.', 'inner', 'new/deeper', 'in-link/sub', join(project, 'abs'), 'inner/../x']) {
      assert.ok(settingsFor(['--path', path]).dest.startsWith(project), path);
    }
  });
  test('allow_outside_project: true lets each of them through', () => {
    assert.equal(settingsFor(['--path', '..', '--allow-outside-project', 'true']).dest, box);
    assert.equal(settingsFor(['--path', 'out-link/sub', '--allow-outside-project']).dest, join(project, 'out-link/sub'));
  });
});
