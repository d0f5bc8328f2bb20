// Version profiles: what differs between the GitLab releases the component supports (17.0 Catalog GA to today),
// each behaviour written from GitLab's own code (gitlabhq, files named next to each field). Where the release a
// behaviour changed in could not be pinned from the code, the comment says so and the profile takes the
// conservative side (the older behaviour for the older profile).

export type ProfileName = '17.0' | '18.9' | 'newest';

export interface Profile {
  name: ProfileName;
  /**
   * Routes that accept CI_JOB_TOKEN (`route_setting :authentication, job_token_allowed: true`). Elsewhere the job
   * token is ignored and the request is anonymous: lib/gitlab/auth/auth_finders.rb `find_user_from_job_token`
   * (`return unless route_authentication_setting[:job_token_allowed]`).
   */
  jobToken: {
    /** GET /projects/:id/pipelines/:pipeline_id/jobs. Allowed in the 18.x copies of lib/api/ci/pipelines.rb; the
     * release that opened it is not pinned, so 17.0 takes the older behaviour (anonymous). */
    pipelineJobs: boolean;
    /** GET /projects/:id/pipelines and /pipelines/:pipeline_id: allowed only in the newest lib/api/ci/pipelines.rb. */
    pipelines: boolean;
    /** GET /projects/:id/pipelines/:pipeline_id/bridges (and trigger_jobs): newest lib/api/ci/pipelines.rb only. */
    bridges: boolean;
  };
  /** GET /projects/:id/pipelines/:pipeline_id/trigger_jobs exists (newest lib/api/ci/pipelines.rb; bridges
   * "Deprecated in GitLab 19.2. Use trigger_jobs endpoint instead."). */
  triggerJobsRoute: boolean;
  /** Job statuses GitLab knows (app/models/concerns/ci/has_status.rb AVAILABLE_STATUSES). `waiting_for_callback`
   * is in the newest copy; the release that added it is not pinned, so 17.0 goes without it. */
  statuses: string[];
  /** CI_UPSTREAM_PIPELINE_ID / CI_UPSTREAM_PROJECT_ID / CI_UPSTREAM_JOB_ID are set for trigger-job pipelines
   * (lib/gitlab/ci/variables/builder/pipeline.rb `predefined_upstream_variables`, 18.9+). */
  upstreamVariables: boolean;
  /**
   * The application limits (jobs_index): lib/gitlab/application_rate_limiter/increment_per_action.rb sets the
   * window's expiry on the first request ('first', flag optimize_rate_limiter_redis_expiry) or again on every
   * request ('every': retrying inside the window extends it). The release of the flag is not pinned: the older
   * profiles take 'every'.
   */
  rateLimitExpiry: 'first' | 'every';
}

const BASE_STATUSES = [
  'created',
  'waiting_for_resource',
  'preparing',
  'pending',
  'running',
  'success',
  'failed',
  'canceling',
  'canceled',
  'skipped',
  'manual',
  'scheduled',
];
const NEWER_STATUSES = [...BASE_STATUSES.slice(0, 3), 'waiting_for_callback', ...BASE_STATUSES.slice(3)];

export const PROFILES: Record<ProfileName, Profile> = {
  '17.0': {
    name: '17.0',
    jobToken: { pipelineJobs: false, pipelines: false, bridges: false },
    triggerJobsRoute: false,
    statuses: BASE_STATUSES,
    upstreamVariables: false,
    rateLimitExpiry: 'every',
  },
  '18.9': {
    name: '18.9',
    jobToken: { pipelineJobs: true, pipelines: false, bridges: false },
    triggerJobsRoute: false,
    statuses: NEWER_STATUSES,
    upstreamVariables: true,
    rateLimitExpiry: 'every',
  },
  newest: {
    name: 'newest',
    jobToken: { pipelineJobs: true, pipelines: true, bridges: true },
    triggerJobsRoute: true,
    statuses: NEWER_STATUSES,
    upstreamVariables: true,
    rateLimitExpiry: 'first',
  },
};

/** Every profile, oldest first: the e2e suites loop over these. */
export const PROFILE_NAMES: ProfileName[] = ['17.0', '18.9', 'newest'];
