import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createGitLabClient, type GitLabClient } from '../api/client.ts';
import { validateEntryPath } from '../archive/validate.ts';
import { NotFoundError, RelayError } from '../runtime/errors.ts';
import { keepAfterFetch } from '../keep/after-fetch.ts';
import { removeOnInterrupt } from '../runtime/lifecycle.ts';
import type { FetchSettings } from '../inputs/settings.ts';
import { version } from '../inputs/spec.ts';
import { formatBytes, logger, memoryMark, section } from '../runtime/log.ts';
import {
  displayPath,
  sourceIdentity,
  writeDotenv,
  writeSummary,
  type FetchSummary,
  type FetchedFile,
  type SourceSummary,
} from '../outputs/summary.ts';
import { resolveSources } from '../sources/resolve.ts';
import type { ResolvedSource } from '../sources/types.ts';
import { safeFolderName } from '../sources/match.ts';
import { mapLimit } from '../util/concurrency.ts';
import { mergeTree } from '../workspace/merge.ts';
import { pauseAtStep, commitStaging, createRun, discardRun, recoverInterrupted } from '../workspace/staging.ts';
import { downloadToFile } from '../workspace/file-sink.ts';
import { checkConflicts, downloadArchive, fetchArchive, progressLogger, stagedSymlinks, unpackArchive } from './fetch-archive.ts';

/** Downloads of several jobs run concurrently, a few at a time: polite to the API, and the disk is shared anyway. */
const DOWNLOAD_CONCURRENCY = 3;

function summaryFor(source: ResolvedSource, settings: FetchSettings, found: boolean): SourceSummary {
  return {
    ...sourceIdentity(source),
    archive_bytes: null,
    sha256: null,
    files: 0,
    bytes: 0,
    path: displayPath(settings.dest, settings.baseDir),
    found,
    ...(source.via ? { via_trigger_jobs: source.via } : {}),
  };
}

/** Fetches single files through the single-file endpoints into `stagingDir`. */
async function fetchFiles(
  client: GitLabClient,
  settings: FetchSettings,
  source: ResolvedSource,
  stagingDir: string,
  destSub: string,
  summary: SourceSummary,
): Promise<void> {
  const files: FetchedFile[] = [];
  await section(
    `Download ${settings.artifactPaths.length} file(s) of ${source.label}`,
    async () => {
      for (const artifactPath of settings.artifactPaths) {
        const rel = validateEntryPath(artifactPath);
        const target = join(stagingDir, rel);
        await checkConflicts(settings, [rel], destSub);
        await mkdir(dirname(target), { recursive: true });
        const { path, query } = source.filePath(artifactPath);
        const result = await downloadToFile(client, path, query, target, {
          onProgress: progressLogger(rel, settings.progressMs),
          maxBytes: settings.maxArchiveBytes,
        });
        if (summary.bytes + result.bytes > settings.maxBytes) {
          throw new RelayError(
            `The files fetched exceed max_bytes (${formatBytes(settings.maxBytes)}).`,
            'Raise max_bytes if these files are expected to be this large.',
          );
        }
        files.push({ path: rel, bytes: result.bytes, sha256: result.sha256 });
        summary.bytes += result.bytes;
        summary.files += 1;
        logger.info(`  ${rel}  ${formatBytes(result.bytes)}  sha256 ${result.sha256}`);
      }
    },
    false,
  );
  summary.artifact_files = files;
}

async function writeOutputs(settings: FetchSettings, summary: FetchSummary): Promise<void> {
  if (settings.summary) await writeSummary(settings.summary, summary);
  if (settings.dotenv) await writeDotenv(settings.dotenv, summary);
}

function notFound(settings: FetchSettings, err: NotFoundError): void {
  if (settings.ifNotFound === 'fail') throw err;
  const text = `${err.message}${err.advice ? ` ${err.advice}` : ''} (if_not_found: ${settings.ifNotFound})`;
  if (settings.ifNotFound === 'warn') logger.warn(text);
  else logger.info(text);
}

/** Subfolder per source for layout per-job ('' for merge): safe names, the job ID added when two collide. */
function folderNames(sources: ResolvedSource[], layout: FetchSettings['layout']): string[] {
  if (layout !== 'per-job' || sources.length === 0) return sources.map(() => '');
  const base = sources.map((s) => safeFolderName(s.jobName ?? `job-${s.jobId}`));
  return base.map((name, i) => (base.indexOf(name) !== base.lastIndexOf(name) ? `${name}-${sources[i].jobId ?? i}` : name));
}

