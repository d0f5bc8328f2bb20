// In-memory store of the simulated GitLab instance: groups, projects, pipelines, jobs, tokens.
import { readFileSync, statSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';

type Visibility = 'private' | 'internal' | 'public';
export type Role = 'guest' | 'reporter' | 'developer' | 'maintainer' | 'owner';
export type DownloadMode = 'redirect' | 'proxy' | 'local';

export const ROLE_LEVEL: Record<Role, number> = { guest: 10, reporter: 20, developer: 30, maintainer: 40, owner: 50 };

/** Archives up to this size are held in memory; bigger ones are streamed from disk. */
const MEMORY_LIMIT = 64 * 1024 * 1024;

export interface Archive {
  size: number;
  buffer?: Buffer;
  path?: string;
  etag: string;
  /** Last-Modified the storage sends (default: the job's finish time). */
  lastModified?: string;
  /** Object key on the storage origin, e.g. /bucket/<random>/artifacts.zip */
  key: string;
}

export interface Group {
  id: number;
  /** Full path, e.g. `grp/sub`. */
  path: string;
  name: string;
  parentId: number | null;
}

export interface Project {
  id: number;
  /** Full path, e.g. `grp/proj`. */
  path: string;
  name: string;
  groupId: number | null;
  visibility: Visibility;
  jobTokenAllowlist: number[];
  premiumGate: boolean;
  jobTokenCanListJobs: boolean;
  defaultBranch: string;
  /** Archived (read-only) project. */
  archived: boolean;
  /** Groups this project is shared with (Project > Members > Invite group); it stays in its own namespace. */
  sharedWithGroups: number[];
}

interface Upstream {
  projectId: number;
  pipelineId: number;
  bridgeJobId?: number;
}

export interface Pipeline {
  id: number;
  iid: number;
  projectId: number;
  ref: string;
  sha: string;
  status: string;
  source: string;
  tag: boolean;
  createdAt: string;
  updatedAt: string;
  upstream?: Upstream;
}

interface ExtraArtifact {
  file_type: string;
  size: number;
}

export interface Job {
  id: number;
  name: string;
  status: string;
  stage: string;
  pipelineId: number;
  projectId: number;
  archive?: Archive;
  retried: boolean;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  expireAt: string | null;
  locked: boolean;
  erased: boolean;
  erasedAt: string | null;
  artifactsAccess: 'all' | 'developer' | 'none';
  extraArtifacts: ExtraArtifact[];
  traceSize: number;
}

export interface AccessToken {
  kind: 'personal' | 'project' | 'group' | 'oauth';
  projects?: number[];
  role: Role;
  scopes: string[];
  /** An instance administrator's token: every project, Owner everywhere; /user says is_admin. */
  admin?: boolean;
}

/** A trigger job (bridge). Its downstream pipeline may not exist yet (still being created). */
export interface Bridge {
  id: number;
  name: string;
  pipelineId: number;
  projectId: number;
  status: string;
  stage: string;
  createdAt: string;
  downstreamPipelineId: number | null;
}

export interface AddBridgeOptions {
  pipelineId: number;
  name: string;
  status?: string;
  stage?: string;
}

export interface AddProjectOptions {
  id?: number;
  path: string;
  groupId?: number;
  visibility?: Visibility;
  jobTokenAllowlist?: number[];
  premiumGate?: boolean;
  jobTokenCanListJobs?: boolean;
  defaultBranch?: string;
  archived?: boolean;
  sharedWithGroups?: number[];
}

export interface AddPipelineOptions {
  projectId: number;
  ref?: string;
  sha?: string;
  status?: string;
  source?: string;
  tag?: boolean;
  createdAt?: string;
  upstream?: Upstream;
}

export interface AddJobOptions {
  pipelineId: number;
  name: string;
  status?: string;
  stage?: string;
  archive?: string;
  archiveBuffer?: Buffer;
  retried?: boolean;
  createdAt?: string;
  finishedAt?: string;
  expireAt?: string | null;
  locked?: boolean;
  erased?: boolean;
  artifactsAccess?: 'all' | 'developer' | 'none';
  extraArtifacts?: ExtraArtifact[];
}

export interface AddAccessTokenOptions {
  kind?: AccessToken['kind'];
  projects?: number[];
  role?: Role;
  scopes?: string[];
  admin?: boolean;
}

export interface JobPatch {
  archive: string;
  archiveBuffer: Buffer;
  finishedAt: string;
}

/** GitLab's default for Settings > CI/CD > Default artifacts expiration (default_artifacts_expire_in). */
const DEFAULT_EXPIRE_IN_MS = 30 * 86_400_000;

const TERMINAL = new Set(['success', 'failed', 'canceled', 'skipped']);

export function loadArchive(path: string | undefined, buffer: Buffer | undefined): Archive | undefined {
  const key = `/bucket/${randomBytes(12).toString('hex')}/artifacts.zip`;
  if (buffer) return { size: buffer.length, buffer, etag: `"${createHash('md5').update(buffer).digest('hex')}"`, key };
  if (!path) return undefined;
  const st = statSync(path);
  if (st.size > MEMORY_LIMIT) return { size: st.size, path, etag: `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`, key };
  const data = readFileSync(path);
  return { size: data.length, buffer: data, etag: `"${createHash('md5').update(data).digest('hex')}"`, key };
}

export class Store {
  groups = new Map<number, Group>();
  projects = new Map<number, Project>();
  pipelines = new Map<number, Pipeline>();
  jobs = new Map<number, Job>();
  bridges = new Map<number, Bridge>();
  jobTokens = new Map<string, number>();
  accessTokens = new Map<string, AccessToken>();
  deletedArtifacts: number[] = [];
  private nextGroupId = 1;
  private nextProjectId = 1;
  private nextPipelineId = 100;
  private nextJobId = 1000;
  private clock = Date.parse('2026-01-01T00:00:00Z');

  private tick(): string {
    this.clock += 60_000;
    return new Date(this.clock).toISOString();
  }

  addGroup(o: { path: string; parentId?: number }): Group {
    const parent = o.parentId !== undefined ? this.groups.get(o.parentId) : undefined;
    if (o.parentId !== undefined && !parent) throw new Error(`no group ${o.parentId}`);
    const name = o.path.split('/').pop() ?? o.path;
    const g: Group = { id: this.nextGroupId++, path: parent ? `${parent.path}/${o.path}` : o.path, name, parentId: parent?.id ?? null };
    this.groups.set(g.id, g);
    return g;
  }

  addProject(o: AddProjectOptions): Project {
    const group = o.groupId !== undefined ? this.groups.get(o.groupId) : undefined;
    if (o.groupId !== undefined && !group) throw new Error(`no group ${o.groupId}`);
    const id = o.id ?? this.nextProjectId;
    if (this.projects.has(id)) throw new Error(`project ${id} exists`);
    this.nextProjectId = Math.max(this.nextProjectId, id + 1);
    const path = group ? `${group.path}/${o.path}` : o.path;
    const p: Project = {
      id,
      path,
      name: path.split('/').pop() ?? path,
      groupId: group?.id ?? null,
      visibility: o.visibility ?? 'private',
      jobTokenAllowlist: [...(o.jobTokenAllowlist ?? [])],
      premiumGate: o.premiumGate ?? false,
      jobTokenCanListJobs: o.jobTokenCanListJobs ?? true,
      defaultBranch: o.defaultBranch ?? 'main',
      archived: o.archived ?? false,
      sharedWithGroups: [...(o.sharedWithGroups ?? [])],
    };
    this.projects.set(id, p);
    return p;
  }

  addPipeline(o: AddPipelineOptions): Pipeline {
    if (!this.projects.has(o.projectId)) throw new Error(`no project ${o.projectId}`);
    const iid = [...this.pipelines.values()].filter((p) => p.projectId === o.projectId).length + 1;
    const createdAt = o.createdAt ?? this.tick();
    const p: Pipeline = {
      id: this.nextPipelineId++,
      iid,
      projectId: o.projectId,
      ref: o.ref ?? 'main',
      sha: o.sha ?? randomBytes(20).toString('hex'),
      status: o.status ?? 'success',
      source: o.source ?? (o.upstream ? 'pipeline' : 'push'),
      tag: o.tag ?? false,
      createdAt,
      updatedAt: createdAt,
      ...(o.upstream ? { upstream: { ...o.upstream } } : {}),
    };
    this.pipelines.set(p.id, p);
    const bridge = o.upstream?.bridgeJobId !== undefined ? this.bridges.get(o.upstream.bridgeJobId) : undefined;
    if (bridge) {
      bridge.downstreamPipelineId = p.id;
      if (!TERMINAL.has(bridge.status)) bridge.status = 'running';
    }
    return p;
  }

  /** A trigger job in a pipeline; its downstream pipeline is added later with upstream.bridgeJobId = its ID. */
  addBridge(o: AddBridgeOptions): Bridge {
    const pipeline = this.pipelines.get(o.pipelineId);
    if (!pipeline) throw new Error(`no pipeline ${o.pipelineId}`);
    const b: Bridge = {
      id: this.nextJobId++,
      name: o.name,
      pipelineId: pipeline.id,
      projectId: pipeline.projectId,
      status: o.status ?? 'created',
      stage: o.stage ?? 'test',
      createdAt: this.tick(),
      downstreamPipelineId: null,
    };
    this.bridges.set(b.id, b);
    return b;
  }

  /** Statistics of a project as GitLab keeps them: job_artifacts_size counts every artifact, job logs included. */
  projectStatistics(projectId: number): { job_artifacts_size: number } {
    let size = 0;
    for (const j of this.projectJobs(projectId)) {
      if (j.archive) size += j.archive.size + 180;
      size += j.extraArtifacts.reduce((n, e) => n + e.size, 0);
      if (!j.erased) size += j.traceSize;
    }
    return { job_artifacts_size: size };
  }

  addJob(o: AddJobOptions): Job {
    const pipeline = this.pipelines.get(o.pipelineId);
    if (!pipeline) throw new Error(`no pipeline ${o.pipelineId}`);
    const status = o.status ?? 'success';
    const createdAt = o.createdAt ?? this.tick();
    const archive = loadArchive(o.archive, o.archiveBuffer);
    const j: Job = {
      id: this.nextJobId++,
      name: o.name,
      status,
      stage: o.stage ?? 'build',
      pipelineId: pipeline.id,
      projectId: pipeline.projectId,
      ...(archive ? { archive } : {}),
      retried: o.retried ?? false,
      createdAt,
      startedAt: status === 'created' || status === 'pending' ? null : createdAt,
      finishedAt: o.finishedAt ?? (TERMINAL.has(status) ? new Date(Date.parse(createdAt) + 30_000).toISOString() : null),
      // Without expire_in GitLab applies the instance's default_artifacts_expire_in (30 days unless changed);
      // null (never expires) is what keep (or expire_in: never) leaves.
      expireAt: o.expireAt === undefined ? new Date(Date.now() + DEFAULT_EXPIRE_IN_MS).toISOString() : o.expireAt,
      locked: o.locked ?? false,
      erased: o.erased ?? false,
      erasedAt: o.erased ? createdAt : null,
      artifactsAccess: o.artifactsAccess ?? 'all',
      extraArtifacts: [...(o.extraArtifacts ?? [])],
      traceSize: 1024,
    };
    if (j.erased) delete j.archive;
    this.jobs.set(j.id, j);
    return j;
  }

  setJobStatus(jobId: number, status: string, patch: Partial<JobPatch> = {}): void {
    const j = this.jobs.get(jobId);
    if (!j) throw new Error(`no job ${jobId}`);
    j.status = status;
    if (status === 'running' && !j.startedAt) j.startedAt = new Date().toISOString();
    if (patch.finishedAt) j.finishedAt = patch.finishedAt;
    else if (TERMINAL.has(status) && !j.finishedAt) j.finishedAt = new Date().toISOString();
    const archive = loadArchive(patch.archive, patch.archiveBuffer);
    if (archive) j.archive = archive;
    const p = this.pipelines.get(j.pipelineId);
    if (p) p.updatedAt = new Date().toISOString();
  }

  setPipelineStatus(pipelineId: number, status: string): void {
    const p = this.pipelines.get(pipelineId);
    if (!p) throw new Error(`no pipeline ${pipelineId}`);
    p.status = status;
    p.updatedAt = new Date().toISOString();
  }

  addJobToken(token: string, jobId: number): void {
    if (!this.jobs.has(jobId)) throw new Error(`no job ${jobId}`);
    this.jobTokens.set(token, jobId);
  }

  addAccessToken(token: string, o: AddAccessTokenOptions = {}): void {
    this.accessTokens.set(token, {
      kind: o.kind ?? 'personal',
      ...(o.projects ? { projects: [...o.projects] } : {}),
      role: o.role ?? 'maintainer',
      scopes: o.scopes ?? ['api'],
      ...(o.admin ? { admin: true } : {}),
    });
  }

  findProject(idOrPath: string): Project | undefined {
    if (/^\d+$/.test(idOrPath)) return this.projects.get(Number(idOrPath));
    for (const p of this.projects.values()) if (p.path === idOrPath) return p;
    return undefined;
  }

  findGroup(idOrPath: string): Group | undefined {
    if (/^\d+$/.test(idOrPath)) return this.groups.get(Number(idOrPath));
    for (const g of this.groups.values()) if (g.path === idOrPath) return g;
    return undefined;
  }

  /** Jobs of a project, id descending. */
  projectJobs(projectId: number): Job[] {
    return [...this.jobs.values()].filter((j) => j.projectId === projectId).sort((a, b) => b.id - a.id);
  }

  pipelineJobs(pipelineId: number): Job[] {
    return [...this.jobs.values()].filter((j) => j.pipelineId === pipelineId).sort((a, b) => b.id - a.id);
  }

  /** Same-project child pipelines of a pipeline (source parent_pipeline). */
  childPipelines(p: Pipeline): Pipeline[] {
    return [...this.pipelines.values()]
      .filter((c) => c.upstream?.pipelineId === p.id && c.projectId === p.projectId && c.source === 'parent_pipeline')
      .sort((a, b) => a.id - b.id);
  }

  /** §1.3: latest successful pipeline for the ref, then the latest non-retried job by name with an archive. */
  resolveByRef(projectId: number, ref: string, jobName: string, searchRecent: boolean): Job | undefined {
    const pipelines = [...this.pipelines.values()]
      .filter((p) => p.projectId === projectId && p.ref === ref && p.status === 'success' && p.source !== 'parent_pipeline')
      .sort((a, b) => b.id - a.id)
      .slice(0, searchRecent ? 100 : 1);
    for (const p of pipelines) {
      for (const q of [p, ...this.childPipelines(p)]) {
        const hit = this.pipelineJobs(q.id).find((j) => !j.retried && j.name === jobName && j.archive && !j.erased);
        if (hit) return hit;
      }
    }
    return undefined;
  }

  /** Descendant groups including the group itself. */
  groupTree(groupId: number): number[] {
    const out = [groupId];
    for (let i = 0; i < out.length; i++) for (const g of this.groups.values()) if (g.parentId === out[i]) out.push(g.id);
    return out;
  }

  findJobByKey(key: string): Job | undefined {
    for (const j of this.jobs.values()) if (j.archive?.key === key) return j;
    return undefined;
  }
}

export function isExpired(j: Job, now = Date.now()): boolean {
  return j.expireAt !== null && Date.parse(j.expireAt) <= now;
}
