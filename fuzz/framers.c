/*
** fuzz/framers.c: spindle.basic's framers (LineReceiver with both
** delimiters and raw/line switches mid-chunk, NetstringReceiver,
** Int8/16/32StringReceiver) fed the same bytes in different chunkings
** through their Lua API, so whichever file holds their C scanner is
** fuzzed; fuzz/framers.lua's check() compares the events and raises on a
** difference, which aborts. Runs from the repository's top folder (it
** reads fuzz/framers.lua and spec/support/string_transport.lua).
*/
#include "harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_check_lua("fuzz/framers.lua", data, size);
  return 0;
}
