// The JSON summary and the dotenv report: the machine-readable outputs of a fetch.
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, relative, isAbsolute } from 'node:path';
import type { ResolvedSource } from '../sources/types.ts';

export interface FetchedFile {
  path: string;
  bytes: number;
  sha256: string;
}

/** Which job a source is, as the summaries of fetch and keep say it. */
export interface SourceIdentity {
  project_id: number | string;
  pipeline_id: number | null;
  job_id: number | null;
  job_name: string | null;
  ref: string | null;
  /** How the source was chosen: job_id, ref (latest successful pipeline of a ref), pipeline, upstream, bridge. */
  selected_by: string;
}

export function sourceIdentity(source: ResolvedSource): SourceIdentity {
  return {
    project_id: source.projectId ?? source.project,
    pipeline_id: source.pipelineId,
    job_id: source.jobId,
    job_name: source.jobName,
    ref: source.ref,
    selected_by: source.selectedBy,
  };
}

export interface SourceSummary extends SourceIdentity {
  archive_bytes: number | null;
  sha256: string | null;
  files: number;
  bytes: number;
  /** Destination, relative to $CI_PROJECT_DIR when inside it. */
  path: string;
  /** With artifact_path: each single file fetched. */
  artifact_files?: FetchedFile[];
  found: boolean;
  /** With keep: whether this job's artifacts were kept (their expiry removed) after the fetch. */
  kept?: boolean;
  /** With keep: why keeping them failed. */
  keep_error?: string;
  /** child_pipelines / sibling_project: the trigger jobs from the selected pipeline to the job's pipeline ([] for the selected one). */
  via_trigger_jobs?: string[];
  /** A partial fetch (include/exclude by Range): only the selected entries' bytes came, so sha256 is null. */
  partial?: boolean;
  /** With partial: the ranges requested and the bytes they held. */
  ranges_fetched?: number;
  bytes_fetched?: number;
}

export interface FetchSummary {
  found: boolean;
  dry_run: boolean;
  /** job_id, ref, pipeline, upstream (detected from the environment), or bridge (found through the upstream's trigger jobs). */
  selected_by: string;
  /** The upstream pipeline detected from CI_UPSTREAM_* or UPSTREAM_* variables, when used or seen. */
  upstream: { project: string; pipeline_id: number; variables: string } | null;
  layout: string;
  sources: SourceSummary[];
  /** With keep: true when the artifacts of every fetched job were kept. */
  kept?: boolean;
  error?: string;
}

/** Path for humans and outputs: relative to base when inside it ('.' for base itself), else absolute. */
export function displayPath(path: string, base: string): string {
  const rel = relative(base, path);
  if (rel === '') return '.';
  return rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

/** Writes through a temporary file and a rename, so a reader never sees half a file. */
export async function writeAtomic(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

export async function writeSummary(file: string, summary: FetchSummary): Promise<void> {
  await writeAtomic(file, `${JSON.stringify(summary, null, 2)}\n`);
}

/** GitLab dotenv values: one line, no spaces, no quotes, no '#'. Anything else is percent-encoded. */
export function dotenvValue(value: string | number | boolean | null | undefined): string {
  if (value === null || value === undefined) return '';
  return String(value).replace(/[\s"'#%\\]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

function dotenvLines(summary: FetchSummary): string[] {
  const found = summary.sources.filter((s) => s.found);
  const first = found[0];
  const vars: Record<string, string | number | boolean | null | undefined> = {
    ARTIFACT_RELAY_FOUND: summary.found,
    ARTIFACT_RELAY_JOB_ID: first?.job_id,
    ARTIFACT_RELAY_JOB_IDS: found
      .map((s) => s.job_id)
      .filter((id) => id !== null)
      .join(','),
    ARTIFACT_RELAY_PIPELINE_ID: first?.pipeline_id,
    ARTIFACT_RELAY_PROJECT_ID: first?.project_id,
    ARTIFACT_RELAY_FILES: found.reduce((n, s) => n + s.files, 0),
    ARTIFACT_RELAY_BYTES: found.reduce((n, s) => n + s.bytes, 0),
    ARTIFACT_RELAY_PATH: first?.path ?? summary.sources[0]?.path,
    ARTIFACT_RELAY_KEPT: summary.kept ?? false,
  };
  return Object.entries(vars).map(([k, v]) => `${k}=${dotenvValue(v)}`);
}

export async function writeDotenv(file: string, summary: FetchSummary): Promise<void> {
  await writeAtomic(file, `${dotenvLines(summary).join('\n')}\n`);
}
