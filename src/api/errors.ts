// Turns HTTP failures and network errors into RelayError / NotFoundError with advice a user can act on.
// GitLab's error bodies come in several shapes (Grape's `error`, the helpers' `message`, Workhorse's plain text; lib/api/helpers.rb, lib/api/api.rb); we parse them by shape.
import { NotFoundError, RelayError } from '../runtime/errors.ts';
import { redact } from '../runtime/log.ts';
import { redactUrl } from './urls.ts';

export type TokenType = 'job' | 'private' | 'oauth' | 'none';

export interface ErrorContext {
  /** What was being done, e.g. `GET /projects/1/jobs/2/artifacts`. */
  action: string;
  tokenType: TokenType;
  project?: string;
  url?: string;
  /** Attempts made (1 = no retry). */
  attempts?: number;
}

/** A non-2xx HTTP answer, before it becomes a RelayError. */
export class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    readonly headers: Record<string, string | string[] | undefined>,
    readonly url: string,
  ) {
    super(`HTTP ${status}`);
    this.name = 'HttpStatusError';
  }
  get contentType(): string {
    const ct = this.headers['content-type'];
    return (Array.isArray(ct) ? ct[0] : ct) ?? '';
  }
}

export interface ParsedBody {
  /** Short human text of what GitLab said. */
  text: string;
  /** Which shape: `message`, `message.error`, `message.fields`, `error`, `html`, `text`, `empty`. */
  shape: 'message' | 'message.error' | 'message.fields' | 'error' | 'html' | 'text' | 'empty';
}

const MAX_TEXT = 300;

function short(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > MAX_TEXT ? `${one.slice(0, MAX_TEXT)}…` : one;
}

/** Reads a GitLab error body by its shape. */
export function parseErrorBody(body: string | Buffer | undefined, contentType = ''): ParsedBody {
  const raw = (Buffer.isBuffer(body) ? body.toString('utf8') : (body ?? '')).trim();
  if (!raw) return { text: '', shape: 'empty' };
  if (raw.startsWith('{') || raw.startsWith('[') || /json/i.test(contentType)) {
    try {
      const json = JSON.parse(raw) as unknown;
      if (json && typeof json === 'object' && !Array.isArray(json)) {
        const o = json as Record<string, unknown>;
        const m = o.message;
        if (typeof m === 'string') return { text: short(m), shape: 'message' };
        if (m && typeof m === 'object') {
          const mo = m as Record<string, unknown>;
          if (typeof mo.error === 'string') return { text: short(mo.error), shape: 'message.error' };
          const parts = Object.entries(mo).map(
            ([k, v]) => `${k} ${Array.isArray(v) ? v.join(', ') : typeof v === 'string' ? v : JSON.stringify(v)}`,
          );
          return { text: short(parts.join('; ')), shape: 'message.fields' };
        }
        if (typeof o.error === 'string') {
          const desc = typeof o.error_description === 'string' ? `: ${o.error_description}` : '';
          return { text: short(`${o.error}${desc}`), shape: 'error' };
        }
      }
      return { text: short(raw), shape: 'text' };
    } catch {
      /* not JSON after all */
    }
  }
  if (/text\/html/i.test(contentType) || /^<(!doctype|html|head|body|\?xml)?/i.test(raw)) {
    return { text: 'an HTML page (proxy or login page?)', shape: 'html' };
  }
  return { text: short(raw), shape: 'text' };
}

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
]);

function hostOf(url: string | undefined): string {
  if (!url) return 'the server';
  try {
    return new URL(url).host;
  } catch {
    return 'the server';
  }
}

const ARTIFACT_ROUTE = /\/(jobs|artifacts|pipelines)(\/|$)/;
const NOT_FOUND_TEXT = /^404 (not found|job not found|page not found|artifacts not found|artifacts metadata not found|path not found)$/i;

function tokenName(t: TokenType): string {
  return t === 'job' ? 'CI_JOB_TOKEN' : t === 'oauth' ? 'OAuth token' : t === 'private' ? 'access token' : 'anonymous request';
}

