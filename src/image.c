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
#include "log.h"
#include "ovl.h"
#include "target.h"
#include "util.h"
#include "banned.h"

/* Check buffers kept for reuse (util: bufpool); checks at once. */
#define CHECK_BUFS 8

struct image {
	const struct repo_archive *archive;	/* immutable */
	const struct snap_fidx *fidx;		/* immutable */
	struct ccache *cache;			/* immutable pointer */
	struct ovl *ovl;			/* NULL when read-only */
	struct target *tgt;			/* NULL when read-only */
	char *state;				/* immutable: state file path */
	bool state_created;			/* immutable: image_open made it */
	char *name;				/* immutable */
	char *target;				/* immutable, may be NULL */
	uint64_t size;				/* immutable */
	uint64_t chunk_size;			/* immutable */
	uint64_t block_size;			/* immutable */
	uint64_t nchunks;			/* immutable */
	int fd;					/* immutable; -1 read-only */
	int dfd;				/* immutable: O_DIRECT, or -1 */
	bool direct_off;			/* atomic: dfd refused */
	bool is_blk;				/* immutable */
	image_read_fn on_read;			/* set before serving */
	void *on_read_arg;
	uint64_t fetched_bytes;			/* atomic */
	uint64_t fetched_chunks;		/* atomic */
	struct reuse_seeds *seeds;		/* immutable pointer, or NULL */
	uint64_t seed_chunks;			/* atomic */
	uint64_t seed_bytes;			/* atomic */
	bool in_place;				/* immutable */
	uint8_t *checked;			/* in_place: per chunk, atomic:
						   CHECK_* */
	uint64_t target_chunks;			/* atomic */
	uint64_t target_bytes;			/* atomic */
	uint64_t check_total;			/* immutable after open */
	uint64_t check_done;			/* atomic */
	uint64_t check_bytes;			/* atomic */
	uint64_t check_first_ns;		/* atomic */
	uint64_t check_last_ns;			/* atomic */
	uint64_t fault_checks;			/* immutable: tests */
	struct bufpool bufs;			/* check buffers */
	uint64_t read_errors;			/* atomic */
	uint64_t marks;				/* atomic: state changes */
	uint64_t committed_marks;		/* atomic */
	uint64_t guest_io_ns;			/* atomic: last guest I/O */
	uint64_t first_io_ns;			/* atomic: first guest I/O */
	bool cancelled;				/* atomic: shutting down */
};

enum { CHECK_TODO, CHECK_DIFFERS, CHECK_DONE };

