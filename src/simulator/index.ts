// An embedded GitLab simulator: a GitLab API origin plus a separate object-storage origin, both on 127.0.0.1.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Store } from './model.ts';
import type {
  AddAccessTokenOptions,
  AddJobOptions,
  AddPipelineOptions,
  AddProjectOptions,
  DownloadMode,
  Group,
  Job,
  JobPatch,
  Pipeline,
  Project,
} from './model.ts';
import { Faults } from './faults.ts';
import type { FaultSpec } from './faults.ts';
import type { RequestRecord } from './http.ts';
import { Signer, startStorage } from './storage.ts';
import { startGitlab } from './server.ts';
import type { RequestHook, ServerSettings } from './server.ts';
import { PROFILES } from './profiles.ts';
import type { Profile, ProfileName } from './profiles.ts';

export type {
  Group,
  Project,
  Pipeline,
  Job,
  DownloadMode,
  FaultSpec,
  RequestRecord,
  AddProjectOptions,
  AddPipelineOptions,
  AddJobOptions,
  AddAccessTokenOptions,
  JobPatch,
  Profile,
  ProfileName,
};
export { PROFILES, PROFILE_NAMES } from './profiles.ts';
export type { Visibility, Role, AccessToken, Archive, ExtraArtifact, Upstream } from './model.ts';

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
  addJobToken(token: string, jobId: number): void;
  addAccessToken(token: string, o?: AddAccessTokenOptions): void;
  injectFault(f: FaultSpec): void;
  /**
   * Once the `count`-th GitLab request matching `path` (exact API path, or a RegExp) and `method` has been
   * answered, runs `action` (e.g. sets a job's status): counted events instead of wall-clock flips.
   */
  afterRequests(o: { path: string | RegExp; method?: string; count: number }, action: () => void): void;
  clearFaults(): void;
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

export async function startSimulator(opts: { downloadMode?: DownloadMode; profile?: ProfileName } = {}): Promise<Simulator> {
  const profile = PROFILES[opts.profile ?? 'newest'];
  if (!profile) throw new Error(`no simulator profile ${opts.profile}`);
  const store = new Store();
  const faults = new Faults();
  const signer = new Signer();
  const requests: RequestRecord[] = [];
  const settings: ServerSettings = {
    url: '',
    storageUrl: '',
    downloadMode: opts.downloadMode ?? 'redirect',
    redirectExpiresSeconds: 900,
    jobsIndexWindowMs: 60_000,
    profile,
  };
  const storage = startStorage(store, faults, signer, requests);
  const hooks: RequestHook[] = [];
  const gitlab = startGitlab({ store, faults, signer, requests, settings, hooks });
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
    addJobToken: (token, jobId) => store.addJobToken(token, jobId),
    addAccessToken: (token, o) => store.addAccessToken(token, o),
    injectFault: (f) => faults.add(f),
    afterRequests: (o, action) => {
      hooks.push({ ...o, action, seen: 0 });
    },
    clearFaults: () => faults.clear(),
    requests,
    jobs: () => [...store.jobs.values()].sort((a, b) => a.id - b.id),
    deletedArtifacts: store.deletedArtifacts,
    close: async () => {
      await Promise.all([shut(gitlab), shut(storage)]);
    },
  };
}
