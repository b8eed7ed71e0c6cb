// node_server.js: the Node.js peer of bench/echo, run with `node`.
// Listens on three ports of 127.0.0.1 picked by the kernel and prints them
// as "ECHO <port>", "LINES <port>" and "HTTP <port>": the first writes back
// what it reads, the second answers each "\r\n"-terminated line with the
// line (the answers to one read in one write), the third answers each
// request (up to "\r\n\r\n") with a fixed 200 response, on net sockets as
// the spindle and luv servers do. Runs until SIGTERM or SIGINT.
'use strict';
const net = require('net');

const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n' +
  'Content-Length: 13\r\n\r\nHello, world!');
const MAX_LINE = 16384;

function echo(sock) {
  sock.setNoDelay(true);
  sock.on('data', (d) => sock.write(d));
  sock.on('error', () => sock.destroy());
}

function lines(sock) {
  sock.setNoDelay(true);
  let rest = null;
  sock.on('data', (d) => {
    if (rest) d = Buffer.concat([rest, d]);
    let pos = 0, end = -1;
    for (let i = d.indexOf(10); i >= 0; i = d.indexOf(10, i + 1)) {
      if (i > 0 && d[i - 1] === 13) end = i + 1;
    }
    if (end > 0) {
      sock.write(d.subarray(0, end));
      pos = end;
    }
    rest = pos < d.length ? d.subarray(pos) : null;
    if (rest && rest.length > MAX_LINE) sock.destroy();
  });
  sock.on('error', () => sock.destroy());
}

function http(sock) {
  sock.setNoDelay(true);
  let match = 0;
  sock.on('data', (d) => {
    let n = 0;
    for (let i = 0; i < d.length; i++) {
      const c = d[i];
      if (c === (match & 1 ? 10 : 13)) {
        if (++match === 4) { n++; match = 0; }
      } else {
        match = c === 13 ? 1 : 0;
      }
    }
    if (n === 1) sock.write(RESPONSE);
    else if (n > 1) sock.write(Buffer.concat(Array(n).fill(RESPONSE)));
  });
  sock.on('error', () => sock.destroy());
}

function listen(handler) {
  return new Promise((resolve) => {
    const server = net.createServer(handler);
    server.listen({port: 0, host: '127.0.0.1', backlog: 1024},
      () => resolve(server.address().port));
  });
}

(async () => {
  const e = await listen(echo), l = await listen(lines), h = await listen(http);
  process.stdout.write(`ECHO ${e}\nLINES ${l}\nHTTP ${h}\n`);
})();
for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => process.exit(0));
