// `npm run demo`: starts the embedded GitLab simulator on 127.0.0.1, runs the real bundle's fetch against
// it as a CI job would, and shows what was unpacked. Nothing outside a temp folder is touched.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, lstatSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSimulator } from './simulator/index.ts';

const bundle = fileURLToPath(new URL('../dist/artifact-relay.mjs', import.meta.url));

// The archive is made by a real archiver (Python's zipfile), with modes and a symlink.
const MAKE_ARCHIVE = `
import sys, zipfile, stat
z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)
def add(name, data, mode):
    info = zipfile.ZipInfo(name, (2026, 11, 25, 12, 0, 0))
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)
add('dist/', b'', stat.S_IFDIR | 0o755)
add('dist/app', b'#!/bin/sh\\necho "hello from the upstream build"\\n', stat.S_IFREG | 0o755)
add('dist/config.json', b'{"version": "1.4.2", "commit": "9f2c1e7"}\\n', stat.S_IFREG | 0o644)
add('reports/build.log', b''.join(b'line %d: compiled module %d\\n' % (i, i) for i in range(2000)), stat.S_IFREG | 0o644)
add('current', b'dist/app', stat.S_IFLNK | 0o777)
z.close()
`;

function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      const rel = relative(dir, p);
      const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
      if (st.isSymbolicLink()) out.push(`  ${mode} ${rel} -> ${readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.push(`  ${mode} ${rel}/`);
        walk(p);
      } else out.push(`  ${mode} ${rel}  (${st.size} bytes)`);
    }
  };
  walk(dir);
  return out;
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'artifact-relay-demo-'));
  const archive = join(work, 'artifacts.zip');
  execFileSync('python3', ['-c', MAKE_ARCHIVE, archive]);

  const sim = await startSimulator({ downloadMode: 'redirect' });
  const downstream = sim.addProject({ path: 'demo-group/deploy' });
  // The upstream project lets the downstream's job tokens in (Settings > CI/CD > Job token permissions).
  const upstream = sim.addProject({ path: 'demo-group/upstream-app', jobTokenAllowlist: [downstream.id] });
  const oldPipeline = sim.addPipeline({ projectId: upstream.id, ref: 'main', status: 'success' });
  sim.addJob({ pipelineId: oldPipeline.id, name: 'build', status: 'success', archive });
  const pipeline = sim.addPipeline({ projectId: upstream.id, ref: 'main', status: 'success' });
  const build = sim.addJob({ pipelineId: pipeline.id, name: 'build', status: 'success', archive });
  const deployPipeline = sim.addPipeline({ projectId: downstream.id, ref: 'main', status: 'running', source: 'pipeline' });
  const deployJob = sim.addJob({ pipelineId: deployPipeline.id, name: 'deploy', status: 'running' });
  const jobToken = 'glcbt-demo-job-token-0123456789';
  sim.addJobToken(jobToken, deployJob.id);

  const projectDir = join(work, 'workspace');
  console.log(`GitLab simulator on ${sim.url} (object storage on ${sim.storageUrl})`);
  console.log(
    `Upstream project ${upstream.path}: pipeline ${pipeline.id}, job ${build.id} "build" with an archive made by Python's zipfile.`,
  );
  console.log(
    `Running: artifact-relay fetch --project ${upstream.path} --job-id ${build.id} --path artifacts (as job ${deployJob.id} of ${downstream.path}, with its job token)\n`,
  );

  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    CI: 'true',
    CI_SERVER_URL: sim.url,
    CI_API_V4_URL: sim.apiUrl,
    CI_JOB_TOKEN: jobToken,
    CI_PROJECT_ID: String(downstream.id),
    CI_PROJECT_DIR: projectDir,
    INPUT_PROJECT: upstream.path,
    INPUT_JOB_ID: String(build.id),
    INPUT_PATH: 'artifacts',
    INPUT_DOTENV: 'artifact-relay.env',
    INPUT_SUMMARY: 'artifact-relay.json',
  };
  const status = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [bundle, 'fetch'], { env, stdio: 'inherit' });
    child.on('close', resolve);
  });
  console.log(`\nexit code ${status}`);
  if (status === 0) {
    console.log(`\nUnpacked into $CI_PROJECT_DIR/artifacts:`);
    console.log(tree(join(projectDir, 'artifacts')).join('\n'));
    console.log(`\nartifact-relay.env (dotenv report for later jobs):`);
    console.log(readFileSync(join(projectDir, 'artifact-relay.env'), 'utf8').trimEnd().replace(/^/gm, '  '));
    const storageHits = sim.requests.filter((r) => r.origin === 'storage');
    const leaked = storageHits.some((r) => r.headers['job-token'] || r.headers['private-token'] || r.headers.authorization);
    console.log(`\nObject storage saw ${storageHits.length} request(s), ${leaked ? 'WITH' : 'without'} a token header.`);
  }
  await sim.close();
  rmSync(work, { recursive: true, force: true });
  process.exit(status ?? 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
