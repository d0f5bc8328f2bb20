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
import { Faults, Hooks } from './faults.ts';
import type { FaultSpec, RequestMatch, RequestSeen } from './faults.ts';
import type { RequestRecord } from './http.ts';
import { Signer, startStorage } from './storage.ts';
import { startGitlab } from './server.ts';
import type { ServerSettings } from './server.ts';

export type {
  Group,
  Project,
  Pipeline,
  Job,
  DownloadMode,
  FaultSpec,
  RequestMatch,
  RequestSeen,
  RequestRecord,
  AddProjectOptions,
  AddPipelineOptions,
  AddJobOptions,
  AddAccessTokenOptions,
  JobPatch,
};
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
  addGroup(o: { path: string; parentId?: number }): Group;
  addProject(o: AddProjectOptions): Project;
  addPipeline(o: AddPipelineOptions): Pipeline;
  addJob(o: AddJobOptions): Job;
  setJobStatus(jobId: number, status: string, patch?: Partial<JobPatch>): void;
  setPipelineStatus(pipelineId: number, status: string): void;
  addJobToken(token: string, jobId: number): void;
  addAccessToken(token: string, o?: AddAccessTokenOptions): void;
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

export async function startSimulator(opts: { downloadMode?: DownloadMode } = {}): Promise<Simulator> {
  const store = new Store();
  const faults = new Faults();
  const hooks = new Hooks();
  const signer = new Signer();
  const requests: RequestRecord[] = [];
  const pollOf = pollMatcher(store);
  const settings: ServerSettings = { url: '', storageUrl: '', downloadMode: opts.downloadMode ?? 'redirect', redirectExpiresSeconds: 900 };
  const storage = startStorage(store, faults, hooks, signer, requests);
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
    addGroup: (o) => store.addGroup(o),
    addProject: (o) => store.addProject(o),
    addPipeline: (o) => store.addPipeline(o),
    addJob: (o) => store.addJob(o),
    setJobStatus: (id, status, patch) => store.setJobStatus(id, status, patch),
    setPipelineStatus: (id, status) => store.setPipelineStatus(id, status),
    addJobToken: (token, jobId) => store.addJobToken(token, jobId),
    addAccessToken: (token, o) => store.addAccessToken(token, o),
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
