// Starts `specula serve` for the server tests: on port 0, resolved once it prints the port it
// bound, and killed when the test file ends.
import { spawn } from 'node:child_process';

const started = [];

// Spawns `BIN serve ARGS... --port 0`. Resolves with the process once it listens, carrying
// .port, .base ('http://127.0.0.1:PORT'), .log (its stderr so far), .exited (a promise of
// { code, signal }) and .exitCode_ (undefined while it runs); rejects with its log if it does not
// listen within timeoutMs.
export function startServer(bin, args, { timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, ['serve', ...args, '--port', '0'],
                       { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.log = '';
    const timer = setTimeout(() => reject(new Error('server did not start: ' + proc.log)), timeoutMs);
    proc.stderr.on('data', (d) => {
      proc.log += d;
      const m = proc.log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m && !proc.port) {
        clearTimeout(timer);
        proc.port = Number(m[1]);
        proc.base = `http://127.0.0.1:${proc.port}`;
        resolve(proc);
      }
    });
    proc.exited = new Promise((res) => proc.on('exit', (code, signal) => {
      proc.exitCode_ = code;
      res({ code, signal });
    }));
    started.push(proc);
  });
}

// SIGKILLs every server started here that still runs (give it to node:test's after()).
export function killServers() {
  for (const s of started) if (s.exitCode_ === undefined && s.signalCode === null) s.kill('SIGKILL');
}
