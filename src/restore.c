/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * restore and verify.
 *
 * restore plans one work item per distinct digest, ordered by the
 * digest's first position, so that a chunk used at several offsets is
 * fetched and decoded once and written everywhere it belongs.  Worker
 * threads take items through an atomic cursor; each owns a chunk-sized
 * buffer; they share nothing else but the error flag.  Zero chunks are
 * never fetched: a fresh file target gets a hole, a block device gets
 * BLKZEROOUT unless --target-zeroed says it already reads zeros.
 *
 * Whole chunks are written with O_DIRECT where the target takes it: a
 * restore reads nothing back, so the page cache only costs a copy and
 * the writeback of a whole disk evicting everything else (a 1 GiB image
 * from a local datastore to ext4: 880 to 910 MiB/s, 580 to 850 buffered).
 * Tails that are not whole pages, and file systems that refuse O_DIRECT
 * (tmpfs), go through the page cache (util: pwrite_split).
 *
 * Thread inventory: restore_run() starts conf->threads workers and joins
 * them all before it returns.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include "chunk.h"
#include "excl.h"
#include "log.h"
#include "restore.h"
#include "util.h"
#include "banned.h"

/* A mount unmounted a moment ago is gone within about a second. */
#define LOCK_WAIT_MS 5000

struct item {
	uint64_t first;		/* index of the first position */
	uint64_t npos;
	uint64_t *pos;		/* points into plan->positions */
};

struct plan {
	struct item *items;
	uint64_t nitems;
	uint64_t *positions;	/* all chunk indexes, grouped by digest */
};

struct job {
	const struct restore_conf *conf;    /* immutable */
	const struct snap_fidx *fidx;	    /* immutable */
	struct plan plan;		    /* immutable once workers run */
	int fd;				    /* immutable */
	int dfd;			    /* immutable: O_DIRECT, or -1 */
	bool direct_off;		    /* atomic: dfd refused a write */
	int hold_fd;			    /* immutable: locks TARGET */
	bool is_blk;			    /* immutable */
	uint64_t next;			    /* atomic: next item */
	int error;			    /* atomic: first -errno */
	uint64_t fetched_bytes;		    /* atomic */
	uint64_t zero_chunks;		    /* atomic */
};

static int cmp_pos(const void *a, const void *b, void *ctx)
{
	const struct snap_fidx *f = ctx;
	uint64_t x = *(const uint64_t *)a;
	uint64_t y = *(const uint64_t *)b;
	int c = memcmp(snap_fidx_digest(f, x), snap_fidx_digest(f, y), 32);

	if (c)
		return c;
	return (x > y) - (x < y);
}

static int cmp_item(const void *a, const void *b)
{
	const struct item *x = a;
	const struct item *y = b;

	return (x->first > y->first) - (x->first < y->first);
}

static int plan_build(const struct snap_fidx *f, struct plan *p)
{
	uint64_t n = snap_fidx_count(f);
	uint64_t i;
	uint64_t j;

	p->positions = calloc(n, sizeof(*p->positions));
	p->items = calloc(n, sizeof(*p->items));
	if (!p->positions || !p->items)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		p->positions[i] = i;
	qsort_r(p->positions, n, sizeof(*p->positions), cmp_pos, (void *)f);
	p->nitems = 0;
	for (i = 0; i < n; i = j) {
		struct item *it = &p->items[p->nitems++];

		for (j = i + 1; j < n &&
				!memcmp(snap_fidx_digest(f, p->positions[i]),
					snap_fidx_digest(f, p->positions[j]),
					32);
		     j++)
			;
		it->first = p->positions[i];
		it->pos = &p->positions[i];
		it->npos = j - i;
	}
	qsort(p->items, p->nitems, sizeof(*p->items), cmp_item);
	return 0;
}

static void plan_free(struct plan *p)
{
	free(p->items);
	free(p->positions);
}

static int zero_chunk(struct job *job, uint64_t off, uint64_t len)
{
	/* A fresh file reads zeros already: leave a hole. */
	if (!job->is_blk || job->conf->target_zeroed)
		return 0;
	return zero_range(job->fd, true, off, len);
}

