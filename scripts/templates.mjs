// Generates the GitLab CI/CD component templates (templates/<command>.yml) and the README's input/output
// tables from component.yml, the one source of truth for commands, inputs and outputs.
//
//   node scripts/templates.mjs           write templates/*.yml and README.md tables
//   node scripts/templates.mjs --check   write nothing; exit 1 listing every file that is out of date
//   node scripts/templates.mjs --check --tag 1.2.3   also exit 1 unless 1.2.3 is package.json's version, which
//                                        the templates' image_tag defaults to (the release-version CI job)
//
// Design (see also the comment block written at the top of each template):
// - One template per command, one job per template; no global keywords (components merge into the
//   consuming pipeline). Job name and stage are inputs.
// - Every command input becomes a spec:input of the same name and type and an INPUT_<NAME> job variable,
//   which the bundle reads. Defaults naming GitLab variables ($CI_JOB_TOKEN...) become '' in the spec: the
//   bundle treats an empty INPUT_* as unset and expands the component.yml default at run time.
// - Array, number and boolean inputs are interpolated after a leading space (" $[[ inputs.x ]]") so that
//   they land inside a string: a whole-value interpolation keeps the input's type, and job variables cannot
//   hold arrays (nor, in GitLab's validator, booleans). The bundle trims values before parsing them.
//   GitLab then writes the array as `["a", "b"]` (Ruby inspect, JSON-compatible for plain strings), which
//   the bundle's list parser accepts after trimming.
// - regex is copied for string inputs only (GitLab allows it on strings only).
// - The image is `<image_repository>:<image_tag>`, and image_tag defaults to package.json's version, written here
//   by npm run templates (the --check run, a test and the release-version job keep it in step with the tag).
//   No $[[ component.* ]] and no spec:component: GitLab before 18.6 allows only `inputs` in the header
//   (lib/gitlab/ci/config/header/spec.rb, ALLOWED_KEYS = %i[inputs]) and rejects the including pipeline otherwise.
// - What the job clones, downloads and uploads (README "What the jobs clone, download and upload"):
//   GIT_STRATEGY is the git_strategy input, default `empty` (GitLab Runner 17.3+: the runner removes and recreates
//   the build directory, no clone). A runner before 17.3 does not know `empty`: common/build.go GetGitStrategy falls
//   back to its default (fetch when the project allows it, else clone) and checks the repository out.
//   `dependencies: []` downloads no artifacts of earlier jobs, even when a `needs` is merged in
//   (app/models/ci/build_dependencies.rb, no_local_dependencies_specified?), and keeps stage ordering;
//   `cache: []` restores and saves no cache.
// - fetch's artifacts are `path` plus the summary (and the dotenv report). GitLab stores artifacts:paths relative to
//   the project directory, so with `path: .` they are the whole project directory: the job first empties the
//   destination (input clean, default true; for `.` every entry of the project directory), which removes a
//   checkout made by an older runner and anything an earlier job left, and refuses paths outside the project.
import { readFile, writeFile, mkdir, readdir } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Scalar, parse, stringify } from 'yaml';

const root = fileURLToPath(new URL('..', import.meta.url));
/** The component's version: the default image tag of every template (npm run templates writes it). */
export const PACKAGE_VERSION = JSON.parse(readFileSync(`${root}package.json`, 'utf8')).version;
/** GIT_STRATEGY values a job may ask for; `empty` needs GitLab Runner 17.3 or later. */
export const GIT_STRATEGIES = ['empty', 'none', 'fetch', 'clone'];
export const HEADER = '# Generated from component.yml by npm run templates; do not edit.';
export const DEFAULT_IMAGE_REPOSITORY = 'registry.gitlab.com/artifact-relay/artifact-relay';
const GITLAB_VARIABLE = /\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)/;

/**
 * fetch's first script step (input clean): empty the destination so that the job artifacts, which GitLab takes
 * relative to the project directory, hold only what the bundle writes. For path `.` that is every entry of the
 * project directory: the checkout of a runner that does not know GIT_STRATEGY empty, and files earlier jobs left
 * (GIT_STRATEGY none, shell executors). POSIX sh (the image's /bin/sh is dash); paths outside the project are refused.
 */
