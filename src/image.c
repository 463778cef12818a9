/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block logic of one live-mounted disk: QEMU's alloc-track overlay, done
 * in a file system (DESIGN.md section 3).
 *
 * Data sources for a byte of the image:
 *   block PRESENT (ovl)        -> the target
 *   block absent, zero chunk   -> zeros from memory, never fetched
 *   block absent, other chunk  -> the decoded chunk (ccache; on a miss
 *                                 read from a seed whose bytes have its
 *                                 digest, or fetched at demand priority)
 *
 * --in-place: before a chunk's first read, write or fill, its range in
 * the target is read and hashed; if the digest is the index's, its
 * absent blocks are marked present, nothing written.  This is sound
 * without holding the chunk lock while reading: a block absent when the
 * marks are made (under the lock) was written by nobody since the read
 * (guest writes and fills mark what they write, under the lock), so it
 * holds the bytes hashed, which the digest says are the backup's.
 *
 * Ordering rules (the contract with the guest):
 *   - A block is marked present only after its data was written to the
 *     target (pwrite returned).  ovl_commit() fdatasyncs the target before
 *     it writes the state, so a durable "present" never points at data
 *     that was not durable.
 *   - The chunk lock (ovl_lock_chunk) orders guest writes against
 *     background fills: fills write only blocks still absent, re-checked
 *     under the lock, so they never overwrite guest data.
 *   - No lock is held across network I/O: decoded chunks are obtained
 *     before the chunk lock is taken.
 *
 * Shared fields: everything in struct image is immutable after
 * image_open() except the counters marked atomic; ovl and ccache do their
 * own locking.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk.h"
#include "image.h"
#include "image_i.h"
#include "log.h"
#include "ovl.h"
#include "target.h"
#include "util.h"
#include "banned.h"

/* Check buffers kept for reuse (util: bufpool); checks at once. */
static int fill_cb(void *arg, uint8_t *buf, size_t len)
{
	struct fill_arg *fa = arg;
	int ret;

	/* A seed's bytes, once their digest is the index's. */
	if (fa->img->seeds &&
	    !reuse_seeds_read(fa->img->seeds,
			      snap_fidx_digest(fa->img->fidx, fa->index), buf,
			      len)) {
		__atomic_add_fetch(&fa->img->seed_chunks, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&fa->img->seed_bytes, len, __ATOMIC_RELAXED);
		return 0;
	}
	ret = repo_archive_read_chunk(fa->a, fa->index, fa->prio, buf);
	if (!ret) {
		__atomic_add_fetch(&fa->img->fetched_bytes, len,
				   __ATOMIC_RELAXED);
		__atomic_add_fetch(&fa->img->fetched_chunks, 1,
				   __ATOMIC_RELAXED);
	}
	return ret;
}

/* A referenced decoded chunk; the caller puts it. */
int image_get_chunk(struct image *img, uint64_t i, enum store_prio prio,
		     struct ccache_entry **out)
{
	struct fill_arg fa = {
		.a = img->archive, .index = i, .prio = prio, .img = img,
	};
	int ret;

	ret = ccache_get(img->cache, snap_fidx_digest(img->fidx, i),
			 snap_fidx_chunk_len(img->fidx, i), fill_cb, &fa, out);
	/* Errors a guest saw; the stream counts its own. */
	if (ret && prio == STORE_PRIO_DEMAND)
		__atomic_add_fetch(&img->read_errors, 1, __ATOMIC_RELAXED);
	return ret;
}

bool image_is_zero_chunk(const struct image *img, uint64_t i)
{
	return repo_archive_is_zero(img->archive, i);
}

uint64_t image_block_end(const struct image *img, uint64_t blk)
{
	return MIN((blk + 1) * img->block_size, img->size);
}

/* ---- the target: resume checks, a fresh start ---- */

/*
 * A resumed file target must still hold data where the state says the
 * backup's non-zero chunks were restored (a file truncated and grown
 * again keeps its xattr but lost them).  Up to 256 such chunks, evenly
 * spread, are checked with SEEK_DATA: file systems without holes
 * report data everywhere, so this never refuses a good target.
 */
