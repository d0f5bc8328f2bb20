// Cleanup and keep agree: artifacts someone kept (keep command, fetch keep: true, the Keep button) are not deleted
// by default (input delete_kept). Keep sets artifacts_expire_at to null (gitlabhq app/models/ci/build.rb
// keep_artifacts!), which is also what a job made with `expire_in: never` has (or any job when the instance's default
// expiration is 0): the Job entity cannot tell the two apart, so both are treated as kept, the safe side.
// The policy's other rules (older_than, keep_latest...) come first; this only spares jobs the policy would delete.
import type { GitLabJob } from '../api/entities.ts';

export const KEPT_REASON = 'no expiry: kept, or expire_in never (delete_kept: false)';

/** The job's artifacts never expire (artifacts_expire_at null). A job entity without the field is not taken as kept. */
export function isKept(job: GitLabJob): boolean {
  return 'artifacts_expire_at' in job && job.artifacts_expire_at === null;
}
