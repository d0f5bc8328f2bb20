// artifact-relay entrypoint: parse the command line, run one command, map errors to exit codes.
// 0 done, 1 runtime failure, 2 invalid input, 3 fetched but keep refused (fetch keep: true). Never a stack trace for a user mistake.
import { RelayError, UsageError } from './runtime/errors.ts';
import { helpText } from './inputs/help.ts';
import { describeInterruption, installSignalHandlers } from './runtime/lifecycle.ts';
import { readInputs, splitArgv } from './inputs/parse.ts';
import { readFetchSettings } from './inputs/settings.ts';
import { componentSpec, version } from './inputs/spec.ts';
import { logger, redact, registerSecret } from './runtime/log.ts';
import { writeSync } from 'node:fs';
import { resolve } from 'node:path';

/** ARTIFACT_RELAY_DEBUG: debug log lines and stack traces on errors. Read once, here. */
const DEBUG = Boolean(process.env.ARTIFACT_RELAY_DEBUG);
if (DEBUG) logger.level = 4;

type Command = (flags: Map<string, string | true>, env: NodeJS.ProcessEnv) => Promise<unknown>;

// Commands are imported when run (esbuild keeps them in the bundle, evaluated lazily): --version and --help load
// neither got nor unzipper.

/** A command's modules, once loaded, and then the V8 settings the image's wrapper leaves out (src/runtime/v8-flags.ts). */
async function tuned<T>(modules: Promise<T>): Promise<T> {
  const [loaded, { tuneV8 }] = await Promise.all([modules, import('./runtime/v8-flags.ts')]);
  tuneV8();
  return loaded;
}

const commands: Record<string, Command> = {
  fetch: async (flags, env) => {
    const raw = readInputs(componentSpec.commands.fetch, flags, env);
    registerSecret(String(raw.values.token ?? ''));
    const { runFetch } = await tuned(import('./commands/fetch.ts'));
    await runFetch(readFetchSettings(raw, env));
  },
  cleanup: async (flags, env) => {
    const raw = readInputs(componentSpec.commands.cleanup, flags, env);
    registerSecret(String(raw.values.token ?? ''));
    const [{ runCleanup }, { readCleanupSettings }] = await tuned(
      Promise.all([import('./commands/cleanup.ts'), import('./inputs/cleanup-settings.ts')]),
    );
    await runCleanup(readCleanupSettings(raw, env));
  },
  keep: async (flags, env) => {
    const raw = readInputs(componentSpec.commands.keep, flags, env);
    registerSecret(String(raw.values.token ?? ''));
    const [{ runKeep }, { readKeepSettings }] = await tuned(
      Promise.all([import('./commands/keep.ts'), import('./inputs/keep-settings.ts')]),
    );
    await runKeep(readKeepSettings(raw, env));
  },
};

/**
 * `artifact-relay recover [--path DIR]`: what a fetch does first, alone: roll back the commit of a run into DIR that
 * was killed (its journal) and remove the leftovers of interrupted runs. A CLI command, not a component.
 */
async function recover(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { flags, positionals } = splitArgv(argv, []);
  const unknown = [...flags.keys()].find((f) => f !== '--path');
  if (unknown || positionals.length > 0) {
    throw new UsageError(`artifact-relay recover takes only --path (the fetch destination), not ${unknown ?? positionals[0]}.`, 'path');
  }
  const raw = flags.get('--path');
  const pathInput = typeof raw === 'string' && raw ? raw : env.INPUT_PATH?.trim() || '.';
  const baseDir = env.CI_PROJECT_DIR?.trim() || process.cwd();
  const dest = resolve(baseDir, pathInput);
  const { recoverEarlierRun } = await import('./commands/fetch.ts');
  await recoverEarlierRun({ dest, baseDir });
  logger.success(`Nothing interrupted is left in or beside ${pathInput}.`);
  return 0;
}

/**
 * Writes to stdout through the file descriptor: setting process.stdout up costs --version some 3% more than Node's own
 * start. Where the descriptor refuses (non-blocking and full), the rest goes through process.stdout.
 */
function print(text: string): void {
  const bytes = Buffer.from(text);
  let done = 0;
  try {
    while (done < bytes.length) done += writeSync(1, bytes, done);
  } catch {
    process.stdout.write(bytes.subarray(done));
  }
}

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  registerSecret(env.CI_JOB_TOKEN);
  if (argv[0] === 'recover') return recover(argv.slice(1), env);
  const { command, flags, positionals } = splitArgv(argv, Object.keys(componentSpec.commands));
  if (flags.has('--version')) {
    print(`${version}\n`);
    return 0;
  }
  if (flags.has('--help')) {
    print(helpText(componentSpec, command));
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(
      `Unknown command or argument ${JSON.stringify(positionals[0])}. Commands: ${Object.keys(componentSpec.commands).join(', ')}. Run artifact-relay --help.`,
    );
  }
  const run = commands[command ?? 'fetch'];
  if (!run) throw new UsageError(`The command ${command} is declared in component.yml but not implemented in this version.`);
  await run(flags, env);
  return 0;
}

function report(err: unknown): number {
  if (err instanceof UsageError || err instanceof RelayError) {
    logger.error(err.message);
    if (err.advice) logger.error(err.advice);
    if (DEBUG && err.stack) process.stderr.write(`${redact(err.stack)}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  logger.error(`Unexpected failure: ${e?.message ?? String(err)}`);
  logger.error('This is a bug in artifact-relay or an unusual environment; rerun with ARTIFACT_RELAY_DEBUG=1 for details and report it.');
  if (DEBUG && e?.stack) process.stderr.write(`${redact(e.stack)}\n`);
  return 1;
}

installSignalHandlers((signal, destination) => logger.warn(describeInterruption(signal, destination)));
main(process.argv.slice(2), process.env).then(
  (code) => process.exit(code),
  (err) => process.exit(report(err)),
);