export const CLEAN_SCRIPT = `# Start from an empty destination: the job artifacts then hold only what artifact-relay fetches.
if [ "$[[ inputs.clean ]]" = true ]; then
  dest="\${INPUT_PATH:-.}"
  cd "\${CI_PROJECT_DIR:-.}"
  top="$(pwd -P)"
  case "/$dest/" in
    //*|*/../*)
      echo "artifact-relay: clean: path '$dest' is not inside the project directory; use a relative path or clean: false" >&2
      exit 2 ;;
  esac
  if [ -d "$dest" ] && [ "$(cd -- "$dest" && pwd -P)" = "$top" ]; then
    echo "artifact-relay: emptying the project directory (path: $dest)"
    find . -mindepth 1 -maxdepth 1 -exec rm -rf -- {} + || failed=1
  elif [ -e "$dest" ] || [ -L "$dest" ]; then
    case "$(cd -- "$(dirname -- "$dest")" && pwd -P)/" in
      "$top"/*) echo "artifact-relay: removing the old $dest"; rm -rf -- "$dest" || failed=1 ;;
      *) echo "artifact-relay: clean: path '$dest' leads out of the project directory; use clean: false" >&2; exit 2 ;;
    esac
  fi
  if [ -n "\${failed:-}" ]; then
    echo "artifact-relay: clean: cannot empty '$dest' (files left by an earlier job that this user may not remove); use git_strategy: empty (GitLab Runner 17.3+) or clean: false" >&2
    exit 1
  fi
fi
`;

/** The CLEAN_SCRIPT as a YAML block scalar, for readable templates. */
function block(text) {
  const s = new Scalar(text);
  s.type = 'BLOCK_LITERAL';
  return s;
}

/** Inputs that only exist in the template (not in the CLI). */
export function templateOnlyInputs(command, spec) {
  const inputs = {
    job_name: {
      type: 'string',
      default: `artifact-relay-${command}`,
      description: 'Name of the job this component adds. Change it to include the component more than once.',
    },
    stage: {
      type: 'string',
      default: 'test',
      description:
        'Stage of the job (default test, which every pipeline has). Use an earlier stage, such as build or .pre, when later jobs need the files.',
    },
    image_repository: {
      type: 'string',
      default: DEFAULT_IMAGE_REPOSITORY,
      description: 'Image repository of the artifact-relay image, without a tag. Set it to use a mirror or your own build.',
    },
    image_tag: {
      type: 'string',
      default: PACKAGE_VERSION,
      description:
        "Image tag: this component's version by default (the image released with it). Set it (for example to $CI_COMMIT_SHA) to run another build, such as when including the component by SHA or branch.",
    },
    git_strategy: {
      type: 'string',
      default: 'empty',
      options: GIT_STRATEGIES,
      description:
        'GIT_STRATEGY of the job. empty (GitLab Runner 17.3+): no clone, an empty build directory. Runners before 17.3 do not know empty and fall back to fetch or clone; none skips the clone on every runner but keeps what earlier jobs left in the directory.',
    },
  };
  if (spec.inputs.path) {
    inputs.clean = {
      type: 'boolean',
      default: true,
      description:
        'Empty the destination before fetching (with path . every entry of the project directory), so that the job artifacts hold only the fetched files, the summary and the dotenv report: no checkout, no files of earlier jobs. Only paths inside the project directory.',
    };
  }
  if (spec.inputs.shard) {
    inputs.parallel = {
      type: 'number',
      default: 1,
      description:
        "Number of parallel jobs (GitLab's parallel, 1 to 200) sharing the projects: each takes the share its CI_NODE_INDEX/CI_NODE_TOTAL names (input shard).",
    };
  }
  if (artifactPaths(spec).length > 0 || spec.inputs.dotenv) {
    inputs.artifacts_expire_in = {
      type: 'string',
      default: '1 week',
      description: `How long the job artifacts (${spec.inputs.path ? 'fetched files, summary' : 'report'}, dotenv report) are kept (artifacts:expire_in).`,
    };
  }
  return inputs;
}

/** Template defaults that differ from the CLI's: files the job keeps as artifacts need a name. */
function templateDefault(command, name, input) {
  if (name === 'dotenv') return `artifact-relay-${command}.env`;
  if (name === 'summary') return `artifact-relay-${command}.json`;
  if (name === 'report') return `artifact-relay-${command}-report.json`;
  if (name === 'storage_report') return `artifact-relay-${command}-storage.md`;
  if (isVariableDefault(input)) return '';
  if (input.type === 'array') return Array.isArray(input.default) ? input.default : [];
  if (input.default === undefined) return input.type === 'boolean' ? false : input.type === 'number' ? 0 : '';
  return input.default;
}

export const isVariableDefault = (input) => typeof input.default === 'string' && GITLAB_VARIABLE.test(input.default);

