// `artifact-relay keep`: resolve jobs exactly as fetch does (src/sources), then keep their artifacts (remove the
// expiry) without downloading anything. Dry run lists them. Every job is tried; failures are reported together.
import { createGitLabClient, type GitLabClient } from '../api/client.ts';
import { NotFoundError, RelayError } from '../runtime/errors.ts';
import type { KeepSettings } from '../inputs/keep-settings.ts';
import { version } from '../inputs/spec.ts';
import { keepAll, type KeepResult } from '../keep/keep.ts';
import { logger } from '../runtime/log.ts';
import { dotenvValue, type SourceIdentity, sourceIdentity, writeAtomic } from '../outputs/summary.ts';
import { resolveSources } from '../sources/resolve.ts';
import type { ResolvedSource } from '../sources/types.ts';

interface KeptSource extends SourceIdentity {
  /** true once GitLab confirmed the keep (always false in a dry run). */
  kept: boolean;
  /** As GitLab answered the keep: null, the artifacts never expire. */
  artifacts_expire_at?: string | null;
  /** Why it was not kept: expired, missing, job not found, forbidden, unauthorized, no job ID, error. */
  reason?: string;
  message?: string;
}

export interface KeepSummary {
  dry_run: boolean;
  selected_by: string;
  /** true when the artifacts of every selected job were kept. */
  kept: boolean;
  sources: KeptSource[];
  error?: string;
}

function sourceSummary(source: ResolvedSource, result?: KeepResult): KeptSource {
  const out: KeptSource = {
    ...sourceIdentity(source),
    kept: result?.kept ?? false,
  };
  if (result?.kept) out.artifacts_expire_at = result.artifactsExpireAt ?? null;
  if (result && !result.kept) {
    out.reason = result.reason;
    out.message = result.message;
  }
  return out;
}

async function writeOutputs(settings: KeepSettings, summary: KeepSummary): Promise<void> {
  if (settings.summary) await writeAtomic(settings.summary, `${JSON.stringify(summary, null, 2)}\n`);
  if (settings.dotenv) {
    const ids = (list: KeptSource[]) =>
      list
        .map((s) => s.job_id)
        .filter((id) => id !== null)
        .join(',');
    const vars = {
      ARTIFACT_RELAY_KEPT: summary.kept,
      ARTIFACT_RELAY_KEPT_JOB_IDS: ids(summary.sources.filter((s) => s.kept)),
      ARTIFACT_RELAY_JOB_IDS: ids(summary.sources),
    };
    await writeAtomic(
      settings.dotenv,
      `${Object.entries(vars)
        .map(([k, v]) => `${k}=${dotenvValue(v)}`)
        .join('\n')}\n`,
    );
  }
}

/** if_not_found for the keep command: no matching job, or artifacts that expired or are missing. */
function notFound(settings: KeepSettings, err: NotFoundError): void {
  if (settings.ifNotFound === 'fail') throw err;
  const text = `${err.message}${err.advice ? ` ${err.advice}` : ''} (if_not_found: ${settings.ifNotFound})`;
  if (settings.ifNotFound === 'warn') logger.warn(text);
  else logger.info(text);
}

export async function runKeep(
  settings: KeepSettings,
  client: GitLabClient = createGitLabClient({ ...settings, userAgent: `artifact-relay/${version}` }),
): Promise<KeepSummary> {
  const summary: KeepSummary = { dry_run: settings.dryRun, selected_by: settings.selector, kept: false, sources: [] };
  logger.info(
    `artifact-relay ${version}: keep${settings.dryRun ? ' (dry run: nothing is kept)' : ''} on ${settings.apiUrl} with ${settings.tokenType} token`,
  );
  let sources: ResolvedSource[];
  try {
    sources = await resolveSources(client, settings);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    await writeOutputs(settings, summary);
    notFound(settings, err);
    return summary;
  }

  if (settings.dryRun) {
    for (const source of sources) {
      logger.info(`Would keep the artifacts of ${source.label} (selected by ${source.selectedBy}).`);
      summary.sources.push(sourceSummary(source));
    }
    await writeOutputs(settings, summary);
    logger.success(`Dry run: ${sources.length} job(s) resolved; nothing kept.`);
    return summary;
  }

  const results = await keepAll(client, sources);
  summary.sources = sources.map((source, i) => sourceSummary(source, results[i]));
  summary.kept = sources.length > 0 && results.every((r) => r.kept);
  const failed = results.map((r, i) => ({ r, source: sources[i] })).filter((x) => !x.r.kept);
  if (failed.length > 0) {
    const list = failed.map((f) => `${f.source.label} (${f.r.reason}${f.r.status ? `, HTTP ${f.r.status}` : ''})`).join(', ');
    summary.error = `${failed.length} of ${results.length} not kept: ${list}`;
  }
  await writeOutputs(settings, summary);
  const keptCount = results.length - failed.length;
  if (failed.length === 0) {
    logger.success(`Kept the artifacts of ${keptCount} job(s): they no longer expire.`);
    return summary;
  }
  const message = `Kept the artifacts of ${keptCount} of ${results.length} job(s); not kept: ${failed
    .map((f) => `${f.source.label} (${f.r.reason}${f.r.status ? `, HTTP ${f.r.status}` : ''})`)
    .join(', ')}.`;
  const advice = failed.length === 1 ? failed[0].r.advice : 'The reason for each job is in the log above and in the summary.';
  // Only expired or missing artifacts fall under if_not_found; refusals and failures always fail the run.
  if (failed.every((f) => f.r.reason === 'expired' || f.r.reason === 'missing' || f.r.reason === 'job not found')) {
    notFound(settings, new NotFoundError(message, advice));
    return summary;
  }
  throw new RelayError(message, advice);
}
