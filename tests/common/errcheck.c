/* Bad-input table support (see errcheck.h). */
#include "errcheck.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

unsigned char* ec_slots[EC_NSLOTS];
static unsigned char* ec_snapshot[EC_NSLOTS];

void ec_init(void) {
  for (int s = 0; s < EC_NSLOTS; s++) {
    ec_slots[s] = (unsigned char*)tk_aligned_alloc(64, EC_SLOT_BYTES);
    ec_snapshot[s] = (unsigned char*)tk_xmalloc(EC_SLOT_BYTES);
  }
  ec_zero();
}

void ec_free(void) {
  for (int s = 0; s < EC_NSLOTS; s++) {
    tk_aligned_free(ec_slots[s]);
    free(ec_snapshot[s]);
    ec_slots[s] = ec_snapshot[s] = NULL;
  }
}

void ec_fill_pattern(void) {
  for (int s = 0; s < EC_NSLOTS; s++)
    for (int i = 0; i < EC_SLOT_BYTES; i++) ec_slots[s][i] = (unsigned char)(0xA5 ^ (i * 7) ^ s);
  for (int s = 0; s < EC_NSLOTS; s++) memcpy(ec_snapshot[s], ec_slots[s], EC_SLOT_BYTES);
}

void ec_zero(void) {
  for (int s = 0; s < EC_NSLOTS; s++) {
    memset(ec_slots[s], 0, EC_SLOT_BYTES);
    memset(ec_snapshot[s], 0, EC_SLOT_BYTES);
  }
}

int ec_changed_slot(void) {
  for (int s = 0; s < EC_NSLOTS; s++)
    if (memcmp(ec_snapshot[s], ec_slots[s], EC_SLOT_BYTES) != 0) return s;
  return -1;
}

bool ec_contains(const char* hay, const char* needles) {
  char buf[128];
  const char* n = needles;
  while (*n) {
    size_t len = strcspn(n, "|");
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, n, len);
    buf[len] = 0;
    for (const char* h = hay; *h; h++) {
      size_t i = 0;
      while (buf[i] && h[i] && tolower((unsigned char)h[i]) == tolower((unsigned char)buf[i])) i++;
      if (!buf[i]) return true;
    }
    n += len;
    if (*n == '|') n++;
  }
  return false;
}

void ec_expect(const char* name, const char* fn, linattn_status got, linattn_status want, const char* needle) {
  const char* msg = linattn_last_error();
  tk_check(got == want, "%s [%s]: status %s, expected %s (message \"%s\")", name, fn, linattn_status_string(got),
           linattn_status_string(want), msg ? msg : "(null)");
  if (want != LINATTN_SUCCESS) {
    tk_check(msg && msg[0] && (!needle || ec_contains(msg, needle)), "%s [%s]: message \"%s\" does not name \"%s\"",
             name, fn, msg ? msg : "(null)", needle ? needle : "");
    int s = ec_changed_slot();
    tk_check(s < 0, "%s [%s]: buffer slot %d was written by a failing call", name, fn, s);
  }
}

linattn_tensor ec_tensor3(int slot, linattn_dtype dt, int64_t a, int64_t b, int64_t c) {
  int64_t d[3] = {a, b, c};
  return linattn_make_tensor(ec_slots[slot], dt, 3, d);
}
