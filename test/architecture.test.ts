// The shape of src/ (README "Development"): no folder imports one that imports it back, and the HTTP client knows no
// file system. Read from the import statements themselves, so a new module cannot break either rule unnoticed.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** Every module specifier of `code`: static imports and re-exports (types too), and dynamic import() of a literal. */
function specifiers(code: string): string[] {
  const found: string[] = [];
  for (const m of code.matchAll(
    /^\s*(?:import|export)\b[^'";]*?\bfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm,
  ))
    found.push((m[1] ?? m[2] ?? m[3]) as string);
  return found;
}

/** The folder of src/ a module is in ('' for src/ itself). */
const folderOf = (file: string) => relative(SRC, dirname(file)).split('/')[0] ?? '';

/** Folder → folders it imports from (other than itself). */
function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of sources(SRC)) {
    const from = folderOf(file);
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const spec of specifiers(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const to = folderOf(resolve(dirname(file), spec));
      if (to !== from) edges.add(to);
    }
  }
  return graph;
}

/** A cycle of folders as a path (first = last), or undefined. */
function findCycle(graph: Map<string, Set<string>>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    if (state.get(node) === 'done') return undefined;
    if (state.get(node) === 'open') return [...path.slice(path.indexOf(node)), node];
    state.set(node, 'open');
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, 'done');
    return undefined;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return undefined;
}

describe('the shape of src/', () => {
  test('the import reader sees every form of import the code uses', () => {
    const code = [
      "import { a } from '../x/a.ts';",
      "import type { B } from './b.ts';",
      "export { c } from '../y/c.ts';",
      "import '../z/side.ts';",
      "const m = await import('./commands/fetch.ts');",
      'import {\n  d,\n  e,\n} from "../w/d.ts";',
    ].join('\n');
    assert.deepEqual(specifiers(code), ['../x/a.ts', './b.ts', '../y/c.ts', '../z/side.ts', './commands/fetch.ts', '../w/d.ts']);
  });

  test('no folder imports one that imports it back', () => {
    const graph = folderGraph();
    assert.ok(graph.size >= 10, `expected the folders of src/, found ${[...graph.keys()].join(', ')}`);
    const cycle = findCycle(graph);
    assert.equal(cycle, undefined, `folder cycle: ${cycle?.join(' -> ')}`);
  });

  test('the cycle finder finds a cycle', () => {
    const graph = new Map([
      ['a', new Set(['b'])],
      ['b', new Set(['c'])],
      ['c', new Set(['a'])],
    ]);
    assert.deepEqual(findCycle(graph), ['a', 'b', 'c', 'a']);
  });

  test('src/api knows no file system', () => {
    for (const file of sources(join(SRC, 'api'))) {
      const fs = specifiers(readFileSync(file, 'utf8')).filter((s) => /^(node:)?fs(\/|$)/.test(s));
      assert.deepEqual(fs, [], `${relative(SRC, file)} imports ${fs.join(', ')}`);
    }
  });
});
