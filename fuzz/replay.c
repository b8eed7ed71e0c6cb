/*
** fuzz/replay.c: a main for a harness without libFuzzer (as libFuzzer's
** StandaloneFuzzTargetMain.c): runs LLVMFuzzerTestOneInput once on each
** file named, or on each file of a folder named, and prints how many ran.
** make test-replay runs fuzz/corpus/NAME this way under ASan+UBSan, so
** the seeds and every former crash stay tested without clang.
*/
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"

/* Run the harness on the file at path; 1 if it ran. */
static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  long n;
  uint8_t *buf;
  if (f == NULL) return 0;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc(n > 0 ? (size_t)n : 1);
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "replay: cannot read %s\n", path);
    exit(1);
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  free(buf);
  return 1;
}

int main(int argc, char **argv) {
  int count = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
      DIR *d = opendir(argv[i]);
      struct dirent *e;
      char path[4096];
      while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
        count += run_file(path);
      }
      if (d != NULL) closedir(d);
    } else {
      count += run_file(argv[i]);
    }
  }
  printf("replay: %s: %d inputs\n", argv[0], count);
  return 0;
}
