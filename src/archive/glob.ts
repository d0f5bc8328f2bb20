// Glob matching for include/exclude. Patterns are anchored at the archive root.
// `*` and `?` do not cross `/`, `**` matches any depth, `{a,b}` alternatives, `[abc]` classes.
// A pattern also matches everything below what it matches: `dist`, `dist/` and `dist/**` all select the whole tree.

function escapeRegex(ch: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(ch) ? `\\${ch}` : ch;
}

function translate(glob: string): string {
  let re = '';
  let i = 0;
  let depth = 0; // inside {...}
  while (i < glob.length) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        const atStart = i === 0 || glob[i - 1] === '/';
        let j = i + 2;
        while (glob[j] === '*') j++;
        if (atStart && glob[j] === '/') {
          re += '(?:[^/]*(?:/[^/]*)*/)?'; // `**/`: zero or more directories
          i = j + 1;
          continue;
        }
        if (atStart && j === glob.length) {
          re += '.*';
          i = j;
          continue;
        }
        re += '.*';
        i = j;
        continue;
      }
      re += '[^/]*';
    } else if (c === '?') {
      re += '[^/]';
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end === -1) {
        re += '\\[';
      } else {
        let body = glob.slice(i + 1, end);
        const negate = body.startsWith('!') || body.startsWith('^');
        if (negate) body = body.slice(1);
        body = body.replace(/\\/g, '\\\\').replace(/\^/g, '\\^');
        re += negate ? `(?!/)[^${body}]` : `[${body}]`;
        i = end + 1;
        continue;
      }
    } else if (c === '{') {
      depth++;
      re += '(?:';
    } else if (c === '}' && depth > 0) {
      depth--;
      re += ')';
    } else if (c === ',' && depth > 0) {
      re += '|';
    } else if (c === '\\' && i + 1 < glob.length) {
      re += escapeRegex(glob[i + 1]!);
      i += 2;
      continue;
    } else {
      re += escapeRegex(c);
    }
    i++;
  }
  while (depth-- > 0) re += ')';
  return re;
}

function normalisePattern(pattern: string): string {
  let p = pattern.trim();
  while (p.startsWith('./')) p = p.slice(2);
  while (p.startsWith('/')) p = p.slice(1);
  while (p.endsWith('/')) p = p.slice(0, -1);
  if (p.endsWith('/**')) p = p.slice(0, -3);
  return p;
}

/** Compiles glob patterns into one predicate over validated relative paths. No patterns → matches nothing. */
export function compileGlobs(patterns: string[]): (path: string) => boolean {
  const sources = patterns
    .map(normalisePattern)
    .filter((p) => p.length > 0 || patterns.length > 0)
    .map((p) => (p === '' || p === '**' ? '.*' : `${translate(p)}(?:/.*)?`));
  if (sources.length === 0) return () => false;
  const re = new RegExp(`^(?:${sources.join('|')})$`, 's');
  return (path: string) => re.test(path);
}

const cache = new Map<string, (path: string) => boolean>();
function cached(patterns: string[]): (path: string) => boolean {
  const key = JSON.stringify(patterns);
  let fn = cache.get(key);
  if (!fn) {
    fn = compileGlobs(patterns);
    if (cache.size > 64) cache.clear();
    cache.set(key, fn);
  }
  return fn;
}

/** True when `path` is selected: it matches an include pattern (or there are none) and no exclude pattern. */
export function selectEntry(path: string, include: string[] = [], exclude: string[] = []): boolean {
  if (include.length > 0 && !cached(include)(path)) return false;
  if (exclude.length > 0 && cached(exclude)(path)) return false;
  return true;
}

/** A reusable selector for many paths (compiles once). */
export function compileSelector(include: string[] = [], exclude: string[] = []): (path: string) => boolean {
  const inc = include.length > 0 ? compileGlobs(include) : () => true;
  const exc = exclude.length > 0 ? compileGlobs(exclude) : () => false;
  return (path) => inc(path) && !exc(path);
}
