// The GitLab API origin (/api/v4): routing, auth, and the artifact, job, pipeline and group endpoints.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { isExpired, ROLE_LEVEL } from './model.ts';
import type { DownloadMode, Job, Pipeline, Project, Store } from './model.ts';
import { authenticate, authorize, canReadArtifacts, isDenial } from './auth.ts';
import type { AccessNeeds, Auth, Denial } from './auth.ts';
import { json, keyset, makeCtx, paginate, q1, qBool, qList, send } from './http.ts';
import type { Ctx, RequestRecord } from './http.ts';
import { rateLimitHeaders, sendStatusFault } from './faults.ts';
import type { Faults, Hooks, RequestSeen } from './faults.ts';
import { groupEntity, jobEntity, pipelineBasic, pipelineEntity, projectEntity } from './entities.ts';
import { sendArchive } from './storage.ts';
import type { Signer } from './storage.ts';
import { findEntry, listTree } from './zipentry.ts';
import type { Profile } from './profiles.ts';

export interface ServerSettings {
  url: string;
  storageUrl: string;
  downloadMode: DownloadMode;
  /** Application rate limit for GET /projects/:id/jobs, requests per minute. */
  jobsIndexLimit?: number;
  /** Lifetime of presigned storage URLs, seconds. */
  redirectExpiresSeconds: number;
  /** Length of the jobs_index application-limit window, ms (GitLab: 1 minute; tests shrink it). */
  jobsIndexWindowMs: number;
  /** The GitLab version being simulated. */
  profile: Profile;
}

export interface Deps {
  store: Store;
  faults: Faults;
  hooks: Hooks;
  signer: Signer;
  requests: RequestRecord[];
  settings: ServerSettings;
}

const NOT_FOUND_LOWER = { message: '404 Not found' };

class Reply extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`reply ${status}`);
  }
}

function fail(status: number, body: unknown): never {
  throw new Reply(status, body);
}

function dec(seg: string): string {
  try {
    return decodeURIComponent(seg);
  } catch {
    return fail(404, { message: '404 Project Not Found' });
  }
}

/** Decodes an artifact path segment by segment; NUL bytes and invalid UTF-8 give 400 (§1.2). */
function artifactPath(segs: string[]): string {
  const bad = () => fail(400, { message: '400 Bad request' });
  let out: string;
  try {
    out = segs.map((s) => decodeURIComponent(s)).join('/');
  } catch {
    return bad();
  }
  if (out === '' || out.includes('\0')) return bad();
  return out;
}

const EXT_TYPES: Record<string, string> = {
  '.txt': 'text/plain; charset=utf-8',
  '.log': 'application/octet-stream',
  '.json': 'application/json',
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.xml': 'text/xml; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.pdf': 'application/pdf',
  '.wasm': 'application/wasm',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
};

function typeByExtension(name: string): string {
  const base = name.split('/').pop() ?? name;
  const dot = base.lastIndexOf('.');
  return (dot >= 0 && EXT_TYPES[base.slice(dot).toLowerCase()]) || 'application/octet-stream';
}

