// Runs on its own thread inside a plugin host: when the sandbox node that started
// the host is gone, the host kills itself, even if a plugin keeps its main thread busy.
import { workerData } from 'node:worker_threads';

const { parentPid } = workerData as { parentPid: number };
setInterval(() => {
  if (process.ppid !== parentPid) process.kill(process.pid, 'SIGKILL');
}, 1000);