/** Inputs whose values are paths the job keeps as artifacts. */
function artifactPaths(spec) {
  return ['path', 'summary', 'report', 'storage_report', 'dotenv'].filter(
    (n) => spec.inputs[n] && (spec.inputs[n].type ?? 'string') === 'string',
  );
}

const oneLine = (text) =>
  String(text ?? '')
    .replace(/\s+/g, ' ')
    .trim();

function specInput(command, name, input) {
  const type = input.type ?? 'string';
  const out = { type };
  const def = templateDefault(command, name, input);
  out.default = def;
  if (input.options) out.options = input.options;
  if (type === 'string' && input.regex) out.regex = input.regex;
  if (type === 'string' && ['dotenv', 'summary', 'report', 'storage_report'].includes(name)) out.regex = '\\S';
  let description = oneLine(input.description);
  if (isVariableDefault(input)) description += ` Empty: ${input.default} at run time.`;
  if (input.secret) description += ' Secret: never logged.';
  out.description = description;
  return out;
}

export function buildTemplate(command, spec) {
  const inputs = {};
  const extra = templateOnlyInputs(command, spec);
  for (const [name, input] of Object.entries(extra)) inputs[name] = input;
  for (const [name, input] of Object.entries(spec.inputs ?? {})) {
    if (extra[name]) throw new Error(`component.yml: input ${command}.${name} clashes with a template-only input`);
    inputs[name] = specInput(command, name, input);
  }
  const header = { spec: { inputs } };

  const variables = {};
  for (const [name, input] of Object.entries(spec.inputs ?? {})) {
    const type = input.type ?? 'string';
    // Non-strings after a space: a whole-value interpolation would keep the array/number/boolean type.
    variables[`INPUT_${name.toUpperCase()}`] = type === 'string' ? `$[[ inputs.${name} ]]` : ` $[[ inputs.${name} ]]`;
  }
  const job = {
    stage: '$[[ inputs.stage ]]',
    image: {
      name: '$[[ inputs.image_repository ]]:$[[ inputs.image_tag ]]',
      entrypoint: [''],
    },
    ...(spec.inputs.shard ? { parallel: '$[[ inputs.parallel ]]' } : {}),
    dependencies: [],
    cache: [],
    variables: { GIT_STRATEGY: '$[[ inputs.git_strategy ]]', ...variables },
    script: [...(spec.inputs.path ? [block(CLEAN_SCRIPT)] : []), `artifact-relay ${command}`],
  };
  const paths = artifactPaths(spec).filter((n) => n !== 'dotenv' || !spec.inputs.dotenv);
  if (paths.length > 0 || spec.inputs.dotenv) {
    const artifacts = {};
    if (paths.length > 0) artifacts.paths = paths.map((n) => `$[[ inputs.${n} ]]`);
    if (spec.inputs.dotenv) artifacts.reports = { dotenv: '$[[ inputs.dotenv ]]' };
    artifacts.when = 'on_success';
    artifacts.expire_in = '$[[ inputs.artifacts_expire_in ]]';
    job.artifacts = artifacts;
  }
  const body = { '$[[ inputs.job_name ]]': job };

  const opts = { lineWidth: 0, defaultStringType: 'PLAIN', defaultKeyType: 'PLAIN' };
  const about = [
    HEADER,
    `#`,
    `# artifact-relay ${command}: ${oneLine(spec.description)}`,
    `#`,
    `# Usage: include: - component: $CI_SERVER_FQDN/<group>/artifact-relay/${command}@<version>`,
    `# The job runs ${DEFAULT_IMAGE_REPOSITORY}:${PACKAGE_VERSION} (inputs image_repository, image_tag). When`,
    `# including the component by SHA or branch, pass the image_tag of a matching build.`,
    `# Works with GitLab 17.0 and later (the header has spec:inputs only). GIT_STRATEGY empty needs GitLab Runner 17.3+.`,
    `# Inputs are passed to the job as INPUT_<NAME> variables; an empty value means the CLI default.`,
  ].join('\n');
  const bodyOpts = { ...opts, defaultStringType: 'QUOTE_DOUBLE' };
  return `${about}\n${stringify(header, opts)}---\n${stringify(body, bodyOpts)}`;
}

