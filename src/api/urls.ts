// URL building for GitLab API v4 paths (lib/api/ci/job_artifacts.rb): project IDs or URL-encoded paths,
// refs and artifact paths encoded per segment with their `/` kept.

type QueryValue = string | number | boolean | string[] | undefined;
export type Query = Record<string, QueryValue>;

/** `:id` of a project: a numeric ID stays as is, a path is URL-encoded (`grp/proj` → `grp%2Fproj`). */
export function encodeProject(project: string | number): string {
  const p = String(project).trim();
  return /^\d+$/.test(p) ? p : encodeURIComponent(p.replace(/^\/+|\/+$/g, ''));
}

function encodeSegments(value: string): string {
  return value.split('/').map(encodeURIComponent).join('/');
}

/** A ref name: each segment encoded, `/` kept (GitLab's `ref_name` accepts `/.+/`). */
export function encodeRef(ref: string): string {
  return encodeSegments(ref);
}

/** A path inside an artifacts archive: each segment encoded, `/` kept; leading slashes dropped. */
export function encodeArtifactPath(path: string): string {
  return encodeSegments(path.replace(/^\/+/, ''));
}

/** Appends `query` to `params`: arrays become `key[]=a&key[]=b`; undefined values are skipped. */
function appendQuery(params: URLSearchParams, query: Query | undefined): void {
  if (!query) return;
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) {
      const k = key.endsWith('[]') ? key : `${key}[]`;
      for (const v of value) params.append(k, v);
    } else {
      params.append(key, String(value));
    }
  }
}

/** Builds `apiUrl + path` (path relative to the API root, such as `/projects/1/jobs`) with a query string. */
export function joinApi(apiUrl: string, path: string, query?: Query): string {
  const base = apiUrl.replace(/\/+$/, '');
  const rel = path.startsWith('/') ? path : `/${path}`;
  const url = new URL(base + rel);
  appendQuery(url.searchParams, query);
  return url.toString();
}

/** A URL fit for logs and errors: no credentials, no query (signed storage URLs), no fragment. */
export function redactUrl(url: string | URL | undefined): string {
  if (url === undefined) return '';
  try {
    const u = new URL(String(url));
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString();
  } catch {
    return String(url).replace(/[?#].*$/, '');
  }
}
