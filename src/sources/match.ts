// Job-name patterns: exact names, or globs whose * crosses "/" (src/util/glob.ts).
import { nameMatcher } from '../util/glob.ts';

export const jobNameMatcher = nameMatcher;

/** A job name made safe as one folder name: "test 1/3" → "test_1_3". */
export function safeFolderName(name: string): string {
  const safe = name
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/\.{2,}/g, '_')
    .replace(/_+/g, '_')
    .replace(/^[_.]+|_+$/g, '');
  return safe || 'job';
}
