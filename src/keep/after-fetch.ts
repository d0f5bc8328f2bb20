// fetch with keep: true. Runs after the files are in place, so a refused keep never undoes the fetch: the files, the
// summary and the dotenv stay, each source says kept true or false, and the failure is exit 3 (keep_failure: fail)
// or a warning (keep_failure: warn).
import type { GitLabClient } from '../api/client.ts';
import { KeepFailedError } from '../runtime/errors.ts';
import type { FetchSettings } from '../inputs/settings.ts';
import { logger } from '../runtime/log.ts';
import type { FetchSummary } from '../outputs/summary.ts';
import type { ResolvedSource } from '../sources/types.ts';
import { keepAll } from './keep.ts';

/**
 * Keeps the artifacts of every source that was fetched; marks summary.sources[i].kept and summary.kept. Returns the
 * error to throw once the outputs are written (undefined when everything was kept, or keep_failure is warn).
 */
export async function keepAfterFetch(
  client: GitLabClient,
  settings: FetchSettings,
  sources: ResolvedSource[],
  summary: FetchSummary,
): Promise<KeepFailedError | undefined> {
  summary.kept = false;
  if (!settings.keep || !summary.found) return undefined;
  const fetched = sources.map((source, i) => ({ source, s: summary.sources[i] })).filter((x) => x.s?.found);
  const results = await keepAll(
    client,
    fetched.map((x) => x.source),
  );
  const failed: string[] = [];
  for (const [i, r] of results.entries()) {
    fetched[i].s.kept = r.kept;
    if (!r.kept) {
      fetched[i].s.keep_error = r.message;
      failed.push(`${fetched[i].source.label} (${r.reason}${r.status ? `, HTTP ${r.status}` : ''})`);
    }
  }
  summary.kept = failed.length === 0;
  if (summary.kept) {
    logger.success(`Kept the artifacts of ${results.length} fetched job(s): they no longer expire.`);
    return undefined;
  }
  const message = `The files were fetched and stay in place, but keeping the artifacts of ${failed.length} of ${results.length} job(s) failed: ${failed.join(', ')}.`;
  const advice = 'See the reasons above. The summary and dotenv say kept false (ARTIFACT_RELAY_KEPT=false).';
  if (settings.keepFailure === 'warn') {
    logger.warn(`${message} (keep_failure: warn, exit 0)`);
    return undefined;
  }
  return new KeepFailedError(`${message} Exit 3 (keep_failure: fail).`, advice);
}