static int check_restored_data(struct image *img)
{
	uint64_t cand = 0;
	uint64_t step;
	uint64_t seen = 0;

	for (uint64_t i = 0; i < img->nchunks; i++)
		cand += ovl_chunk_state(img->ovl, i) == OVL_PRESENT &&
			!ovl_chunk_guest(img->ovl, i) && !image_is_zero_chunk(img, i);
	if (!cand)
		return 0;
	step = cand > 256 ? cand / 256 : 1;
	for (uint64_t i = 0; i < img->nchunks; i++) {
		uint64_t start = i * img->chunk_size;
		off_t d;

		if (ovl_chunk_state(img->ovl, i) != OVL_PRESENT ||
		    ovl_chunk_guest(img->ovl, i) || image_is_zero_chunk(img, i))
			continue;
		if (seen++ % step)
			continue;
		d = lseek(img->fd, start, SEEK_DATA);
		if (d >= 0 && (uint64_t)d < start + img->chunk_size)
			continue;
		if (d < 0 && errno != ENXIO)
			return 0;	/* cannot tell: do not refuse */
		log_err("image: cannot resume into target '%s': it holds no "
			"data at offset %llu, where the state says chunk %llu "
			"was restored (truncated or replaced since); remove "
			"the state file to start over", img->target,
			(unsigned long long)start, (unsigned long long)i);
		return -ESTALE;
	}
	return 0;
}

/*
 * @img's target and its state (the allocation overlay), locked, checked
 * against each other and the backup: fresh, resumed, or --in-place.
 */
static int open_target(struct image *img, const struct image_conf *conf)
{
	struct target_conf tc = {
		.path = conf->target,
		.who = "image",
		.busy_hint = "; unmount that mount first",
		.lock_wait_ms = conf->lock_wait_ms,
		.create = true,
		.size = img->size,
	};
	struct ovl_conf oc = { 0 };
	bool resume;
	int ret;

	img->target = xstrdup(conf->target);
	/*
	 * Locks first, target then state file, before a byte of either is
	 * read or written: the target's is the stable one (a state file is
	 * replaced when compacted), and while we hold it no other daemon of
	 * this target can create or remove the state.
	 */
	ret = target_open(&tc, &img->tgt);
	if (ret)
		return ret;
	img->fd = target_fd(img->tgt);
	img->is_blk = target_is_blk(img->tgt);
	ret = target_state_path(img->tgt, "image", conf->state_path,
				conf->state_dir, &img->state);
	if (ret)
		return ret;
	img->dfd = open_direct(img->fd, O_RDWR);
	resume = !access(img->state, F_OK);
	if (!resume)
		ret = target_prepare_fresh(img->tgt, "image", img->size,
					   conf->in_place, conf->overwrite);
	if (!ret)
		ret = target_identity(img->tgt, !resume, oc.target_id,
				      sizeof(oc.target_id));
	if (ret)
		return ret;
	oc.state_path = img->state;
	oc.target_fd = img->fd;
	oc.size = img->size;
	oc.chunk_size = img->chunk_size;
	oc.block_size = img->block_size;
	oc.lock_wait_ms = conf->lock_wait_ms;
	oc.guest_journal = true;
	memcpy(oc.index_csum, snap_fidx_csum(img->fidx), 32);
	/* Locks the state file, then checks its header against all that. */
	ret = ovl_open(&oc, &img->ovl);
	if (ret)
		return ret;
	img->state_created = ovl_is_new(img->ovl);
	return 0;
}

/* A resumed file target must still be the one the state describes. */
static int check_resumed(struct image *img)
{
	if (ovl_is_new(img->ovl) || img->is_blk)
		return 0;
	if (target_size(img->tgt) != img->size) {
		log_err("image: cannot resume into target '%s': it has %llu "
			"bytes, the state was written for %llu (truncated or "
			"replaced since); remove the state file to start over",
			img->target, (unsigned long long)target_size(img->tgt),
			(unsigned long long)img->size);
		return -ESTALE;
	}
	return check_restored_data(img);
}

