// Turns the raw fetch inputs into a typed FetchSettings object, with every cross-input rule checked here
// (mutually exclusive selectors, URLs, files). Later modules never look at raw inputs or env again.
import { existsSync, lstatSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { ClientSettings } from '../api/client.ts';
import type { TokenType } from '../api/errors.ts';
import { rateLimitWindowMs } from '../api/retry.ts';
import { UsageError } from '../runtime/errors.ts';
import { refuseKeepToken } from './keep-token.ts';
import { describeMissingUpstream, detectUpstream, type UpstreamPipeline } from './upstream.ts';
import { bool, list, num, parseBytes, str, type RawInputs } from './parse.ts';

export type { TokenType };
type IfNotFound = 'fail' | 'warn' | 'ignore';

/** What every command needs to talk to GitLab: the API client's settings, read from the shared inputs. */
export type ConnectionSettings = Pick<
  ClientSettings,
  | 'apiUrl'
  | 'token'
  | 'tokenType'
  | 'retries'
  | 'timeoutMs'
  | 'caFile'
  | 'speedLimit'
  | 'speedTimeMs'
  | 'deadlineMs'
  | 'allowInsecureRedirect'
  | 'retryBaseMs'
  | 'retryMaxWaitMs'
  | 'rateLimitWindowMs'
>;

/**
 * A non-negative number of milliseconds from an ARTIFACT_RELAY_* variable, or undefined when unset or not a number.
 * These knobs exist for the tests (they shrink waits) and are read here only, once (README: Development).
 */
function envMs(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const text = env[name]?.trim();
  if (!text) return undefined;
  const n = Number(text);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

type Selector = 'job_id' | 'ref' | 'pipeline' | 'upstream' | 'bridge';
type Layout = 'merge' | 'per-job';

export interface FetchSettings extends ConnectionSettings {
  project: string;
  projectSource: 'input' | 'upstream' | 'CI_PROJECT_ID';
  /** How the jobs are selected. */
  selector: Selector;
  jobIds: number[];
  ref?: string;
  /** Pipeline whose jobs are matched by name (selector pipeline or upstream). */
  pipelineId?: number;
  /** The upstream pipeline that was detected from the environment, if any. */
  upstream?: UpstreamPipeline;
  /**
   * Selector upstream with project given in another form than the upstream variables (a path against the numeric
   * CI_UPSTREAM_PROJECT_ID, or the other way round): resolveSources confirms they name the same project first.
   */
  confirmUpstreamProject?: boolean;
  /** This pipeline's ID, for finding the pipeline that triggered it through the upstream's bridges (selector bridge). */
  ownPipelineId?: number;
  jobNames: string[];
  /** Also look for the job names in the selected pipeline's child pipelines (through its trigger jobs). */
  childPipelines: boolean;
  /** Take the jobs from the upstream pipeline's other downstream pipeline in this project. */
  siblingProject?: string;
  layout: Layout;
  waitMs: number;
  acceptStatus: string[];
  artifactPaths: string[];
  /** Absolute destination folder. */
  dest: string;
  /** Folder relative paths are resolved against ($CI_PROJECT_DIR or cwd). */
  baseDir: string;
  include: string[];
  exclude: string[];
  overwrite: boolean;
  ifNotFound: IfNotFound;
  maxBytes: number;
  /** Cap on a downloaded archive's (or single file's) size. */
  maxArchiveBytes: number;
  /** Parallel ranged connections for one archive (1: one connection). */
  connections: number;
  maxFiles: number;
  maxRatio: number;
  dotenv?: string;
  summary?: string;
  dryRun: boolean;
  /** Keep the fetched jobs' artifacts afterwards (src/keep/after-fetch.ts). */
  keep: boolean;
  keepFailure: 'fail' | 'warn';
  /** First poll interval while waiting (ARTIFACT_RELAY_POLL_MS, default 3000); it grows to ten times that. */
  pollMs: number;
  /** Interval of download progress lines (ARTIFACT_RELAY_PROGRESS_MS, default 5000). */
  progressMs: number;
  /**
   * Unpack while downloading where the server supports Range: auto (archives of overlapMinBytes and up, while the
   * download leaves the CPU idle), always (ARTIFACT_RELAY_OVERLAP=1) or never (ARTIFACT_RELAY_OVERLAP=0).
   */
  overlap: 'auto' | 'always' | 'never';
  /** Smallest archive unpacked while downloading under overlap auto (ARTIFACT_RELAY_OVERLAP_MIN_MB, default 64). */
  overlapMinBytes: number;
  /**
   * When a whole-archive download over one connection widens to `connections` ranges (ARTIFACT_RELAY_WIDEN): auto
   * (default: once it proves bound by the network, the main thread running less than half of 0.25 s, with 8 MiB and
   * 1 s left), never (one connection throughout), or a byte offset (a whole number of KiB in the variable): at
   * exactly that offset, whatever the CPU does; 0 is ranges from the start.
   */
  widen: 'auto' | 'never' | number;
  /**
   * Most of a central directory read by Range past the 64 KiB tail, before the body (ARTIFACT_RELAY_TAIL_DIRECTORY_KB,
   * default 8192): a larger
   * one is read from the downloaded file in slices, not held whole beside its parsed records. Partial fetches
   * (include/exclude) read up to eight times as much.
   */
  tailDirectoryMaxBytes: number;
  /** Tests only (ARTIFACT_RELAY_TEST_COMMIT_PAUSE): pause the commit at this step until a signal arrives. */
  commitPauseStep?: number;
}

/** ARTIFACT_RELAY_WIDEN: never, a whole number of KiB (the offset to widen at), else auto. */
function parseWiden(value: string | undefined): FetchSettings['widen'] {
  const v = value?.trim().toLowerCase() ?? '';
  if (v === 'never') return 'never';
  return /^\d+$/.test(v) ? Number(v) * 1024 : 'auto';
}

/** API base URL: server_url when given, else $CI_API_V4_URL, else the server_url default + /api/v4. */
function resolveApiUrl(raw: RawInputs, env: NodeJS.ProcessEnv): string {
  const serverUrl = str(raw, 'server_url');
  const ciApi = env.CI_API_V4_URL?.trim();
  const chosen = raw.sources.server_url === 'default' && ciApi ? ciApi : serverUrl ? `${serverUrl.replace(/\/+$/, '')}/api/v4` : '';
  if (!chosen) {
    throw new UsageError(
      'Input server_url is empty: no GitLab URL to talk to. Outside GitLab CI pass --server-url https://gitlab.example.com (or set INPUT_SERVER_URL).',
      'server_url',
    );
  }
  let url: URL;
  try {
    url = new URL(chosen);
  } catch {
    throw new UsageError(
      `Input server_url: ${JSON.stringify(serverUrl || chosen)} is not a URL. Use the form https://gitlab.example.com.`,
      'server_url',
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`Input server_url: ${url.protocol} is not supported; use an http:// or https:// URL.`, 'server_url');
  }
  return url.toString().replace(/\/+$/, '');
}

/** token_type auto: the value of $CI_JOB_TOKEN or a glcbt- prefix is a job token; anything else a private token. */
export function resolveTokenType(token: string, declared: string, env: NodeJS.ProcessEnv): TokenType {
  if (!token) return 'none';
  if (declared !== 'auto') return declared as TokenType;
  if ((env.CI_JOB_TOKEN && token === env.CI_JOB_TOKEN) || token.startsWith('glcbt-')) return 'job';
  return 'private';
}

export function readConnectionSettings(raw: RawInputs, env: NodeJS.ProcessEnv, baseDir: string): ConnectionSettings {
  const token = str(raw, 'token');
  const caFile = str(raw, 'ca_file');
  if (caFile && !existsSync(resolve(baseDir, caFile))) {
    const from = raw.sources.ca_file === 'default' ? ' (from $CI_SERVER_TLS_CA_FILE)' : '';
    throw new UsageError(
      `Input ca_file: ${caFile}${from} does not exist. Point it at a PEM file of CA certificates, or leave it empty.`,
      'ca_file',
    );
  }
  if (!token && str(raw, 'token_type') !== 'auto') {
    throw new UsageError(
      `Input token is empty but token_type is ${str(raw, 'token_type')}. Pass the token in a masked CI/CD variable, e.g. token: $MY_TOKEN.`,
      'token',
    );
  }
  const timeout = num(raw, 'timeout');
  if (!(timeout > 0)) throw new UsageError('Input timeout must be more than 0 seconds.', 'timeout');
  return {
    apiUrl: resolveApiUrl(raw, env),
    token,
    tokenType: resolveTokenType(token, str(raw, 'token_type'), env),
    retries: Math.floor(num(raw, 'retries')),
    timeoutMs: Math.round(timeout * 1000),
    caFile: caFile ? resolve(baseDir, caFile) : undefined,
    speedLimit: num(raw, 'speed_limit'),
    speedTimeMs: Math.round(num(raw, 'speed_time') * 1000),
    deadlineMs: Math.round(num(raw, 'deadline') * 1000),
    allowInsecureRedirect: bool(raw, 'allow_insecure_redirect'),
    retryBaseMs: envMs(env, 'ARTIFACT_RELAY_RETRY_BASE_MS'),
    retryMaxWaitMs: envMs(env, 'ARTIFACT_RELAY_RETRY_MAX_WAIT_MS'),
    rateLimitWindowMs: rateLimitWindowMs(env),
  };
}

function parseJobIds(raw: RawInputs): number[] {
  return list(raw, 'job_id').map((id) => {
    const n = Number(id);
    if (!Number.isSafeInteger(n) || n <= 0)
      throw new UsageError(`Input job_id: ${JSON.stringify(id)} is not a job ID (a positive whole number).`, 'job_id');
    return n;
  });
}

const JOB_STATUSES = [
  'created',
  'pending',
  'preparing',
  'waiting_for_resource',
  'waiting_for_callback',
  'scheduled',
  'running',
  'success',
  'failed',
  'canceled',
  'canceling',
  'skipped',
  'manual',
];

/** Exit 2: project names another project than the one whose pipeline triggered this one. */
export function notUpstreamError(projectInput: string, upstream: UpstreamPipeline, why = ''): UsageError {
  return new UsageError(
    `Input project ${JSON.stringify(projectInput)} is not the upstream project (${upstream.project}, from ${upstream.variables})${why}, so the upstream pipeline cannot be used. Pass pipeline (a pipeline of ${projectInput}), ref or job_id, or leave project empty.`,
    'project',
  );
}

function noSourceError(env: NodeJS.ProcessEnv, jobNames: string[]): UsageError {
  const what =
    jobNames.length > 0
      ? `Input job (${jobNames.join(', ')}) needs a pipeline to take the jobs from, and none was found`
      : 'No source selected';
  return new UsageError(
    `${what} (${describeMissingUpstream(env)}). Choose one: ` +
      '(1) in a pipeline started by a trigger job on GitLab 18.9+, job alone is enough (CI_UPSTREAM_PIPELINE_ID is set by GitLab); ' +
      '(2) on older GitLab, have the trigger job pass UPSTREAM_PROJECT_ID: $CI_PROJECT_ID and UPSTREAM_PIPELINE_ID: $CI_PIPELINE_ID; ' +
      '(3) pass project (the upstream project, e.g. through trigger:inputs) and artifact-relay finds the triggering pipeline through its trigger jobs; ' +
      '(4) pass pipeline (and project) explicitly; (5) pass job_id for exact jobs; (6) pass ref with job for the latest successful pipeline of a branch or tag.',
    jobNames.length > 0 ? 'pipeline' : 'job',
  );
}

/**
 * The path as the kernel will resolve it: every existing component's symlinks followed (realpath), the missing rest
 * appended. undefined when an existing component cannot be resolved (a dangling link on the way).
 */
function realPathSoFar(path: string): string | undefined {
  const rest: string[] = [];
  let p = resolve(path);
  for (;;) {
    let exists = true;
    try {
      lstatSync(p);
    } catch {
      exists = false;
    }
    if (exists) {
      try {
        return join(realpathSync(p), ...rest);
      } catch {
        return undefined;
      }
    }
    if (dirname(p) === p) return join(p, ...rest);
    rest.unshift(basename(p));
    p = dirname(p);
  }
}

/**
 * GitLab keeps artifacts only from inside $CI_PROJECT_DIR, and a job writing elsewhere is almost always a mistake
 * (`path: ..`, an absolute path, a parent folder that is a symlink to elsewhere): refused unless allow_outside_project.
 */
function checkInsideProject(pathInput: string, dest: string, projectDir: string): void {
  const real = realPathSoFar(dest);
  const realProject = realPathSoFar(projectDir) ?? projectDir;
  const rel = real === undefined ? '..' : relative(realProject, real);
  if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) return;
  const via =
    real !== undefined && real !== dest ? ` (through a symlink: ${real})` : real === undefined ? ' (through a dangling symlink)' : '';
  throw new UsageError(
    `Input path: ${JSON.stringify(pathInput)} is ${dest}${via}, outside the project directory $CI_PROJECT_DIR (${projectDir}). GitLab keeps artifacts only from inside the project, and writing elsewhere is usually a mistake.`,
    'path',
    'Choose a path inside the project, or set allow_outside_project: true if the files really belong there.',
  );
}

export function readFetchSettings(raw: RawInputs, env: NodeJS.ProcessEnv, cwd = process.cwd()): FetchSettings {
  const baseDir = env.CI_PROJECT_DIR?.trim() || cwd;
  const connection = readConnectionSettings(raw, env, baseDir);
  const keep = bool(raw, 'keep');
  if (keep) refuseKeepToken(connection.tokenType, 'fetch with keep: true');
  const jobIds = parseJobIds(raw);
  const ref = str(raw, 'ref') || undefined;
  const jobNames = list(raw, 'job');
  const pipelineInput = str(raw, 'pipeline');
  const upstream = detectUpstream(env);
  const projectInput = str(raw, 'project');

  let project = projectInput;
  let projectSource: FetchSettings['projectSource'] = 'input';
  if (!project && upstream) {
    project = upstream.project;
    projectSource = 'upstream';
  }
  if (!project) {
    project = env.CI_PROJECT_ID?.trim() ?? '';
    projectSource = 'CI_PROJECT_ID';
  }
  if (!project) {
    throw new UsageError(
      'Input project is empty and $CI_PROJECT_ID is not set. Pass --project with a numeric ID or a full path such as group/project.',
      'project',
    );
  }
  if (/^\/|\/$|\/\/|\s/.test(project)) {
    throw new UsageError(
      `Input project: ${JSON.stringify(project)} is neither a numeric ID nor a full path like group/project.`,
      'project',
    );
  }

  const selectors = [jobIds.length > 0 && 'job_id', ref && 'ref', pipelineInput && 'pipeline'].filter(Boolean) as string[];
  if (selectors.length > 1) {
    throw new UsageError(
      `Inputs ${selectors.join(' and ')} select the source in more than one way. Pass only one of job_id, ref (with job), or pipeline (with job).`,
      selectors[1],
    );
  }
  let selector: Selector;
  let pipelineId: number | undefined;
  let confirmUpstreamProject = false;
  if (jobIds.length > 0) {
    if (jobNames.length > 0)
      throw new UsageError(
        'Inputs job_id and job select the source in two ways at once. Pass either job_id, or job names (with pipeline or ref).',
        'job',
      );
    selector = 'job_id';
  } else if (ref) {
    if (jobNames.length === 0)
      throw new UsageError(
        `Input job is empty: with ref ${JSON.stringify(ref)}, name the job whose artifacts to fetch (job: build).`,
        'job',
      );
    for (const name of jobNames) {
      if (/[*?[]/.test(name))
        throw new UsageError(
          `Input job: ${JSON.stringify(name)} is a glob; with ref, job names must be exact (globs work with pipeline or an upstream pipeline).`,
          'job',
        );
    }
    selector = 'ref';
  } else if (pipelineInput) {
    if (!/^\d+$/.test(pipelineInput) || Number(pipelineInput) <= 0) {
      throw new UsageError(
        `Input pipeline: ${JSON.stringify(pipelineInput)} is not a pipeline ID (a positive whole number, such as $CI_PIPELINE_ID of the upstream).`,
        'pipeline',
      );
    }
    if (jobNames.length === 0)
      throw new UsageError(
        `Input job is empty: with pipeline ${pipelineInput}, name the job(s) whose artifacts to fetch (job: build).`,
        'job',
      );
    selector = 'pipeline';
    pipelineId = Number(pipelineInput);
  } else if (jobNames.length > 0 && upstream) {
    const numeric = (v: string) => /^\d+$/.test(v);
    if (projectSource === 'input' && projectInput.toLowerCase() !== upstream.project.toLowerCase()) {
      // An ID against a path cannot be compared here: resolveSources asks GitLab (compare identities, not strings).
      if (numeric(projectInput) === numeric(upstream.project)) throw notUpstreamError(projectInput, upstream);
      confirmUpstreamProject = true;
    }
    selector = 'upstream';
    pipelineId = upstream.pipelineId;
  } else if (
    jobNames.length > 0 &&
    projectSource === 'input' &&
    env.CI_PIPELINE_SOURCE === 'pipeline' &&
    /^\d+$/.test(env.CI_PIPELINE_ID ?? '')
  ) {
    // A multi-project downstream that was told only the upstream project: look for the trigger job that started us.
    selector = 'bridge';
  } else {
    throw noSourceError(env, jobNames);
  }

  const childPipelines = bool(raw, 'child_pipelines');
  const siblingProject = str(raw, 'sibling_project') || undefined;
  for (const [name, on] of [
    ['child_pipelines', childPipelines],
    ['sibling_project', siblingProject],
  ] as const) {
    if (on && (selector === 'job_id' || selector === 'ref'))
      throw new UsageError(
        `Input ${name} works with job names taken from a pipeline (the upstream one, or pipeline), not with ${selector}.`,
        name,
      );
  }
  if (siblingProject && /^\/|\/$|\/\/|\s/.test(siblingProject))
    throw new UsageError(
      `Input sibling_project: ${JSON.stringify(siblingProject)} is neither a numeric ID nor a full path like group/project.`,
      'sibling_project',
    );

  const acceptStatus = list(raw, 'accept_status').map((s) => s.toLowerCase());
  for (const status of acceptStatus) {
    if (!JOB_STATUSES.includes(status))
      throw new UsageError(
        `Input accept_status: ${JSON.stringify(status)} is not a job status. Use some of: ${JOB_STATUSES.join(', ')}.`,
        'accept_status',
      );
  }
  if (acceptStatus.length === 0)
    throw new UsageError('Input accept_status is empty: name at least one job status, usually success.', 'accept_status');
  const wait = num(raw, 'wait');
  if (!(wait >= 0)) throw new UsageError('Input wait must be 0 (do not wait) or a number of seconds.', 'wait');

  const maxBytes = parseBytes(str(raw, 'max_bytes'));
  if (maxBytes === undefined || maxBytes <= 0)
    throw new UsageError('Input max_bytes must be a size above zero, such as 10GiB.', 'max_bytes');
  const maxArchiveBytes = parseBytes(str(raw, 'max_archive_bytes'));
  if (maxArchiveBytes === undefined || maxArchiveBytes <= 0)
    throw new UsageError('Input max_archive_bytes must be a size above zero, such as 10GiB.', 'max_archive_bytes');
  const connections = num(raw, 'connections');
  if (!(connections >= 1)) throw new UsageError('Input connections must be at least 1.', 'connections');
  const maxFiles = num(raw, 'max_files');
  if (!(maxFiles >= 1)) throw new UsageError('Input max_files must be at least 1.', 'max_files');

  const pathInput = str(raw, 'path') || '.';
  const dest = isAbsolute(pathInput) ? resolve(pathInput) : resolve(baseDir, pathInput);
  const projectDir = env.CI_PROJECT_DIR?.trim();
  if (projectDir && !bool(raw, 'allow_outside_project')) checkInsideProject(pathInput, dest, resolve(projectDir));
  const optionalPath = (name: string) => {
    const v = str(raw, name);
    return v ? resolve(baseDir, v) : undefined;
  };

  return {
    ...connection,
    project,
    projectSource,
    selector,
    jobIds,
    ref,
    pipelineId,
    upstream,
    ...(confirmUpstreamProject ? { confirmUpstreamProject } : {}),
    ownPipelineId:
      selector === 'bridge' || (siblingProject && /^\d+$/.test(env.CI_PIPELINE_ID ?? '')) ? Number(env.CI_PIPELINE_ID) : undefined,
    jobNames,
    childPipelines,
    siblingProject,
    layout: str(raw, 'layout') as Layout,
    waitMs: Math.round(wait * 1000),
    acceptStatus,
    artifactPaths: list(raw, 'artifact_path'),
    dest,
    baseDir,
    include: list(raw, 'include'),
    exclude: list(raw, 'exclude'),
    overwrite: bool(raw, 'overwrite'),
    ifNotFound: str(raw, 'if_not_found') as IfNotFound,
    maxBytes,
    maxArchiveBytes,
    connections: Math.floor(connections),
    maxFiles: Math.floor(maxFiles),
    maxRatio: num(raw, 'max_ratio'),
    dotenv: optionalPath('dotenv'),
    summary: optionalPath('summary'),
    dryRun: bool(raw, 'dry_run'),
    keep,
    keepFailure: str(raw, 'keep_failure') === 'warn' ? 'warn' : 'fail',
    pollMs: envMs(env, 'ARTIFACT_RELAY_POLL_MS') || 3000,
    progressMs: envMs(env, 'ARTIFACT_RELAY_PROGRESS_MS') || 5000,
    overlap: ({ '0': 'never', '1': 'always' } as const)[env.ARTIFACT_RELAY_OVERLAP?.trim() ?? ''] ?? 'auto',
    overlapMinBytes: (envMs(env, 'ARTIFACT_RELAY_OVERLAP_MIN_MB') || 64) * 1024 * 1024,
    widen: parseWiden(env.ARTIFACT_RELAY_WIDEN),
    tailDirectoryMaxBytes: (envMs(env, 'ARTIFACT_RELAY_TAIL_DIRECTORY_KB') || 8192) * 1024,
    ...(env.ARTIFACT_RELAY_TEST_COMMIT_PAUSE?.trim() ? { commitPauseStep: Number(env.ARTIFACT_RELAY_TEST_COMMIT_PAUSE) } : {}),
  };
}
