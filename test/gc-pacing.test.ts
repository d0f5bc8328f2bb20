// The download's GC pacing (src/runtime/gc-pacing.ts): a minor GC per 1 MiB of body, none without a gc function.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Collect, GcPacer } from '../src/runtime/gc-pacing.ts';

test('a minor GC is asked for once per 1 MiB of body received, and never without --expose-gc', () => {
  const pacer = new GcPacer();
  const bodyReceived = (bytes: number, gc: Collect | undefined) => pacer.bodyReceived(bytes, gc);
  const calls: unknown[] = [];
  const gc: Collect = (o) => calls.push(o);
  const chunk = 64 * 1024;
  for (let i = 0; i < 15; i++) bodyReceived(chunk, gc);
  assert.equal(calls.length, 0);
  bodyReceived(chunk, gc);
  assert.deepEqual(calls, [{ type: 'minor' }]);
  for (let i = 0; i < 16 * 3; i++) bodyReceived(chunk, gc);
  assert.equal(calls.length, 4);
  bodyReceived(1024 * 1024 * 1024, undefined); // no gc (node without --expose-gc): nothing counted
  for (let i = 0; i < 15; i++) bodyReceived(chunk, gc);
  assert.equal(calls.length, 4);
});
