// A resolved source: one job whose artifacts (or single files) are fetched.
export interface ResolvedSource {
  /** Project as given (ID or full path), used in request URLs. */
  project: string;
  /** Numeric project ID when GitLab told us. */
  projectId: number | null;
  jobId: number | null;
  jobName: string | null;
  pipelineId: number | null;
  ref: string | null;
  /** How it was chosen, for the log and the summary. */
  selectedBy: 'job_id' | 'ref' | 'pipeline' | 'upstream' | 'bridge';
  /** API path of the whole archive. */
  archivePath: string;
  archiveQuery?: Record<string, string>;
  /** API path and query of one file inside the archive. */
  filePath(artifactPath: string): { path: string; query?: Record<string, string> };
  /** Trigger jobs from the selected pipeline down to the (child or sibling) pipeline the job is in. */
  via?: string[];
  /** Human description: `job 42 (build) in grp/proj`. */
  label: string;
}
