// An embedded GitLab simulator: a GitLab API origin plus a separate object-storage origin, both on 127.0.0.1.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadArchive, Store } from './model.ts';
import type {
  AddAccessTokenOptions,
  AddBridgeOptions,
  AddJobOptions,
  Bridge,
  AddPipelineOptions,
  AddProjectOptions,
  DownloadMode,
  Group,
  Job,
  JobPatch,
  Pipeline,
  Project,
} from './model.ts';
import { Faults, Hooks } from './faults.ts';
import type { FaultSpec, RequestMatch, RequestSeen } from './faults.ts';
import type { RequestRecord } from './http.ts';
import { Signer, startStorage, type StorageSettings } from './storage.ts';
import { startGitlab } from './server.ts';
import type { ServerSettings } from './server.ts';
import { PROFILES } from './profiles.ts';
import type { Profile, ProfileName } from './profiles.ts';

export type { Project, Job, DownloadMode, ProfileName };
export { PROFILES, PROFILE_NAMES } from './profiles.ts';

export interface Simulator {
  /** GitLab origin, http://127.0.0.1:PORT */
  readonly url: string;
  /** url + '/api/v4' */
  readonly apiUrl: string;
  /** Object-storage origin (a different port, so a different origin). */
  readonly storageUrl: string;
  downloadMode: DownloadMode;
  /** Application rate limit of GET /projects/:id/jobs (requests per minute); undefined = none. */
  jobsIndexLimit: number | undefined;
  /** Lifetime of the presigned storage URLs handed out in redirect mode (seconds, default 900). */
  redirectExpiresSeconds: number;
  /** Window of the jobs_index application limit, ms (GitLab: 60 000; tests shrink it). */
  jobsIndexWindowMs: number;
  /** The GitLab version simulated (startSimulator({ profile }); default newest). */
  readonly profile: Profile;
  /**
   * The CI_UPSTREAM_* variables GitLab would set in a job of this pipeline: 18.9+ only, and only when a trigger job
   * (multi-project or parent-child) started it (lib/gitlab/ci/variables/builder/pipeline.rb). {} otherwise.
   */
  upstreamVariables(pipelineId: number): Record<string, string>;
  addGroup(o: { path: string; parentId?: number }): Group;
  addProject(o: AddProjectOptions): Project;
  addPipeline(o: AddPipelineOptions): Pipeline;
  addJob(o: AddJobOptions): Job;
  setJobStatus(jobId: number, status: string, patch?: Partial<JobPatch>): void;
  setPipelineStatus(pipelineId: number, status: string): void;
  /** A trigger job whose downstream pipeline does not exist yet; add it later with addChildPipeline or upstream.bridgeJobId. */
  addBridge(o: AddBridgeOptions): Bridge;
  /**
   * A same-project child pipeline (source parent_pipeline) started by trigger job `trigger` of `parentId`: the
   * trigger job is created unless `bridgeId` names an existing one (one made earlier by addBridge).
   */
  addChildPipeline(o: { parentId: number; trigger?: string; bridgeId?: number; status?: string; ref?: string }): Pipeline;
  addJobToken(token: string, jobId: number): void;
  addAccessToken(token: string, o?: AddAccessTokenOptions): void;
  /** Which validators (ETag, Last-Modified) the storage origin sends; default both. */
  storageValidators: StorageSettings['validators'];
  /** Throughput limit of each storage connection in bytes/s (object storage limits per connection); undefined: none. */
  storageConnectionLimit: number | undefined;
  /** The most storage requests answered at the same time so far (set it to 0 to start counting again). */
  storageMaxInFlight: number;
  /**
   * Replaces a job's archive in object storage, at the same key and URL, once `afterGets` more GETs of it were
   * answered (0: at once): a storage that changed the object between two requests. The new object gets a new ETag and
   * a Last-Modified one hour later.
   */
  swapArchive(jobId: number, o: { archive?: string; archiveBuffer?: Buffer; afterGets: number }): void;
  injectFault(f: FaultSpec): void;
  /** Removes armed faults and pending hooks. */
  clearFaults(): void;
  /**
   * Runs `fn` right after the `n`th request matching `match` has been answered, before the next request is read: a
   * state change tied to counted requests, never to time.
   */
  afterRequests(match: RequestMatch, n: number, fn: () => void): void;
  /**
   * Sets job `jobId` to `status` (with `patch`, e.g. its archive) right after its `n`th poll, so polls 1..n see the old
   * status and poll n+1 the new one. A poll is any request that shows the job's state: GET of its pipeline's job list
   * (each page counts), GET /projects/:id/jobs/:job_id, or HEAD of its artifacts.
   */
  setJobStatusAfterPolls(jobId: number, n: number, status: string, patch?: Partial<JobPatch>): void;
  /** How many polls (as above) job `jobId` has had. */
  pollsOf(jobId: number): number;
  readonly requests: RequestRecord[];
  jobs(): Job[];
  readonly deletedArtifacts: number[];
  close(): Promise<void>;
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve(`http://127.0.0.1:${port}`);
    });
  });
}

