/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Block logic of one live-mounted disk: QEMU's alloc-track overlay, done
 * in a file system (DESIGN.md section 3).
 *
 * Data sources for a byte of the image:
 *   block PRESENT (ovl)        -> the target
 *   block absent, zero chunk   -> zeros from memory, never fetched
 *   block absent, other chunk  -> the decoded chunk (ccache; fetched on a
 *                                 miss at demand priority)
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
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk.h"
#include "image.h"
#include "log.h"
#include "ovl.h"
#include "util.h"
#include "banned.h"

struct image {
	const struct repo_archive *archive;	/* immutable */
	const struct snap_fidx *fidx;		/* immutable */
	struct ccache *cache;			/* immutable pointer */
	struct ovl *ovl;			/* NULL when read-only */
	char *name;				/* immutable */
	char *target;				/* immutable, may be NULL */
	uint64_t size;				/* immutable */
	uint64_t chunk_size;			/* immutable */
	uint64_t block_size;			/* immutable */
	uint64_t nchunks;			/* immutable */
	int fd;					/* immutable; -1 read-only */
	bool is_blk;				/* immutable */
	uint64_t fetched_bytes;			/* atomic */
	uint64_t read_errors;			/* atomic */
	uint64_t marks;				/* atomic: state changes */
	uint64_t committed_marks;		/* atomic */
	uint64_t guest_io_ns;			/* atomic: last guest I/O */
};

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

	(void)len;
	ret = repo_archive_read_chunk(fa->a, fa->index, fa->prio, buf);
	if (!ret)
		__atomic_add_fetch(&fa->img->fetched_bytes, len,
				   __ATOMIC_RELAXED);
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

static int target_id(int fd, const char *path, bool *is_blk, char *out,
		     size_t len)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	*is_blk = S_ISBLK(st.st_mode);
	if (*is_blk)
		snprintf(out, len, "blk:%u:%u", major(st.st_rdev),
			 minor(st.st_rdev));
	else
		snprintf(out, len, "file:%llu:%llu",
			 (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino);
	(void)path;
	return 0;
}

static int open_target(struct image *img, const char *path)
{
	struct stat st;
	uint64_t devsize = 0;

	img->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (img->fd < 0 || fstat(img->fd, &st) < 0)
		goto err;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(img->fd, BLKGETSIZE64, &devsize) < 0)
			goto err;
		if (devsize < img->size) {
			log_err("image: cannot use target '%s': device has "
				"%llu bytes, image needs %llu", path,
				(unsigned long long)devsize,
				(unsigned long long)img->size);
			return -ENOSPC;
		}
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		log_err("image: cannot use target '%s': not a file or block "
			"device", path);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size != img->size && st.st_size != 0) {
		log_err("image: cannot use target '%s': size %llu, image is "
			"%llu bytes", path, (unsigned long long)st.st_size,
			(unsigned long long)img->size);
		return -EINVAL;
	}
	if (!st.st_size && ftruncate(img->fd, img->size) < 0)
		goto err;
	return 0;
err:
	log_err("image: cannot open target '%s': %s", path, strerror(errno));
	return -errno;
}

