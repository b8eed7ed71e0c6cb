// node_cluster.js: the Node.js peer of bench/run.py's `workers` rows, run
// as `node node_cluster.js N PORT`. The primary forks N workers with the
// cluster module (its default scheduling on Linux, round-robin: the
// primary accepts every connection and hands it to a worker in turn);
// each worker listens on 127.0.0.1:PORT, writes back what it reads, and
// prints "WORKER <cluster.worker.id> <pid> ECHO <port>" once it listens,
// as bench/workers/spindle_echo.lua does. SIGTERM or SIGINT to the
// primary stops the workers and exits 0; a worker that dies makes the
// primary stop the others and exit 1.
'use strict';
const cluster = require('cluster');
const net = require('net');

const count = Number(process.argv[2]);
const port = Number(process.argv[3]);
if (!(count >= 1) || !(port > 0)) {
  process.stderr.write('usage: node node_cluster.js WORKERS PORT\n');
  process.exit(2);
}

if (cluster.isPrimary) {
  let stopping = false;
  for (let i = 0; i < count; i++) cluster.fork();
  cluster.on('exit', (w, code) => {
    if (stopping) return;
    process.stderr.write(`worker ${w.id} exited (${code}); stopping\n`);
    stop();
    process.exitCode = 1;
  });
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill();
    process.exit();
  };
  for (const s of ['SIGTERM', 'SIGINT']) process.on(s, stop);
} else {
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    sock.on('data', (d) => sock.write(d));
    sock.on('error', () => sock.destroy());
  });
  server.listen({port, host: '127.0.0.1', backlog: 1024}, () => {
    process.stdout.write(`WORKER ${cluster.worker.id} ${process.pid} ` +
      `ECHO ${server.address().port}\n`);
  });
}