/** A small version of Go's http.DetectContentType. */
function sniff(data: Buffer): string {
  const head = data.subarray(0, 512);
  if (head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png';
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'image/jpeg';
  if (head.subarray(0, 4).toString('latin1') === 'GIF8') return 'image/gif';
  if (head.subarray(0, 5).toString('latin1') === '%PDF-') return 'application/pdf';
  if (head.subarray(0, 4).toString('latin1') === 'PK\x03\x04') return 'application/zip';
  if (head[0] === 0x1f && head[1] === 0x8b) return 'application/x-gzip';
  const text = head.toString('latin1').trimStart().toLowerCase();
  if (text.startsWith('<!doctype html') || text.startsWith('<html')) return 'text/html; charset=utf-8';
  if (text.startsWith('<?xml')) return 'text/xml; charset=utf-8';
  for (const b of head) if (b < 0x09 || (b > 0x0d && b < 0x20 && b !== 0x1b) || b === 0x0b) return 'application/octet-stream';
  return 'text/plain; charset=utf-8';
}

export function startGitlab(deps: Deps): Server {
  const { store, faults, hooks, requests, settings } = deps;
  let window = 0;
  let observed = 0;
  let jobsIndexExpires = 0;
  let jobsIndexCount = 0;

  const server = createServer((req, res) => {
    const ctx = makeCtx('gitlab', req, res);
    requests.push(ctx.record);
    const minute = Math.floor(Date.now() / 60_000);
    if (minute !== window) {
      window = minute;
      observed = 0;
    }
    observed += 1;
    ctx.baseHeaders = {
      ...rateLimitHeaders(),
      'RateLimit-Observed': String(observed),
      'RateLimit-Remaining': String(Math.max(0, 2000 - observed)),
    };
    const seen: RequestSeen = { origin: 'gitlab', method: ctx.method, path: ctx.rawPath };
    const fault = faults.take('gitlab', ctx.method, ctx.rawPath, req.headers.range);
    if (fault?.kind === 'status') {
      sendStatusFault(res, 'gitlab', fault, (s) => (ctx.record.status = s));
      hooks.answered(seen);
      return;
    }
    ctx.fault = fault;
    route(ctx)
      .catch((err: unknown) => {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        if (err instanceof Reply) json(ctx, err.status, err.body);
        else json(ctx, 500, { message: '500 Internal Server Error' });
      })
      .finally(() => hooks.answered(seen));
  });

  const deny = (d: Denial): never => fail(d.status, d.body);

  function auth(ctx: Ctx, jobTokenRoute: boolean): Auth {
    const a = authenticate(store, ctx, jobTokenRoute);
    if (isDenial(a)) return deny(a);
    if (a.kind === 'anon' && ctx.method !== 'GET' && ctx.method !== 'HEAD')
      return deny({ status: 401, body: { message: '401 Unauthorized' } });
    return a;
  }

  function project(ctx: Ctx, rawId: string, a: Auth, needs?: AccessNeeds): Project {
    const p = store.findProject(dec(rawId));
    if (!p) return fail(404, { message: '404 Project Not Found' });
    const d = authorize(a, p, ctx.method, needs);
    if (d) deny(d);
    return p;
  }

  function jobOf(p: Project, rawJobId: string): Job {
    if (!/^\d+$/.test(rawJobId)) return fail(400, { error: 'job_id is invalid' });
    const j = store.jobs.get(Number(rawJobId));
    if (!j || j.projectId !== p.id) return fail(404, NOT_FOUND_LOWER);
    return j;
  }

  function checkArtifactAccess(a: Auth, j: Job): void {
    if (!canReadArtifacts(a, j)) fail(403, { message: '403 Forbidden' });
  }

  function deliverArchive(ctx: Ctx, j: Job): void {
    const archive = j.archive;
    if (!archive || j.erased) fail(404, { message: '404 Not Found' });
    const mode = settings.downloadMode;
    if (mode === 'redirect') {
      const location = deps.signer.sign(settings.storageUrl, archive.key, settings.redirectExpiresSeconds);
      send(
        ctx,
        302,
        { Location: location, 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache' },
        `<html><body>You are being <a href="${location.replace(/&/g, '&amp;')}">redirected</a>.</body></html>`,
      );
      return;
    }
    const headers: Record<string, string> =
      mode === 'proxy'
        ? { 'Content-Type': 'application/zip', ETag: archive.etag, 'Accept-Ranges': 'bytes' }
        : {
            'Content-Type': 'application/octet-stream',
            'Content-Disposition': `attachment; filename="artifacts.zip"; filename*=UTF-8''artifacts.zip`,
            'Content-Transfer-Encoding': 'binary',
            'Accept-Ranges': 'bytes',
          };
    sendArchive(ctx, archive, headers, () =>
      send(
        ctx,
        416,
        { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Range': `bytes */${archive.size}` },
        'invalid range: failed to overlap\n',
      ),
    );
  }

  async function deliverEntry(ctx: Ctx, j: Job, path: string, byRef: boolean): Promise<void> {
    const notFound = () =>
      send(ctx, 404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' }, '404 page not found\n');
    const archive = j.archive;
    if (!archive) return notFound();
    const f = await findEntry(archive, path);
    if (!f || f.type === 'Directory' || path.endsWith('/')) return notFound();
    const base = path.split('/').pop() ?? path;
    if (!byRef) {
      send(
        ctx,
        200,
        {
          'Content-Type': typeByExtension(path),
          'Content-Length': String(f.uncompressedSize),
          'Content-Disposition': `attachment; filename="${base}"`,
        },
        f.stream(),
      );
      return;
    }
    const data = await f.buffer();
    const type = sniff(data);
    const inline = type.startsWith('text/plain') || (type.startsWith('image/') && !type.includes('svg'));
    send(
      ctx,
      200,
      {
        'Content-Type': type,
        'Content-Disposition': `${inline ? 'inline' : 'attachment'}; filename="${base}"`,
        'X-Content-Type-Options': 'nosniff',
      },
      data,
    );
  }

  function pipelineOf(p: Project, rawId: string) {
    const pl = /^\d+$/.test(rawId) ? store.pipelines.get(Number(rawId)) : undefined;
    if (!pl || pl.projectId !== p.id) return fail(404, NOT_FOUND_LOWER);
    return pl;
  }

  function filterScope(jobs: Job[], scope: string[]): Job[] {
    return scope.length ? jobs.filter((j) => scope.includes(j.status)) : jobs;
  }

  function listJobs(ctx: Ctx, a: Auth, p: Project): void {
    const scope = qList(ctx.query, 'scope');
    if (scope.some((s) => !settings.profile.statuses.includes(s))) fail(400, { error: 'scope does not have a valid value' });
    // The application limit `jobs_index` (lib/api/ci/jobs.rb `check_rate_limit!(:jobs_index, scope: current_user)`,
    // per user, a fixed window). lib/api/helpers/rate_limiter.rb `render_exceeded_limit_error!` answers 429
    // {"message":{"error":...}} through render_api_error!: no Retry-After, no RateLimit-* headers.
    // The counter expires jobsIndexWindowMs after its first request, or after every request (profile.rateLimitExpiry,
    // lib/gitlab/application_rate_limiter/increment_per_action.rb).
    // Counted only while a limit is set (GitLab: the application setting; 0 there means unlimited, here undefined).
    if (settings.jobsIndexLimit === undefined) {
      jobsIndexCount = 0;
      jobsIndexExpires = 0;
    } else {
      const now = Date.now();
      if (now >= jobsIndexExpires) jobsIndexCount = 0;
      jobsIndexCount += 1;
      if (jobsIndexCount === 1 || settings.profile.rateLimitExpiry === 'every') jobsIndexExpires = now + settings.jobsIndexWindowMs;
      if (jobsIndexCount > settings.jobsIndexLimit) {
        ctx.baseHeaders = {};
        json(ctx, 429, { message: { error: 'This endpoint has been requested too many times. Try again later.' } });
        return;
      }
    }
    const jobs = filterScope(store.projectJobs(p.id), scope).map((j) => jobEntity(store, j, settings.url));
    if (q1(ctx.query, 'pagination') === 'keyset') {
      const orderBy = q1(ctx.query, 'order_by') ?? 'id';
      const sort = q1(ctx.query, 'sort') ?? 'desc';
      // lib/api/helpers/pagination_strategies.rb: an unsupported keyset order is `error!(..., 405)`.
      if (orderBy !== 'id' || sort !== 'desc') fail(405, { message: 'Keyset pagination is not yet available for this type of request' });
      if (a.kind === 'anon') fail(401, { message: '401 Unauthorized' });
      const page = keyset(ctx, jobs as ({ id: number } & Record<string, unknown>)[], settings.url);
      json(ctx, 200, page.items, page.headers);
      return;
    }
    const page = paginate(ctx, jobs, settings.url, false);
    json(ctx, 200, page.items, page.headers);
  }

  /** The Project entity, with `statistics` when asked (statistics=true) and the caller has Reporter or more. */
  function withStatistics(ctx: Ctx, a: Auth, p: Project): Record<string, unknown> {
    const entity = projectEntity(store, p, settings.url);
    const reporter = a.kind === 'user' && (a.token.admin || ROLE_LEVEL[a.token.role] >= ROLE_LEVEL.reporter);
    if (qBool(ctx.query, 'statistics') && reporter) entity.statistics = store.projectStatistics(p.id);
    return entity;
  }

  /**
   * Trigger jobs of a pipeline (Entities::Ci::Bridge: JobBasic + downstream_pipeline, null while the downstream
   * pipeline is not created yet), newest first: the explicit ones (addBridge), and one per downstream pipeline
   * that names no explicit trigger job.
   */
  function bridgesOf(pl: Pipeline): Record<string, unknown>[] {
    const downstream = [...store.pipelines.values()].filter(
      (d) => d.upstream?.pipelineId === pl.id && d.upstream.projectId === pl.projectId,
    );
    const out: { id: number; entity: Record<string, unknown> }[] = [];
    const entity = (id: number, name: string, status: string, createdAt: string, d: Pipeline | undefined) => ({
      id,
      name,
      status,
      stage: 'deploy',
      ref: pl.ref,
      tag: pl.tag,
      allow_failure: false,
      created_at: createdAt,
      pipeline: pipelineBasic(store, pl, settings.url),
      downstream_pipeline: d ? pipelineBasic(store, d, settings.url) : null,
    });
    for (const b of store.bridges.values()) {
      if (b.pipelineId !== pl.id) continue;
      const d = b.downstreamPipelineId !== null ? store.pipelines.get(b.downstreamPipelineId) : undefined;
      out.push({ id: b.id, entity: entity(b.id, b.name, b.status, b.createdAt, d) });
    }
    for (const d of downstream) {
      if (d.upstream?.bridgeJobId !== undefined && store.bridges.has(d.upstream.bridgeJobId)) continue;
      const id = d.upstream?.bridgeJobId ?? 900_000 + d.id;
      const status = d.status === 'running' || d.status === 'pending' ? 'running' : d.status;
      out.push({ id, entity: entity(id, `trigger:${store.projects.get(d.projectId)?.name ?? d.projectId}`, status, d.createdAt, d) });
    }
    return out.sort((x, y) => y.id - x.id).map((x) => x.entity);
  }

  async function route(ctx: Ctx): Promise<void> {
    if (!ctx.rawPath.startsWith('/api/v4/')) return fail(404, { error: '404 Not Found' });
    const s = ctx.rawPath.slice('/api/v4/'.length).split('/');
    const m = ctx.method === 'HEAD' ? 'GET' : ctx.method;
    const n = s.length;
    const unknown = () => fail(404, { error: '404 Not Found' });

    if (s[0] === 'job' && n === 1 && m === 'GET') {
      const a = auth(ctx, true);
      if (a.kind !== 'job') return fail(401, { message: '401 Unauthorized' });
      return json(ctx, 200, jobEntity(store, a.job, settings.url));
    }

    // python-gitlab and other clients ask who they are first.
    if (s[0] === 'user' && n === 1 && m === 'GET') {
      const a = auth(ctx, false);
      if (a.kind !== 'user') return fail(401, { message: '401 Unauthorized' });
      return json(ctx, 200, {
        id: 1,
        username: `${a.token.kind}-token-user`,
        name: 'Simulated user',
        state: 'active',
        web_url: `${settings.url}/${a.token.kind}-token-user`,
        // GitLab shows is_admin (Entities::UserWithAdmin) only to administrators.
        ...(a.token.admin ? { is_admin: true } : {}),
      });
    }

    if (s[0] === 'groups' && n >= 2 && s[1]) {
      if (m !== 'GET' || n > 3 || (n === 3 && s[2] !== 'projects')) return unknown();
      const a = auth(ctx, false);
      const g = store.findGroup(dec(s[1]));
      const tree = g ? store.groupTree(g.id) : [];
      const visible = (p: Project) =>
        a.kind === 'user' ? !a.token.projects || a.token.projects.includes(p.id) : p.visibility === 'public';
      if (
        !g ||
        (a.kind !== 'user' && ![...store.projects.values()].some((p) => p.groupId !== null && tree.includes(p.groupId) && visible(p)))
      ) {
        return fail(404, { message: '404 Group Not Found' });
      }
      if (n === 2) return json(ctx, 200, groupEntity(g, settings.url));
      // lib/api/groups.rb: `optional :with_shared, type: Boolean, default: true` (projects shared with the group, from
      // any namespace, are listed unless with_shared=false); `optional :archived, type: Boolean` (absent: both).
      const groups = qBool(ctx.query, 'include_subgroups') ? tree : [g.id];
      const withShared = q1(ctx.query, 'with_shared') === undefined ? true : qBool(ctx.query, 'with_shared');
      const archived = q1(ctx.query, 'archived');
      const projects = [...store.projects.values()]
        .filter(
          (p) =>
            ((p.groupId !== null && groups.includes(p.groupId)) || (withShared && p.sharedWithGroups.includes(g.id))) &&
            (archived === undefined || p.archived === qBool(ctx.query, 'archived')) &&
            visible(p),
        )
        .sort((x, y) => y.id - x.id);
      const page = paginate(ctx, projects, settings.url);
      return json(
        ctx,
        200,
        page.items.map((p) => withStatistics(ctx, a, p)),
        page.headers,
      );
    }

    // GET /projects: what the token can see; an administrator sees every project of the instance.
    if (s[0] === 'projects' && n === 1 && m === 'GET') {
      const a = auth(ctx, false);
      const visible = (p: Project) =>
        a.kind === 'user' ? a.token.admin || !a.token.projects || a.token.projects.includes(p.id) : p.visibility === 'public';
      const sort = q1(ctx.query, 'sort') ?? 'desc';
      const projects = [...store.projects.values()].filter(visible).sort((x, y) => (sort === 'asc' ? x.id - y.id : y.id - x.id));
      const keysetPage = q1(ctx.query, 'pagination') === 'keyset' && sort === 'desc' ? keyset(ctx, projects, settings.url) : undefined;
      const page = keysetPage ?? paginate(ctx, projects, settings.url);
      return json(
        ctx,
        200,
        page.items.map((p) => withStatistics(ctx, a, p)),
        page.headers,
      );
    }

    if (s[0] !== 'projects' || n < 2 || !s[1]) return unknown();
    const rawId = s[1];

    if (n === 2) {
      if (m !== 'GET') return unknown();
      const a = auth(ctx, false);
      return json(ctx, 200, withStatistics(ctx, a, project(ctx, rawId, a)));
    }

    if (s[2] === 'artifacts' && n === 3) {
      if (m !== 'DELETE') return unknown();
      const p = project(ctx, rawId, auth(ctx, false), { minRole: 'maintainer' });
      const now = new Date().toISOString();
      for (const j of store.projectJobs(p.id)) if (j.archive && !j.locked && !isExpired(j)) j.expireAt = now;
      return json(ctx, 202, { message: '202 Accepted' });
    }

    if (s[2] === 'jobs') {
      if (n === 3) {
        if (m !== 'GET') return unknown();
        const a = auth(ctx, true);
        return listJobs(ctx, a, project(ctx, rawId, a, { jobList: true }));
      }
      // /jobs/artifacts/:ref_name/download and /jobs/artifacts/:ref_name/raw/*artifact_path
      if (s[3] === 'artifacts' && n >= 6) {
        if (m !== 'GET') return unknown();
        const rawAt = s.indexOf('raw', 5);
        const isRaw = rawAt > 0 && rawAt < n - 1;
        if (!isRaw && s[n - 1] !== 'download') return unknown();
        const a = auth(ctx, true);
        const p = project(ctx, rawId, a);
        const ref = s
          .slice(4, isRaw ? rawAt : n - 1)
          .map((x) => dec(x))
          .join('/');
        const jobName = q1(ctx.query, 'job');
        if (jobName === undefined) return fail(400, { error: 'job is missing' });
        const search = qBool(ctx.query, 'search_recent_successful_pipelines');
        const path = isRaw ? artifactPath(s.slice(rawAt + 1)) : '';
        const j = store.resolveByRef(p.id, ref, jobName, search);
        if (!j) return fail(404, search ? { message: '404 Job Not Found' } : NOT_FOUND_LOWER);
        checkArtifactAccess(a, j);
        if (!isRaw) return deliverArchive(ctx, j);
        return deliverEntry(ctx, j, path, true);
      }
      const rawJobId = s[3] ?? '';
      if (n === 4) {
        if (m !== 'GET') return unknown();
        const p = project(ctx, rawId, auth(ctx, false));
        return json(ctx, 200, jobEntity(store, jobOf(p, rawJobId), settings.url));
      }
      if (s[4] !== 'artifacts') return unknown();
      if (n === 5) {
        if (m === 'GET') {
          const a = auth(ctx, true);
          const j = jobOf(project(ctx, rawId, a), rawJobId);
          checkArtifactAccess(a, j);
          return deliverArchive(ctx, j);
        }
        if (m === 'DELETE') {
          const p = project(ctx, rawId, auth(ctx, false), { minRole: 'maintainer' });
          const j = jobOf(p, rawJobId);
          delete j.archive;
          j.extraArtifacts = [];
          if (!store.deletedArtifacts.includes(j.id)) store.deletedArtifacts.push(j.id);
          return send(ctx, 204, {}, null);
        }
        return unknown();
      }
      if (n === 6 && s[5] === 'keep' && m === 'POST') {
        // POST /projects/:id/jobs/:job_id/artifacts/keep, as in gitlabhq lib/api/ci/job_artifacts.rb:
        // - no `route_setting :authentication, job_token_allowed: true`, so lib/gitlab/auth/auth_finders.rb
        //   (find_user_from_job_token: `return unless route_authentication_setting[:job_token_allowed]`) ignores a
        //   JOB-TOKEN and the request is anonymous; the class-wide `before { authenticate_non_get! }`
        //   (lib/api/helpers.rb: `authenticate! unless GET/HEAD` → `unauthorized!`) then answers 401
        //   {"message":"401 Unauthorized"} before the project is looked up: 401 for private and public projects alike.
        // - `authorize_update_builds!` (:update_build on the project: Developer and above; POST needs the api scope),
        //   `find_build!` (404 "Not found"), `authorize!(:update_build, build)` (403). The newest copies drop the
        //   project check and authorize `:keep_job_artifacts` on the build (granular permission
        //   :preserve_job_artifact), still with no job_token_allowed; its role is taken as Developer [inf].
        // - `break not_found!(build) unless build.artifacts?`: app/models/ci/build.rb `artifacts?` is
        //   `!artifacts_expired? && artifacts_file&.exists?`. Unlike available_artifacts? it ignores the pipeline
        //   lock, so expired artifacts of a locked pipeline are 404 too. The body is "404 <build> Not Found" [inf: the
        //   build's to_s]; modelled as "404 Not Found". It cannot tell expired from missing: the Job entity can.
        // - `build.keep_artifacts!`: artifacts_expire_at = nil on the job and its artifacts; 200 (not 201) with the
        //   Job entity (lib/api/entities/ci/job.rb: artifacts_expire_at null, artifacts_file shown). Idempotent.
        const p = project(ctx, rawId, auth(ctx, false), { minRole: 'developer' });
        const j = jobOf(p, rawJobId);
        if (!j.archive || j.erased || isExpired(j)) return fail(404, { message: '404 Not Found' });
        j.expireAt = null;
        return json(ctx, 200, jobEntity(store, j, settings.url));
      }
      if (m !== 'GET') return unknown();
      const a = auth(ctx, true);
      const j = jobOf(project(ctx, rawId, a), rawJobId);
      if (n === 6 && s[5] === 'tree') {
        checkArtifactAccess(a, j);
        if (!j.archive) return fail(404, { message: '404 Artifacts Not Found' });
        const items = await listTree(j.archive, q1(ctx.query, 'path') ?? '', qBool(ctx.query, 'recursive'));
        if (!items) return fail(404, { message: '404 Path Not Found' });
        const page = paginate(ctx, items, settings.url);
        return json(ctx, 200, page.items, page.headers);
      }
      checkArtifactAccess(a, j);
      const path = artifactPath(s.slice(5));
      if (!j.archive || j.erased || (isExpired(j) && !j.locked)) return fail(404, { message: '404 Not Found' });
      return deliverEntry(ctx, j, path, false);
    }

    if (s[2] === 'pipelines') {
      if (m !== 'GET') return unknown();
      // Job tokens on the pipelines routes depend on the version (lib/api/ci/pipelines.rb; see profiles.ts).
      const jt = settings.profile.jobToken;
      if (n === 3) {
        const p = project(ctx, rawId, auth(ctx, jt.pipelines));
        const ref = q1(ctx.query, 'ref');
        const status = q1(ctx.query, 'status');
        const source = q1(ctx.query, 'source');
        const orderBy = q1(ctx.query, 'order_by') ?? 'id';
        const sort = q1(ctx.query, 'sort') ?? 'desc';
        if (!['id', 'updated_at', 'status', 'ref', 'user_id'].includes(orderBy))
          return fail(400, { error: 'order_by does not have a valid value' });
        if (!['asc', 'desc'].includes(sort)) return fail(400, { error: 'sort does not have a valid value' });
        const list = [...store.pipelines.values()].filter(
          (x) =>
            x.projectId === p.id &&
            (ref === undefined || x.ref === ref) &&
            (status === undefined || x.status === status) &&
            (source === undefined ? x.source !== 'parent_pipeline' : x.source === source),
        );
        const key = (x: (typeof list)[number]): string | number =>
          orderBy === 'updated_at' ? x.updatedAt : orderBy === 'status' ? x.status : orderBy === 'ref' ? x.ref : x.id;
        list.sort((x, y) => {
          const kx = key(x);
          const ky = key(y);
          const c = kx < ky ? -1 : kx > ky ? 1 : x.id - y.id;
          return sort === 'asc' ? c : -c;
        });
        const page = paginate(ctx, list, settings.url);
        return json(
          ctx,
          200,
          page.items.map((x) => pipelineBasic(store, x, settings.url)),
          page.headers,
        );
      }
      const rawPid = s[3] ?? '';
      if (n === 4) {
        const p = project(ctx, rawId, auth(ctx, jt.pipelines));
        return json(ctx, 200, pipelineEntity(store, pipelineOf(p, rawPid), settings.url));
      }
      if (n === 5 && s[4] === 'jobs') {
        const a = auth(ctx, jt.pipelineJobs);
        const p = project(ctx, rawId, a, { jobList: true });
        const pl = pipelineOf(p, rawPid);
        const scope = qList(ctx.query, 'scope');
        if (scope.some((x) => !settings.profile.statuses.includes(x))) return fail(400, { message: 'Scope contains invalid value(s)' });
        const includeRetried = qBool(ctx.query, 'include_retried');
        // app/finders/ci/jobs_finder.rb: without read_build (a Guest on a private project) the finder rescues
        // Gitlab::Access::AccessDeniedError and returns none: 200 [], not 403.
        const blind = a.kind === 'user' && ROLE_LEVEL[a.token.role] < ROLE_LEVEL.reporter && p.visibility !== 'public';
        const jobs = blind ? [] : filterScope(store.pipelineJobs(pl.id), scope).filter((j) => includeRetried || !j.retried);
        const page = paginate(ctx, jobs, settings.url);
        return json(
          ctx,
          200,
          page.items.map((j) => jobEntity(store, j, settings.url)),
          page.headers,
        );
      }
      if (n === 5 && (s[4] === 'bridges' || (s[4] === 'trigger_jobs' && settings.profile.triggerJobsRoute))) {
        const p = project(ctx, rawId, auth(ctx, jt.bridges));
        const pl = pipelineOf(p, rawPid);
        const page = paginate(ctx, bridgesOf(pl), settings.url);
        return json(ctx, 200, page.items, page.headers);
      }
    }
    return unknown();
  }

  return server;
}