int image_open(const struct image_conf *conf, struct image **out)
{
	struct image *img;
	int ret;

	img = xcalloc(1, sizeof(*img));
	img->fd = -1;
	img->dfd = -1;
	img->archive = conf->archive;
	img->fidx = repo_archive_fidx(conf->archive);
	img->cache = conf->cache;
	img->name = xstrdup(conf->name);
	img->size = snap_fidx_size(img->fidx);
	img->chunk_size = snap_fidx_chunk_size(img->fidx);
	bufpool_init(&img->bufs, img->chunk_size, CHECK_BUFS);
	img->nchunks = snap_fidx_count(img->fidx);
	img->block_size = conf->block_size ? conf->block_size : 4096;
	if (img->block_size < 512 || img->block_size > img->chunk_size ||
	    (img->block_size & (img->block_size - 1))) {
		log_err("image: cannot use block size %llu: must be a power of "
			"two from 512 to the chunk size",
			(unsigned long long)img->block_size);
		ret = -EINVAL;
		goto err;
	}
	if (conf->read_only || !conf->target) {
		*out = img;
		return 0;
	}
	ret = open_target(img, conf);
	if (ret)
		goto err;
	img->seeds = conf->seeds;
	img->fault_checks = conf->fault_checks;
	if (conf->in_place) {
		img->checked = xcalloc(img->nchunks ? img->nchunks : 1, 1);
		img->in_place = true;
		for (uint64_t i = 0; i < img->nchunks; i++)
			img->check_total += image_needs_check(img, i);
	}
	ret = check_resumed(img);
	if (ret)
		goto err;
	*out = img;
	return 0;
err:
	/* What this call created is empty and ours alone. */
	image_discard(img);
	return ret;
}

void image_close(struct image *img)
{
	if (!img)
		return;
	if (img->ovl) {
		int ret = ovl_commit(img->ovl);

		if (ret)
			log_err("image: cannot commit the state of '%s': %s",
				img->name, strerror(-ret));
		ovl_free(img->ovl);
	}
	if (img->dfd >= 0)
		close(img->dfd);
	target_close(img->tgt, false);
	bufpool_destroy(&img->bufs);
	free(img->checked);
	free(img->name);
	free(img->target);
	free(img->state);
	free(img);
}

void image_discard(struct image *img)
{
	if (!img)
		return;
	if (img->state_created)
		ovl_remove(img->ovl);
	else
		ovl_free(img->ovl);
	img->ovl = NULL;
	if (img->dfd >= 0)
		close(img->dfd);
	img->dfd = -1;
	target_close(img->tgt, true);
	img->tgt = NULL;
	image_close(img);
}

void image_cancel(struct image *img)
{
	__atomic_store_n(&img->cancelled, true, __ATOMIC_RELEASE);
}

bool image_cancelled(const struct image *img)
{
	return __atomic_load_n(&img->cancelled, __ATOMIC_ACQUIRE);
}

const char *image_name(const struct image *img)
{
	return img->name;
}

uint64_t image_size(const struct image *img)
{
	return img->size;
}

bool image_is_read_only(const struct image *img)
{
	return !img->ovl;
}

uint64_t image_chunk_count(const struct image *img)
{
	return img->nchunks;
}

bool image_chunk_incomplete(const struct image *img, uint64_t i)
{
	return img->ovl && ovl_chunk_state(img->ovl, i) != OVL_PRESENT;
}

/*
 * Copy [off, off+n) of chunk @i, all of it absent, from the backup: zeros
 * or the decoded chunk, fetched into *@e on first need.
 */
static int read_absent(struct image *img, uint64_t i, uint8_t *dst,
		       uint64_t off, uint64_t n, struct ccache_entry **e)
{
	int ret;

	if (image_is_zero_chunk(img, i)) {
		memset(dst, 0, n);
		return 0;
	}
	if (!*e) {
		ret = image_get_chunk(img, i, STORE_PRIO_DEMAND, e);
		if (ret)
			return ret;
	}
	memcpy(dst, ccache_data(*e) + (off - i * img->chunk_size), n);
	return 0;
}

static int read_chunk_range(struct image *img, uint64_t i, uint8_t *dst,
			    uint64_t off, uint64_t n)
{
	struct ccache_entry *e = NULL;
	uint64_t end = off + n;
	enum ovl_state st;
	int ret = 0;

	if (image_needs_check(img, i))
		image_check_chunk(img, i);	/* a failure: fetched instead */
	st = img->ovl ? ovl_chunk_state(img->ovl, i) : OVL_ABSENT;
	if (img->ovl)
		ovl_trace_access(img->ovl, i);
	if (st == OVL_PRESENT)
		return pread_full(img->fd, dst, n, off);
	if (st == OVL_ABSENT) {
		ret = read_absent(img, i, dst, off, n, &e);
		goto out;
	}
	/* PARTIAL: runs of present and absent blocks. */
	while (off < end) {
		uint64_t blk = off / img->block_size;
		bool present = ovl_block_present(img->ovl, blk);
		uint64_t run = off;

		while (run < end &&
		       ovl_block_present(img->ovl, run / img->block_size) ==
			       present)
			run = MIN(image_block_end(img, run / img->block_size), end);
		if (present)
			ret = pread_full(img->fd, dst, run - off, off);
		else
			ret = read_absent(img, i, dst, off, run - off, &e);
		if (ret)
			goto out;
		dst += run - off;
		off = run;
	}
out:
	if (e)
		ccache_put(img->cache, e);
	return ret;
}

