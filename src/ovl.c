/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Allocation state and its crash-safe state file.
 *
 * In memory: one state byte per chunk (atomic), a block bitmap per chunk
 * that has ever been PARTIAL, a dirty list of chunks changed since the
 * last commit, and the access trace.  Per chunk that is a byte and a
 * few bits (a 16 TiB disk: 4 Mi chunks, 7 MiB); bitmap pointers come in
 * pages of BM_GROUP allocated on first use, lists grow as they fill.
 *
 *   ABSENT --mark some--> PARTIAL --mark rest--> PRESENT
 *   ABSENT --mark all---> PRESENT
 * A state never goes back.  The bitmap is published (release) before the
 * state byte says PARTIAL, and bits are set before PRESENT is stored, so
 * a lock-free reader never sees a state ahead of its data.
 * XXX: bitmaps are kept until ovl_free(), because lock-free readers may
 * still look at one after its chunk turned PRESENT; that costs
 * chunk_size / block_size / 8 bytes (128 for 4 MiB / 4 KiB) per chunk
 * that was ever partial.
 *
 * State file: a 4096-byte header (identity, CRC) followed by records,
 * each "RECD", entry count, generation, entries, CRC32.  Entries: one
 * chunk's state (with its bitmap when PARTIAL), a run of consecutive
 * chunks in one state (format 3), or a trace position.  A commit
 * appends one record holding the chunks changed since the previous one
 * (cost proportional to the change) and syncs the file.  On open the
 * records are replayed in order until the first one that is torn or out
 * of sequence; the file is cut there.  When the journal outgrows the
 * state it describes, a compacted file (header + one record of every
 * non-absent chunk) is written to "<path>.tmp", synced and renamed over.
 * Both kinds of write snapshot the states first and fdatasync the target
 * before the record reaches the file: a durable PRESENT never describes
 * data that was not yet durable.
 *
 * "The guest wrote this chunk" (for --verify) must be durable no later
 * than the guest's bytes.  Bytes written over absent blocks need nothing
 * more: until a commit says those blocks are present they are streamed
 * again, and the commit carries the mark.  Bytes written over present
 * blocks reach the target at once (kill -9 keeps them), so the writer
 * first makes the mark durable on its own (ovl_guest_intent): a record
 * of "ABSENT|GUEST" entries, which replay reads as the mark alone, since
 * a state never goes back.
 *
 * The guest journal: a guest write that makes blocks present is
 * acknowledged before the next commit records it, and an acknowledged
 * write must outlive the death of the process that served it (a crash,
 * kill -9, a takeover by a new server: the new server must not stream
 * the backup over it).  So before the reply, such a write appends a
 * small record (blocks, guest mark, CRC) to "<state>.v0" or ".v1",
 * without a sync: it lives in the page cache, as the write's data does.
 * Each file starts with the kernel's boot id; on open the records of
 * this boot are replayed after the state file (and queued for the next
 * commit), those of another boot ignored: after a reboot the page cache
 * is gone, and only what commits made durable counts.  A commit switches
 * new records to the other, empty file before it takes its snapshot, so
 * every record in the file it left describes a change in the snapshot,
 * and empties that file once the commit is durable.  Two files, each
 * holding about a commit interval's records.
 *
 * Ownership: the file is flock'ed (excl.c) from before its first byte is
 * read until ovl_free().  A new file is written under "<path>.new.<pid>",
 * locked, and link()ed into place, so two creators cannot both win; a
 * compacted file is locked before it is renamed over the old one, and an
 * opener checks that the inode it locked is still the one at the path.
 *
 * Locking: ->chunk_locks[] (striped) order marks of one chunk; ->dirty_lock
 * guards the dirty and intent lists; ->commit_lock serialises commits and
 * guards the file; ->vol_lock guards the guest journal's files.  Bit
 * arrays change by atomic RMW on whole words, since neighbouring chunks'
 * bits share a word under different locks.
 * Lock order: commit_lock -> chunk lock -> dirty_lock, vol_lock.  No
 * lock but commit_lock is held across fdatasync.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "compiler.h"
#include "excl.h"
#include "log.h"
#include "ovl.h"
#include "util.h"
#include "banned.h"

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

static void list_add(struct list *l, uint64_t c)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = c;
}

/* Take the list's entries (caller frees), leaving it empty. */
static uint64_t *list_take(struct list *l, size_t *n)
{
	uint64_t *v = l->v;

	*n = l->n;
	*l = (struct list){ 0 };
	return v;
}

static bool bit_get(const uint64_t *a, uint64_t i)
{
	return __atomic_load_n(&a[i / 64], __ATOMIC_ACQUIRE) &
	       (1ull << (i % 64));
}

static void bit_set(uint64_t *a, uint64_t i)
{
	__atomic_or_fetch(&a[i / 64], 1ull << (i % 64), __ATOMIC_RELEASE);
}

static void bit_clear(uint64_t *a, uint64_t i)
{
	__atomic_and_fetch(&a[i / 64], ~(1ull << (i % 64)), __ATOMIC_RELEASE);
}

static uint64_t *bits_new(uint64_t n)
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

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint64_t chunk_bytes(const struct ovl *o, uint64_t c)
{
	return MIN(o->conf.chunk_size, o->conf.size - c * o->conf.chunk_size);
}

static uint64_t chunk_blocks(const struct ovl *o, uint64_t c)
{
	return (chunk_bytes(o, c) + o->conf.block_size - 1) /
	       o->conf.block_size;
}

static uint64_t block_bytes(const struct ovl *o, uint64_t blk)
{
	return MIN(o->conf.block_size, o->conf.size - blk * o->conf.block_size);
}

