// The keep command selects jobs exactly as fetch does, so its settings are fetch's: the keep inputs (a subset of
// fetch's selection inputs, plus connection, dry_run, summary, dotenv) over fetch's defaults for everything else,
// read by readFetchSettings with the same rules and messages. The token is checked first: keep refuses job tokens
// before any request.
import { UsageError } from '../runtime/errors.ts';
import { refuseKeepToken } from './keep-token.ts';
import { readInputs, str, type RawInputs } from './parse.ts';
import { readConnectionSettings, readFetchSettings, type FetchSettings } from './settings.ts';
import { componentSpec } from './spec.ts';

export type KeepSettings = FetchSettings;

export function readKeepSettings(raw: RawInputs, env: NodeJS.ProcessEnv, cwd = process.cwd()): KeepSettings {
  const baseDir = env.CI_PROJECT_DIR?.trim() || cwd;
  if (!str(raw, 'token')) {
    throw new UsageError(
      'Input token is empty. Keeping artifacts needs a project, group or personal access token with the api scope and at least the Developer role; pass it as a masked CI/CD variable (token: $KEEP_TOKEN). Job tokens cannot keep artifacts.',
      'token',
    );
  }
  refuseKeepToken(readConnectionSettings(raw, env, baseDir).tokenType, 'the keep command');
  const fetchDefaults = readInputs(componentSpec.commands.fetch, new Map(), {});
  const merged: RawInputs = {
    values: { ...fetchDefaults.values, ...raw.values },
    sources: { ...fetchDefaults.sources, ...raw.sources },
  };
  return readFetchSettings(merged, env, cwd);
}
