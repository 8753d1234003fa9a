/*
 * Plain driver for the fuzz targets when libFuzzer is not available (gcc builds, CI): runs
 * LLVMFuzzerTestOneInput once on every file named on the command line, or on every file of
 * a named directory (sorted, so runs are reproducible). Exit 0 when all inputs ran; a failing
 * input aborts inside the target, after printing what failed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static int run_file(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    return 0;
  }
  uint8_t* buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? 2 * cap : 4096;
      buf = (uint8_t*)realloc(buf, cap);
      if (!buf) abort();
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    if (got == 0) break;
    n += got;
  }
  fclose(f);
  /* exact-size copy, so reads past the input are caught by ASan as in libFuzzer */
  uint8_t* exact = (uint8_t*)malloc(n ? n : 1);
  if (!exact) abort();
  memcpy(exact, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
  return 1;
}

static int cmp_str(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

int main(int argc, char** argv) {
  long ran = 0;
  int missing = 0;
  for (int a = 1; a < argc; a++) {
    struct stat sb;
    if (stat(argv[a], &sb) != 0) {
      fprintf(stderr, "no such file or directory: %s\n", argv[a]);
      missing = 1;
      continue;
    }
    if (!S_ISDIR(sb.st_mode)) {
      ran += run_file(argv[a]);
      continue;
    }
    DIR* d = opendir(argv[a]);
    if (!d) continue;
    char** names = NULL;
    size_t nn = 0, cap = 0;
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      if (nn == cap) {
        cap = cap ? 2 * cap : 64;
        names = (char**)realloc(names, cap * sizeof *names);
        if (!names) abort();
      }
      size_t len = strlen(argv[a]) + strlen(e->d_name) + 2;
      names[nn] = (char*)malloc(len);
      snprintf(names[nn], len, "%s/%s", argv[a], e->d_name);
      nn++;
    }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp_str);
    for (size_t i = 0; i < nn; i++) {
      ran += run_file(names[i]);
      free(names[i]);
    }
    free(names);
  }
  printf("replayed %ld inputs\n", ran);
  return missing || ran == 0 ? 1 : 0;
}
