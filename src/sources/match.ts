// Job-name patterns: exact names, or globs with * and ? and [abc]. Unlike path globs, * crosses "/" because
// job names carry it ("test 1/3", "build: [linux, amd64]").

const isGlob = (pattern: string) => /[*?[]/.test(pattern);

export function jobNameMatcher(pattern: string): (name: string) => boolean {
  if (!isGlob(pattern)) return (name) => name === pattern;
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end === -1) re += '\\[';
      else {
        const body = pattern.slice(i + 1, end).replace(/\\/g, '\\\\');
        re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
        i = end;
      }
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  const regex = new RegExp(`^${re}$`, 's');
  return (name) => regex.test(name);
}

/** A job name made safe as one folder name: "test 1/3" → "test_1_3". */
export function safeFolderName(name: string): string {
  const safe = name
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/\.{2,}/g, '_')
    .replace(/_+/g, '_')
    .replace(/^[_.]+|_+$/g, '');
  return safe || 'job';
}
