// One whole archive: downloaded (over one connection, widened to parallel ranges once the download proves bound by
// the network), or only its selected entries' ranges, and unpacked into a staging folder, while it downloads where
// that pays (the server honours Range, the archive is big enough, the download leaves the CPU idle), else from the
// complete file.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DownloadOptions, DownloadResult, GitLabClient, Widened } from '../api/client.ts';
import { type Directory, readDirectoryFromTail } from '../archive/central-directory.ts';
import { extractArchive, type ExtractResult } from '../archive/extract.ts';
import { planPartial } from '../archive/ranges.ts';
import { RangeUnusable } from '../api/parallel.ts';
import { Watermark } from '../archive/watermark.ts';
import type { RelayError } from '../runtime/errors.ts';
import type { FetchSettings } from '../inputs/settings.ts';
import { formatBytes, logger, memoryMark, section } from '../runtime/log.ts';
import { displayPath, type SourceSummary } from '../outputs/summary.ts';
import type { ResolvedSource } from '../sources/types.ts';
import { plannedConnections, whenToUnpack, widening } from './download-policy.ts';
import { conflictError, discardStaging, findConflicts } from '../workspace/staging.ts';
import {
  downloadToFile,
  downloadToFileParallel,
  fileEndsWith,
  openFileSink,
  type ParallelPlan,
  WriteMeter,
} from '../workspace/file-sink.ts';

/** First request of an overlapped fetch: the archive's last bytes, where the end record and usually the whole directory are. */
const TAIL_REQUEST = 64 * 1024;
/**
 * A directory larger than settings.tailDirectoryMaxBytes (8 MiB) is not read by ranged requests, which hold it whole
 * in memory beside its parsed records (300,000 entries: 23 MB of directory): download, then unpack, reading it from
 * the file in slices. A partial fetch (include/exclude) may read eight times as much: skipping most of the archive is
 * worth the memory.
 */
const PARTIAL_DIRECTORY_FACTOR = 8;
/** Archives from this size on may widen to parallel ranges (input connections) where storage allows. */
const PARALLEL_MIN_BYTES = 2 * 1024 * 1024;

/** The overlapped download was restarted or changed under us: its extraction is discarded and redone from the file. */
class Abandoned extends Error {}

