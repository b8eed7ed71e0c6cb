// bench/timers/node.js N: the Node.js peer of timers/spindle.lua.
'use strict';
const n = Number(process.argv[2] || 200000);
let fired = 0;
const t0 = process.hrtime.bigint();
const tick = () => {
  if (++fired === n) {
    console.log(`node ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(3)}`);
  }
};
for (let i = 1; i <= n; i++) setTimeout(tick, i % 100);
