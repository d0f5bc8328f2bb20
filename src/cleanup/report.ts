// The storage report: artifact bytes per project and per policy reason, largest first, as JSON (in the cleanup
// report, under `storage`) and as a Markdown table fit for the job log and a merge request comment.
import { formatBytes } from '../runtime/log.ts';

export interface ReasonTally {
  jobs: number;
  bytes: number;
}

/** What the storage report needs of each project's cleanup. */
export interface ProjectTally {
  project_id: number;
  path: string;
  /** job_artifacts_size from the project's statistics, when GitLab gave it. */
  artifact_bytes: number | null;
  /** Why the project was not listed at all (e.g. its statistics show no artifacts). */
  skipped?: string;
  by_reason: Record<string, ReasonTally>;
}

interface StorageProjectRow {
  project_id: number;
  path: string;
  artifact_bytes: number | null;
  deleted_bytes: number;
  kept_bytes: number;
  failed_bytes: number;
  skipped?: string;
}

export interface StorageReport {
  dry_run: boolean;
  /** deleted_bytes: freed (or, in a dry run, that would be freed). */
  totals: { artifact_bytes: number; deleted_bytes: number; kept_bytes: number; failed_bytes: number; projects: number; skipped: number };
  projects: StorageProjectRow[];
  reasons: ({ reason: string } & ReasonTally)[];
}

/** The reason recorded for a deleted job's bytes (the keep reasons are the policy's own words). */
export const DELETED = 'deleted';
export const WOULD_DELETE = 'would delete (dry run)';
export const DELETE_FAILED = 'delete failed';

export function addTally(byReason: Record<string, ReasonTally>, reason: string, bytes: number): void {
  const t = byReason[reason] ?? { jobs: 0, bytes: 0 };
  t.jobs += 1;
  t.bytes += bytes;
  byReason[reason] = t;
}

export function buildStorageReport(projects: ProjectTally[], dryRun: boolean): StorageReport {
  const deletedReason = dryRun ? WOULD_DELETE : DELETED;
  const reasons = new Map<string, ReasonTally>();
  const rows: StorageProjectRow[] = projects.map((p) => {
    let deleted = 0;
    let kept = 0;
    let failed = 0;
    for (const [reason, t] of Object.entries(p.by_reason)) {
      const all = reasons.get(reason) ?? { jobs: 0, bytes: 0 };
      all.jobs += t.jobs;
      all.bytes += t.bytes;
      reasons.set(reason, all);
      if (reason === deletedReason) deleted += t.bytes;
      else if (reason === DELETE_FAILED) failed += t.bytes;
      else kept += t.bytes;
    }
    return {
      project_id: p.project_id,
      path: p.path,
      artifact_bytes: p.artifact_bytes,
      deleted_bytes: deleted,
      kept_bytes: kept,
      failed_bytes: failed,
      ...(p.skipped ? { skipped: p.skipped } : {}),
    };
  });
  const size = (r: StorageProjectRow) => r.artifact_bytes ?? r.deleted_bytes + r.kept_bytes + r.failed_bytes;
  rows.sort((a, b) => b.deleted_bytes - a.deleted_bytes || size(b) - size(a) || a.path.localeCompare(b.path));
  const sum = (f: (r: StorageProjectRow) => number) => rows.reduce((n, r) => n + f(r), 0);
  return {
    dry_run: dryRun,
    totals: {
      artifact_bytes: sum((r) => r.artifact_bytes ?? 0),
      deleted_bytes: sum((r) => r.deleted_bytes),
      kept_bytes: sum((r) => r.kept_bytes),
      failed_bytes: sum((r) => r.failed_bytes),
      projects: rows.length,
      skipped: rows.filter((r) => r.skipped).length,
    },
    projects: rows,
    reasons: [...reasons.entries()]
      .map(([reason, t]) => ({ reason, ...t }))
      .sort((a, b) => b.bytes - a.bytes || a.reason.localeCompare(b.reason)),
  };
}

const cell = (text: string) => text.replace(/\|/g, '\\|');

/** Markdown: totals, then the top `limit` projects and every reason, largest first. */
export function storageMarkdown(report: StorageReport, limit = 50): string {
  const t = report.totals;
  const verb = report.dry_run ? 'Would free' : 'Freed';
  const lines = [
    `### artifact-relay cleanup: storage${report.dry_run ? ' (dry run)' : ''}`,
    '',
    `${verb} **${formatBytes(t.deleted_bytes)}** in ${t.projects} project(s); ${formatBytes(t.kept_bytes)} kept by the policy${t.failed_bytes ? `, ${formatBytes(t.failed_bytes)} failed to delete` : ''}${t.skipped ? `; ${t.skipped} project(s) skipped (no artifacts in their statistics)` : ''}.`,
    '',
    `| Project | Artifacts (statistics) | ${report.dry_run ? 'Would delete' : 'Deleted'} | Kept |`,
    '| --- | ---: | ---: | ---: |',
  ];
  for (const r of report.projects.slice(0, limit))
    lines.push(
      `| ${cell(r.path)} | ${r.artifact_bytes === null ? 'n/a' : formatBytes(r.artifact_bytes)} | ${formatBytes(r.deleted_bytes)} | ${r.skipped ? cell(r.skipped) : formatBytes(r.kept_bytes)} |`,
    );
  if (report.projects.length > limit) lines.push(`| ... ${report.projects.length - limit} more | | | |`);
  lines.push('', '| Reason | Jobs | Bytes |', '| --- | ---: | ---: |');
  for (const r of report.reasons) lines.push(`| ${cell(r.reason)} | ${r.jobs} | ${formatBytes(r.bytes)} |`);
  return `${lines.join('\n')}\n`;
}
