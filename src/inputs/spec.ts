// The command/input/output declarations from component.yml, embedded at build time by esbuild
// (`__COMPONENT_SPEC__`). Under tsx (tests, demo) the file is read from disk instead.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

type InputType = 'string' | 'number' | 'boolean' | 'array';

export interface InputSpec {
  type?: InputType;
  default?: string | number | boolean | string[];
  options?: string[];
  regex?: string;
  format?: 'bytes' | 'seconds';
  secret?: boolean;
  description: string;
}

export interface CommandSpec {
  description: string;
  inputs: Record<string, InputSpec>;
  outputs?: Record<string, { description: string }>;
}

export interface ComponentSpec {
  name: string;
  description: string;
  commands: Record<string, CommandSpec>;
}

declare const __COMPONENT_SPEC__: ComponentSpec | undefined;
declare const __VERSION__: string | undefined;

function readFromDisk(): ComponentSpec {
  // Through createRequire, which esbuild does not follow: the bundle never needs the YAML parser (263 KB of
  // code it would otherwise evaluate at every start).
  const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return parse(readFileSync(new URL('../../component.yml', import.meta.url), 'utf8'), { merge: true }) as ComponentSpec;
}

export const componentSpec: ComponentSpec = typeof __COMPONENT_SPEC__ !== 'undefined' ? __COMPONENT_SPEC__ : readFromDisk();

export const version: string =
  typeof __VERSION__ !== 'undefined'
    ? __VERSION__
    : (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