static int do_item(struct job *job, const struct item *it, uint8_t *buf)
{
	const struct repo_archive *a = job->conf->archive;
	uint64_t cs = snap_fidx_chunk_size(job->fidx);
	uint64_t len = snap_fidx_chunk_len(job->fidx, it->first);
	int ret;

	if (repo_archive_is_zero(a, it->first)) {
		__atomic_add_fetch(&job->zero_chunks, it->npos,
				   __ATOMIC_RELAXED);
		for (uint64_t k = 0; k < it->npos; k++) {
			ret = zero_chunk(job, it->pos[k] * cs, len);
			if (ret)
				return ret;
		}
		return 0;
	}
	ret = repo_archive_read_chunk(a, it->first, STORE_PRIO_DEMAND, buf);
	if (ret)
		return ret;
	__atomic_add_fetch(&job->fetched_bytes, len, __ATOMIC_RELAXED);
	for (uint64_t k = 0; k < it->npos; k++) {
		uint64_t i = it->pos[k];

		ret = pwrite_split(job->fd, job->dfd, &job->direct_off, buf,
				   snap_fidx_chunk_len(job->fidx, i), i * cs);
		if (ret) {
			log_err("restore: cannot write '%s' at offset %llu: %s",
				job->conf->target,
				(unsigned long long)(i * cs), strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static void *worker(void *arg)
{
	struct job *job = arg;
	void *buf = NULL;
	int ret = 0;

	/* O_DIRECT wants an aligned buffer. */
	if (posix_memalign(&buf, DIRECT_ALIGN,
			   snap_fidx_chunk_size(job->fidx)))
		ret = -ENOMEM;
	while (!ret && !__atomic_load_n(&job->error, __ATOMIC_RELAXED)) {
		uint64_t k = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);

		if (k >= job->plan.nitems)
			break;
		ret = do_item(job, &job->plan.items[k], buf);
	}
	if (ret) {
		int zero = 0;

		__atomic_compare_exchange_n(&job->error, &zero, ret, false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
	}
	free(buf);
	return NULL;
}

/*
 * A live mount's target is never written behind its back: a block device
 * is opened O_EXCL and locked; an existing file TARGET is locked until
 * the finished TARGET.partial has been renamed over it, and
 * TARGET.partial itself is locked against a second restore.
 */
static int open_target(struct job *job, const char *target, uint64_t size,
		       char **partial)
{
	const char *hint = "; unmount that mount or wait for that restore";
	struct stat sb;
	uint64_t devsize;
	int ret;

	if (!stat(target, &sb) && S_ISBLK(sb.st_mode)) {
		job->is_blk = true;
		job->fd = open(target, O_RDWR | O_EXCL | O_CLOEXEC);
		if (job->fd < 0 && errno == EBUSY) {
			log_err("restore: cannot use '%s': the device is in use "
				"(mounted, or opened exclusively)", target);
			return -EBUSY;
		}
		if (job->fd < 0)
			goto err;
		ret = excl_lock(job->fd, target, false, LOCK_WAIT_MS, "restore",
				hint);
		if (ret)
			return ret;
		if (ioctl(job->fd, BLKGETSIZE64, &devsize) < 0)
			goto err;
		if (devsize < size) {
			log_err("restore: cannot use '%s': device has %llu "
				"bytes, image needs %llu", target,
				(unsigned long long)devsize,
				(unsigned long long)size);
			return -ENOSPC;
		}
		return 0;
	}
	job->hold_fd = open(target, O_RDONLY | O_CLOEXEC);
	if (job->hold_fd >= 0) {
		ret = excl_lock(job->hold_fd, target, false, LOCK_WAIT_MS,
				"restore", hint);
		if (ret)
			return ret;
	} else if (errno != ENOENT) {
		goto err;
	}
	*partial = xasprintf("%s.partial", target);
	job->fd = open(*partial, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (job->fd < 0)
		goto err;
	ret = excl_lock(job->fd, *partial, false, LOCK_WAIT_MS, "restore",
			hint);
	if (ret) {
		free(*partial);
		*partial = NULL;	/* not ours to remove */
		return ret;
	}
	if (ftruncate(job->fd, 0) < 0 || ftruncate(job->fd, size) < 0)
		goto err;
	return 0;
err:
	log_err("restore: cannot open target '%s': %s",
		*partial ? *partial : target, strerror(errno));
	return -errno;
}

int restore_run(const struct restore_conf *conf)
{
	struct job job = {
		.conf = conf,
		.fidx = repo_archive_fidx(conf->archive),
		.fd = -1,
		.dfd = -1,
		.hold_fd = -1,
	};
	unsigned int nthreads = conf->threads ? conf->threads : 4;
	uint64_t size = snap_fidx_size(job.fidx);
	pthread_t *tids;
	char *partial = NULL;
	uint64_t t0 = now_ns();
	unsigned int started = 0;
	double secs;
	int ret;

	repo_archive_stop_on_error(conf->archive);
	ret = plan_build(job.fidx, &job.plan);
	if (ret)
		goto out;
	ret = open_target(&job, conf->target, size, &partial);
	if (ret)
		goto out;
	posix_fadvise(job.fd, 0, 0, POSIX_FADV_DONTNEED);
	job.dfd = open_direct(job.fd);
	tids = xcalloc(nthreads, sizeof(*tids));
	for (; started < nthreads; started++)
		if (pthread_create(&tids[started], NULL, worker, &job))
			break;
	if (!started) {
		log_err("restore: cannot start worker threads");
		job.error = -EAGAIN;
	}
	for (unsigned int i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	free(tids);
	ret = job.error;
	if (!ret && fsync(job.fd) < 0) {
		ret = -errno;
		log_err("restore: cannot sync '%s': %s", conf->target,
			strerror(errno));
	}
	if (!ret && partial) {
		if (rename(partial, conf->target) < 0) {
			ret = -errno;
			log_err("restore: cannot rename '%s' to '%s': %s",
				partial, conf->target, strerror(errno));
		} else {
			fsync_parent_dir(conf->target);
		}
	}
	if (ret) {
		/* The failure was logged where it happened, once. */
		if (partial)
			unlink(partial);
		goto out;
	}
	secs = (now_ns() - t0) / 1e9;
	if (!conf->quiet)
		log_info("restore: %s -> %s: %.1f MiB, %.1f MiB fetched, %llu "
			 "zero chunks, %.2f s, %.1f MiB/s",
			 repo_archive_name(conf->archive), conf->target,
			 size / 1048576.0, job.fetched_bytes / 1048576.0,
			 (unsigned long long)job.zero_chunks, secs,
			 size / 1048576.0 / (secs > 0 ? secs : 1e-9));
out:
	if (job.dfd >= 0)
		close(job.dfd);
	if (job.fd >= 0)
		close(job.fd);
	if (job.hold_fd >= 0)
		close(job.hold_fd);
	plan_free(&job.plan);
	free(partial);
	return ret;
}

struct vjob {
	const struct verify_conf *conf;	/* immutable */
	const struct snap_fidx *fidx;	/* immutable */
	int fd;				/* immutable */
	uint64_t next;			/* atomic */
	uint64_t first_bad;		/* atomic: lowest mismatching chunk */
	int error;			/* atomic */
};

static void *vworker(void *arg)
{
	struct vjob *j = arg;
	const struct key_material *key = repo_archive_key(j->conf->archive);
	uint64_t cs = snap_fidx_chunk_size(j->fidx);
	uint64_t n = snap_fidx_count(j->fidx);
	uint8_t *buf = malloc(cs);
	uint8_t d[32];

	if (!buf) {
		__atomic_store_n(&j->error, -ENOMEM, __ATOMIC_RELAXED);
		return NULL;
	}
	for (;;) {
		uint64_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		uint64_t len;
		int ret;

		if (i >= n || i > __atomic_load_n(&j->first_bad,
						  __ATOMIC_RELAXED))
			break;
		len = snap_fidx_chunk_len(j->fidx, i);
		ret = pread_full(j->fd, buf, len, i * cs);
		if (ret) {
			__atomic_store_n(&j->error, ret, __ATOMIC_RELAXED);
			break;
		}
		chunk_digest(buf, len, key, d);
		if (memcmp(d, snap_fidx_digest(j->fidx, i), 32)) {
			uint64_t cur = __atomic_load_n(&j->first_bad,
						       __ATOMIC_RELAXED);

			while (i < cur &&
			       !__atomic_compare_exchange_n(&j->first_bad, &cur,
							    i, false,
							    __ATOMIC_RELAXED,
							    __ATOMIC_RELAXED))
				;
		}
	}
	free(buf);
	return NULL;
}

int verify_run(const struct verify_conf *conf)
{
	struct vjob j = {
		.conf = conf,
		.fidx = repo_archive_fidx(conf->archive),
		.first_bad = UINT64_MAX,
	};
	unsigned int nthreads = conf->threads ? conf->threads : 2;
	uint64_t size = snap_fidx_size(j.fidx);
	pthread_t tids[64];
	unsigned int started = 0;
	uint64_t isize = 0;
	struct stat sb;
	char hex[65];
	int ret = 0;

	j.fd = open(conf->image, O_RDONLY | O_CLOEXEC);
	if (j.fd < 0 || fstat(j.fd, &sb) < 0) {
		ret = -errno;
		log_err("verify: cannot open '%s': %s", conf->image,
			strerror(errno));
		goto out;
	}
	/* A target a live mount or restore still writes is not done. */
	ret = excl_lock(j.fd, conf->image, true, LOCK_WAIT_MS, "verify",
			"; it is still being written: verify it when done");
	if (ret)
		goto out;
	if (S_ISBLK(sb.st_mode))
		ioctl(j.fd, BLKGETSIZE64, &isize);
	else
		isize = sb.st_size;
	if (S_ISBLK(sb.st_mode) ? isize < size : isize != size) {
		log_err("verify: '%s' differs from the backup: size %llu, "
			"backup has %llu", conf->image,
			(unsigned long long)isize, (unsigned long long)size);
		ret = -EUCLEAN;
		goto out;
	}
	nthreads = MIN(nthreads, ARRAY_SIZE(tids));
	for (; started < nthreads; started++)
		if (pthread_create(&tids[started], NULL, vworker, &j))
			break;
	for (unsigned int i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	if (!started || j.error) {
		ret = started ? j.error : -EAGAIN;
		log_err("verify: cannot read '%s': %s", conf->image,
			strerror(-ret));
		goto out;
	}
	if (j.first_bad != UINT64_MAX) {
		hex_encode(snap_fidx_digest(j.fidx, j.first_bad), 32, hex);
		log_err("verify: '%s' differs from the backup at chunk %llu "
			"(offset %llu, expected digest %s)", conf->image,
			(unsigned long long)j.first_bad,
			(unsigned long long)(j.first_bad *
					     snap_fidx_chunk_size(j.fidx)),
			hex);
		ret = -EUCLEAN;
	}
out:
	if (j.fd >= 0)
		close(j.fd);
	return ret;
}
