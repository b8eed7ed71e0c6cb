// bench/web/hello_node.js: Node's http hello world for bench/web/run.sh.
//   node bench/web/hello_node.js PORT
const http = require("http");
http.createServer((req, res) => {
  res.setHeader("Content-Type", "text/html");
  res.end("hello world");
}).listen(Number(process.argv[2]), "127.0.0.1", 1024, () => {
  console.log("listening");
});
