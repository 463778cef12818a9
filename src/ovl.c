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
#include "ovl_i.h"
#include "util.h"
#include "banned.h"

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

void ovl_note_dirty(struct ovl *o, uint64_t c)
{
	pthread_mutex_lock(&o->dirty_lock);
	if (!bit_get(o->dirty, c)) {
		bit_set(o->dirty, c);
		list_add(&o->dirty_list, c);
	}
	pthread_mutex_unlock(&o->dirty_lock);
}

/* Set state from a bitmap; chunk lock held (or single-threaded open). */
int ovl_apply_bits(struct ovl *o, uint64_t c, uint64_t first, uint64_t n,
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
	ret = ovl_apply_bits(o, c, first % o->bpc, n, &added);
	if (ret)
		return ret;
	if (added) {
		__atomic_add_fetch(&o->present_bytes, added, __ATOMIC_RELAXED);
		ovl_note_dirty(o, c);
	}
	return 0;
}

void ovl_mark_guest(struct ovl *o, uint64_t chunk)
{
	if (bit_get(o->guest, chunk))
		return;
	bit_set(o->guest, chunk);
	ovl_note_dirty(o, chunk);
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
	ret = ovl_file_open_locked(o, &created);
	if (ret)
		goto err_free;
	o->created = created;
	if (!created) {
		ret = ovl_file_load(o);
		if (ret)
			goto err_free;
		/* Replay filled the dirty list: that is on disk already. */
		memset(o->dirty, 0, (o->nchunks + 63) / 64 * 8);
		free(o->dirty_list.v);
		o->dirty_list = (struct list){ 0 };
		/* A format 2 file takes format 3 records once rewritten. */
		if (o->old_format) {
			pthread_mutex_lock(&o->commit_lock);
			ret = ovl_file_compact(o);
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
		ret = ovl_vj_open(o);
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
	int ret = ovl_rec_begin(r, o->gen + 1);

	for (size_t i = 0; !ret && i < n; i++) {
		uint64_t c = list[i];

		ovl_lock_chunk(o, c);
		gmark[i] = ovl_chunk_guest(o, c);
		ret = ovl_rec_chunk(r, &run, c, ovl_chunk_state(o, c) |
				(gmark[i] ? ST_GUEST : 0),
				bm_get(o, c), o->bmlen);
		ovl_unlock_chunk(o, c);
	}
	if (!ret)
		ret = ovl_run_flush(r, &run);
	for (size_t i = o->trace_committed; !ret && i < ntrace; i++)
		ret = ovl_rec_trace(r, o->trace[i]);
	return ret ? ret : ovl_rec_end(r);
}

/* Rewrite when the journal is 4 times what a rewrite would hold. */
static void maybe_compact(struct ovl *o)
{
	int ret;

	if (o->journal_bytes <= JOURNAL_MIN ||
	    o->journal_bytes <= 4 * o->compact_bytes)
		return;
	ret = ovl_file_compact(o);
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
	vold = ovl_vj_switch(o);
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
		ovl_vj_done(o, vold);
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
			ovl_note_dirty(o, list[i]);
		goto out;
	}
	o->trace_committed = ntrace;
	ovl_vj_done(o, vold);
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
	ret = ovl_rec_begin(&r, o->gen + 1);
	for (size_t i = 0; !ret && i < n; i++)
		ret = ovl_rec_chunk(&r, &run, list[i], OVL_ABSENT | ST_GUEST,
				NULL, 0);
	if (!ret)
		ret = ovl_run_flush(&r, &run);
	if (!ret)
		ret = ovl_rec_end(&r);
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