/** Before anything else: roll back the commit of an earlier run that was killed, and remove its leftovers. */
export async function recoverEarlierRun(settings: Pick<FetchSettings, 'dest' | 'baseDir'>): Promise<void> {
  const r = await recoverInterrupted(settings.dest);
  const where = displayPath(settings.dest, settings.baseDir);
  for (const j of r.rolledBack) {
    logger.warn(
      `An earlier run was killed while committing into ${where}: rolled back from its journal (${j.unplaced} new entr(ies) taken out, ${j.restored} replaced file(s) put back).`,
    );
  }
  if (r.removed.length > 0) logger.info(`Removed ${r.removed.length} leftover folder(s) of earlier interrupted runs beside ${where}.`);
}

/** Resolve: the sources, or undefined when nothing matched (handled by if_not_found; the outputs say found=false). */
async function resolvePhase(client: GitLabClient, settings: FetchSettings, summary: FetchSummary): Promise<ResolvedSource[] | undefined> {
  try {
    return await resolveSources(client, settings);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    notFound(settings, err);
    await writeOutputs(settings, summary);
    return undefined;
  }
}

/** Dry run: what would be fetched where; nothing downloaded or written but the outputs. */
async function dryRunPhase(settings: FetchSettings, sources: ResolvedSource[], summary: FetchSummary): Promise<FetchSummary> {
  const subdirs = folderNames(sources, settings.layout);
  for (const [i, source] of sources.entries()) {
    const into = displayPath(join(settings.dest, subdirs[i]), settings.baseDir);
    const what = settings.artifactPaths.length > 0 ? `${settings.artifactPaths.join(', ')} of ` : '';
    logger.info(`Would fetch ${what}${source.label} (selected by ${source.selectedBy}) into ${into}`);
    const s = summaryFor(source, settings, true);
    s.path = into;
    summary.sources.push(s);
  }
  summary.found = sources.length > 0;
  if (settings.keep) logger.info('keep: true: after a real fetch, the artifacts of these jobs would be kept (dry run: nothing is kept).');
  await writeOutputs(settings, summary);
  logger.success(
    `Dry run: ${sources.length} source(s) resolved; nothing downloaded or written to ${displayPath(settings.dest, settings.baseDir)}.`,
  );
  return summary;
}

interface Staged {
  index: number;
  dir: string;
  /** Unpacked from an archive that brought no symlink. */
  linkFree: boolean;
}

/**
 * Download and unpack every source into the run's staging folder: downloads concurrently (whole archives, or single
 * files straight into their source folder), then each archive unpacked in order. One source unpacks while it
 * downloads where that pays (fetch-archive.ts), and is staged at the staging root.
 */
async function downloadPhase(
  client: GitLabClient,
  settings: FetchSettings,
  sources: ResolvedSource[],
  run: { staging: string; download: string },
  summaries: SourceSummary[],
  subdirs: string[],
): Promise<Staged[]> {
  const single = sources.length === 1;
  const zips = await mapLimit(sources, single ? 1 : DOWNLOAD_CONCURRENCY, async (source, i) => {
    const target = single ? run.staging : join(run.staging, `.source-${i}`);
    await mkdir(target, { recursive: true });
    try {
      if (settings.artifactPaths.length > 0) {
        await fetchFiles(client, settings, source, target, subdirs[i], summaries[i]);
        return { target, zip: undefined };
      }
      const zip = join(run.download, `source-${i}.zip`);
      if (single) {
        await fetchArchive(client, settings, source, zip, target, subdirs[i], summaries[i]);
        await rm(zip, { force: true });
        return { target, zip: undefined };
      }
      const { report } = await downloadArchive(client, source, zip, summaries[i], settings.progressMs, {
        maxBytes: settings.maxArchiveBytes,
      });
      logger.info(`${source.label}: ${report}`);
      return { target, zip };
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      notFound(settings, err);
      return undefined;
    }
  });
  const staged: Staged[] = [];
  for (const [i, got] of zips.entries()) {
    if (!got) continue;
    if (got.zip) {
      await unpackArchive(settings, sources[i], got.zip, got.target, subdirs[i], summaries[i]);
      await rm(got.zip, { force: true });
    }
    summaries[i].found = true;
    if (subdirs[i]) summaries[i].path = displayPath(join(settings.dest, subdirs[i]), settings.baseDir);
    staged.push({ index: i, dir: got.target, linkFree: stagedSymlinks.get(summaries[i]) === 0 });
  }
  return staged;
}

