// Error classes that carry their exit code and the advice a user needs to act on them.
// main.ts prints `message` (and `advice`) and exits with `exitCode`; never a stack trace for these.

/** Invalid input or configuration: exit 2. `input` names the offending input (snake_case). */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(
    message: string,
    readonly input?: string,
    readonly advice?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A runtime failure (network, server, archive, not found under if_not_found=fail): exit 1. */
export class RelayError extends Error {
  readonly exitCode: number = 1;
  constructor(
    message: string,
    readonly advice?: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'RelayError';
  }
}

/** A file that could not be written (a full disk, permissions): the workspace's fault, not the server's or the archive's. */
export function writeError(file: string, err: unknown): RelayError {
  return new RelayError(`Cannot write ${file}: ${(err as Error).message}`, 'Check free disk space and permissions of the destination.', {
    code: (err as { code?: string }).code,
  });
}

/** The HTTP status a failed request carried (the API client puts it in details.status), if any. */
export function httpStatus(err: unknown): number | undefined {
  const status = err instanceof RelayError ? Number(err.details.status) : 0;
  return status > 0 ? status : undefined;
}

/** Nothing matched (no job, no archive, no file): exit 1 unless if_not_found says otherwise. */
export class NotFoundError extends RelayError {
  constructor(message: string, advice?: string, details: Record<string, unknown> = {}) {
    super(message, advice, details);
    this.name = 'NotFoundError';
  }
}

/** The archive is damaged or hostile. The whole archive is rejected: exit 1. */
export class ArchiveError extends RelayError {
  constructor(
    message: string,
    readonly entry?: string,
    advice?: string,
  ) {
    super(entry ? `${message}: ${JSON.stringify(entry)}` : message, advice);
    this.name = 'ArchiveError';
  }
}

/** fetch with keep: the files were fetched and stay, but keeping their artifacts was refused: exit 3. */
export class KeepFailedError extends RelayError {
  override readonly exitCode: number = 3;
  constructor(message: string, advice?: string, details: Record<string, unknown> = {}) {
    super(message, advice, details);
    this.name = 'KeepFailedError';
  }
}