/* On every read and write: store only when 10 ms have passed, so FUSE
 * threads do not bounce the cache line (the stream looks 200 ms back). */
void image_note_guest_io(struct image *img)
{
	uint64_t now = now_ns();

	uint64_t zero = 0;

	if (now - __atomic_load_n(&img->guest_io_ns, __ATOMIC_RELAXED) >
	    10000000) {
		__atomic_store_n(&img->guest_io_ns, now, __ATOMIC_RELAXED);
		if (!__atomic_load_n(&img->first_io_ns, __ATOMIC_RELAXED))
			__atomic_compare_exchange_n(&img->first_io_ns, &zero,
						    now, false,
						    __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED);
	}
}

uint64_t image_first_io_ns(const struct image *img)
{
	return __atomic_load_n(&img->first_io_ns, __ATOMIC_RELAXED);
}

uint64_t image_guest_io_ns(const struct image *img)
{
	return __atomic_load_n(&img->guest_io_ns, __ATOMIC_RELAXED);
}

ssize_t image_read(struct image *img, void *buf, size_t len, uint64_t off)
{
	uint8_t *dst = buf;
	uint64_t end;
	int ret;

	image_note_guest_io(img);
	if (off >= img->size)
		return 0;
	end = MIN(off + len, img->size);
	for (uint64_t pos = off; pos < end;) {
		uint64_t i = pos / img->chunk_size;
		uint64_t n = MIN(end, (i + 1) * img->chunk_size) - pos;

		ret = read_chunk_range(img, i, dst, pos, n);
		if (ret)
			return ret == -ENOMEM ? ret : -EIO;
		dst += n;
		pos += n;
	}
	return end - off;
}

/* @flush: a guest's fsync, which syncs the target even when no
 * allocation changed; otherwise a checkpoint, skipped while idle. */
static int commit_state(struct image *img, bool flush)
{
	uint64_t marks;
	int ret;

	if (!img->ovl)
		return 0;
	marks = __atomic_load_n(&img->marks, __ATOMIC_ACQUIRE);
	if (!flush && marks == __atomic_load_n(&img->committed_marks,
					       __ATOMIC_ACQUIRE))
		return 0;
	ret = flush ? ovl_sync(img->ovl) : ovl_commit(img->ovl);
	if (ret) {
		log_err("image: cannot commit the state of '%s': %s", img->name,
			strerror(-ret));
		return ret;
	}
	__atomic_store_n(&img->committed_marks, marks, __ATOMIC_RELEASE);
	return 0;
}

int image_flush(struct image *img)
{
	return commit_state(img, true);
}

int image_checkpoint(struct image *img)
{
	return commit_state(img, false);
}

const char *image_target(const struct image *img)
{
	return img->target;
}

bool image_target_is_blk(const struct image *img)
{
	return img->is_blk;
}

uint64_t image_chunk_size(const struct image *img)
{
	return img->chunk_size;
}

bool image_chunk_wanted(const struct image *img, uint64_t i)
{
	/* Not before the target was asked: it may hold the chunk. */
	if (i >= img->nchunks || image_is_zero_chunk(img, i) ||
	    (img->ovl && !image_chunk_incomplete(img, i)) ||
	    image_needs_check(img, i))
		return false;
	return !ccache_peek(img->cache, snap_fidx_digest(img->fidx, i));
}

int image_prefetch(struct image *img, uint64_t i)
{
	struct ccache_entry *e;
	int ret;

	if (!image_chunk_wanted(img, i))
		return 0;
	ret = image_get_chunk(img, i, STORE_PRIO_READAHEAD, &e);
	if (!ret)
		ccache_put(img->cache, e);
	return ret;
}

void image_set_read_observer(struct image *img, image_read_fn fn,
			     void *arg)
{
	img->on_read = fn;
	img->on_read_arg = arg;
}

