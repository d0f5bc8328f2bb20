// `artifact-relay fetch`: resolve sources, download each archive (or single files), unpack into a staging
// folder beside the destination, and move into place only when everything verified.
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createGitLabClient, type DownloadOptions, type GitLabClient, type ParallelOptions } from '../api/client.ts';
import { readDirectoryFromTail, type LeanRecord } from '../archive/central-directory.ts';
import { extractArchive, type ExtractResult } from '../archive/extract.ts';
import { planPartial } from '../archive/ranges.ts';
import { RangeUnusable } from '../api/parallel.ts';
import { Watermark } from '../archive/watermark.ts';
import { validateEntryPath } from '../archive/validate.ts';
import { NotFoundError, RelayError } from '../runtime/errors.ts';
import { keepAfterFetch } from '../keep/after-fetch.ts';
import { removeOnInterrupt } from '../runtime/lifecycle.ts';
import type { FetchSettings } from '../inputs/settings.ts';
import { version } from '../inputs/spec.ts';
import { formatBytes, logger, section } from '../runtime/log.ts';
import { displayPath, writeDotenv, writeSummary, type FetchSummary, type FetchedFile, type SourceSummary } from '../outputs/summary.ts';
import { resolveSources } from '../sources/resolve.ts';
import type { ResolvedSource } from '../sources/types.ts';
import { safeFolderName } from '../sources/match.ts';
import { mapLimit } from '../util/concurrency.ts';
import { mergeTree } from '../workspace/merge.ts';
import {
  pauseAtStep,
  commitStaging,
  conflictError,
  createRun,
  discardRun,
  discardStaging,
  findConflicts,
  recoverInterrupted,
} from '../workspace/staging.ts';
import { downloadToFile, downloadToFileParallel, fileEndsWith, openFileSink } from '../workspace/file-sink.ts';

const LISTED_ENTRIES = 200;
/** Downloads of several jobs run concurrently, a few at a time: polite to the API, and the disk is shared anyway. */
const DOWNLOAD_CONCURRENCY = 3;
/** First request of an overlapped fetch: the archive's last bytes, where the end record and usually the whole directory are. */
const TAIL_REQUEST = 64 * 1024;
/** A directory larger than this is not buffered in memory from ranged requests: download, then unpack. */
const MAX_DIRECTORY_BYTES = 64 * 1024 * 1024;
/** Archives from this size on are fetched as parallel ranges (input connections) where storage allows. */
const PARALLEL_MIN_BYTES = 2 * 1024 * 1024;
/**
 * Smaller archives are downloaded, then unpacked, even where Range works: their download is too short for unpacking
 * alongside it to save time, and both compete for the same CPU. ARTIFACT_RELAY_OVERLAP=1 overlaps at any size
 * (settings.overlapMinBytes, ARTIFACT_RELAY_OVERLAP_MIN_MB, default 64 MiB).
 */
/**
 */
/** How often a download is checked for whether it leaves the CPU idle enough for unpacking alongside it. */
const OVERLAP_PROBE_MS = 500;

/**
 * The main thread's time on a CPU plus its time waiting for one, in ms (Linux: /proc/thread-self/schedstat), else
 * the process's CPU time. On a busy machine a starved download waits for the CPU: that is not idle time either.
 */
