// Archive include/exclude globs: the product's one dialect, in src/util/glob.ts.
import { pathMatcher, pathSelector } from '../util/glob.ts';

/** Compiles glob patterns into one predicate over validated relative paths. No patterns → matches nothing. */
export const compileGlobs = pathMatcher;

/** A reusable selector for many paths (compiles once). */
export const compileSelector = pathSelector;

/** True when `path` is selected: it matches an include pattern (or there are none) and no exclude pattern. */
export function selectEntry(path: string, include: string[] = [], exclude: string[] = []): boolean {
  return pathSelector(include, exclude)(path);
}