/** Advice and error class for an HTTP status and parsed body. */
function classify(e: HttpStatusError, parsed: ParsedBody, ctx: ErrorContext): { advice?: string; notFound: boolean } {
  const { status } = e;
  const text = parsed.text;
  const project = ctx.project ? `project ${ctx.project}` : 'the project';
  const path = (() => {
    try {
      return new URL(e.url || ctx.url || '').pathname;
    } catch {
      return ctx.action;
    }
  })();
  if (parsed.shape === 'html') {
    return {
      advice:
        'Something between you and GitLab (a proxy, SSO or login page) answered with an HTML page: check server_url and the proxy settings.',
      notFound: false,
    };
  }
  if (status === 401) {
    if (ctx.tokenType === 'job') {
      return {
        advice:
          'The CI_JOB_TOKEN was refused: job tokens are valid only while their job runs, so its job is no longer running (or the token is wrong).',
        notFound: false,
      };
    }
    if (ctx.tokenType === 'none')
      return {
        advice: `GitLab wants authentication for this request: set \`token\` (a project access token with read_api).`,
        notFound: false,
      };
    return {
      advice: `The ${tokenName(ctx.tokenType)} is wrong, expired or revoked (or token_type does not match it): check \`token\`.`,
      notFound: false,
    };
  }
  if (status === 403) {
    const allow = /not allowed from (\S+?) to (\S+?)\.?$/i.exec(text);
    if (allow) {
      return {
        advice: `Add project ${allow[1]} to the job token allowlist of ${allow[2]} (Settings > CI/CD > Job token permissions), or use a project access token with read_api in \`token\`.`,
        notFound: false,
      };
    }
    const perm = /token permission is required: ([^.\s]+)/i.exec(text);
    if (perm) {
      return {
        advice: `The allowlist entry for this project lacks the job token permission ${perm[1]}: grant it in the target project's Settings > CI/CD > Job token permissions.`,
        notFound: false,
      };
    }
    return {
      advice: `The ${tokenName(ctx.tokenType)} lacks permission on ${project}: it needs a role with access to job artifacts (Reporter or higher; Maintainer to delete), the read_api scope (api for keep/delete), and the job's artifacts:access may restrict who can download.`,
      notFound: false,
    };
  }
  if (status === 404) {
    if (/project not found/i.test(text)) {
      if (ctx.tokenType === 'job') {
        return {
          advice: `The job token cannot see ${project}: add this project to its job token allowlist, or this GitLab tier has no job-token access to the artifacts API (GitLab.com Free): use a project access token with read_api in \`token\`.`,
          notFound: false,
        };
      }
      return {
        advice: `${project[0]!.toUpperCase()}${project.slice(1)} does not exist, or the token has no access to it: check \`project\` and the token's membership.`,
        notFound: false,
      };
    }
    if (parsed.shape === 'error' && /^404 not found$/i.test(text) && !ARTIFACT_ROUTE.test(path)) {
      return {
        advice:
          'GitLab does not know this API route: check server_url (it should point at the GitLab instance), or the GitLab version is too old.',
        notFound: false,
      };
    }
    if (ARTIFACT_ROUTE.test(path) && (NOT_FOUND_TEXT.test(text) || parsed.shape === 'empty' || /not found/i.test(text))) {
      return {
        advice: 'No such job, ref or file, or its artifacts expired or were erased (reports-only artifacts cannot be downloaded either).',
        notFound: true,
      };
    }
    return { advice: 'GitLab found nothing at this address: check server_url and project.', notFound: false };
  }
  if (status === 400) {
    const field = /^([a-z_][a-z0-9_[\]]*)\s+(is|are|does|must|has|have|should|contains)\b/i.exec(text);
    const what = field ? `the parameter \`${field[1]}\` (${text})` : text || 'its parameters';
    return {
      advice: `GitLab rejected the request: ${what}. This is likely a bug in artifact-relay or an invalid input (job name, ref or artifact path).`,
      notFound: false,
    };
  }
  if (status === 409) {
    return { advice: 'GitLab refuses this action for now (project statistics refresh in progress): try again later.', notFound: false };
  }
  if (status === 429 || status >= 500) {
    const n = Math.max(0, (ctx.attempts ?? 1) - 1);
    const busy = status === 429 ? 'GitLab is rate limiting these requests' : 'GitLab (or a proxy in front of it) is busy or failing';
    return { advice: `${busy}; retried ${n} time${n === 1 ? '' : 's'}. Try again later, or raise \`retries\`.`, notFound: false };
  }
  return { notFound: false };
}