function mdEscape(text) {
  return String(text).replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function formatDefault(value) {
  if (Array.isArray(value)) return value.length ? `\`${JSON.stringify(value)}\`` : '`[]`';
  if (value === '') return '`""`';
  return `\`${String(value)}\``;
}

export function inputsTable(command, spec) {
  const rows = ['| Input | Type | Default | Description |', '| --- | --- | --- | --- |'];
  for (const [name, input] of Object.entries(templateOnlyInputs(command, spec))) {
    rows.push(`| \`${name}\` | ${input.type} | ${formatDefault(input.default)} | ${mdEscape(input.description)} (template only) |`);
  }
  for (const [name, input] of Object.entries(spec.inputs ?? {})) {
    const type = input.type ?? 'string';
    let description = oneLine(input.description);
    if (input.options) description += ` One of: ${input.options.map((o) => `\`${o}\``).join(', ')}.`;
    if (input.secret) description += ' Secret: never logged.';
    const tdef = templateDefault(command, name, input);
    let def = formatDefault(input.default ?? tdef);
    if (!isVariableDefault(input) && JSON.stringify(tdef) !== JSON.stringify(input.default ?? tdef)) {
      def += ` (template: ${formatDefault(tdef)})`;
    }
    rows.push(`| \`${name}\` | ${type} | ${mdEscape(def)} | ${mdEscape(description)} |`);
  }
  return rows.join('\n');
}

export function outputsTable(_command, spec) {
  const rows = ['| Variable | Description |', '| --- | --- |'];
  for (const [name, out] of Object.entries(spec.outputs ?? {})) rows.push(`| \`${name}\` | ${mdEscape(oneLine(out.description))} |`);
  return rows.join('\n');
}

/** Replaces every marked section in README text; returns the new text (unchanged when there are no markers). */
export function updateReadme(text, commands) {
  let out = text;
  for (const [command, spec] of Object.entries(commands)) {
    for (const [kind, table] of [
      ['INPUTS', () => inputsTable(command, spec)],
      ['OUTPUTS', () => outputsTable(command, spec)],
    ]) {
      const begin = `<!-- BEGIN ${kind} ${command} -->`;
      const end = `<!-- END ${kind} ${command} -->`;
      const b = out.indexOf(begin);
      const e = out.indexOf(end);
      if (b < 0 || e < 0 || e < b) continue;
      out = `${out.slice(0, b + begin.length)}\n${table()}\n${out.slice(e)}`;
    }
  }
  return out;
}

export async function loadComponent(dir = root) {
  return parse(await readFile(`${dir}component.yml`, 'utf8'), { merge: true });
}

/** Returns [{file, content}] for every generated template. */
export function generate(component) {
  const commands = component.commands ?? {};
  return Object.entries(commands).map(([command, spec]) => ({
    file: `templates/${command}.yml`,
    content: buildTemplate(command, spec),
  }));
}

async function main() {
  const check = process.argv.includes('--check');
  const component = await loadComponent();
  const drifted = [];
  const files = generate(component);
  for (const { file, content } of files) {
    const path = `${root}${file}`;
    const current = existsSync(path) ? await readFile(path, 'utf8') : null;
    if (current === content) continue;
    if (check) drifted.push(current === null ? `${file} (missing)` : file);
    else {
      await mkdir(`${root}templates`, { recursive: true });
      await writeFile(path, content);
      console.log(`wrote ${file}`);
    }
  }
  if (check && existsSync(`${root}templates`)) {
    const wanted = new Set(files.map((f) => f.file));
    for (const name of await readdir(`${root}templates`)) {
      if (name.endsWith('.yml') && !wanted.has(`templates/${name}`)) drifted.push(`templates/${name} (no such command in component.yml)`);
    }
  }
  const readme = `${root}README.md`;
  if (existsSync(readme)) {
    const text = await readFile(readme, 'utf8');
    const next = updateReadme(text, component.commands ?? {});
    if (next !== text) {
      if (check) drifted.push('README.md (input/output tables)');
      else {
        await writeFile(readme, next);
        console.log('wrote README.md tables');
      }
    }
  }
  if (check && drifted.length > 0) {
    console.error(`Out of date (run npm run templates):\n${drifted.map((d) => `  ${d}`).join('\n')}`);
    process.exit(1);
  }
  if (check) console.log(`templates up to date (${files.length})`);
  const tagAt = process.argv.indexOf('--tag');
  if (tagAt >= 0) {
    const tag = process.argv[tagAt + 1] ?? '';
    if (tag !== PACKAGE_VERSION) {
      console.error(
        `Tag ${JSON.stringify(tag)} is not package.json's version ${PACKAGE_VERSION}, the templates' default image_tag: a catalog include of this tag would run another image. Set "version" to ${tag}, run npm run templates, commit, and tag that commit.`,
      );
      process.exit(1);
    }
    console.log(`tag ${tag} is the templates' default image_tag`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
