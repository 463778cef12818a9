/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_OVL_I_H
#define PBSLM_OVL_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "compiler.h"
#include "ovl.h"
#include "util.h"

/*
 * The inside of ovl, shared by ovl.c (the states in memory, marks,
 * commits) and ovl_file.c (the state file's format, replay and
 * compaction, and the guest journal).  See the top of ovl.c.
 */

#define HDR_SIZE 4096
#define HDR_MAGIC "PBSLMST1"
#define HDR_VERSION 3	/* 3: run entries; 2 is read (and rewritten) */
#define REC_MAGIC 0x44434552u	/* "RECD" */
#define ENT_STATE 0
#define ENT_TRACE 1
#define ENT_RUN 2
#define BM_GROUP 4096	/* chunks per page of bitmap pointers */
#define NLOCKS 256
#define TRACE_MAX 4096
#define JOURNAL_MIN (1u << 20)
#define ST_GUEST 0x80	/* in a record's state byte: guest wrote here */
#define VJ_MAGIC "PBSLMVJ1"
#define VJ_HDR 64	/* magic, boot id (text), zeros */
#define VJ_REC 24	/* chunk 8, first 4, count 4, flags 4, CRC 4 */

/* A growing list of chunk numbers. */
struct list {
	uint64_t *v;
	size_t n;
	size_t cap;
};

static inline void list_add(struct list *l, uint64_t c)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = c;
}

/* Take the list's entries (caller frees), leaving it empty. */
static inline uint64_t *list_take(struct list *l, size_t *n)
{
	uint64_t *v = l->v;

	*n = l->n;
	*l = (struct list){ 0 };
	return v;
}

static inline bool bit_get(const uint64_t *a, uint64_t i)
{
	return __atomic_load_n(&a[i / 64], __ATOMIC_ACQUIRE) &
	       (1ull << (i % 64));
}

static inline void bit_set(uint64_t *a, uint64_t i)
{
	__atomic_or_fetch(&a[i / 64], 1ull << (i % 64), __ATOMIC_RELEASE);
}

static inline void bit_clear(uint64_t *a, uint64_t i)
{
	__atomic_and_fetch(&a[i / 64], ~(1ull << (i % 64)), __ATOMIC_RELEASE);
}

static inline uint64_t *bits_new(uint64_t n)
{
	return xcalloc((n + 63) / 64, sizeof(uint64_t));
}

struct ovl {
	struct ovl_conf conf;		/* immutable */
	char *path;			/* immutable */
	char *tmp_path;			/* immutable */
	uint64_t nchunks;		/* immutable */
	uint64_t bpc;			/* immutable: blocks per chunk */
	size_t bmlen;			/* immutable: bitmap bytes */
	uint8_t *state;			/* atomic bytes */
	uint8_t ***bitmap;		/* pages; both levels atomic pointers,
					   set under the chunk lock; bits
					   atomic */
	uint64_t *guest;		/* atomic bits: guest wrote chunk */
	uint64_t *guest_durable;	/* atomic bits: that mark is on disk */
	uint64_t present_bytes;		/* atomic */
	pthread_mutex_t chunk_locks[NLOCKS];
	pthread_mutex_t dirty_lock;
	uint64_t *dirty;		/* bits; protected by ->dirty_lock */
	struct list dirty_list;		/* protected by ->dirty_lock */
	struct list intent_list;	/* protected by ->dirty_lock */
	uint64_t *intent;		/* bits; protected by ->dirty_lock */
	uint64_t *trace;		/* entries immutable once counted */
	size_t ntrace;			/* atomic (release after entry) */
	uint64_t *traced;		/* atomic bits; set under ->dirty_lock */
	pthread_mutex_t commit_lock;
	int fd;				/* protected by ->commit_lock */
	uint64_t gen;			/* protected by ->commit_lock */
	uint64_t journal_bytes;		/* protected by ->commit_lock */
	uint64_t compact_bytes;		/* protected by ->commit_lock */
	size_t trace_committed;		/* protected by ->commit_lock */
	bool created;			/* immutable: no state file before */
	bool old_format;		/* immutable: read a format 2 file */
	/* The guest journal (see the top of the file). */
	pthread_mutex_t vol_lock;	/* innermost lock */
	int vfd[2];			/* immutable; -1 without a journal */
	char *vpath[2];			/* immutable */
	char boot_id[40];		/* immutable */
	unsigned int vcur;		/* protected by ->vol_lock: active */
	uint64_t vcount[2];		/* protected by ->vol_lock: records */
};

static inline void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint32_t get32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline uint64_t chunk_bytes(const struct ovl *o, uint64_t c)
{
	return MIN(o->conf.chunk_size, o->conf.size - c * o->conf.chunk_size);
}

static inline uint64_t chunk_blocks(const struct ovl *o, uint64_t c)
{
	return (chunk_bytes(o, c) + o->conf.block_size - 1) /
	       o->conf.block_size;
}

static inline uint64_t block_bytes(const struct ovl *o, uint64_t blk)
{
	return MIN(o->conf.block_size, o->conf.size - blk * o->conf.block_size);
}

static inline uint8_t *bm_get(const struct ovl *o, uint64_t c)
{
	uint8_t **page = __atomic_load_n(&o->bitmap[c / BM_GROUP],
					 __ATOMIC_ACQUIRE);

	return page ? __atomic_load_n(&page[c % BM_GROUP], __ATOMIC_ACQUIRE) :
		      NULL;
}


struct rec {
	struct buf b;
	uint32_t n;
};

struct run {
	uint64_t first;
	uint64_t n;
	uint8_t st;
};

static inline int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a;
	uint64_t y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Across the two files. */
int ovl_apply_bits(struct ovl *o, uint64_t c, uint64_t first, uint64_t n,
		      uint64_t *added);
void ovl_note_dirty(struct ovl *o, uint64_t c);
int ovl_file_compact(struct ovl *o);
int ovl_file_load(struct ovl *o);
int ovl_file_open_locked(struct ovl *o, bool *created);
int ovl_rec_begin(struct rec *r, uint64_t gen);
int ovl_rec_chunk(struct rec *r, struct run *run, uint64_t c, uint8_t st,
		     const uint8_t *bm, size_t bmlen);
int ovl_rec_end(struct rec *r);
int ovl_rec_trace(struct rec *r, uint64_t c);
int ovl_run_flush(struct rec *r, struct run *run);
void ovl_vj_done(struct ovl *o, int old);
int ovl_vj_open(struct ovl *o);
int ovl_vj_switch(struct ovl *o);

#endif
