/*
** fuzz/http.c: spindle.web's HTTP parsers (runtime/http.c on llhttp and
** web.lua's policy above it), both sides, through their Lua API; the
** Lua half is fuzz/http.lua, whose check() feeds the same bytes whole,
** in input-chosen chunks and byte by byte and raises when the three runs
** disagree, which aborts. Runs from the repository's top folder (it reads
** fuzz/http.lua and spec/support/string_transport.lua).
**
** Input layout:
**   byte 0   mode, % 4: 0 server (web.Site with a function handler,
**            request bodies whole), 1 server with streamRequestBody,
**            2 client (spindle._http.ResponseParser), 3 client after a
**            HEAD request (parser:setNoBody(true)).
**   byte 1   limits, two bits each, from the low bits up:
**            maxHeaderBytes {16384, 48, 120, 400}, maxHeaders
**            {500, 1, 3, 8}, maxUrlLength {8192, 4, 12, 40} and
**            maxBodyBytes {10 MiB, 0, 5, 64} (the client parser takes
**            the first two).
**   byte 2   ncuts, % 16: the number of chunk sizes that follow.
**   ncuts    chunk sizes, each % 64 + 1 bytes; what is left after them
**            goes in one more chunk.
**   rest     the bytes: requests (server) or responses (client).
** On the server the handler's answer depends on the request path's
** second byte: "c" two writes (chunked; close-delimited for HTTP/1.0),
** "n" 204, "m" 304, "x" an echoed X header and status 201, "d" answered
** after the dataReceived call returns (the parser blocks meanwhile),
** anything else one string; the body echoes the method, path, protocol,
** body length and sorted request headers (fuzz/http.lua).
*/
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_check_lua("fuzz/http.lua", data, size);
  return 0;
}