struct fill_arg {
	const struct repo_archive *a;
	uint64_t index;
	enum store_prio prio;
	struct image *img;
};

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
static int get_chunk(struct image *img, uint64_t i, enum store_prio prio,
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

static bool is_zero_chunk(const struct image *img, uint64_t i)
{
	return repo_archive_is_zero(img->archive, i);
}

static uint64_t block_end(const struct image *img, uint64_t blk)
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
			!ovl_chunk_guest(img->ovl, i) && !is_zero_chunk(img, i);
	if (!cand)
		return 0;
	step = cand > 256 ? cand / 256 : 1;
	for (uint64_t i = 0; i < img->nchunks; i++) {
		uint64_t start = i * img->chunk_size;
		off_t d;

		if (ovl_chunk_state(img->ovl, i) != OVL_PRESENT ||
		    ovl_chunk_guest(img->ovl, i) || is_zero_chunk(img, i))
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

static bool cancelled(const struct image *img)
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

	if (is_zero_chunk(img, i)) {
		memset(dst, 0, n);
		return 0;
	}
	if (!*e) {
		ret = get_chunk(img, i, STORE_PRIO_DEMAND, e);
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
			run = MIN(block_end(img, run / img->block_size), end);
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
static void note_guest_io(struct image *img)
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

	note_guest_io(img);
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

static void note_marks(struct image *img)
{
	__atomic_add_fetch(&img->marks, 1, __ATOMIC_RELEASE);
}

/*
 * Write an unaligned edge of a guest write into block @blk, which is
 * absent: backup bytes around the guest's, one whole-block pwrite.
 */
static int write_edge(struct image *img, uint64_t i, uint64_t blk,
		      const uint8_t *src, uint64_t off, uint64_t n,
		      struct ccache_entry *e)
{
	uint64_t bstart = blk * img->block_size;
	uint64_t blen = block_end(img, blk) - bstart;
	uint8_t *tmp;
	int ret;

	tmp = malloc(blen);
	if (!tmp)
		return -ENOMEM;
	if (e)
		memcpy(tmp, ccache_data(e) + (bstart - i * img->chunk_size),
		       blen);
	else
		memset(tmp, 0, blen);
	memcpy(tmp + (off - bstart), src, n);
	ret = pwrite_full(img->fd, tmp, blen, bstart);
	free(tmp);
	return ret;
}

/* One block's part of a guest write; @partial: does not cover it all. */
static int write_part(struct image *img, uint64_t i, uint64_t blk,
		      const uint8_t *src, uint64_t off, uint64_t n,
		      bool partial, struct ccache_entry *e)
{
	if (!partial || ovl_block_present(img->ovl, blk))
		return pwrite_full(img->fd, src, n, off);
	return write_edge(img, i, blk, src, off, n, e);
}

/* Chunk lock held: is any block of [first, last] present? */
static bool any_present(const struct image *img, uint64_t i, uint64_t first,
			uint64_t last)
{
	switch (ovl_chunk_state(img->ovl, i)) {
	case OVL_PRESENT:
		return true;
	case OVL_ABSENT:
		return false;
	default:
		for (uint64_t b = first; b <= last; b++)
			if (ovl_block_present(img->ovl, b))
				return true;
		return false;
	}
}

/*
 * Take chunk @i's lock for a guest change of blocks [first, last].  If
 * the change goes over present blocks (its bytes then outlive a crash
 * of the daemon at once) the "guest wrote here" mark is made durable
 * first, outside the lock; the check is redone under it.
 */
static int lock_for_guest(struct image *img, uint64_t i, uint64_t first,
			  uint64_t last)
{
	int ret;

	for (;;) {
		ovl_lock_chunk(img->ovl, i);
		if (ovl_guest_is_durable(img->ovl, i) ||
		    !any_present(img, i, first, last))
			return 0;
		ovl_unlock_chunk(img->ovl, i);
		ret = ovl_guest_intent(img->ovl, i);
		if (ret) {
			log_err("image: cannot record a guest write to '%s' "
				"chunk %llu: %s", img->name,
				(unsigned long long)i, strerror(-ret));
			return ret;
		}
	}
}

static int write_chunk_range(struct image *img, uint64_t i,
			     const uint8_t *src, uint64_t off, uint64_t n)
{
	uint64_t bs = img->block_size;
	uint64_t end = off + n;
	uint64_t first = off / bs;
	uint64_t last = (end - 1) / bs;
	struct ccache_entry *e = NULL;
	bool hp;	/* first block only partly written */
	bool tp;	/* last block only partly written */
	int ret = 0;

	/* Before the guest's bytes change what the digest is taken of. */
	if (image_needs_check(img, i))
		image_check_chunk(img, i);
	if (first == last) {
		hp = off != first * bs || end != block_end(img, first);
		tp = false;
	} else {
		hp = off != first * bs;
		tp = end != block_end(img, last);
	}
	/* Partial blocks that are absent need the backup's bytes first. */
	if (((hp && !ovl_block_present(img->ovl, first)) ||
	     (tp && !ovl_block_present(img->ovl, last))) &&
	    !is_zero_chunk(img, i)) {
		ret = get_chunk(img, i, STORE_PRIO_DEMAND, &e);
		if (ret)
			return ret;
	}
	ret = lock_for_guest(img, i, first, last);
	if (ret)
		goto out_put;
	if (first == last) {
		ret = write_part(img, i, first, src, off, n, hp, e);
	} else {
		uint64_t ms = hp ? block_end(img, first) : off;
		uint64_t me = tp ? last * bs : end;

		if (hp)
			ret = write_part(img, i, first, src, off, ms - off,
					 true, e);
		if (!ret && me > ms)
			ret = pwrite_full(img->fd, src + (ms - off), me - ms,
					  ms);
		if (!ret && tp)
			ret = write_part(img, i, last, src + (me - off), me,
					 end - me, true, e);
	}
	if (!ret)
		ret = ovl_guest_wrote(img->ovl, first, last - first + 1);
	else
		ovl_mark_guest(img->ovl, i);
	note_marks(img);
	ovl_unlock_chunk(img->ovl, i);
out_put:
	if (e)
		ccache_put(img->cache, e);
	return ret;
}

ssize_t image_write(struct image *img, const void *buf, size_t len,
		    uint64_t off)
{
	const uint8_t *src = buf;
	uint64_t end;
	int ret;

	note_guest_io(img);
	if (!img->ovl)
		return -EROFS;
	if (off >= img->size)
		return len ? -ENOSPC : 0;
	end = MIN(off + len, img->size);
	for (uint64_t pos = off; pos < end;) {
		uint64_t i = pos / img->chunk_size;
		uint64_t n = MIN(end, (i + 1) * img->chunk_size) - pos;

		ret = write_chunk_range(img, i, src, pos, n);
		if (ret) {
			log_err("image: cannot write '%s' at offset %llu: %s",
				img->name, (unsigned long long)pos,
				strerror(-ret));
			return pos > off ? (ssize_t)(pos - off) : ret;
		}
		src += n;
		pos += n;
	}
	return end - off;
}

/* Make target bytes read as zeros: a hole, or zeroes on a device. */
static int zero_target(struct image *img, uint64_t off, uint64_t len)
{
	return zero_range(img->fd, img->is_blk, off, len);
}

/* Zero [off, end) of chunk @i, all of it whole blocks. */
static int zero_blocks(struct image *img, uint64_t i, uint64_t off,
		       uint64_t end)
{
	uint64_t bs = img->block_size;
	uint64_t first = off / bs;
	uint64_t stop = (end + bs - 1) / bs;
	int ret;

	ret = lock_for_guest(img, i, first, stop - 1);
	if (ret)
		return ret;
	ret = zero_target(img, off, end - off);
	if (!ret)
		ret = ovl_guest_wrote(img->ovl, first, stop - first);
	else
		ovl_mark_guest(img->ovl, i);
	note_marks(img);
	ovl_unlock_chunk(img->ovl, i);
	return ret;
}

/* Zero [off, end) of chunk @i: partial blocks at either end are written
 * like any guest write, whole blocks become holes marked present. */
static int zero_chunk_range(struct image *img, uint64_t i, uint64_t off,
			    uint64_t end)
{
	uint64_t bs = img->block_size;
	uint8_t *zeros = NULL;
	int ret = 0;

	if (image_needs_check(img, i))
		image_check_chunk(img, i);
	if (off % bs) {
		uint64_t e = MIN(end, block_end(img, off / bs));

		zeros = calloc(1, bs);
		if (!zeros)
			return -ENOMEM;
		ret = write_chunk_range(img, i, zeros, off, e - off);
		off = e;
	}
	if (!ret && off < end && end != block_end(img, (end - 1) / bs)) {
		uint64_t s = (end - 1) / bs * bs;

		if (!zeros)
			zeros = calloc(1, bs);
		if (!zeros)
			return -ENOMEM;
		ret = write_chunk_range(img, i, zeros, s, end - s);
		end = s;
	}
	if (!ret && off < end)
		ret = zero_blocks(img, i, off, end);
	free(zeros);
	return ret;
}

int image_zero(struct image *img, uint64_t off, uint64_t len)
{
	uint64_t end;
	int ret;

	note_guest_io(img);
	if (!img->ovl)
		return -EROFS;
	if (off >= img->size || !len)
		return 0;
	end = len > img->size - off ? img->size : off + len;
	for (uint64_t pos = off; pos < end;) {
		uint64_t i = pos / img->chunk_size;
		uint64_t ce = MIN(end, (i + 1) * img->chunk_size);

		ret = zero_chunk_range(img, i, pos, ce);
		if (ret) {
			log_err("image: cannot zero '%s' at offset %llu: %s",
				img->name, (unsigned long long)pos,
				strerror(-ret));
			return ret;
		}
		pos = ce;
	}
	return 0;
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

/*
 * Backup data into absent blocks, around the page cache where aligned:
 * a fill is read back seldom, and buffered it cost a copy per byte and
 * the writeback of a whole disk (a third of the stream's CPU).  Only
 * absent blocks are written this way, under the chunk lock, so no guest
 * data is in the pages it replaces; the kernel drops their cached copies.
 */
static int fill_write(struct image *img, const uint8_t *src, uint64_t len,
		      uint64_t off)
{
	return pwrite_split(img->fd, img->dfd, &img->direct_off, src, len,
			    (off_t)off);
}

/* Fill absent blocks of chunk @i under its lock, from @e or zeros. */
static int fill_locked(struct image *img, uint64_t i,
		       struct ccache_entry *e)
{
	uint64_t bs = img->block_size;
	uint64_t cstart = i * img->chunk_size;
	uint64_t cend = MIN(cstart + img->chunk_size, img->size);
	uint64_t blk = cstart / bs;
	uint64_t stop = (cend + bs - 1) / bs;
	int ret = 0;

	if (ovl_chunk_state(img->ovl, i) == OVL_ABSENT) {
		ret = e ? fill_write(img, ccache_data(e), cend - cstart,
				     cstart) :
			  zero_target(img, cstart, cend - cstart);
		if (!ret)
			ret = ovl_mark_present(img->ovl, blk, stop - blk);
		return ret;
	}
	while (blk < stop && ovl_chunk_state(img->ovl, i) != OVL_PRESENT) {
		uint64_t run = blk;
		uint64_t off;
		uint64_t len;

		if (ovl_block_present(img->ovl, blk)) {
			blk++;
			continue;
		}
		while (run < stop && !ovl_block_present(img->ovl, run))
			run++;
		off = blk * bs;
		len = MIN(run * bs, cend) - off;
		ret = e ? fill_write(img, ccache_data(e) + (off - cstart),
				     len, off) :
			  zero_target(img, off, len);
		if (!ret)
			ret = ovl_mark_present(img->ovl, blk, run - blk);
		if (ret)
			break;
		blk = run;
	}
	return ret;
}

int image_fill_chunk(struct image *img, uint64_t i, enum store_prio prio,
		     int *target_err)
{
	static struct log_ratelimit rl = LOG_RATELIMIT_INIT(10, 3);
	struct ccache_entry *e = NULL;
	int ret;

	if (target_err)
		*target_err = 0;
	if (!image_chunk_incomplete(img, i))
		return 0;
	if (cancelled(img))
		return -ECANCELED;
	if (image_needs_check(img, i)) {
		image_check_chunk(img, i);
		if (!image_chunk_incomplete(img, i))
			return 0;
	}
	if (!is_zero_chunk(img, i)) {
		ret = get_chunk(img, i, prio, &e);
		if (ret)
			return ret;
	}
	ovl_lock_chunk(img->ovl, i);
	ret = fill_locked(img, i, e);
	note_marks(img);
	ovl_unlock_chunk(img->ovl, i);
	if (e)
		ccache_put(img->cache, e);
	/* Only the target is written here: the caller says why, once. */
	if (ret && target_err)
		*target_err = ret;
	else if (ret && log_ratelimit(&rl))
		log_err("image: cannot write target '%s' at chunk %llu: %s",
			img->target, (unsigned long long)i, strerror(-ret));
	return ret;
}

bool image_needs_check(const struct image *img, uint64_t i)
{
	return img->in_place &&
	       __atomic_load_n(&img->checked[i], __ATOMIC_RELAXED) ==
		       CHECK_TODO &&
	       ovl_chunk_state(img->ovl, i) == OVL_ABSENT &&
	       !ovl_chunk_guest(img->ovl, i);
}

bool image_check_differs(const struct image *img, uint64_t i)
{
	return img->in_place &&
	       __atomic_load_n(&img->checked[i], __ATOMIC_RELAXED) ==
		       CHECK_DIFFERS;
}

/* Chunk lock held: every absent block of chunk @i becomes present. */
static int mark_absent_present(struct image *img, uint64_t i)
{
	uint64_t bs = img->block_size;
	uint64_t cend = MIN((i + 1) * img->chunk_size, img->size);
	uint64_t blk = i * img->chunk_size / bs;
	uint64_t stop = (cend + bs - 1) / bs;
	int ret = 0;

	if (ovl_chunk_state(img->ovl, i) == OVL_ABSENT)
		return ovl_mark_present(img->ovl, blk, stop - blk);
	while (!ret && blk < stop) {
		uint64_t run = blk;

		while (run < stop && !ovl_block_present(img->ovl, run))
			run++;
		if (run > blk)
			ret = ovl_mark_present(img->ovl, blk, run - blk);
		blk = run + 1;
	}
	return ret;
}

/* Settle chunk @i's check as @how; false if another thread did first. */
static bool settle(struct image *img, uint64_t i, uint8_t how)
{
	uint8_t todo = CHECK_TODO;

	return __atomic_compare_exchange_n(&img->checked[i], &todo, how, false,
					   __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

int image_check_chunk(struct image *img, uint64_t i)
{
	static struct log_ratelimit rl = LOG_RATELIMIT_INIT(5, 10);
	uint64_t len = snap_fidx_chunk_len(img->fidx, i);
	uint64_t zero = 0;
	uint64_t t0 = now_ns();
	uint8_t d[32];
	uint8_t *buf;
	bool won;
	int ret;

	if (!image_needs_check(img, i))
		return 0;
	__atomic_compare_exchange_n(&img->check_first_ns, &zero, t0, false,
				    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
	buf = bufpool_get(&img->bufs);
	if (!buf)
		return -ENOMEM;
	ret = reuse_read_digest(img->fd, img->dfd, &img->direct_off,
				i * img->chunk_size, len,
				repo_archive_key(img->archive), buf, d);
	bufpool_put(&img->bufs, buf);
	if (ret) {
		if (log_ratelimit(&rl))
			log_err("image: cannot read target '%s' at chunk %llu "
				"to compare it: %s; it is fetched instead",
				img->target, (unsigned long long)i,
				strerror(-ret));
		if (settle(img, i, CHECK_DIFFERS))
			__atomic_add_fetch(&img->check_done, 1,
					   __ATOMIC_RELAXED);
		return ret;
	}
	if (!memcmp(d, snap_fidx_digest(img->fidx, i), 32)) {
		ovl_lock_chunk(img->ovl, i);
		ret = mark_absent_present(img, i);
		note_marks(img);
		ovl_unlock_chunk(img->ovl, i);
		if (ret)
			return ret;
		won = settle(img, i, CHECK_DONE);
		if (won) {
			__atomic_add_fetch(&img->target_chunks, 1,
					   __ATOMIC_RELAXED);
			__atomic_add_fetch(&img->target_bytes, len,
					   __ATOMIC_RELAXED);
		}
	} else {
		won = settle(img, i, CHECK_DIFFERS);
	}
	if (won) {
		if (__atomic_add_fetch(&img->check_done, 1,
				       __ATOMIC_RELAXED) == img->fault_checks) {
			log_warn("image: test fault: killed after check %llu",
				 (unsigned long long)img->fault_checks);
			raise(SIGKILL);
		}
		__atomic_add_fetch(&img->check_bytes, len, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&img->check_last_ns, now_ns(), __ATOMIC_RELAXED);
	return 0;
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
	if (i >= img->nchunks || is_zero_chunk(img, i) ||
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
	ret = get_chunk(img, i, STORE_PRIO_READAHEAD, &e);
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
		if (image_chunk_incomplete(img, i) && !is_zero_chunk(img, i) &&
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

		if (cancelled(img)) {
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