function errorCode(err: unknown): string | undefined {
  for (let e: unknown = err, i = 0; e && i < 5; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'ERR_GOT_REQUEST_ERROR') return code;
  }
  return undefined;
}

/** Converts anything thrown while talking to GitLab into a RelayError (NotFoundError for missing jobs/artifacts). */
export function toRelayError(err: unknown, ctx: ErrorContext): RelayError {
  if (err instanceof RelayError) return err;
  const url = redact(redactUrl(ctx.url ?? (err instanceof HttpStatusError ? err.url : undefined)));
  const action = redact(ctx.action);
  if (err instanceof HttpStatusError) {
    const parsed = parseErrorBody(err.body, err.contentType);
    const { advice, notFound } = classify(err, parsed, { ...ctx, url: ctx.url ?? err.url });
    const said = parsed.text ? `: ${redact(parsed.text)}` : '';
    const message = `${action} failed with HTTP ${err.status}${said}`;
    const details: Record<string, unknown> = { status: err.status, body: redact(parsed.text), url, shape: parsed.shape };
    if (ctx.attempts !== undefined) details.attempts = ctx.attempts;
    const safeAdvice = advice ? redact(advice) : undefined;
    return notFound ? new NotFoundError(message, safeAdvice, details) : new RelayError(message, safeAdvice, details);
  }
  const code = errorCode(err);
  const host = hostOf(ctx.url);
  const rawMessage = err instanceof Error ? err.message : String(err);
  const details: Record<string, unknown> = { status: 0, body: '', url, code };
  if (ctx.attempts !== undefined) details.attempts = ctx.attempts;
  const tries = ctx.attempts && ctx.attempts > 1 ? ` after ${ctx.attempts} attempts` : '';
  if (code && (TLS_CODES.has(code) || /certificate/i.test(rawMessage))) {
    return new RelayError(
      redact(`${action} failed: the TLS certificate of ${host} is not trusted (${code}: ${rawMessage})`),
      'Set ca_file to a PEM file holding the CA certificate(s) that signed it (for example your company CA).',
      details,
    );
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new RelayError(
      redact(`${action} failed: the TLS certificate of ${host} does not name that host (${rawMessage})`),
      'Check server_url: use the host name the certificate was issued for.',
      details,
    );
  }
  if (code === 'ERR_TOO_SLOW') {
    return new RelayError(
      redact(`${action} from ${host} failed${tries}: ${rawMessage}`),
      'The body kept arriving too slowly (speed_limit bytes/s over speed_time seconds): check the network and proxy, or lower speed_limit (0 turns the rule off).',
      details,
    );
  }
  const timedOut = (err as { name?: string })?.name === 'TimeoutError' || code === 'ETIMEDOUT';
  const what = timedOut ? `timed out (${code ?? 'ETIMEDOUT'})` : `failed (${code ?? 'network error'}: ${rawMessage})`;
  return new RelayError(
    redact(`${action} to ${host} ${what}${tries}`),
    timedOut
      ? 'Check server_url / proxy / ca_file, or raise `timeout` for a slow server.'
      : 'Check server_url / proxy (HTTPS_PROXY, NO_PROXY) / ca_file, and that the host is reachable from the runner.',
    details,
  );
}
