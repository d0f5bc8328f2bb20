// Shards for GitLab's parallel jobs: job CI_NODE_INDEX of CI_NODE_TOTAL takes the projects whose ID hashes to
// its index. The share depends on the project ID only (not on listing order, pages or other projects), so it is
// stable across runs and the shards are disjoint and together cover every project exactly once.

/** FNV-1a (32 bit) of the decimal project ID: cheap, stable everywhere, and well spread for consecutive IDs. */
function projectHash(projectId: number): number {
  let h = 0x811c9dc5;
  for (const c of String(projectId)) {
    h ^= c.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The shard (1-based, as CI_NODE_INDEX) a project belongs to among `total`. */
export function shardOf(projectId: number, total: number): number {
  return (projectHash(projectId) % total) + 1;
}

export function inShard(projectId: number, shard: { index: number; total: number } | undefined): boolean {
  return !shard || shardOf(projectId, shard.total) === shard.index;
}