static uint8_t *bm_get(const struct ovl *o, uint64_t c)
{
	uint8_t **page = __atomic_load_n(&o->bitmap[c / BM_GROUP],
					 __ATOMIC_ACQUIRE);

	return page ? __atomic_load_n(&page[c % BM_GROUP], __ATOMIC_ACQUIRE) :
		      NULL;
}

/* Publish @bm as chunk @c's bitmap; chunk lock held. */
static int bm_set(struct ovl *o, uint64_t c, uint8_t *bm)
{
	uint8_t ***slot = &o->bitmap[c / BM_GROUP];
	uint8_t **page = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	uint8_t **fresh;

	if (!page) {
		/* Chunks of one page have different locks: race to it. */
		fresh = calloc(BM_GROUP, sizeof(*fresh));
		if (!fresh)
			return -ENOMEM;
		if (__atomic_compare_exchange_n(slot, &page, fresh, false,
						__ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			page = fresh;
		else
			free(fresh);
	}
	__atomic_store_n(&page[c % BM_GROUP], bm, __ATOMIC_RELEASE);
	return 0;
}

enum ovl_state ovl_chunk_state(const struct ovl *o, uint64_t chunk)
{
	return __atomic_load_n(&o->state[chunk], __ATOMIC_ACQUIRE);
}

bool ovl_block_present(const struct ovl *o, uint64_t block)
{
	uint64_t c = block / o->bpc;
	uint64_t bit = block % o->bpc;
	uint8_t *bm;

	switch (ovl_chunk_state(o, c)) {
	case OVL_PRESENT:
		return true;
	case OVL_ABSENT:
		return false;
	default:
		bm = bm_get(o, c);
		return __atomic_load_n(&bm[bit / 8], __ATOMIC_ACQUIRE) &
		       (1u << (bit % 8));
	}
}

void ovl_lock_chunk(struct ovl *o, uint64_t chunk)
{
	pthread_mutex_lock(&o->chunk_locks[chunk % NLOCKS]);
}

void ovl_unlock_chunk(struct ovl *o, uint64_t chunk)
{
	pthread_mutex_unlock(&o->chunk_locks[chunk % NLOCKS]);
}

static void note_dirty(struct ovl *o, uint64_t c)
{
	pthread_mutex_lock(&o->dirty_lock);
	if (!bit_get(o->dirty, c)) {
		bit_set(o->dirty, c);
		list_add(&o->dirty_list, c);
	}
	pthread_mutex_unlock(&o->dirty_lock);
}

/* Set state from a bitmap; chunk lock held (or single-threaded open). */
static int apply_bits(struct ovl *o, uint64_t c, uint64_t first, uint64_t n,
		      uint64_t *added)
{
	uint64_t nb = chunk_blocks(o, c);
	uint64_t cnt = 0;
	uint8_t *bm;

	*added = 0;
	if (ovl_chunk_state(o, c) == OVL_PRESENT)
		return 0;
	if (first == 0 && n == nb && ovl_chunk_state(o, c) == OVL_ABSENT) {
		*added = chunk_bytes(o, c);
		__atomic_store_n(&o->state[c], OVL_PRESENT, __ATOMIC_RELEASE);
		return 0;
	}
	bm = bm_get(o, c);
	if (!bm) {
		bm = calloc(1, o->bmlen);
		if (!bm)
			return -ENOMEM;
		if (bm_set(o, c, bm)) {
			free(bm);
			return -ENOMEM;
		}
	}
	for (uint64_t b = first; b < first + n; b++) {
		uint8_t mask = 1u << (b % 8);

		if (!(bm[b / 8] & mask)) {
			__atomic_or_fetch(&bm[b / 8], mask, __ATOMIC_RELEASE);
			*added += block_bytes(o, c * o->bpc + b);
		}
	}
	for (uint64_t b = 0; b < nb; b++)
		cnt += !!(bm[b / 8] & (1u << (b % 8)));
	__atomic_store_n(&o->state[c], cnt == nb ? OVL_PRESENT : OVL_PARTIAL,
			 __ATOMIC_RELEASE);
	return 0;
}

int ovl_mark_present(struct ovl *o, uint64_t first, uint64_t n)
{
	uint64_t c = first / o->bpc;
	uint64_t added;
	int ret;

	if (!n)
		return 0;
	if ((first + n - 1) / o->bpc != c)
		return -EINVAL;
	ret = apply_bits(o, c, first % o->bpc, n, &added);
	if (ret)
		return ret;
	if (added) {
		__atomic_add_fetch(&o->present_bytes, added, __ATOMIC_RELAXED);
		note_dirty(o, c);
	}
	return 0;
}

void ovl_mark_guest(struct ovl *o, uint64_t chunk)
{
	if (bit_get(o->guest, chunk))
		return;
	bit_set(o->guest, chunk);
	note_dirty(o, chunk);
}

bool ovl_chunk_guest(const struct ovl *o, uint64_t chunk)
{
	return bit_get(o->guest, chunk);
}

uint64_t ovl_present_bytes(const struct ovl *o)
{
	return __atomic_load_n(&o->present_bytes, __ATOMIC_RELAXED);
}

bool ovl_is_complete(const struct ovl *o)
{
	return ovl_present_bytes(o) == o->conf.size;
}

void ovl_trace_access(struct ovl *o, uint64_t chunk)
{
	size_t n = __atomic_load_n(&o->ntrace, __ATOMIC_ACQUIRE);

	if (n >= TRACE_MAX || bit_get(o->traced, chunk))
		return;
	pthread_mutex_lock(&o->dirty_lock);
	n = o->ntrace;
	if (n < TRACE_MAX && !bit_get(o->traced, chunk)) {
		bit_set(o->traced, chunk);
		o->trace[n] = chunk;
		__atomic_store_n(&o->ntrace, n + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&o->dirty_lock);
}

size_t ovl_trace(const struct ovl *o, const uint64_t **chunks)
{
	*chunks = o->trace;
	return __atomic_load_n(&o->ntrace, __ATOMIC_ACQUIRE);
}

/* ---- the guest journal ---- */

static void vj_header(const struct ovl *o, uint8_t *h)
{
	memset(h, 0, VJ_HDR);
	memcpy(h, VJ_MAGIC, 8);
	memcpy(h + 8, o->boot_id, strlen(o->boot_id));
}

/* Empty journal file @i: just the header of this boot. */
static int vj_reset(struct ovl *o, unsigned int i)
{
	uint8_t h[VJ_HDR];

	vj_header(o, h);
	if (ftruncate(o->vfd[i], 0) < 0 ||
	    pwrite_full(o->vfd[i], h, VJ_HDR, 0))
		return -EIO;
	o->vcount[i] = 0;
	return 0;
}

/* Blocks [first, first + n) of one chunk: present, the guest's. */
static void vj_apply(struct ovl *o, uint64_t c, uint32_t first, uint32_t n)
{
	uint64_t added = 0;

	bit_set(o->guest, c);
	if (!apply_bits(o, c, first, n, &added) && added)
		__atomic_add_fetch(&o->present_bytes, added,
				   __ATOMIC_RELAXED);
	note_dirty(o, c);
}

/*
 * Open (creating) journal file @i and replay its records if they are of
 * this boot; anything else is dropped.  Single-threaded open.
 */
static int vj_load(struct ovl *o, unsigned int i)
{
	uint8_t *data = NULL;
	size_t len = 0;
	uint64_t n = 0;
	int ret;

	o->vfd[i] = open(o->vpath[i], O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (o->vfd[i] < 0) {
		ret = -errno;
		log_err("ovl: cannot open '%s': %s", o->vpath[i],
			strerror(errno));
		return ret;
	}
	ret = read_file(o->vpath[i], 1u << 30, &data, &len);
	if (ret)
		goto out;
	if (len >= VJ_HDR && !memcmp(data, VJ_MAGIC, 8) &&
	    !strncmp((char *)data + 8, o->boot_id, 36)) {
		for (size_t off = VJ_HDR; off + VJ_REC <= len; off += VJ_REC) {
			const uint8_t *r = data + off;
			uint64_t c = get64(r);
			uint32_t first = get32(r + 8);
			uint32_t cnt = get32(r + 12);

			if (get32(r + 20) != (uint32_t)crc32(0, r, 20) ||
			    c >= o->nchunks || !cnt ||
			    first >= chunk_blocks(o, c) ||
			    cnt > chunk_blocks(o, c) - first)
				break;	/* torn: the process died here */
			vj_apply(o, c, first, cnt);
			n++;
		}
		if (n)
			log_info("ovl: '%s': %llu guest writes since the last "
				 "commit, from before a restart",
				 o->vpath[i], (unsigned long long)n);
	}
	/* Replayed into the dirty list; the next commit makes them durable. */
	ret = n ? 0 : vj_reset(o, i);
	o->vcount[i] = n;
out:
	free(data);
	return ret;
}

/* Append a record of [first, first + n) (one chunk) to the active file. */
static int vj_append(struct ovl *o, uint64_t c, uint32_t first, uint32_t n)
{
	uint8_t r[VJ_REC] = { 0 };
	unsigned int i;
	int ret;

	put64(r, c);
	put32(r + 8, first);
	put32(r + 12, n);
	put32(r + 20, (uint32_t)crc32(0, r, 20));
	pthread_mutex_lock(&o->vol_lock);
	i = o->vcur;
	ret = pwrite_full(o->vfd[i], r, VJ_REC,
			  (off_t)(VJ_HDR + o->vcount[i] * VJ_REC));
	if (!ret)
		o->vcount[i]++;
	pthread_mutex_unlock(&o->vol_lock);
	return ret;
}

int ovl_guest_wrote(struct ovl *o, uint64_t first, uint64_t n)
{
	uint64_t c = first / o->bpc;
	int ret;

	ret = ovl_mark_present(o, first, n);
	ovl_mark_guest(o, c);
	if (ret || o->vfd[0] < 0)
		return ret;
	ret = vj_append(o, c, (uint32_t)(first % o->bpc), (uint32_t)n);
	if (ret)
		log_err("ovl: cannot write '%s': %s", o->vpath[o->vcur],
			strerror(-ret));
	return ret;
}

/*
 * Before a commit's snapshot: new records go to the other file if it is
 * empty.  Returns the file whose records the snapshot covers (-1: none).
 */
static int vj_switch(struct ovl *o)
{
	int old;

	if (o->vfd[0] < 0)
		return -1;
	pthread_mutex_lock(&o->vol_lock);
	old = (int)(o->vcur ^ 1);
	if (!o->vcount[old]) {
		old = (int)o->vcur;
		o->vcur ^= 1;
	}
	pthread_mutex_unlock(&o->vol_lock);
	return old;
}

/* The commit that followed vj_switch() is durable: file @old is done. */
static void vj_done(struct ovl *o, int old)
{
	if (old < 0)
		return;
	pthread_mutex_lock(&o->vol_lock);
	if (o->vcount[old] && vj_reset(o, (unsigned int)old))
		log_warn("ovl: cannot empty '%s'", o->vpath[old]);
	pthread_mutex_unlock(&o->vol_lock);
}

/* ---- state file ---- */

static void make_header(const struct ovl *o, uint8_t *h)
{
	memset(h, 0, HDR_SIZE);
	memcpy(h, HDR_MAGIC, 8);
	put32(h + 8, HDR_VERSION);
	memcpy(h + 16, o->conf.index_csum, 32);
	put64(h + 48, o->conf.size);
	put64(h + 56, o->conf.chunk_size);
	put64(h + 64, o->conf.block_size);
	memcpy(h + 72, o->conf.target_id, 128);
	put32(h + HDR_SIZE - 4, (uint32_t)crc32(0, h, HDR_SIZE - 4));
}

static int check_header(struct ovl *o, const uint8_t *h)
{
	const char *field = NULL;
	uint8_t want[HDR_SIZE];

	if (memcmp(h, HDR_MAGIC, 8) ||
	    (get32(h + HDR_SIZE - 4) != (uint32_t)crc32(0, h, HDR_SIZE - 4) &&
	     !FUZZING)) {
		log_err("ovl: cannot resume '%s': not a pbs-livemount state "
			"file, or its header is damaged", o->path);
		return -EBADMSG;
	}
	o->old_format = get32(h + 8) == 2;
	if (get32(h + 8) != HDR_VERSION && !o->old_format) {
		log_err("ovl: cannot resume '%s': state format %u from another "
			"pbs-livemount version cannot prove its target is the "
			"same file; remove it to start the restore over",
			o->path, get32(h + 8));
		return -ESTALE;
	}
	make_header(o, want);
	if (memcmp(h + 16, want + 16, 32))
		field = "it belongs to another backup (index checksum differs)";
	else if (get64(h + 48) != o->conf.size)
		field = "image size differs";
	else if (get64(h + 56) != o->conf.chunk_size)
		field = "chunk size differs";
	else if (get64(h + 64) != o->conf.block_size)
		field = "block size differs (--block-size)";
	else if (memcmp(h + 72, want + 72, 128))
		field = "the target is not the file or device it was written "
			"for (deleted and re-created, replaced or copied since)";
	if (field && o->conf.probe) {
		log_debug(LOG_CAT_OVL, "ovl: not resuming '%s': %s", o->path,
			  field);
		return -ESTALE;
	}
	if (field) {
		log_err("ovl: cannot resume '%s': %s", o->path, field);
		return -ESTALE;
	}
	return 0;
}

struct rec {
	struct buf b;
	uint32_t n;
};

static int rec_begin(struct rec *r, uint64_t gen)
{
	uint8_t h[16];

	buf_init(&r->b, SIZE_MAX / 2);
	r->n = 0;
	put32(h, REC_MAGIC);
	put32(h + 4, 0);
	put64(h + 8, gen);
	return buf_append(&r->b, h, sizeof(h));
}

static int rec_state(struct rec *r, uint64_t c, uint8_t st, const uint8_t *bm,
		     size_t bmlen)
{
	uint8_t e[10];
	int ret;

	e[0] = ENT_STATE;
	put64(e + 1, c);
	e[9] = st;
	r->n++;
	ret = buf_append(&r->b, e, sizeof(e));
	if (!ret && (st & ~ST_GUEST) == OVL_PARTIAL)
		ret = buf_append(&r->b, bm, bmlen);
	return ret;
}

/* Consecutive chunks in one state, gathered into one entry. */
struct run {
	uint64_t first;
	uint64_t n;
	uint8_t st;
};

static int run_flush(struct rec *r, struct run *run)
{
	uint8_t e[18];

	if (!run->n)
		return 0;
	if (run->n == 1) {
		run->n = 0;
		return rec_state(r, run->first, run->st, NULL, 0);
	}
	e[0] = ENT_RUN;
	put64(e + 1, run->first);
	put64(e + 9, run->n);
	e[17] = run->st;
	run->n = 0;
	r->n++;
	return buf_append(&r->b, e, sizeof(e));
}

/* Chunk @c in state @st: extends the run or starts one (after flush). */
static int rec_chunk(struct rec *r, struct run *run, uint64_t c, uint8_t st,
		     const uint8_t *bm, size_t bmlen)
{
	int ret;

	if (run->n && c == run->first + run->n && st == run->st) {
		run->n++;
		return 0;
	}
	ret = run_flush(r, run);
	if (ret)
		return ret;
	if ((st & ~ST_GUEST) == OVL_PARTIAL)
		return rec_state(r, c, st, bm, bmlen);
	*run = (struct run){ c, 1, st };
	return 0;
}

static int rec_trace(struct rec *r, uint64_t c)
{
	uint8_t e[9];

	e[0] = ENT_TRACE;
	put64(e + 1, c);
	r->n++;
	return buf_append(&r->b, e, sizeof(e));
}

static int rec_end(struct rec *r)
{
	uint8_t crc[4];

	put32(r->b.data + 4, r->n);
	put32(crc, (uint32_t)crc32(0, r->b.data, r->b.len));
	return buf_append(&r->b, crc, sizeof(crc));
}

/* Replay chunk @c in state byte @st (PARTIAL: bitmap @bm). */
static void replay_chunk(struct ovl *o, uint64_t c, uint8_t st,
			 const uint8_t *bm)
{
	uint64_t added = 0;

	if (st & ST_GUEST)
		bit_set(o->guest, c);
	st &= ~ST_GUEST;
	if (st == OVL_PRESENT) {
		apply_bits(o, c, 0, chunk_blocks(o, c), &added);
		if (ovl_chunk_state(o, c) != OVL_PRESENT) {
			/* was PARTIAL: fill every bit */
			apply_bits(o, c, 0, chunk_blocks(o, c), &added);
		}
	} else if (st == OVL_PARTIAL) {
		for (uint64_t b = 0; b < chunk_blocks(o, c); b++)
			if (bm[b / 8] & (1u << (b % 8)))
				apply_bits(o, c, b, 1, &added);
	}
}

/* Size of the entry at @p (@len bytes left), or 0 if it is invalid. */
static size_t entry_size(const struct ovl *o, const uint8_t *p, size_t len)
{
	uint64_t c;
	uint64_t n;
	uint8_t st;

	if (len < 9)
		return 0;
	c = get64(p + 1);
	switch (p[0]) {
	case ENT_TRACE:
		return 9;
	case ENT_STATE:
		if (len < 10)
			return 0;
		st = p[9] & ~ST_GUEST;
		if (c >= o->nchunks || st > OVL_PRESENT)
			return 0;
		n = 10 + (st == OVL_PARTIAL ? o->bmlen : 0);
		return n <= len ? n : 0;
	case ENT_RUN:
		if (len < 18)
			return 0;
		n = get64(p + 9);
		st = p[17] & ~ST_GUEST;
		if (c >= o->nchunks || !n || n > o->nchunks - c ||
		    st == OVL_PARTIAL || st > OVL_PRESENT)
			return 0;
		return 18;
	default:
		return 0;
	}
}

/* Apply one record from @p (@len bytes left); its size, or 0 if invalid. */
static size_t replay_record(struct ovl *o, const uint8_t *p, size_t len,
			    bool have_gen)
{
	size_t off = 16;
	uint32_t n;

	if (len < 20 || get32(p) != REC_MAGIC)
		return 0;
	n = get32(p + 4);
	if (have_gen && get64(p + 8) != o->gen + 1)
		return 0;
	/* Size and CRC first, then apply: never half a record. */
	for (uint32_t i = 0; i < n; i++) {
		size_t e = entry_size(o, p + off, len - off);

		if (!e)
			return 0;
		off += e;
	}
	if (off + 4 > len ||
	    (get32(p + off) != (uint32_t)crc32(0, p, off) && !FUZZING))
		return 0;
	off = 16;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = p + off;
		uint64_t c = get64(e + 1);

		if (e[0] == ENT_TRACE) {
			if (c < o->nchunks)
				ovl_trace_access(o, c);
		} else if (e[0] == ENT_STATE) {
			replay_chunk(o, c, e[9], e + 10);
		} else {
			for (uint64_t k = 0; k < get64(e + 9); k++)
				replay_chunk(o, c + k, e[17], NULL);
		}
		off += entry_size(o, e, len - off);
	}
	o->gen = get64(p + 8);
	return off + 4;
}

static void recount(struct ovl *o)
{
	uint64_t total = 0;

	for (uint64_t c = 0; c < o->nchunks; c++) {
		if (o->state[c] == OVL_PRESENT) {
			total += chunk_bytes(o, c);
		} else if (o->state[c] == OVL_PARTIAL) {
			for (uint64_t b = 0; b < chunk_blocks(o, c); b++)
				if (bm_get(o, c)[b / 8] & (1u << (b % 8)))
					total += block_bytes(o, c * o->bpc + b);
		}
	}
	o->present_bytes = total;
}

/* Replay the file open on ->fd (locked) into memory; cut a torn tail. */
static int load(struct ovl *o)
{
	uint8_t *data = NULL;
	struct stat st;
	size_t len;
	size_t off;
	bool have_gen = false;
	int ret;

	if (fstat(o->fd, &st) < 0)
		return -errno;
	len = (size_t)st.st_size;
	if (len < HDR_SIZE) {
		log_err("ovl: cannot resume '%s': file too short (%zu bytes)",
			o->path, len);
		return -EBADMSG;
	}
	data = malloc(len);
	if (!data)
		return -ENOMEM;
	ret = pread_full(o->fd, data, len, 0);
	if (ret)
		goto out;
	ret = check_header(o, data);
	if (ret)
		goto out;
	for (off = HDR_SIZE; off < len;) {
		size_t n = replay_record(o, data + off, len - off, have_gen);

		if (!n)
			break;
		have_gen = true;
		off += n;
	}
	if (off < len)
		log_warn("ovl: '%s': dropped %zu bytes of an unfinished commit",
			 o->path, len - off);
	recount(o);
	/* Cut the torn tail so that appends follow the last good record. */
	if (ftruncate(o->fd, off) < 0) {
		ret = -errno;
		goto out;
	}
	o->journal_bytes = off - HDR_SIZE;
	o->trace_committed = o->ntrace;
	memcpy(o->guest_durable, o->guest, (o->nchunks + 63) / 64 * 8);
out:
	free(data);
	return ret;
}

/*
 * Write header + one record of the whole state to a new file @path,
 * locked, synced; its descriptor in *@fdp.  The states are snapshotted,
 * then the target synced, then the record written.
 */
static int write_state(struct ovl *o, const char *path, int flags, int *fdp)
{
	uint8_t hdr[HDR_SIZE];
	struct run run = { 0 };
	uint64_t *durable;
	struct rec r;
	int fd = -1;
	int ret;

	durable = bits_new(o->nchunks);
	make_header(o, hdr);
	ret = rec_begin(&r, o->gen + 1);
	for (uint64_t c = 0; !ret && c < o->nchunks; c++) {
		uint8_t st;
		bool g;

		ovl_lock_chunk(o, c);
		st = ovl_chunk_state(o, c);
		g = ovl_chunk_guest(o, c);
		if (st != OVL_ABSENT || g)
			ret = rec_chunk(&r, &run, c, st | (g ? ST_GUEST : 0),
					bm_get(o, c), o->bmlen);
		ovl_unlock_chunk(o, c);
		if (g)
			bit_set(durable, c);
	}
	if (!ret)
		ret = run_flush(&r, &run);
	for (size_t i = 0; !ret && i < o->trace_committed; i++)
		ret = rec_trace(&r, o->trace[i]);
	if (!ret)
		ret = rec_end(&r);
	if (ret)
		goto out;
	if (o->conf.target_fd >= 0 && fdatasync(o->conf.target_fd) < 0) {
		ret = -errno;
		goto out;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | flags, 0600);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	/* Ours alone (new or ->commit_lock held): never contended. */
	ret = excl_lock(fd, path, false, 0, "ovl", NULL);
	if (!ret && ftruncate(fd, 0) < 0)
		ret = -errno;
	if (!ret)
		ret = write_full(fd, hdr, sizeof(hdr));
	if (!ret)
		ret = write_full(fd, r.b.data, r.b.len);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (ret) {
		close(fd);
		unlink(path);
		goto out;
	}
	o->gen++;
	o->journal_bytes = r.b.len;
	o->compact_bytes = r.b.len;
	for (uint64_t w = 0; w < (o->nchunks + 63) / 64; w++)
		if (durable[w])
			__atomic_or_fetch(&o->guest_durable[w], durable[w],
					  __ATOMIC_RELEASE);
	*fdp = fd;
out:
	buf_release(&r.b);
	free(durable);
	return ret;
}

/* Same file at @path as on @fd (not replaced since we opened it)? */
/*
 * Open and lock the state file: the existing one, or a new one created
 * whole and linked into place.  *@created tells which.
 */
static int open_locked(struct ovl *o, bool *created)
{
	char *fresh = NULL;
	int ret;

	for (int tries = 0; tries < 8; tries++) {
		o->fd = open(o->path, O_RDWR | O_CLOEXEC);
		if (o->fd >= 0) {
			ret = excl_lock(o->fd, o->path, false,
					o->conf.lock_wait_ms, "ovl",
					"; unmount that mount first");
			if (ret)
				goto out;
			if (fd_is_at(o->fd, o->path)) {
				*created = false;
				ret = 0;
				goto out;
			}
			/* Compacted or replaced meanwhile: the new one. */
			close(o->fd);
			o->fd = -1;
			continue;
		}
		if (errno != ENOENT) {
			ret = -errno;
			log_err("ovl: cannot open '%s': %s", o->path,
				strerror(errno));
			goto out;
		}
		free(fresh);
		fresh = xasprintf("%s.new.%d", o->path, (int)getpid());
		unlink(fresh);
		ret = write_state(o, fresh, O_EXCL, &o->fd);
		if (ret) {
			log_err("ovl: cannot create '%s': %s", fresh,
				strerror(-ret));
			goto out;
		}
		if (link(fresh, o->path) < 0) {
			ret = -errno;
			unlink(fresh);
			close(o->fd);
			o->fd = -1;
			if (ret == -EEXIST)
				continue;	/* someone else won: open it */
			log_err("ovl: cannot create '%s': %s", o->path,
				strerror(-ret));
			goto out;
		}
		unlink(fresh);
		ret = fsync_parent_dir(o->path);
		if (ret) {
			log_err("ovl: cannot sync the directory of '%s': %s",
				o->path, strerror(-ret));
			goto out;
		}
		*created = true;
		goto out;
	}
	log_err("ovl: cannot open '%s': it keeps being replaced", o->path);
	ret = -EBUSY;
out:
	free(fresh);
	return ret;
}

static int compact(struct ovl *o);

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a;
	uint64_t y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The kernel's boot id: page cache contents are of this boot only. */
static int read_boot_id(char out[40])
{
	uint8_t *text = NULL;
	size_t len = 0;
	int ret;

	ret = read_file_any("/proc/sys/kernel/random/boot_id", 64, &text,
			    &len);
	if (ret)
		return ret;
	snprintf(out, 40, "%.36s", (char *)text);
	free(text);
	return strlen(out) == 36 ? 0 : -EINVAL;
}

/*
 * The guest journal's two files, after the state was loaded: replayed
 * if of this boot and of this state (a new state file starts them
 * afresh: they may be a removed state's).  Locked by the state's lock.
 */
static int vj_open(struct ovl *o)
{
	int ret = 0;

	if (o->conf.boot_id)
		snprintf(o->boot_id, sizeof(o->boot_id), "%.36s",
			 o->conf.boot_id);
	else
		ret = read_boot_id(o->boot_id);
	if (ret) {
		log_err("ovl: cannot read the boot id: %s", strerror(-ret));
		return ret;
	}
	for (unsigned int i = 0; !ret && i < 2; i++) {
		o->vpath[i] = xasprintf("%s.v%u", o->path, i);
		if (o->created)
			unlink(o->vpath[i]);
		ret = vj_load(o, i);
	}
	o->vcur = o->vcount[0] && !o->vcount[1] ? 1 : 0;
	return ret;
}

int ovl_open(const struct ovl_conf *conf, struct ovl **out)
{
	struct ovl *o;
	bool created = false;
	int ret;

	if (!conf->size || !conf->chunk_size || !conf->block_size ||
	    (conf->chunk_size & (conf->chunk_size - 1)) ||
	    (conf->block_size & (conf->block_size - 1)) ||
	    conf->block_size > conf->chunk_size)
		return -EINVAL;
	o = xcalloc(1, sizeof(*o));
	o->conf = *conf;
	o->conf.target_id[sizeof(o->conf.target_id) - 1] = '\0';
	o->path = xstrdup(conf->state_path);
	o->tmp_path = xasprintf("%s.tmp", conf->state_path);
	o->fd = -1;
	o->nchunks = (conf->size + conf->chunk_size - 1) / conf->chunk_size;
	o->bpc = conf->chunk_size / conf->block_size;
	o->bmlen = (o->bpc + 7) / 8;
	o->state = xcalloc(o->nchunks, 1);
	o->guest = bits_new(o->nchunks);
	o->guest_durable = bits_new(o->nchunks);
	o->bitmap = xcalloc((o->nchunks + BM_GROUP - 1) / BM_GROUP,
			    sizeof(*o->bitmap));
	o->dirty = bits_new(o->nchunks);
	o->intent = bits_new(o->nchunks);
	o->traced = bits_new(o->nchunks);
	o->trace = xcalloc(TRACE_MAX, sizeof(*o->trace));
	for (int i = 0; i < NLOCKS; i++)
		pthread_mutex_init(&o->chunk_locks[i], NULL);
	pthread_mutex_init(&o->dirty_lock, NULL);
	pthread_mutex_init(&o->commit_lock, NULL);
	pthread_mutex_init(&o->vol_lock, NULL);
	o->vfd[0] = o->vfd[1] = -1;
	ret = open_locked(o, &created);
	if (ret)
		goto err_free;
	o->created = created;
	if (!created) {
		ret = load(o);
		if (ret)
			goto err_free;
		/* Replay filled the dirty list: that is on disk already. */
		memset(o->dirty, 0, (o->nchunks + 63) / 64 * 8);
		free(o->dirty_list.v);
		o->dirty_list = (struct list){ 0 };
		/* A format 2 file takes format 3 records once rewritten. */
		if (o->old_format) {
			pthread_mutex_lock(&o->commit_lock);
			ret = compact(o);
			pthread_mutex_unlock(&o->commit_lock);
			if (ret) {
				log_err("ovl: cannot rewrite '%s' in the "
					"current format: %s", o->path,
					strerror(-ret));
				goto err_free;
			}
		}
	}
	if (conf->guest_journal) {
		ret = vj_open(o);
		if (ret)
			goto err_free;
	}
	*out = o;
	return 0;
err_free:
	ovl_free(o);
	return ret;
}

bool ovl_is_new(const struct ovl *o)
{
	return o->created;
}

void ovl_free(struct ovl *o)
{
	if (!o)
		return;
	if (o->fd >= 0)
		close(o->fd);
	for (int i = 0; i < 2; i++) {
		if (o->vfd[i] >= 0)
			close(o->vfd[i]);
		free(o->vpath[i]);
	}
	pthread_mutex_destroy(&o->vol_lock);
	for (uint64_t g = 0; g < (o->nchunks + BM_GROUP - 1) / BM_GROUP; g++) {
		for (uint64_t i = 0; o->bitmap[g] && i < BM_GROUP; i++)
			free(o->bitmap[g][i]);
		free(o->bitmap[g]);
	}
	for (int i = 0; i < NLOCKS; i++)
		pthread_mutex_destroy(&o->chunk_locks[i]);
	pthread_mutex_destroy(&o->dirty_lock);
	pthread_mutex_destroy(&o->commit_lock);
	free(o->state);
	free(o->guest);
	free(o->guest_durable);
	free(o->bitmap);
	free(o->dirty);
	free(o->dirty_list.v);
	free(o->intent);
	free(o->intent_list.v);
	free(o->traced);
	free(o->trace);
	free(o->path);
	free(o->tmp_path);
	free(o);
}

void ovl_remove(struct ovl *o)
{
	if (!o)
		return;
	/* Still locked: no other owner can have them. */
	unlink(o->path);
	for (int i = 0; i < 2; i++)
		if (o->vpath[i])
			unlink(o->vpath[i]);
	ovl_free(o);
}

/* ->commit_lock held: rewrite the file as one record, locked first. */
static int compact(struct ovl *o)
{
	int fd = -1;
	int ret = write_state(o, o->tmp_path, 0, &fd);

	if (!ret && rename(o->tmp_path, o->path) < 0)
		ret = -errno;
	if (!ret)
		ret = fsync_parent_dir(o->path);
	if (ret) {
		if (fd >= 0)
			close(fd);
		return ret;
	}
	close(o->fd);
	o->fd = fd;
	return 0;
}

/* ->commit_lock held: append @r and sync; on failure cut what landed. */
static int append_record(struct ovl *o, struct rec *r)
{
	struct stat st;

	if (fstat(o->fd, &st) < 0 ||
	    pwrite_full(o->fd, r->b.data, r->b.len, st.st_size) ||
	    fdatasync(o->fd) < 0) {
		log_err("ovl: cannot write '%s': %s", o->path, strerror(errno));
		if (ftruncate(o->fd, st.st_size)) {
			/* the next replay cuts it at the CRC instead */
		}
		return -EIO;
	}
	o->gen++;
	o->journal_bytes += r->b.len;
	return 0;
}

/* fdatasync of the target: the data the states describe, durable. */
static int sync_target(struct ovl *o)
{
	int err;

	if (o->conf.target_fd < 0 || !fdatasync(o->conf.target_fd))
		return 0;
	err = errno;
	log_err("ovl: cannot sync the target of '%s': %s", o->path,
		strerror(err));
	return -err;
}

/* The record of chunks @list[@n] (their states now; *@gmark whether
 * the guest wrote each) and the trace entries since the last commit. */
static int build_record(struct ovl *o, const uint64_t *list, size_t n,
			uint8_t *gmark, size_t ntrace, struct rec *r)
{
	struct run run = { 0 };
	int ret = rec_begin(r, o->gen + 1);

	for (size_t i = 0; !ret && i < n; i++) {
		uint64_t c = list[i];

		ovl_lock_chunk(o, c);
		gmark[i] = ovl_chunk_guest(o, c);
		ret = rec_chunk(r, &run, c, ovl_chunk_state(o, c) |
				(gmark[i] ? ST_GUEST : 0),
				bm_get(o, c), o->bmlen);
		ovl_unlock_chunk(o, c);
	}
	if (!ret)
		ret = run_flush(r, &run);
	for (size_t i = o->trace_committed; !ret && i < ntrace; i++)
		ret = rec_trace(r, o->trace[i]);
	return ret ? ret : rec_end(r);
}

/* Rewrite when the journal is 4 times what a rewrite would hold. */
static void maybe_compact(struct ovl *o)
{
	int ret;

	if (o->journal_bytes <= JOURNAL_MIN ||
	    o->journal_bytes <= 4 * o->compact_bytes)
		return;
	ret = compact(o);
	if (ret)
		log_warn("ovl: cannot compact '%s': %s", o->path,
			 strerror(-ret));
}

static int commit(struct ovl *o, bool sync_always)
{
	int vold;
	uint64_t *list = NULL;
	uint8_t *gmark = NULL;
	size_t n;
	size_t ntrace;
	struct rec r = { 0 };
	int ret = 0;

	pthread_mutex_lock(&o->commit_lock);
	/* Guest journal records so far describe changes in the snapshot. */
	vold = vj_switch(o);
	/* 1. Take the changes made so far, with their contents now. */
	pthread_mutex_lock(&o->dirty_lock);
	list = list_take(&o->dirty_list, &n);
	ntrace = o->ntrace;
	for (size_t i = 0; i < n; i++)
		bit_clear(o->dirty, list[i]);
	pthread_mutex_unlock(&o->dirty_lock);
	if (!n && ntrace == o->trace_committed) {
		/* Nothing to record; a flush still makes the data durable. */
		if (sync_always)
			ret = sync_target(o);
		/* Every journal record described a change committed before. */
		vj_done(o, vold);
		goto out;
	}
	if (n) {
		/* In order, so that consecutive chunks form runs. */
		qsort(list, n, sizeof(*list), cmp_u64);
		gmark = xmalloc(n);
	}
	ret = build_record(o, list, n, gmark, ntrace, &r);
	/* 2. The data those states describe is durable first. */
	if (!ret)
		ret = sync_target(o);
	/* 3. Then the record, appended and synced. */
	if (!ret)
		ret = append_record(o, &r);
	if (ret) {
		/* Not on disk: these chunks stay dirty for the next commit. */
		for (size_t i = 0; i < n; i++)
			note_dirty(o, list[i]);
		goto out;
	}
	o->trace_committed = ntrace;
	vj_done(o, vold);
	for (size_t i = 0; i < n; i++)
		if (gmark[i])
			bit_set(o->guest_durable, list[i]);
	maybe_compact(o);
out:
	buf_release(&r.b);
	free(list);
	free(gmark);
	pthread_mutex_unlock(&o->commit_lock);
	return ret;
}

int ovl_commit(struct ovl *o)
{
	return commit(o, false);
}

int ovl_sync(struct ovl *o)
{
	return commit(o, true);
}

bool ovl_guest_is_durable(const struct ovl *o, uint64_t chunk)
{
	return bit_get(o->guest_durable, chunk);
}

int ovl_guest_intent(struct ovl *o, uint64_t chunk)
{
	struct run run = { 0 };
	uint64_t *list = NULL;
	struct rec r = { 0 };
	size_t n;
	int ret = 0;

	if (ovl_guest_is_durable(o, chunk))
		return 0;
	pthread_mutex_lock(&o->dirty_lock);
	if (!bit_get(o->intent, chunk)) {
		bit_set(o->intent, chunk);
		list_add(&o->intent_list, chunk);
	}
	pthread_mutex_unlock(&o->dirty_lock);
	/* Writers queued behind one commit share it (group commit). */
	pthread_mutex_lock(&o->commit_lock);
	if (ovl_guest_is_durable(o, chunk))
		goto out;
	pthread_mutex_lock(&o->dirty_lock);
	list = list_take(&o->intent_list, &n);
	for (size_t i = 0; i < n; i++)
		bit_clear(o->intent, list[i]);
	pthread_mutex_unlock(&o->dirty_lock);
	qsort(list, n, sizeof(*list), cmp_u64);
	ret = rec_begin(&r, o->gen + 1);
	for (size_t i = 0; !ret && i < n; i++)
		ret = rec_chunk(&r, &run, list[i], OVL_ABSENT | ST_GUEST,
				NULL, 0);
	if (!ret)
		ret = run_flush(&r, &run);
	if (!ret)
		ret = rec_end(&r);
	if (!ret)
		ret = append_record(o, &r);
	if (ret) {
		/* Back on the list for whoever tries next. */
		pthread_mutex_lock(&o->dirty_lock);
		for (size_t i = 0; i < n; i++) {
			if (!bit_get(o->intent, list[i])) {
				bit_set(o->intent, list[i]);
				list_add(&o->intent_list, list[i]);
			}
		}
		pthread_mutex_unlock(&o->dirty_lock);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		bit_set(o->guest, list[i]);
		bit_set(o->guest_durable, list[i]);
	}
out:
	buf_release(&r.b);
	free(list);
	pthread_mutex_unlock(&o->commit_lock);
	return ret;
}
