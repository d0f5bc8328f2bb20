// Reads a command's inputs: CLI flag `--foo-bar`, else env `INPUT_FOO_BAR`, else the component.yml default
// (with $VARIABLES expanded). Values are checked against the declared type/options/regex here, so every
// later module gets typed values and every mistake becomes a UsageError naming the input.
import { parseArgs } from 'node:util';
import { UsageError } from '../runtime/errors.ts';
import type { CommandSpec, InputSpec } from './spec.ts';

type InputValue = string | number | boolean | string[];
type Source = 'flag' | 'env' | 'default';

export interface RawInputs {
  values: Record<string, InputValue>;
  sources: Record<string, Source>;
}

/** Typed reads of resolved inputs, for the settings modules. */
export const str = (raw: RawInputs, name: string) => String(raw.values[name] ?? '').trim();
export const list = (raw: RawInputs, name: string) => (raw.values[name] as string[] | undefined) ?? [];
export const num = (raw: RawInputs, name: string) => Number(raw.values[name]);
export const bool = (raw: RawInputs, name: string) => raw.values[name] === true;

export const flagName = (input: string) => `--${input.replace(/_/g, '-')}`;
export const envName = (input: string) => `INPUT_${input.toUpperCase()}`;

/** Expands $VAR and ${VAR} from env; unset variables become empty (as in GitLab). */
export function expandVariables(text: string, env: NodeJS.ProcessEnv): string {
  return text.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, a, b) => env[a ?? b] ?? '');
}

/**
 * Splits a list input on commas and newlines; blank items are dropped. A JSON array (what GitLab writes when
 * an array input is interpolated into a string) is taken as is, so items may contain commas (`build: [a, b]`).
 */
export function splitList(text: string): string[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('[') && trimmed.endsWith(']')) {
    try {
      const parsed: unknown = JSON.parse(trimmed);
      if (Array.isArray(parsed)) return parsed.map((s) => String(s).trim()).filter((s) => s.length > 0);
    } catch {
      // not JSON: fall through to the plain list syntax
    }
  }
  return text
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
};

/** Parses "10GiB", "500 MB", "1024" into bytes; undefined when malformed. */
export function parseBytes(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = m[2].toLowerCase() || 'b';
  const factor = BYTE_UNITS[unit];
  return factor === undefined ? undefined : Math.floor(Number(m[1]) * factor);
}

function fail(name: string, message: string): never {
  throw new UsageError(`Input ${name} (${flagName(name)} or ${envName(name)}): ${message}`, name);
}

function coerce(name: string, spec: InputSpec, raw: string | string[] | number | boolean): InputValue {
  const type = spec.type ?? 'string';
  if (type === 'array') {
    const items = Array.isArray(raw) ? raw.map(String) : splitList(String(raw));
    if (spec.regex) {
      const re = new RegExp(spec.regex);
      for (const item of items) if (!re.test(item)) fail(name, `${JSON.stringify(item)} does not match ${spec.regex}.`);
    }
    return items;
  }
  const text = String(raw).trim();
  if (type === 'boolean') {
    if (/^(true|yes|1|on)$/i.test(text)) return true;
    if (/^(false|no|0|off|)$/i.test(text)) return false;
    fail(name, `expected true or false, got ${JSON.stringify(text)}.`);
  }
  if (type === 'number') {
    if (!/^\d+(\.\d+)?$/.test(text)) fail(name, `expected a non-negative number, got ${JSON.stringify(text)}.`);
    return Number(text);
  }
  if (spec.options && !spec.options.includes(text)) {
    fail(name, `expected one of ${spec.options.join(', ')}, got ${JSON.stringify(text)}.`);
  }
  if (spec.regex && text !== '' && !new RegExp(spec.regex).test(text)) {
    fail(name, `${JSON.stringify(text)} does not have the expected shape (${spec.regex}).`);
  }
  if (spec.format === 'bytes' && text !== '' && parseBytes(text) === undefined) {
    fail(name, `expected a size such as 500MB or 10GiB, got ${JSON.stringify(text)}.`);
  }
  return text;
}

export interface ParsedArgs {
  command?: string;
  flags: Map<string, string | true>;
  positionals: string[];
}

const SHORT_FLAGS: Record<string, string> = { h: '--help', V: '--version', v: '--version' };

/**
 * Splits argv into an optional command, --flags (with `=value` or a following value) and positionals. The
 * inputs are declared in component.yml, not here, so parseArgs runs non-strict and a flag takes the next
 * argument as its value unless that is another --flag (`--max-ratio -1` keeps its value).
 */
export function splitArgv(argv: string[], commands: string[]): ParsedArgs {
  const flags = new Map<string, string | true>();
  const positionals: string[] = [];
  let command: string | undefined;
  const { tokens } = parseArgs({ args: argv, strict: false, allowPositionals: true, tokens: true });
  let consumed = -1; // argv index taken as the value of the flag before it
  for (const token of tokens) {
    if (token.index <= consumed) continue;
    if (token.kind === 'option-terminator') {
      positionals.push(...argv.slice(token.index + 1));
      break;
    }
    if (token.kind === 'option') {
      if (token.rawName.startsWith('--')) {
        const next = argv[token.index + 1];
        if (token.inlineValue) flags.set(token.rawName, token.value ?? '');
        else if (next !== undefined && !next.startsWith('--')) {
          flags.set(token.rawName, next);
          consumed = token.index + 1;
        } else flags.set(token.rawName, true);
      } else if (SHORT_FLAGS[token.name]) flags.set(SHORT_FLAGS[token.name]!, true);
      else positionals.push(token.rawName);
    } else if (command === undefined && positionals.length === 0 && commands.includes(token.value)) {
      command = token.value;
    } else positionals.push(token.value);
  }
  return { command, flags, positionals };
}

/** Resolves every declared input of `spec` from flags, env and defaults, typed and validated. */
export function readInputs(spec: CommandSpec, flags: Map<string, string | true>, env: NodeJS.ProcessEnv): RawInputs {
  const known = new Map(Object.keys(spec.inputs).map((n) => [flagName(n), n]));
  for (const flag of flags.keys()) {
    if (flag === '--help' || flag === '--version') continue;
    if (!known.has(flag)) {
      const guess = [...known.keys()].find((k) => k.includes(flag.slice(2)) || flag.includes(k.slice(2)));
      throw new UsageError(
        `Unknown option ${flag}.${guess ? ` Did you mean ${guess}?` : ''} Run with --help for the list of inputs.`,
        flag.slice(2).replace(/-/g, '_'),
      );
    }
  }
  const values: Record<string, InputValue> = {};
  const sources: Record<string, Source> = {};
  for (const [name, input] of Object.entries(spec.inputs)) {
    const flag = flags.get(flagName(name));
    const fromEnv = env[envName(name)];
    if (flag !== undefined) {
      if (flag === true && (input.type ?? 'string') !== 'boolean') fail(name, 'the flag needs a value.');
      values[name] = coerce(name, input, flag === true ? 'true' : flag);
      sources[name] = 'flag';
    } else if (fromEnv !== undefined && fromEnv !== '') {
      values[name] = coerce(name, input, fromEnv);
      sources[name] = 'env';
    } else {
      const def = input.default ?? (input.type === 'array' ? [] : input.type === 'boolean' ? false : '');
      values[name] = coerce(
        name,
        { ...input, options: typeof def === 'string' && def.includes('$') ? undefined : input.options },
        typeof def === 'string' ? expandVariables(def, env) : def,
      );
      sources[name] = 'default';
    }
  }
  return { values, sources };
}