/* The chunks a guest read fetched on demand, filled while cached. */
static void copy_on_read(struct image *img, uint64_t off, size_t len)
{
	uint64_t end = MIN(off + len, img->size);

	if (!img->ovl || !len)
		return;
	for (uint64_t i = off / img->chunk_size;
	     i * img->chunk_size < end; i++) {
		/* Only what is still cached: never a second fetch. */
		if (image_chunk_incomplete(img, i) && !image_is_zero_chunk(img, i) &&
		    ccache_peek(img->cache, snap_fidx_digest(img->fidx, i)))
			image_fill_chunk(img, i, STORE_PRIO_STREAM, NULL);
	}
}

ssize_t image_guest_read(struct image *img, void *buf, size_t len,
			 uint64_t off,
			 void (*reply)(void *arg, const void *buf, ssize_t n),
			 void *arg)
{
	ssize_t n = image_read(img, buf, len, off);

	if (n < 0) {
		reply(arg, NULL, n);
		return n;
	}
	if (img->on_read)
		img->on_read(img->on_read_arg, img, off, (size_t)n);
	reply(arg, buf, n);
	copy_on_read(img, off, (size_t)n);
	return n;
}

int image_verify(struct image *img, uint64_t *bad)
{
	static struct log_ratelimit rl = LOG_RATELIMIT_INIT(5, 10);
	const struct key_material *key = repo_archive_key(img->archive);
	uint8_t *buf;
	uint8_t d[32];
	int ret = 0;

	*bad = 0;
	if (!img->ovl)
		return -EROFS;
	buf = malloc(img->chunk_size);
	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; i < img->nchunks; i++) {
		uint64_t len = snap_fidx_chunk_len(img->fidx, i);

		if (image_cancelled(img)) {
			ret = -ECANCELED;
			break;
		}
		/* What the guest wrote is the guest's, not the backup's. */
		if (ovl_chunk_guest(img->ovl, i))
			continue;
		ret = pread_full(img->fd, buf, len, i * img->chunk_size);
		if (ret)
			break;
		chunk_digest(buf, len, key, d);
		if (memcmp(d, snap_fidx_digest(img->fidx, i), 32)) {
			(*bad)++;
			if (log_ratelimit(&rl))
				log_err("image: '%s' differs from the backup at "
					"chunk %llu (offset %llu)", img->name,
					(unsigned long long)i,
					(unsigned long long)(i * img->chunk_size));
		}
	}
	free(buf);
	return ret;
}

size_t image_trace(const struct image *img, const uint64_t **chunks)
{
	if (!img->ovl) {
		*chunks = NULL;
		return 0;
	}
	return ovl_trace(img->ovl, chunks);
}

void image_get_stats(const struct image *img, struct image_stats *st)
{
	st->size = img->size;
	st->fetched_bytes = __atomic_load_n(&img->fetched_bytes,
					    __ATOMIC_RELAXED);
	st->read_errors = __atomic_load_n(&img->read_errors,
					  __ATOMIC_RELAXED);
	st->fetched_chunks = __atomic_load_n(&img->fetched_chunks,
					     __ATOMIC_RELAXED);
	st->seed_chunks = __atomic_load_n(&img->seed_chunks, __ATOMIC_RELAXED);
	st->seed_bytes = __atomic_load_n(&img->seed_bytes, __ATOMIC_RELAXED);
	st->target_chunks = __atomic_load_n(&img->target_chunks,
					    __ATOMIC_RELAXED);
	st->target_bytes = __atomic_load_n(&img->target_bytes,
					   __ATOMIC_RELAXED);
	st->in_place = img->in_place;
	st->check_total = img->check_total;
	st->check_done = __atomic_load_n(&img->check_done, __ATOMIC_RELAXED);
	st->check_bytes = __atomic_load_n(&img->check_bytes, __ATOMIC_RELAXED);
	st->check_ns = __atomic_load_n(&img->check_last_ns, __ATOMIC_RELAXED);
	if (st->check_ns)
		st->check_ns -= __atomic_load_n(&img->check_first_ns,
						__ATOMIC_RELAXED);
	st->chunks_total = img->nchunks;
	if (!img->ovl) {
		st->present_bytes = 0;
		st->chunks_incomplete = img->nchunks;
		st->complete = false;
		return;
	}
	st->present_bytes = ovl_present_bytes(img->ovl);
	st->complete = ovl_is_complete(img->ovl);
	st->chunks_incomplete = 0;
	for (uint64_t i = 0; i < img->nchunks; i++)
		st->chunks_incomplete += image_chunk_incomplete(img, i);
}
