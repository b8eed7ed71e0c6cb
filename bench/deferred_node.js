// bench/deferred_node.js [seconds]: the Node.js peer of bench/deferred.lua:
// chains per second, a chain being a Promise, ten .then callbacks, resolved
// (run in batches of 10000, each batch awaited). Prints "node <chains/s>".
'use strict';
const secs = Number(process.argv[2] || 1);
const inc = (x) => x + 1;
function chain() {
  let resolve;
  const p = new Promise((r) => { resolve = r; });
  const q = p.then(inc).then(inc).then(inc).then(inc).then(inc)
    .then(inc).then(inc).then(inc).then(inc).then(inc);
  resolve(0);
  return q;
}
(async () => {
  const batch = 10000;
  let n = 0;
  const t0 = process.hrtime.bigint();
  const el = () => Number(process.hrtime.bigint() - t0) / 1e9;
  do {
    const ps = new Array(batch);
    for (let i = 0; i < batch; i++) ps[i] = chain();
    const r = await Promise.all(ps);
    if (r[0] !== 10) throw new Error('a chain must end with 10');
    n += batch;
  } while (el() < secs);
  console.log(`node ${(n / el()).toFixed(0)}`);
})();
