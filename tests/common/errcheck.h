/*
 * Support for the bad-input tables (test_api_errors*.c): fixed buffer slots that every
 * descriptor points into, a byte pattern + snapshot to prove a failing call wrote nothing,
 * and the expectation check (status, message naming the argument, buffers untouched).
 */
#ifndef LINATTN_TEST_ERRCHECK_H
#define LINATTN_TEST_ERRCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "linattn.h"

enum { EC_SLOT_BYTES = 1 << 16, EC_NSLOTS = 9, EC_WS_SLOT = 8 };
/* 64-byte aligned buffers, EC_SLOT_BYTES each; slot EC_WS_SLOT is for workspaces. */
extern unsigned char* ec_slots[EC_NSLOTS];

void ec_init(void);
void ec_free(void);
/* Fills every slot with a pattern and snapshots it. */
void ec_fill_pattern(void);
/* Zeroes every slot (finite inputs for calls that must succeed). */
void ec_zero(void);
/* Index of the first slot that differs from the snapshot, or -1. */
int ec_changed_slot(void);
/* Case-insensitive: does hay contain one of the '|'-separated needles? */
bool ec_contains(const char* hay, const char* needles);
/* One row's expectation: status; for failures also a message containing needle (NULL: any
 * non-empty message) and no slot changed since ec_fill_pattern. */
void ec_expect(const char* name, const char* fn, linattn_status got, linattn_status want, const char* needle);
/* Packed rank-3 descriptor over a slot. */
linattn_tensor ec_tensor3(int slot, linattn_dtype dt, int64_t a, int64_t b, int64_t c);

#endif
