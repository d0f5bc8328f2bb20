// The subsets of GitLab's API entities the product reads (lib/api/entities/ci/job.rb, pipeline_basic.rb).

/** The subset of GitLab's Job entity we read. */
export interface GitLabJob {
  id: number;
  name: string;
  status: string;
  ref: string;
  web_url?: string;
  created_at?: string;
  finished_at?: string | null;
  tag?: boolean;
  pipeline?: { id: number; project_id: number; ref: string; status?: string; source?: string };
  artifacts_file?: { filename: string; size: number } | null;
  artifacts?: { file_type: string; size: number }[];
  artifacts_expire_at?: string | null;
}

export interface GitLabPipeline {
  id: number;
  project_id: number;
  ref: string;
  status: string;
  sha?: string;
  web_url?: string;
}

/** The job has an archive: artifacts_file (hidden once expired), or an archive among artifacts[] (a locked pipeline's expired archive is still served). */
export function hasArchive(job: GitLabJob): boolean {
  return Boolean(job.artifacts_file) || (job.artifacts ?? []).some((a) => a.file_type === 'archive');
}
