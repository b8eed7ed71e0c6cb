// bench/threads/node.js [seconds]: the Node.js peer of threads/spindle.lua:
// a tiny function (x + 1) on a worker thread (worker_threads, one worker,
// values copied by postMessage), the result back on the main thread, which
// sends the next; WINDOW calls in flight.
'use strict';
const {Worker} = require('worker_threads');
const secs = Number(process.argv[2] || 2);
const WINDOW = 64;
const w = new Worker(
  "const {parentPort} = require('worker_threads');" +
  "const inc = (x) => x + 1;" +
  "parentPort.on('message', (x) => parentPort.postMessage(inc(x)));",
  {eval: true});
let done = 0, sent = 0, stopping = false;
const t0 = process.hrtime.bigint();
const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e9;
w.on('message', () => {
  done++;
  if (!stopping && elapsed() >= secs) stopping = true;
  if (!stopping) { sent++; w.postMessage(sent); }
  else if (done === sent) {
    console.log(`node ${(done / elapsed()).toFixed(0)} ${done}`);
    w.terminate();
  }
});
w.on('online', () => {
  for (let i = 0; i < WINDOW; i++) { sent++; w.postMessage(sent); }
});
