// The one glob dialect of the product (picomatch), in the two shapes it is used in:
// - paths inside an archive (include/exclude): anchored at the root, `*` and `?` stay within a segment,
//   `**` crosses any depth, `{a,b}` and `[abc]` as usual, dot files matched like any other; a pattern also
//   selects everything below what it matches (`dist`, `dist/` and `dist/**` all select the whole tree);
// - names (job names, refs, project paths): `*` crosses "/", because job names carry it ("test 1/3") and
//   refs and project paths are matched as whole names ("release/*", "group/legacy-*").
// A leading `!` is literal in both: exclusion has its own input.
import picomatch from 'picomatch';

const PATH_OPTIONS: picomatch.PicomatchOptions = { dot: true, nonegate: true, strictSlashes: false };
const NAME_OPTIONS: picomatch.PicomatchOptions = { dot: true, nonegate: true, bash: true };

function normalisePathPattern(pattern: string): string {
  let p = pattern.trim();
  while (p.startsWith('./')) p = p.slice(2);
  while (p.startsWith('/')) p = p.slice(1);
  while (p.endsWith('/')) p = p.slice(0, -1);
  if (p.endsWith('/**')) p = p.slice(0, -3);
  return p;
}

/** One predicate over validated relative archive paths. No patterns: matches nothing. */
export function pathMatcher(patterns: string[]): (path: string) => boolean {
  if (patterns.length === 0) return () => false;
  const globs = patterns.map(normalisePathPattern).map((p) => (p === '' || p === '**' ? '**' : `${p}{,/**}`));
  return picomatch(globs, PATH_OPTIONS);
}

/** Paths selected by include (everything when empty) and not by exclude. */
export function pathSelector(include: string[] = [], exclude: string[] = []): (path: string) => boolean {
  const inc = include.length > 0 ? pathMatcher(include) : () => true;
  const exc = exclude.length > 0 ? pathMatcher(exclude) : () => false;
  return (path) => inc(path) && !exc(path);
}

/** A name pattern: the exact name, or a glob whose `*` crosses "/". */
export function nameMatcher(pattern: string): (name: string) => boolean {
  if (!/[*?[{]/.test(pattern)) return (name) => name === pattern;
  const glob = picomatch(pattern, NAME_OPTIONS);
  return (name) => name === pattern || glob(name);
}
