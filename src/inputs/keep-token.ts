// Keep needs an access token: GitLab's keep route takes no job token (src/keep/keep.ts says what GitLab answers).
import type { TokenType } from '../api/errors.ts';
import { UsageError } from '../runtime/errors.ts';

export const KEEP_TOKEN_ADVICE =
  'Put a project or group access token with the api scope and at least the Developer role on the project in `token` ' +
  '(Settings > Access tokens), stored in a masked CI/CD variable.';

/** Keep needs an access token: a job token (or none) is refused before any request. */
export function refuseKeepToken(tokenType: TokenType, what: string): void {
  if (tokenType === 'job') {
    throw new UsageError(
      `Input token is a CI/CD job token, and GitLab does not accept job tokens for keeping artifacts (${what}): the keep route allows no job token, so GitLab treats the request as anonymous and answers 401. ${KEEP_TOKEN_ADVICE}`,
      'token',
    );
  }
  if (tokenType === 'none') throw new UsageError(`Input token is empty, and ${what} needs one. ${KEEP_TOKEN_ADVICE}`, 'token');
}