int image_open(const struct image_conf *conf, struct image **out)
{
	struct ovl_conf oc = { 0 };
	struct image *img;
	char *state = NULL;
	int ret;

	img = xcalloc(1, sizeof(*img));
	img->fd = -1;
	img->archive = conf->archive;
	img->fidx = repo_archive_fidx(conf->archive);
	img->cache = conf->cache;
	img->name = xstrdup(conf->name);
	img->size = snap_fidx_size(img->fidx);
	img->chunk_size = snap_fidx_chunk_size(img->fidx);
	img->nchunks = snap_fidx_count(img->fidx);
	img->block_size = conf->block_size ? conf->block_size : 4096;
	if (img->block_size < 512 || img->block_size > img->chunk_size ||
	    (img->block_size & (img->block_size - 1))) {
		log_err("image: cannot use block size %llu: must be a power of "
			"two from 512 to the chunk size",
			(unsigned long long)img->block_size);
		ret = -EINVAL;
		goto err_free;
	}
	if (conf->read_only || !conf->target) {
		*out = img;
		return 0;
	}
	img->target = xstrdup(conf->target);
	ret = open_target(img, conf->target);
	if (ret)
		goto err_free;
	state = conf->state_path ? xstrdup(conf->state_path) :
				   xasprintf("%s.lmstate", conf->target);
	oc.state_path = state;
	oc.target_fd = img->fd;
	oc.size = img->size;
	oc.chunk_size = img->chunk_size;
	oc.block_size = img->block_size;
	memcpy(oc.index_csum, snap_fidx_csum(img->fidx), 32);
	ret = target_id(img->fd, conf->target, &img->is_blk, oc.target_id,
			sizeof(oc.target_id));
	if (!ret)
		ret = ovl_open(&oc, &img->ovl);
	free(state);
	if (ret)
		goto err_free;
	*out = img;
	return 0;
err_free:
	image_close(img);
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
	if (img->fd >= 0)
		close(img->fd);
	free(img->name);
	free(img->target);
	free(img);
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

	if (now - __atomic_load_n(&img->guest_io_ns, __ATOMIC_RELAXED) >
	    10000000)
		__atomic_store_n(&img->guest_io_ns, now, __ATOMIC_RELAXED);
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
	ovl_lock_chunk(img->ovl, i);
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
		ret = ovl_mark_present(img->ovl, first, last - first + 1);
	ovl_mark_guest(img->ovl, i);
	note_marks(img);
	ovl_unlock_chunk(img->ovl, i);
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

int image_discard(struct image *img, uint64_t off, uint64_t len)
{
	uint64_t bs = img->block_size;
	uint64_t end = MIN(off + len, img->size);
	uint64_t first = (off + bs - 1) / bs;
	uint64_t stop = end == img->size ? (end + bs - 1) / bs : end / bs;
	int ret = 0;

	if (!img->ovl)
		return -EROFS;
	/* Whole blocks only: the rest of the range keeps its data. */
	while (first < stop) {
		uint64_t i = first * bs / img->chunk_size;
		uint64_t cstop = MIN(stop, (i + 1) * img->chunk_size / bs);
		uint64_t zoff = first * bs;
		uint64_t zend = MIN(cstop * bs, img->size);

		ovl_lock_chunk(img->ovl, i);
		ret = zero_target(img, zoff, zend - zoff);
		if (!ret)
			ret = ovl_mark_present(img->ovl, first, cstop - first);
		ovl_mark_guest(img->ovl, i);
		note_marks(img);
		ovl_unlock_chunk(img->ovl, i);
		if (ret) {
			log_err("image: cannot discard '%s' at offset %llu: %s",
				img->name, (unsigned long long)zoff,
				strerror(-ret));
			return ret;
		}
		first = cstop;
	}
	return 0;
}

int image_flush(struct image *img)
{
	uint64_t marks;
	int ret;

	if (!img->ovl)
		return 0;
	marks = __atomic_load_n(&img->marks, __ATOMIC_ACQUIRE);
	ret = ovl_commit(img->ovl);
	if (ret) {
		log_err("image: cannot commit the state of '%s': %s", img->name,
			strerror(-ret));
		return ret;
	}
	__atomic_store_n(&img->committed_marks, marks, __ATOMIC_RELEASE);
	return 0;
}

int image_checkpoint(struct image *img)
{
	if (!img->ovl || __atomic_load_n(&img->marks, __ATOMIC_ACQUIRE) ==
				 __atomic_load_n(&img->committed_marks,
						 __ATOMIC_ACQUIRE))
		return 0;
	return image_flush(img);
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
		ret = e ? pwrite_full(img->fd, ccache_data(e), cend - cstart,
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
		ret = e ? pwrite_full(img->fd, ccache_data(e) + (off - cstart),
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

int image_fill_chunk(struct image *img, uint64_t i, enum store_prio prio)
{
	struct ccache_entry *e = NULL;
	int ret;

	if (!image_chunk_incomplete(img, i))
		return 0;
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
	if (ret && ret != -EIO)
		log_err("image: cannot fill chunk %llu of '%s': %s",
			(unsigned long long)i, img->name, strerror(-ret));
	return ret;
}

uint64_t image_chunk_size(const struct image *img)
{
	return img->chunk_size;
}

bool image_chunk_wanted(const struct image *img, uint64_t i)
{
	if (i >= img->nchunks || is_zero_chunk(img, i) ||
	    (img->ovl && !image_chunk_incomplete(img, i)))
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

void image_copy_on_read(struct image *img, uint64_t off, size_t len)
{
	uint64_t end = MIN(off + len, img->size);

	if (!img->ovl || !len)
		return;
	for (uint64_t i = off / img->chunk_size;
	     i * img->chunk_size < end; i++) {
		/* Only what is still cached: never a second fetch. */
		if (image_chunk_incomplete(img, i) && !is_zero_chunk(img, i) &&
		    ccache_peek(img->cache, snap_fidx_digest(img->fidx, i)))
			image_fill_chunk(img, i, STORE_PRIO_STREAM);
	}
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
