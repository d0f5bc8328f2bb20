// `node --import tsx test/simulator/cli.ts [archive.zip] [--mode redirect|proxy|local]`:
// starts a simulator with a demo project and prints its URLs and tokens; Ctrl-C stops it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSimulator } from './index.ts';
import type { DownloadMode } from './index.ts';

const args = process.argv.slice(2);
const modeAt = args.indexOf('--mode');
const mode = (modeAt >= 0 ? args[modeAt + 1] : 'redirect') as DownloadMode;
let archive = args.find((a, i) => !a.startsWith('--') && (modeAt < 0 || i !== modeAt + 1));
if (!archive) {
  archive = join(mkdtempSync(join(tmpdir(), 'gitlab-sim-')), 'artifacts.zip');
  execFileSync('python3', [
    '-c',
    "import sys,zipfile\nz=zipfile.ZipFile(sys.argv[1],'w')\nz.writestr('dist/hello.txt','hello\\n')\nz.writestr('dist/app.json','{\"ok\":true}')\nz.close()",
    archive,
  ]);
}

const sim = await startSimulator({ downloadMode: mode });
const group = sim.addGroup({ path: 'demo' });
const upstream = sim.addProject({ path: 'upstream', groupId: group.id });
const downstream = sim.addProject({ path: 'downstream', groupId: group.id });
upstream.jobTokenAllowlist.push(downstream.id);
const pipeline = sim.addPipeline({ projectId: upstream.id, ref: 'main' });
const build = sim.addJob({ pipelineId: pipeline.id, name: 'build', archive });
const dPipeline = sim.addPipeline({
  projectId: downstream.id,
  ref: 'main',
  status: 'running',
  upstream: { projectId: upstream.id, pipelineId: pipeline.id },
});
const dJob = sim.addJob({ pipelineId: dPipeline.id, name: 'deploy', status: 'running' });
sim.addJobToken('demo-job-token', dJob.id);
sim.addAccessToken('demo-maintainer-token', { role: 'maintainer' });

console.log(`GitLab API:      ${sim.apiUrl}`);
console.log(`Object storage:  ${sim.storageUrl}  (download mode: ${sim.downloadMode})`);
console.log(`Upstream:        ${upstream.path} (id ${upstream.id}), pipeline ${pipeline.id}, job ${build.id} "build"`);
console.log(`Downstream job:  ${dJob.id} in ${downstream.path}; JOB-TOKEN demo-job-token; PRIVATE-TOKEN demo-maintainer-token`);
console.log(`Try: curl -L -H 'JOB-TOKEN: demo-job-token' ${sim.apiUrl}/projects/${upstream.id}/jobs/${build.id}/artifacts -o a.zip`);

process.on('SIGINT', () => {
  void sim.close().then(() => process.exit(0));
});