function shut(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** The requests that show job `jobId`'s state to a client that waits for it (see setJobStatusAfterPolls). */
function pollMatcher(store: Store): (jobId: number) => (r: RequestSeen) => boolean {
  return (jobId) => {
    const job = store.jobs.get(jobId);
    if (!job) throw new Error(`no job ${jobId}`);
    const list = new RegExp(`^/api/v4/projects/[^/]+/pipelines/${job.pipelineId}/jobs$`);
    const one = new RegExp(`^/api/v4/projects/[^/]+/jobs/${jobId}$`);
    const archive = new RegExp(`^/api/v4/projects/[^/]+/jobs/${jobId}/artifacts$`);
    return (r) =>
      r.origin === 'gitlab' &&
      ((r.method === 'GET' && (list.test(r.path) || one.test(r.path))) || (r.method === 'HEAD' && archive.test(r.path)));
  };
}

export async function startSimulator(opts: { downloadMode?: DownloadMode; profile?: ProfileName } = {}): Promise<Simulator> {
  const profile = PROFILES[opts.profile ?? 'newest'];
  if (!profile) throw new Error(`no simulator profile ${opts.profile}`);
  const store = new Store();
  const faults = new Faults();
  const hooks = new Hooks();
  const signer = new Signer();
  const requests: RequestRecord[] = [];
  const pollOf = pollMatcher(store);
  const settings: ServerSettings = {
    url: '',
    storageUrl: '',
    downloadMode: opts.downloadMode ?? 'redirect',
    redirectExpiresSeconds: 900,
    jobsIndexWindowMs: 60_000,
    profile,
  };
  const storageSettings: StorageSettings = { validators: 'both', swaps: new Map(), inFlight: 0, maxInFlight: 0 };
  const storage = startStorage(store, faults, hooks, signer, requests, storageSettings);
  const gitlab = startGitlab({ store, faults, hooks, signer, requests, settings });
  settings.storageUrl = await listen(storage);
  settings.url = await listen(gitlab);

  return {
    url: settings.url,
    apiUrl: `${settings.url}/api/v4`,
    storageUrl: settings.storageUrl,
    get downloadMode() {
      return settings.downloadMode;
    },
    set downloadMode(m: DownloadMode) {
      settings.downloadMode = m;
    },
    get jobsIndexLimit() {
      return settings.jobsIndexLimit;
    },
    set jobsIndexLimit(n: number | undefined) {
      if (n === undefined) delete settings.jobsIndexLimit;
      else settings.jobsIndexLimit = n;
    },
    get redirectExpiresSeconds() {
      return settings.redirectExpiresSeconds;
    },
    set redirectExpiresSeconds(n: number) {
      settings.redirectExpiresSeconds = n;
    },
    get jobsIndexWindowMs() {
      return settings.jobsIndexWindowMs;
    },
    set jobsIndexWindowMs(n: number) {
      settings.jobsIndexWindowMs = n;
    },
    profile,
    upstreamVariables: (pipelineId): Record<string, string> => {
      const p = store.pipelines.get(pipelineId);
      const up = p?.upstream;
      if (!profile.upstreamVariables || !p || !up || !['pipeline', 'parent_pipeline'].includes(p.source)) return {};
      return {
        CI_UPSTREAM_PIPELINE_ID: String(up.pipelineId),
        CI_UPSTREAM_PROJECT_ID: String(up.projectId),
        // the same ID the bridges listing shows
        CI_UPSTREAM_JOB_ID: String(up.bridgeJobId ?? 900_000 + p.id),
      };
    },
    addGroup: (o) => store.addGroup(o),
    addProject: (o) => store.addProject(o),
    addPipeline: (o) => store.addPipeline(o),
    addJob: (o) => store.addJob(o),
    setJobStatus: (id, status, patch) => store.setJobStatus(id, status, patch),
    setPipelineStatus: (id, status) => store.setPipelineStatus(id, status),
    addBridge: (o) => store.addBridge(o),
    addChildPipeline: (o) => {
      const parent = store.pipelines.get(o.parentId);
      if (!parent) throw new Error(`no pipeline ${o.parentId}`);
      const bridgeId = o.bridgeId ?? store.addBridge({ pipelineId: parent.id, name: o.trigger ?? 'trigger' }).id;
      return store.addPipeline({
        projectId: parent.projectId,
        ref: o.ref ?? parent.ref,
        sha: parent.sha,
        status: o.status ?? 'success',
        source: 'parent_pipeline',
        upstream: { projectId: parent.projectId, pipelineId: parent.id, bridgeJobId: bridgeId },
      });
    },
    addJobToken: (token, jobId) => store.addJobToken(token, jobId),
    addAccessToken: (token, o) => store.addAccessToken(token, o),
    get storageValidators() {
      return storageSettings.validators;
    },
    set storageValidators(v: StorageSettings['validators']) {
      storageSettings.validators = v;
    },
    get storageMaxInFlight() {
      return storageSettings.maxInFlight;
    },
    set storageMaxInFlight(n: number) {
      storageSettings.maxInFlight = n;
    },
    get storageConnectionLimit() {
      return storageSettings.connectionBytesPerSecond;
    },
    set storageConnectionLimit(n: number | undefined) {
      storageSettings.connectionBytesPerSecond = n;
    },
    swapArchive: (jobId, o) => {
      const job = store.jobs.get(jobId);
      const next = loadArchive(o.archive, o.archiveBuffer);
      if (!job?.archive || !next) throw new Error(`job ${jobId} has no archive to swap, or no new archive was given`);
      const later = new Date(Date.parse(job.finishedAt ?? job.createdAt) + 3_600_000).toUTCString();
      next.lastModified = later;
      if (o.afterGets <= 0) job.archive = { ...next, key: job.archive.key };
      else storageSettings.swaps.set(job.archive.key, { after: o.afterGets, next });
    },
    injectFault: (f) => faults.add(f),
    clearFaults: () => {
      faults.clear();
      hooks.clear();
    },
    afterRequests: (match, n, fn) => hooks.add(match, n, fn),
    setJobStatusAfterPolls: (jobId, n, status, patch) => {
      const poll = pollOf(jobId);
      hooks.add(poll, n, () => store.setJobStatus(jobId, status, patch));
    },
    pollsOf: (jobId) => {
      const poll = pollOf(jobId);
      return requests.filter((r) => poll(r)).length;
    },
    requests,
    jobs: () => [...store.jobs.values()].sort((a, b) => a.id - b.id),
    deletedArtifacts: store.deletedArtifacts,
    close: async () => {
      await Promise.all([shut(gitlab), shut(storage)]);
    },
  };
}
