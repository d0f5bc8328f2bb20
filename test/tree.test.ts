// Job-name matching across a pipeline tree, without a server: qualifiers only when they name a trigger job or
// pipeline of the tree (so names with colons keep working), and a clash is an error, never a choice.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchTree, type PipelineNode } from '../src/sources/tree.ts';
import type { GitLabJob } from '../src/api/entities.ts';

const job = (id: number, name: string): GitLabJob => ({ id, name, status: 'success', ref: 'main' });
const node = (pipelineId: number, via: string[]): PipelineNode => ({ project: 'g/p', pipelineId, via, depth: via.length });
const listed = [
  {
    node: node(10, []),
    newest: new Map([
      ['docs:build', job(1, 'docs:build')],
      ['lint', job(2, 'lint')],
    ]),
  },
  {
    node: node(11, ['child-a']),
    newest: new Map([
      ['build', job(3, 'build')],
      ['lint', job(4, 'lint')],
    ]),
  },
  { node: node(12, ['child-b']), newest: new Map([['build', job(5, 'build')]]) },
];
const qualifiers = new Set(['10', '11', '12', 'child-a', 'child-b']);
const ids = (patterns: string[]) => matchTree(listed, patterns, qualifiers).matched.map((m) => m.job.id);

test('a name with a colon that is not a trigger job stays a name', () => {
  assert.deepEqual(ids(['docs:build']), [1]);
});

test('a trigger-job or pipeline-ID qualifier picks one pipeline', () => {
  assert.deepEqual(ids(['child-b:build']), [5]);
  assert.deepEqual(ids(['child-a:lint', '10:lint']), [4, 2]);
});

test('a name in two pipelines is an error naming both, with the qualified form as advice', () => {
  assert.throws(
    () => ids(['build']),
    (err: Error & { advice?: string }) =>
      /"build".*job 3 in child pipeline 11.*job 5 in child pipeline 12/s.test(err.message) && /"child-a:build"/.test(err.advice ?? ''),
  );
  assert.throws(() => ids(['l*']), /"lint"/, 'a glob too');
});

test('unmatched patterns are reported, not thrown, so the caller can wait for child pipelines', () => {
  assert.deepEqual(matchTree(listed, ['child-c:build', 'nope'], qualifiers).unmatched, ['child-c:build', 'nope']);
});
