/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What changes a live-mounted disk's target: guest writes and discards
 * (the backup's bytes first where a write covers part of an absent
 * block), background fills of whole chunks, and --in-place checks.
 * Ordering rules: the top of image.c.
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
	uint64_t blen = image_block_end(img, blk) - bstart;
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
		hp = off != first * bs || end != image_block_end(img, first);
		tp = false;
	} else {
		hp = off != first * bs;
		tp = end != image_block_end(img, last);
	}
	/* Partial blocks that are absent need the backup's bytes first. */
	if (((hp && !ovl_block_present(img->ovl, first)) ||
	     (tp && !ovl_block_present(img->ovl, last))) &&
	    !image_is_zero_chunk(img, i)) {
		ret = image_get_chunk(img, i, STORE_PRIO_DEMAND, &e);
		if (ret)
			return ret;
	}
	ret = lock_for_guest(img, i, first, last);
	if (ret)
		goto out_put;
	if (first == last) {
		ret = write_part(img, i, first, src, off, n, hp, e);
	} else {
		uint64_t ms = hp ? image_block_end(img, first) : off;
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

	image_note_guest_io(img);
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
		uint64_t e = MIN(end, image_block_end(img, off / bs));

		zeros = calloc(1, bs);
		if (!zeros)
			return -ENOMEM;
		ret = write_chunk_range(img, i, zeros, off, e - off);
		off = e;
	}
	if (!ret && off < end && end != image_block_end(img, (end - 1) / bs)) {
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

	image_note_guest_io(img);
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
	if (image_cancelled(img))
		return -ECANCELED;
	if (image_needs_check(img, i)) {
		image_check_chunk(img, i);
		if (!image_chunk_incomplete(img, i))
			return 0;
	}
	if (!image_is_zero_chunk(img, i)) {
		ret = image_get_chunk(img, i, prio, &e);
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