/** Progress lines on long downloads every `intervalMs` (settings.progressMs): often enough to show life, rare enough for a 4 MB job log. */
export function progressLogger(label: string, intervalMs: number) {
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

/** Downloads the archive; `report` is the one-line account (size, rate, origin, attempts, sha256) to log. */
export async function downloadArchive(
  client: GitLabClient,
  source: ResolvedSource,
  file: string,
  summary: SourceSummary,
  progressMs: number,
  opts: DownloadOptions = {},
  parallel: (ParallelPlan & { stayed?: () => string | undefined }) | undefined = undefined,
) {
  const started = Date.now();
  const all = { ...opts, onProgress: progressLogger('downloaded', progressMs) };
  const result: DownloadResult & { widened?: Widened } = parallel
    ? await downloadToFileParallel(client, source.archivePath, source.archiveQuery, file, parallel, all)
    : await downloadToFile(client, source.archivePath, source.archiveQuery, file, all);
  const seconds = (Date.now() - started) / 1000;
  summary.archive_bytes = result.bytes;
  summary.sha256 = result.sha256;
  const w = result.widened;
  const over = !w
    ? ''
    : w.at === undefined
      ? ` over 1 connection${w.restarted || !parallel?.stayed?.() ? '' : ` (${parallel.stayed()})`}`
      : w.at === 0
        ? ` over ${w.connections} connections`
        : ` over 1 connection, widened to ${w.connections} after ${formatBytes(w.at)}`;
  const report =
    `Downloaded ${formatBytes(result.bytes)}${over} in ${seconds.toFixed(1)} s (${formatBytes(result.bytes / Math.max(seconds, 0.001))}/s)` +
    `${result.redirected ? ` from ${new URL(result.finalUrl).host}` : ''}${result.attempts > 1 ? ` after ${result.attempts} attempts` : ''}; sha256 ${result.sha256}`;
  return { result, report };
}

function logEntries(result: ExtractResult): void {
  for (const e of result.listed) {
    const what = e.type === 'symlink' ? ` -> ${e.target}` : e.type === 'directory' ? '/' : `  ${formatBytes(e.size)}`;
    logger.info(`  ${e.mode.toString(8).padStart(4, '0')} ${e.path}${what}`);
  }
  if (result.count > result.listed.length) logger.info(`  ... and ${result.count - result.listed.length} more`);
}

/** Refuses before writing when overwrite is false and files would be replaced. */
export async function checkConflicts(settings: FetchSettings, planned: Iterable<string>, destSub: string): Promise<void> {
  if (settings.overwrite) return;
  const dest = destSub ? join(settings.dest, destSub) : settings.dest;
  const conflicts = await findConflicts(dest, planned);
  if (conflicts.length > 0) throw conflictError(conflicts, displayPath(dest, settings.baseDir));
}

/**
 * Symlinks each source's unpacking wrote into staging (by its summary): with none, the commit has no link to check
 * (commitStaging's linkFree) and does not walk the staged tree for them.
 */
export const stagedSymlinks = new WeakMap<SourceSummary, number>();

/**
 * Unpacks one archive into `stagingDir`: a downloaded one (its directory already read, or not), or (with `available`)
 * one still being downloaded. The conflict check (overwrite: false) runs on the validated plan, before anything is
 * written.
 */
export async function unpackArchive(
  settings: FetchSettings,
  source: ResolvedSource,
  zip: string,
  stagingDir: string,
  destSub: string,
  summary: SourceSummary,
  overlap: { directory: Directory; available?: (end: number) => Promise<void>; sharedMark?: SharedArrayBuffer } | undefined = undefined,
): Promise<void> {
  const result = await section(`Unpack ${source.label}`, async () => {
    const r = await extractArchive(zip, stagingDir, {
      include: settings.include,
      exclude: settings.exclude,
      directory: overlap?.directory,
      available: overlap?.available,
      sharedMark: overlap?.sharedMark,
      beforeWrite: (paths) => checkConflicts(settings, paths, destSub),
      maxBytes: settings.maxBytes,
      maxFiles: settings.maxFiles,
      maxRatio: settings.maxRatio,
    });
    logEntries(r);
    memoryMark('entries logged');
    return r;
  });
  summary.files = result.files + result.symlinks;
  stagedSymlinks.set(summary, result.symlinks);
  summary.bytes = result.bytes;
}

/** Two answers are of the same archive unless both carry an ETag and they differ (the sizes are compared too). */
function sameEtag(a: string | undefined, b: string | undefined): boolean {
  return a === undefined || b === undefined || a === b;
}

/**
 * The archive's directory from its tail (ranged requests); undefined when the server ignores Range or it is not a zip;
 * why not, when the directory is too large to hold from ranged requests.
 */
async function directoryFromTail(
  client: GitLabClient,
  source: ResolvedSource,
  maxDirectoryBytes: number,
): Promise<
  | { directory: Directory; total: number; etag?: string; lastModified?: string; buffer: Buffer; directoryStart?: number }
  | string
  | undefined
> {
  const tail = await client.readRange(source.archivePath, source.archiveQuery, -TAIL_REQUEST).catch((err) => {
    if ((err as RelayError).details?.status === 416) return undefined; // e.g. an empty file: the download explains
    throw err;
  });
  if (!tail) return undefined;
  let changed = false;
  const where: { directoryStart?: number } = {};
  let tooLarge: number | undefined; // bytes of directory past the tail, when more than maxDirectoryBytes
  const directory = await readDirectoryFromTail(
    tail.buffer,
    tail.total,
    async (start, end) => {
      if (end - start > maxDirectoryBytes) tooLarge = end - start;
      const more = tooLarge !== undefined ? undefined : await client.readRange(source.archivePath, source.archiveQuery, start, end, tail);
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
  if (tooLarge !== undefined) {
    return `the central directory's ${formatBytes(tooLarge)} past the tail are read from the file, not by Range (above ${formatBytes(maxDirectoryBytes)})`;
  }
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
  found: Exclude<Awaited<ReturnType<typeof directoryFromTail>>, string | undefined>,
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
    directory: found.directory, // every selected range is written: nothing to wait for
  });
  logger.info(
    `Downloaded ${formatBytes(result.bytes)} of ${formatBytes(found.total)} in ${plan.ranges.length} range(s) in ${seconds.toFixed(1)} s` +
      `${result.redirected ? ` from ${new URL(result.finalUrl).host}` : ''}${result.attempts > 1 ? ` after ${result.attempts} attempts` : ''}; no sha256 of the archive (only part of it was downloaded)`,
  );
  return true;
}

type Tail = Exclude<Awaited<ReturnType<typeof directoryFromTail>>, string | undefined>;

/** One whole-archive fetch: where it comes from, where it is written, and its summary. */
interface ArchiveJob {
  client: GitLabClient;
  settings: FetchSettings;
  source: ResolvedSource;
  zip: string;
  stagingDir: string;
  destSub: string;
  summary: SourceSummary;
}

/**
 * A whole archive, unpacked while it downloads when the server supports Range; otherwise (or when the download
 * restarts from zero or changes under us) downloaded first and unpacked from the complete file. The tail request
 * (the central directory, by Range) runs beside the download's first bytes, not before them: where unpacking alongside
 * does not pay (a download that keeps the CPU busy), the fetch costs what a plain download then unpack costs, and the
 * directory it brought is not read again from the file. A partial fetch and ranges from the start
 * (ARTIFACT_RELAY_WIDEN=0) need the tail first.
 */
export async function fetchArchive(
  client: GitLabClient,
  settings: FetchSettings,
  source: ResolvedSource,
  zip: string,
  stagingDir: string,
  destSub: string,
  summary: SourceSummary,
): Promise<void> {
  const job: ArchiveJob = { client, settings, source, zip, stagingDir, destSub, summary };
  if (settings.overlap === 'never') return plainFetch(job, 'ARTIFACT_RELAY_OVERLAP=0');
  const selective = Boolean(settings.include?.length || settings.exclude?.length);
  const maxDirectory = settings.tailDirectoryMaxBytes * (selective ? PARTIAL_DIRECTORY_FACTOR : 1);
  let tailing: Promise<Awaited<ReturnType<typeof directoryFromTail>>>;
  if (selective || settings.widen === 0) {
    const fromTail = await directoryFromTail(client, source, maxDirectory);
    if (typeof fromTail === 'object' && (await fetchPartial(client, settings, source, fromTail, zip, stagingDir, destSub, summary))) return;
    tailing = Promise.resolve(fromTail);
  } else tailing = directoryFromTail(client, source, maxDirectory);
  await overlappedFetch(job, tailing);
}

/** Download, then unpack from the complete file. */
async function plainFetch({ client, settings, source, zip, stagingDir, destSub, summary }: ArchiveJob, why: string): Promise<void> {
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
}

/**
 * The download, with the tail's answer arriving beside it (`tailing`): it widens to parallel ranges once it proves
 * bound by the network (settings.widen) where the tail proved Range and validators, and unpacking starts alongside it
 * once it leaves the CPU idle (whenToUnpack) where the tail brought the directory; else the archive is unpacked once
 * complete, with the tail's directory where the body ends with the tail's bytes.
 */
async function overlappedFetch(job: ArchiveJob, tailing: Promise<Awaited<ReturnType<typeof directoryFromTail>>>): Promise<void> {
  const { client, settings, source, zip, stagingDir, destSub, summary } = job;
  const mark = new Watermark();
  let tail: Tail | undefined;
  /** Why the archive is not unpacked while it downloads, once the tail's answer says so. */
  let notAlongside: string | undefined;
  /** The tail request's failure (a refusal, a hostile answer): the fetch's, and it stops the download. */
  let tailError: Error | undefined;
  const small = (t: Tail) => settings.overlap === 'auto' && t.total < settings.overlapMinBytes;
  const ranged = (t: Tail) => settings.connections > 1 && t.total >= PARALLEL_MIN_BYTES && Boolean(t.etag || t.lastModified);
  /** Why the tail's answer allows no ranges (widening is then never asked). */
  const unranged = (t: Tail | undefined) =>
    !t
      ? 'no Range support'
      : t.total < PARALLEL_MIN_BYTES
        ? `below ${formatBytes(PARALLEL_MIN_BYTES)}`
        : 'no ETag or Last-Modified to validate ranges';
  const arrived = tailing.then(
    (t) => {
      memoryMark('directory from the tail');
      if (typeof t === 'object') tail = t;
      notAlongside =
        typeof t === 'string'
          ? t
          : !t
            ? 'no Range support'
            : small(t) && !ranged(t)
              ? `below ${formatBytes(settings.overlapMinBytes)}`
              : undefined;
      if (notAlongside !== undefined) logger.info(`Download, then unpack (${notAlongside})`);
      else if (tail) {
        logger.info(
          `Unpacking while downloading (${tail.directory.length} entries in the directory${ranged(tail) ? `, ${plannedConnections(settings.connections, settings.widen)}` : ''})`,
        );
      }
    },
    (err: Error) => {
      tailError = err;
      mark.fail(err);
    },
  );
  // Parallel ranges pay where storage limits each connection, not where one connection keeps the CPU busy: the
  // download starts over one connection and widens (settings.widen) once it proves bound by the network. Ranges need
  // a validator, so that every one is provably of the object the tail came from.
  const writes = new WriteMeter(); // a download held back by its disk does not widen
  let settle = () => {};
  const settled = new Promise<void>((resolve) => {
    settle = resolve;
  });
  // Ranges from the start (ARTIFACT_RELAY_WIDEN=0) are planned on the tail's answer, which the caller awaited.
  const first = settings.widen === 0 ? await tailing : undefined;
  const known = typeof first === 'object' && ranged(first) ? first : undefined;
  const widen = settings.connections > 1 && (settings.widen !== 0 || known) ? widening(settings.widen, settled, writes) : undefined;
  const widenAt = widen?.widenAt;
  const parallel: (ParallelPlan & { stayed?: () => string | undefined }) | undefined = widen
    ? {
        total: known?.total,
        validators: known ? { etag: known.etag, lastModified: known.lastModified } : undefined,
        connections: settings.connections,
        meter: writes,
        stayed: () => (tail && ranged(tail) ? widen.stayed() : unranged(tail)),
        widenAt: widenAt
          ? (written, end, answer) =>
              tail && ranged(tail) && answer.total === tail.total && sameEtag(answer.validators.etag, tail.etag)
                ? widenAt(written, end, answer)
                : undefined
          : undefined,
      }
    : undefined;
  let extractError: Error | undefined;
  let abandoned = false;
  let downloadReport = '';
  await writeFile(zip, ''); // the extraction opens the file while the download writes it
  const downloading0 = downloadArchive(
    client,
    source,
    zip,
    summary,
    settings.progressMs,
    {
      maxBytes: settings.maxArchiveBytes,
      expectedSize: () => tail?.total,
      onWritten: (n) => {
        if (tailError) throw tailError;
        if (extractError && !abandoned) throw extractError; // a rejected archive stops the download at once
        mark.advance(n);
      },
      onRestart: () => {
        abandoned = true;
        mark.fail(new Abandoned('the download restarted from zero'));
      },
    },
    parallel,
  );
  downloading0.then(settle, settle);
  const downloading = downloading0.then(
    async ({ result: r, report }) => {
      downloadReport = report;
      await arrived;
      if (tailError) throw tailError;
      // The directory came from the tail request: the body must be that same object (its tail byte for byte,
      // whatever validators the storage sends), else unpack what was downloaded, which the sha256 describes.
      if (!tail || r.bytes !== tail.total || !sameEtag(r.etag, tail.etag) || !(await fileEndsWith(zip, tail.buffer))) {
        abandoned = true;
        mark.fail(new Abandoned(tail ? 'the archive changed while downloading' : 'no directory from the tail'));
      } else mark.finish(r.bytes);
    },
    (err) => {
      mark.fail(err);
      throw err;
    },
  );
  const unpacking = whenToUnpack(downloading, settings.overlap)
    .then(async () => {
      await arrived;
      if (!tail) return; // unpacked from the file once downloaded (abandoned)
      if (notAlongside !== undefined) {
        // Not alongside: once downloaded, with the tail's directory where the body is the tail's object.
        const downloadedWhole = await downloading.then(
          () => true,
          () => false,
        );
        if (!downloadedWhole || abandoned) return;
      }
      await unpackArchive(settings, source, zip, stagingDir, destSub, summary, {
        directory: tail.directory,
        available: mark.wait,
        sharedMark: mark.shared,
      });
    })
    .catch((err) => {
      extractError = err;
    });
  // Both settle before anything else touches staging; a download failure is the error to report (the extraction
  // only saw its consequences).
  const [downloaded] = await Promise.allSettled([downloading, unpacking]);
  if (downloaded.status === 'rejected') throw downloaded.reason;
  logger.info(downloadReport); // after the (collapsed) unpack section, so it shows
  if (abandoned) {
    const why = await mark.wait(tail?.total ?? 0).catch((err: Error) => err);
    if (tail) logger.info(`Unpacking again from the downloaded file: ${why instanceof Error ? why.message : 'the download restarted'}`);
    await discardStaging(stagingDir);
    await mkdir(stagingDir, { recursive: true });
    await unpackArchive(settings, source, zip, stagingDir, destSub, summary);
    return;
  }
  if (extractError) throw extractError;
}