function busyMs(): number {
  try {
    const [run, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
    if (Number.isFinite(run) && Number.isFinite(wait)) return ((run as number) + (wait as number)) / 1e6;
  } catch {
    // not Linux
  }
  const used = process.cpuUsage();
  return (used.user + used.system) / 1000;
}

/**
 * Resolves when unpacking should start: unpacking alongside the download pays only while the download leaves the CPU
 * idle (bound by the network). Every OVERLAP_PROBE_MS the main thread's busy time (busyMs) is compared with the time
 * passed: below half of it, unpacking starts; a download that keeps the CPU busy (a fast server nearby, or a busy
 * machine) is left alone and the archive is unpacked once complete. ARTIFACT_RELAY_OVERLAP=1 starts at once.
 */
function whenToUnpack(downloading: Promise<unknown>, overlap: FetchSettings['overlap']): Promise<void> {
  if (overlap === 'always') return Promise.resolve();
  return new Promise((resolve) => {
    let busy = busyMs();
    let at = performance.now();
    const timer = setInterval(() => {
      const nowBusy = busyMs();
      const now = performance.now();
      if (nowBusy - busy < 0.5 * (now - at)) done();
      busy = nowBusy;
      at = now;
    }, OVERLAP_PROBE_MS);
    const done = () => {
      clearInterval(timer);
      resolve();
    };
    downloading.then(done, done);
  });
}

/** The overlapped download was restarted or changed under us: its extraction is discarded and redone from the file. */
class Abandoned extends Error {}

/** Progress lines on long downloads every `intervalMs` (settings.progressMs): often enough to show life, rare enough for a 4 MB job log. */
function progressLogger(label: string, intervalMs: number) {
  const started = Date.now();
  let lastLog = started;
  return (p: { bytes: number; total?: number }) => {
    const now = Date.now();
    if (now - lastLog < intervalMs) return;
    lastLog = now;
    const rate = p.bytes / Math.max((now - started) / 1000, 0.001);
    const of = p.total ? ` of ${formatBytes(p.total)} (${Math.floor((p.bytes / p.total) * 100)}%)` : '';
    logger.info(`  ${label}: ${formatBytes(p.bytes)}${of} at ${formatBytes(rate)}/s`);
  };
}

function summaryFor(source: ResolvedSource, settings: FetchSettings, found: boolean): SourceSummary {
  return {
    project_id: source.projectId ?? source.project,
    pipeline_id: source.pipelineId,
    job_id: source.jobId,
    job_name: source.jobName,
    ref: source.ref,
    selected_by: source.selectedBy,
    archive_bytes: null,
    sha256: null,
    files: 0,
    bytes: 0,
    path: displayPath(settings.dest, settings.baseDir),
    found,
    ...(source.via ? { via_trigger_jobs: source.via } : {}),
  };
}

/** Downloads the archive; `report` is the one-line account (size, rate, origin, attempts, sha256) to log. */
async function downloadArchive(
  client: GitLabClient,
  source: ResolvedSource,
  file: string,
  summary: SourceSummary,
  progressMs: number,
  opts: DownloadOptions = {},
  parallel: Omit<ParallelOptions, 'onWritten' | 'onProgress' | 'maxBytes'> | undefined = undefined,
) {
  const started = Date.now();
  const all = { ...opts, onProgress: progressLogger('downloaded', progressMs) };
  const result = parallel
    ? await downloadToFileParallel(client, source.archivePath, source.archiveQuery, file, parallel, all)
    : await downloadToFile(client, source.archivePath, source.archiveQuery, file, all);
  const seconds = (Date.now() - started) / 1000;
  summary.archive_bytes = result.bytes;
  summary.sha256 = result.sha256;
  const report =
    `Downloaded ${formatBytes(result.bytes)} in ${seconds.toFixed(1)} s (${formatBytes(result.bytes / Math.max(seconds, 0.001))}/s)` +
    `${result.redirected ? ` from ${new URL(result.finalUrl).host}` : ''}${result.attempts > 1 ? ` after ${result.attempts} attempts` : ''}; sha256 ${result.sha256}`;
  return { result, report };
}

function logEntries(result: ExtractResult): void {
  for (const e of result.entries.slice(0, LISTED_ENTRIES)) {
    const what = e.type === 'symlink' ? ` -> ${e.target}` : e.type === 'directory' ? '/' : `  ${formatBytes(e.size)}`;
    logger.info(`  ${e.mode.toString(8).padStart(4, '0')} ${e.path}${what}`);
  }
  if (result.entries.length > LISTED_ENTRIES) logger.info(`  ... and ${result.entries.length - LISTED_ENTRIES} more`);
}

/** Refuses before writing when overwrite is false and files would be replaced. */
async function checkConflicts(settings: FetchSettings, planned: string[], destSub: string): Promise<void> {
  if (settings.overwrite) return;
  const dest = destSub ? join(settings.dest, destSub) : settings.dest;
  const conflicts = await findConflicts(dest, planned);
  if (conflicts.length > 0) throw conflictError(conflicts, displayPath(dest, settings.baseDir));
}

/**
 * Unpacks one archive into `stagingDir`: a downloaded one, or (with `available`) one still being downloaded. The
 * conflict check (overwrite: false) runs on the validated plan, before anything is written.
 */
async function unpackArchive(
  settings: FetchSettings,
  source: ResolvedSource,
  zip: string,
  stagingDir: string,
  destSub: string,
  summary: SourceSummary,
  overlap: { directory: LeanRecord[]; available: (end: number) => Promise<void> } | undefined = undefined,
): Promise<void> {
  const result = await section(`Unpack ${source.label}`, async () => {
    const r = await extractArchive(zip, stagingDir, {
      include: settings.include,
      exclude: settings.exclude,
      directory: overlap?.directory,
      available: overlap?.available,
      beforeWrite: (paths) => checkConflicts(settings, paths, destSub),
      maxBytes: settings.maxBytes,
      maxFiles: settings.maxFiles,
      maxRatio: settings.maxRatio,
    });
    logEntries(r);
    return r;
  });
  summary.files = result.files + result.symlinks;
  summary.bytes = result.bytes;
}

/** Two answers are of the same archive unless both carry an ETag and they differ (the sizes are compared too). */
function sameEtag(a: string | undefined, b: string | undefined): boolean {
  return a === undefined || b === undefined || a === b;
}

/** The archive's directory from its tail (ranged requests), or undefined when the server ignores Range or it is not a zip. */
async function directoryFromTail(
  client: GitLabClient,
  source: ResolvedSource,
): Promise<
  { directory: LeanRecord[]; total: number; etag?: string; lastModified?: string; buffer: Buffer; directoryStart?: number } | undefined
> {
  const tail = await client.readRange(source.archivePath, source.archiveQuery, -TAIL_REQUEST).catch((err) => {
    if ((err as RelayError).details?.status === 416) return undefined; // e.g. an empty file: the download explains
    throw err;
  });
  if (!tail) return undefined;
  let changed = false;
  const where: { directoryStart?: number } = {};
  const directory = await readDirectoryFromTail(
    tail.buffer,
    tail.total,
    async (start, end) => {
      const more =
        end - start > MAX_DIRECTORY_BYTES ? undefined : await client.readRange(source.archivePath, source.archiveQuery, start, end, tail);
      if (!more || more.total !== tail.total || !sameEtag(more.etag, tail.etag)) {
        changed = true;
        throw new Error('the rest of the central directory could not be read by range');
      }
      return more.buffer;
    },
    {},
    where,
  ).catch((err) => {
    if (changed) return undefined;
    throw err;
  });
  return (
    directory && {
      directory,
      total: tail.total,
      etag: tail.etag,
      lastModified: tail.lastModified,
      buffer: tail.buffer,
      directoryStart: where.directoryStart,
    }
  );
}

/**
 * Partial fetch (README "Behaviour: Streaming"): with include/exclude leaving at most half of the archive's bytes to
 * fetch (planPartial), only the selected entries' ranges are downloaded (the directory came with the tail), at their
 * offsets in a sparse file of the archive's size, then unpacked with the directory from the tail. Resolves false
 * when it does not apply or Range turned out unusable (the file emptied again: the caller downloads the whole archive).
 */
async function fetchPartial(
  client: GitLabClient,
  settings: FetchSettings,
  source: ResolvedSource,
  found: NonNullable<Awaited<ReturnType<typeof directoryFromTail>>>,
  zip: string,
  stagingDir: string,
  destSub: string,
  summary: SourceSummary,
): Promise<boolean> {
  // Every range carries a validator (If-Range/If-Match), so all the bytes are provably of the object the tail came from.
  if (found.directoryStart === undefined || !(found.etag || found.lastModified)) return false;
  if (found.buffer.length >= found.total) return false; // the tail already held the whole archive: nothing to skip
  const plan = planPartial(found.directory, {
    include: settings.include,
    exclude: settings.exclude,
    directoryStart: found.directoryStart,
    total: found.total,
  });
  if (!plan) return false;
  const skipped = found.total - plan.bytes;
  logger.info(
    `Partial fetch by Range: only the selected entries (${plan.entries} of ${found.directory.length}): ${formatBytes(plan.bytes)} in ${plan.ranges.length} range(s), skipping ${formatBytes(skipped)} of ${formatBytes(found.total)} (${Math.floor((skipped / found.total) * 100)}%)`,
  );
  const started = Date.now();
  const sink = await openFileSink(zip);
  let result: Awaited<ReturnType<GitLabClient['downloadParallel']>>;
  try {
    result = await section(
      `Download ${source.label} (selected ranges)`,
      () =>
        client.downloadParallel(source.archivePath, source.archiveQuery, sink, {
          total: found.total,
          validators: { etag: found.etag, lastModified: found.lastModified },
          connections: Math.max(1, settings.connections),
          ranges: plan.ranges,
          maxBytes: settings.maxArchiveBytes,
          onProgress: progressLogger('downloaded', settings.progressMs),
        }),
      false,
    );
  } catch (err) {
    if (!(err instanceof RangeUnusable)) throw err;
    logger.info(`Downloading the whole archive instead: ${err.message}`);
    await sink.truncate(0);
    return false;
  } finally {
    await sink.close();
  }
  const seconds = (Date.now() - started) / 1000;
  summary.archive_bytes = found.total;
  summary.sha256 = null;
  summary.partial = true;
  summary.ranges_fetched = plan.ranges.length;
  summary.bytes_fetched = result.bytes;
  await unpackArchive(settings, source, zip, stagingDir, destSub, summary, {
    directory: found.directory,
    available: () => Promise.resolve(), // every range is written
  });
  logger.info(
    `Downloaded ${formatBytes(result.bytes)} of ${formatBytes(found.total)} in ${plan.ranges.length} range(s) in ${seconds.toFixed(1)} s` +
      `${result.redirected ? ` from ${new URL(result.finalUrl).host}` : ''}${result.attempts > 1 ? ` after ${result.attempts} attempts` : ''}; no sha256 of the archive (only part of it was downloaded)`,
  );
  return true;
}

/**
 * A whole archive, unpacked while it downloads when the server supports Range; otherwise (or when the download
 * restarts from zero or changes under us) downloaded first and unpacked from the complete file.
 */
async function fetchArchive(
  client: GitLabClient,
  settings: FetchSettings,
  source: ResolvedSource,
  zip: string,
  stagingDir: string,
  destSub: string,
  summary: SourceSummary,
): Promise<void> {
  const found = settings.overlap === 'never' ? undefined : await directoryFromTail(client, source);
  if (found && (await fetchPartial(client, settings, source, found, zip, stagingDir, destSub, summary))) return;
  // Parallel ranges pay whatever the CPU does (storage limits each connection); they need a validator, so that every
  // range is provably of the object the tail came from.
  const parallel =
    found && settings.connections > 1 && found.total >= PARALLEL_MIN_BYTES && (found.etag || found.lastModified)
      ? { total: found.total, validators: { etag: found.etag, lastModified: found.lastModified }, connections: settings.connections }
      : undefined;
  const small = found !== undefined && !parallel && settings.overlap === 'auto' && found.total < settings.overlapMinBytes;
  const tail = small ? undefined : found;
  if (!tail) {
    const why =
      settings.overlap === 'never'
        ? 'ARTIFACT_RELAY_OVERLAP=0'
        : small
          ? `below ${formatBytes(settings.overlapMinBytes)}`
          : 'no Range support';
    logger.info(`Download, then unpack (${why})`);
    await section(
      `Download ${source.label}`,
      async () =>
        logger.info(
          (await downloadArchive(client, source, zip, summary, settings.progressMs, { maxBytes: settings.maxArchiveBytes })).report,
        ),
      false,
    );
    await unpackArchive(settings, source, zip, stagingDir, destSub, summary);
    return;
  }
  logger.info(
    `Unpacking while downloading (${tail.directory.length} entries in the directory${parallel ? `, ${parallel.connections} connections` : ''})`,
  );
  const mark = new Watermark();
  let extractError: Error | undefined;
  let abandoned = false;
  let downloadReport = '';
  await writeFile(zip, ''); // the extraction opens the file while the download writes it
  const downloading = downloadArchive(
    client,
    source,
    zip,
    summary,
    settings.progressMs,
    {
      maxBytes: settings.maxArchiveBytes,
      expectedSize: tail.total,
      onWritten: (n) => {
        if (extractError && !abandoned) throw extractError; // a rejected archive stops the download at once
        mark.advance(n);
      },
      onRestart: () => {
        abandoned = true;
        mark.fail(new Abandoned('the download restarted from zero'));
      },
    },
    parallel,
  ).then(
    async ({ result: r, report }) => {
      downloadReport = report;
      // The directory came from the tail request: the body must be that same object (its tail byte for byte,
      // whatever validators the storage sends), else unpack what was downloaded, which the sha256 describes.
      if (r.bytes !== tail.total || !sameEtag(r.etag, tail.etag) || !(await fileEndsWith(zip, tail.buffer))) {
        abandoned = true;
        mark.fail(new Abandoned('the archive changed while downloading'));
      } else mark.finish(r.bytes);
    },
    (err) => {
      mark.fail(err);
      throw err;
    },
  );
  const unpacking = whenToUnpack(downloading, settings.overlap)
    .then(() => unpackArchive(settings, source, zip, stagingDir, destSub, summary, { directory: tail.directory, available: mark.wait }))
    .catch((err) => {
      extractError = err;
    });
  // Both settle before anything else touches staging; a download failure is the error to report (the extraction
  // only saw its consequences).
  const [downloaded] = await Promise.allSettled([downloading, unpacking]);
  if (downloaded.status === 'rejected') throw downloaded.reason;
  logger.info(downloadReport); // after the (collapsed) unpack section, so it shows
  if (abandoned) {
    const why = await mark.wait(tail.total).catch((err: Error) => err);
    logger.info(`Unpacking again from the downloaded file: ${why instanceof Error ? why.message : 'the download restarted'}`);
    await discardStaging(stagingDir);
    await mkdir(stagingDir, { recursive: true });
    await unpackArchive(settings, source, zip, stagingDir, destSub, summary);
    return;
  }
  if (extractError) throw extractError;
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

export async function runFetch(
  settings: FetchSettings,
  client: GitLabClient = createGitLabClient({ ...settings, userAgent: `artifact-relay/${version}` }),
): Promise<FetchSummary> {
  const commitHook = settings.commitPauseStep === undefined ? undefined : pauseAtStep(settings.commitPauseStep);
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

  let sources: ResolvedSource[];
  try {
    sources = await resolveSources(client, settings);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    notFound(settings, err);
    await writeOutputs(settings, summary);
    return summary;
  }

  if (settings.dryRun) {
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

  const run = await createRun(settings.dest);
  const releaseRun = removeOnInterrupt(run.root);
  const { staging, download: workDir } = run;
  try {
    const single = sources.length === 1;
    const subdirs = folderNames(sources, settings.layout);
    const staged: { index: number; dir: string }[] = [];
    const summaries = sources.map((source) => summaryFor(source, settings, false));
    summary.sources.push(...summaries);
    // Phase 1, concurrent: downloads (whole archives, or single files straight into their source folder).
    const zips = await mapLimit(sources, single ? 1 : DOWNLOAD_CONCURRENCY, async (source, i) => {
      const target = single ? staging : join(staging, `.source-${i}`);
      await mkdir(target, { recursive: true });
      try {
        if (settings.artifactPaths.length > 0) {
          await fetchFiles(client, settings, source, target, subdirs[i], summaries[i]);
          return { target, zip: undefined };
        }
        const zip = join(workDir, `source-${i}.zip`);
        if (single) {
          // One source: its download and unpacking overlap when the server allows (phase 2 has nothing left to do).
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
    // Phase 2, in order: unpack each archive into its own folder inside staging.
    for (const [i, got] of zips.entries()) {
      if (!got) continue;
      if (got.zip) {
        await unpackArchive(settings, sources[i], got.zip, got.target, subdirs[i], summaries[i]);
        await rm(got.zip, { force: true });
      }
      summaries[i].found = true;
      if (subdirs[i]) summaries[i].path = displayPath(join(settings.dest, subdirs[i]), settings.baseDir);
      staged.push({ index: i, dir: got.target });
    }
    summary.found = staged.length > 0;
    if (summary.found) {
      if (single) {
        await commitStaging(staging, settings.dest, { overwrite: settings.overwrite, workDir: run.root, onStep: commitHook });
      } else {
        // Compose the final tree inside staging, so the workspace sees one move.
        const merged = join(staging, '.merged');
        await mkdir(merged);
        const owners = new Map<number, string>();
        for (const { index, dir } of staged) {
          const into = subdirs[index] ? join(merged, subdirs[index]) : merged;
          await mkdir(into, { recursive: true });
          await mergeTree(dir, into, () => `${sources[index].label}, and one of ${[...owners.values()].join('; ')}`);
          owners.set(index, sources[index].label);
        }
        await commitStaging(merged, settings.dest, { overwrite: settings.overwrite, workDir: run.root, onStep: commitHook });
      }
    }
  } finally {
    await discardRun(run);
    releaseRun();
  }

  const keepFailure = settings.keep ? await keepAfterFetch(client, settings, sources, summary) : undefined;
  await writeOutputs(settings, summary);
  const files = summary.sources.reduce((n, s) => n + s.files, 0);
  const bytes = summary.sources.reduce((n, s) => n + s.bytes, 0);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (summary.found) {
    const from = summary.sources
      .filter((s) => s.found)
      .map((s) => (s.job_id ? `job ${s.job_id}` : `${s.job_name}@${s.ref}`))
      .join(', ');
    logger.success(
      `Fetched ${files} file(s), ${formatBytes(bytes)}, from ${from} into ${displayPath(settings.dest, settings.baseDir)} in ${seconds} s.`,
    );
  } else {
    logger.info(`Nothing fetched (${seconds} s).`);
  }
  if (keepFailure) throw keepFailure;
  return summary;
}
