// Authentication (job tokens, access tokens, anonymous) and per-project authorization, as lib/gitlab/auth/auth_finders.rb and app/models/ci/job_token/scope.rb do it.
import { ROLE_LEVEL } from './model.ts';
import type { AccessToken, Job, Project, Role, Store } from './model.ts';
import { q1 } from './http.ts';
import type { Ctx } from './http.ts';

export type Auth = { kind: 'anon' } | { kind: 'user'; token: AccessToken } | { kind: 'job'; job: Job; project: Project };

export interface Denial {
  status: number;
  body: unknown;
}

const UNAUTHORIZED: Denial = { status: 401, body: { message: '401 Unauthorized' } };
const PROJECT_NOT_FOUND: Denial = { status: 404, body: { message: '404 Project Not Found' } };
const FORBIDDEN: Denial = { status: 403, body: { message: '403 Forbidden' } };

function header(ctx: Ctx, name: string): string | undefined {
  const v = ctx.req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function fromJobToken(store: Store, token: string): Auth | Denial {
  const jobId = store.jobTokens.get(token);
  const job = jobId !== undefined ? store.jobs.get(jobId) : undefined;
  if (job?.status !== 'running') return UNAUTHORIZED;
  const project = store.projects.get(job.projectId);
  if (!project) return UNAUTHORIZED;
  return { kind: 'job', job, project };
}

function fromAccessToken(store: Store, token: string): Auth | Denial {
  const t = store.accessTokens.get(token);
  return t ? { kind: 'user', token: t } : UNAUTHORIZED;
}

/** Works out who is calling. On routes without `job_token_allowed`, a JOB-TOKEN counts as anonymous. */
export function authenticate(store: Store, ctx: Ctx, jobTokenRoute: boolean): Auth | Denial {
  const jobTok = header(ctx, 'job-token') ?? q1(ctx.query, 'job_token') ?? (jobTokenRoute ? q1(ctx.query, 'token') : undefined);
  const privTok = header(ctx, 'private-token') ?? q1(ctx.query, 'private_token');
  const bearer = /^Bearer\s+(.+)$/i.exec(header(ctx, 'authorization') ?? '')?.[1]?.trim();
  if (jobTokenRoute && jobTok !== undefined) return fromJobToken(store, jobTok);
  if (privTok !== undefined) return fromAccessToken(store, privTok);
  if (bearer !== undefined) {
    if (jobTokenRoute && store.jobTokens.has(bearer)) return fromJobToken(store, bearer);
    return fromAccessToken(store, bearer);
  }
  return { kind: 'anon' };
}

export function isDenial(x: Auth | Denial | null): x is Denial {
  return x !== null && 'status' in x;
}

export interface AccessNeeds {
  /** A jobs-list route: job tokens are refused with 404 when the project disallows it. */
  jobList?: boolean;
  /** Minimum role for the user (write routes). */
  minRole?: Role;
}

/** Can `auth` act on `project` with this request's method? null = yes. */
export function authorize(auth: Auth, project: Project, method: string, needs: AccessNeeds = {}): Denial | null {
  const read = method === 'GET' || method === 'HEAD';
  switch (auth.kind) {
    case 'anon':
      if (!read) return UNAUTHORIZED;
      if (project.visibility !== 'public') return PROJECT_NOT_FOUND;
      return needs.minRole ? FORBIDDEN : null;
    case 'user': {
      const t = auth.token;
      if (t.admin) return !read && !t.scopes.includes('api') ? FORBIDDEN : null;
      if (t.projects && !t.projects.includes(project.id)) return PROJECT_NOT_FOUND;
      if (read && !t.scopes.includes('api') && !t.scopes.includes('read_api')) return FORBIDDEN;
      if (!read && !t.scopes.includes('api')) return FORBIDDEN;
      if (needs.minRole && ROLE_LEVEL[t.role] < ROLE_LEVEL[needs.minRole]) return FORBIDDEN;
      return null;
    }
    case 'job': {
      if (project.premiumGate) return PROJECT_NOT_FOUND;
      if (needs.jobList && !project.jobTokenCanListJobs) return { status: 404, body: { message: '404 Not Found' } };
      const src = auth.project;
      if (project.id !== src.id && project.visibility === 'private' && !project.jobTokenAllowlist.includes(src.id)) {
        return {
          status: 403,
          body: { message: `403 Forbidden - Authentication by CI/CD job token not allowed from ${src.path} to ${project.path}.` },
        };
      }
      return needs.minRole ? FORBIDDEN : null;
    }
  }
}

/** `artifacts:access` (none | developer) check. */
export function canReadArtifacts(auth: Auth, job: Job): boolean {
  if (job.artifactsAccess === 'none') return false;
  if (job.artifactsAccess === 'all') return true;
  if (auth.kind === 'job') return true;
  if (auth.kind === 'user') return ROLE_LEVEL[auth.token.role] >= ROLE_LEVEL.developer;
  return false;
}
