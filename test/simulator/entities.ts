// JSON entities in GitLab's API shape (Job, Pipeline, Project, Group).
import { isExpired } from './model.ts';
import type { Group, Job, Pipeline, Project, Store } from './model.ts';

const USER = { id: 1, username: 'sim-user', name: 'Simulator User', state: 'active', web_url: '' };

export function pipelineBasic(store: Store, p: Pipeline, baseUrl: string): Record<string, unknown> {
  const project = store.projects.get(p.projectId);
  return {
    id: p.id,
    iid: p.iid,
    project_id: p.projectId,
    sha: p.sha,
    ref: p.ref,
    status: p.status,
    source: p.source,
    created_at: p.createdAt,
    updated_at: p.updatedAt,
    web_url: `${baseUrl}/${project?.path ?? p.projectId}/-/pipelines/${p.id}`,
  };
}

export function pipelineEntity(store: Store, p: Pipeline, baseUrl: string): Record<string, unknown> {
  return {
    ...pipelineBasic(store, p, baseUrl),
    tag: p.tag,
    before_sha: '0000000000000000000000000000000000000000',
    yaml_errors: null,
    user: USER,
    started_at: p.createdAt,
    finished_at: ['success', 'failed', 'canceled', 'skipped'].includes(p.status) ? p.updatedAt : null,
    committed_at: null,
    duration: null,
    queued_duration: null,
    coverage: null,
    detailed_status: { icon: `status_${p.status}`, text: p.status, label: p.status, group: p.status },
  };
}

function artifactsList(j: Job, expired: boolean): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  if (j.archive) {
    out.push({ file_type: 'archive', size: j.archive.size, filename: 'artifacts.zip', file_format: 'zip' });
    out.push({ file_type: 'metadata', size: 180, filename: 'metadata.gz', file_format: 'gzip' });
  }
  if (!expired || j.locked)
    for (const e of j.extraArtifacts)
      out.push({ file_type: e.file_type, size: e.size, filename: `${e.file_type}.json`, file_format: 'raw' });
  if (!j.erased) out.push({ file_type: 'trace', size: j.traceSize, filename: 'job.log', file_format: null });
  return out;
}

export function jobEntity(store: Store, j: Job, baseUrl: string): Record<string, unknown> {
  const p = store.pipelines.get(j.pipelineId);
  const project = store.projects.get(j.projectId);
  const expired = isExpired(j);
  const duration = j.startedAt && j.finishedAt ? (Date.parse(j.finishedAt) - Date.parse(j.startedAt)) / 1000 : null;
  const e: Record<string, unknown> = {
    id: j.id,
    name: j.name,
    status: j.status,
    stage: j.stage,
    ref: p?.ref ?? 'main',
    tag: p?.tag ?? false,
    coverage: null,
    allow_failure: false,
    created_at: j.createdAt,
    started_at: j.startedAt,
    finished_at: j.finishedAt,
    erased_at: j.erasedAt,
    duration,
    queued_duration: 0.5,
    user: USER,
    commit: { id: p?.sha, short_id: p?.sha.slice(0, 8), title: 'Commit' },
    pipeline: p ? { id: p.id, iid: p.iid, project_id: p.projectId, ref: p.ref, sha: p.sha, status: p.status, source: p.source } : null,
    web_url: `${baseUrl}/${project?.path ?? j.projectId}/-/jobs/${j.id}`,
    project: { ci_job_token_scope_enabled: (project?.jobTokenAllowlist.length ?? 0) > 0 },
    artifacts: artifactsList(j, expired),
    artifacts_expire_at: j.expireAt,
    archived: false,
    runner: null,
    tag_list: [],
    failure_reason: j.status === 'failed' ? 'script_failure' : undefined,
  };
  if (j.archive && !expired) e.artifacts_file = { filename: 'artifacts.zip', size: j.archive.size };
  return e;
}

export function projectEntity(store: Store, p: Project, baseUrl: string): Record<string, unknown> {
  const g = p.groupId !== null ? store.groups.get(p.groupId) : undefined;
  const ns = p.path.includes('/') ? p.path.slice(0, p.path.lastIndexOf('/')) : p.path;
  return {
    id: p.id,
    name: p.name,
    path: p.name,
    path_with_namespace: p.path,
    name_with_namespace: p.path.split('/').join(' / '),
    default_branch: p.defaultBranch,
    visibility: p.visibility,
    web_url: `${baseUrl}/${p.path}`,
    namespace: g
      ? { id: g.id, name: g.name, path: g.name, kind: 'group', full_path: g.path }
      : { id: 0, name: ns, path: ns, kind: 'user', full_path: ns },
    archived: p.archived,
  };
}

export function groupEntity(g: Group, baseUrl: string): Record<string, unknown> {
  return {
    id: g.id,
    name: g.name,
    path: g.name,
    full_path: g.path,
    full_name: g.path.split('/').join(' / '),
    parent_id: g.parentId,
    visibility: 'private',
    web_url: `${baseUrl}/groups/${g.path}`,
  };
}