/** Commit: one transaction into the destination (several sources are first composed into one tree inside staging). */
async function commitPhase(
  settings: FetchSettings,
  sources: ResolvedSource[],
  staged: Staged[],
  run: { root: string; staging: string },
  subdirs: string[],
): Promise<void> {
  const onStep = settings.commitPauseStep === undefined ? undefined : pauseAtStep(settings.commitPauseStep);
  const commit = (tree: string, linkFree = false) =>
    commitStaging(tree, settings.dest, { overwrite: settings.overwrite, workDir: run.root, onStep, linkFree });
  if (sources.length === 1) return commit(run.staging, staged.length === 1 && staged[0]!.linkFree);
  const merged = join(run.staging, '.merged');
  await mkdir(merged);
  const owners = new Map<number, string>();
  for (const { index, dir } of staged) {
    const into = subdirs[index] ? join(merged, subdirs[index]) : merged;
    await mkdir(into, { recursive: true });
    await mergeTree(dir, into, () => `${sources[index].label}, and one of ${[...owners.values()].join('; ')}`);
    owners.set(index, sources[index].label);
  }
  return commit(merged);
}

/** Report: the outputs and the one summary line. */
async function reportPhase(settings: FetchSettings, summary: FetchSummary, started: number): Promise<void> {
  await writeOutputs(settings, summary);
  const files = summary.sources.reduce((n, s) => n + s.files, 0);
  const bytes = summary.sources.reduce((n, s) => n + s.bytes, 0);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (!summary.found) {
    logger.info(`Nothing fetched (${seconds} s).`);
    return;
  }
  const from = summary.sources
    .filter((s) => s.found)
    .map((s) => (s.job_id ? `job ${s.job_id}` : `${s.job_name}@${s.ref}`))
    .join(', ');
  logger.success(
    `Fetched ${files} file(s), ${formatBytes(bytes)}, from ${from} into ${displayPath(settings.dest, settings.baseDir)} in ${seconds} s.`,
  );
}

export async function runFetch(
  settings: FetchSettings,
  client: GitLabClient = createGitLabClient({ ...settings, userAgent: `artifact-relay/${version}` }),
): Promise<FetchSummary> {
  const started = Date.now();
  const summary: FetchSummary = {
    found: false,
    dry_run: settings.dryRun,
    selected_by: settings.selector,
    upstream: settings.upstream
      ? { project: settings.upstream.project, pipeline_id: settings.upstream.pipelineId, variables: settings.upstream.variables }
      : null,
    layout: settings.layout,
    sources: [],
  };
  await recoverEarlierRun(settings);
  const authNote = settings.tokenType === 'none' ? 'no token (public projects only)' : `${settings.tokenType} token`;
  logger.info(`artifact-relay ${version}: fetch from ${settings.apiUrl} with ${authNote}`);
  memoryMark('started');

  const sources = await resolvePhase(client, settings, summary);
  memoryMark('resolved');
  if (!sources) return summary;
  if (settings.dryRun) return dryRunPhase(settings, sources, summary);

  const run = await createRun(settings.dest);
  const releaseRun = removeOnInterrupt(run.root);
  try {
    const subdirs = folderNames(sources, settings.layout);
    const summaries = sources.map((source) => summaryFor(source, settings, false));
    summary.sources.push(...summaries);
    const staged = await downloadPhase(client, settings, sources, run, summaries, subdirs);
    summary.found = staged.length > 0;
    memoryMark('downloaded and unpacked');
    if (summary.found) await commitPhase(settings, sources, staged, run, subdirs);
    memoryMark('committed');
  } finally {
    await discardRun(run);
    releaseRun();
  }

  const keepFailure = settings.keep ? await keepAfterFetch(client, settings, sources, summary) : undefined;
  await reportPhase(settings, summary, started);
  memoryMark('reported');
  if (keepFailure) throw keepFailure;
  return summary;
}
