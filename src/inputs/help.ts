// `--help` text, generated from component.yml (the same source as the templates and the README tables).
import { envName, flagName } from './parse.ts';
import type { ComponentSpec } from './spec.ts';

function wrap(text: string, width: number, indent: string): string {
  const words = text.replace(/\s+/g, ' ').trim().split(' ');
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines.map((l) => indent + l).join('\n');
}

function formatDefault(value: unknown): string {
  if (Array.isArray(value)) return value.length ? value.join(',') : '(none)';
  if (value === '' || value === undefined) return '(empty)';
  return String(value);
}

export function helpText(spec: ComponentSpec, command?: string): string {
  const commands = Object.keys(spec.commands);
  const out: string[] = [
    `Usage: artifact-relay [${commands.join('|')}] [--input value ...]`,
    '',
    wrap(spec.description, 96, ''),
    '',
    'Commands:',
    ...commands.map(
      (c, i) => `  ${c.padEnd(10)}${i === 0 ? '(default) ' : ''}${spec.commands[c].description.replace(/\s+/g, ' ').split('. ')[0]}.`,
    ),
    `  ${'recover'.padEnd(10)}Roll back the commit of a fetch into --path that was killed, and remove its leftovers (fetch does this first).`,
    '',
    'Each input is read from its --flag, else its INPUT_* environment variable, else its default.',
    'Lists take commas or newlines. Exit codes: 0 done, 1 failed, 2 invalid input, 3 fetched but keep failed.',
    '  --help, -h      this text (artifact-relay <command> --help for one command)',
    '  --version, -V   print the version',
  ];
  for (const name of command ? [command] : commands) {
    out.push('', `Inputs of ${name}:`);
    for (const [input, s] of Object.entries(spec.commands[name].inputs)) {
      const choices = s.options ? ` (${s.options.join('|')})` : '';
      out.push(`  ${flagName(input)}  ${envName(input)}  [${s.type ?? 'string'}${choices}, default ${formatDefault(s.default)}]`);
      out.push(wrap(s.description, 92, '      '));
    }
  }
  return `${out.join('\n')}\n`;
}
