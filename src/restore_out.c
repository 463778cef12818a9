/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * restore to standard output (in order, workers ahead of the writer)
 * and verify of an image against the backup: the restores that keep no
 * state.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk.h"
#include "excl.h"
#include "log.h"
#include "restore.h"
#include "restore_i.h"
#include "util.h"
#include "banned.h"

/* ---- standard output, in order ---- */

struct slot {
	uint64_t index;		/* protected by ->lock: the chunk it holds
				   or will hold */
	bool ready;		/* protected by ->lock */
	int err;		/* protected by ->lock */
	uint8_t *buf;		/* the owner's: a worker, then the writer */
};

struct sjob {
	const struct restore_conf *conf;    /* immutable */
	const struct snap_fidx *fidx;	    /* immutable */
	struct slot *slots;		    /* see struct slot */
	unsigned int nslots;		    /* immutable */
	pthread_mutex_t lock;
	pthread_cond_t cond;		    /* with ->lock: slot changes */
	uint64_t next;			    /* protected by ->lock */
	bool stop;			    /* protected by ->lock */
};

static void *stdout_worker(void *arg)
{
	struct sjob *j = arg;
	uint64_t n = snap_fidx_count(j->fidx);

	thread_name("lm-restore");
	for (;;) {
		struct slot *s;
		uint64_t k;
		int ret = 0;

		pthread_mutex_lock(&j->lock);
		k = j->next;
		if (j->stop || k >= n) {
			pthread_mutex_unlock(&j->lock);
			break;
		}
		j->next++;
		s = &j->slots[k % j->nslots];
		/* The writer frees a slot by moving it nslots ahead. */
		while (!j->stop && s->index != k)
			pthread_cond_wait(&j->cond, &j->lock);
		pthread_mutex_unlock(&j->lock);
		if (!repo_archive_is_zero(j->conf->archive, k))
			ret = MIN(restore_read_chunk(j->conf, k, s->buf), 0);
		else
			memset(s->buf, 0, snap_fidx_chunk_len(j->fidx, k));
		pthread_mutex_lock(&j->lock);
		s->err = ret;
		s->ready = true;
		pthread_cond_broadcast(&j->cond);
		pthread_mutex_unlock(&j->lock);
	}
	return NULL;
}

int restore_stdout(const struct restore_conf *conf)
{
	struct sjob j = {
		.conf = conf,
		.fidx = repo_archive_fidx(conf->archive),
	};
	unsigned int nthreads = MIN(conf->threads ? conf->threads : 4, 16u);
	uint64_t n = snap_fidx_count(j.fidx);
	pthread_t tids[16];
	struct progress *prog;
	unsigned int started;
	int ret = 0;

	if (isatty(STDOUT_FILENO)) {
		log_err("restore: cannot write a disk image to a terminal; "
			"redirect standard output or pipe it (e.g. into dd, "
			"qemu-img or ssh)");
		return -ENOTTY;
	}
	/* A reader that goes away is an error to report, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	if (conf->seeds)
		reuse_seeds_wait(conf->seeds);
	repo_archive_stop_on_error(conf->archive);
	j.nslots = nthreads + 2;
	j.slots = xcalloc(j.nslots, sizeof(*j.slots));
	for (unsigned int i = 0; i < j.nslots; i++) {
		j.slots[i].index = i;
		j.slots[i].buf = xmalloc(snap_fidx_chunk_size(j.fidx));
	}
	pthread_mutex_init(&j.lock, NULL);
	pthread_cond_init(&j.cond, NULL);
	/* Standard output is the image: a bar on the terminal only. */
	prog = progress_start(conf->progress == PROGRESS_TTY ? PROGRESS_TTY :
			      PROGRESS_NONE, "restore",
			      repo_archive_name(conf->archive),
			      snap_fidx_size(j.fidx), 0);
	started = threads_start(tids, nthreads, stdout_worker, &j);
	if (!started) {
		log_err("restore: cannot start worker threads");
		ret = -EAGAIN;
	}
	for (uint64_t k = 0; !ret && k < n; k++) {
		struct slot *s = &j.slots[k % j.nslots];

		pthread_mutex_lock(&j.lock);
		while (!s->ready)
			pthread_cond_wait(&j.cond, &j.lock);
		ret = s->err;
		pthread_mutex_unlock(&j.lock);
		if (!ret) {
			ret = write_full(STDOUT_FILENO, s->buf,
					 snap_fidx_chunk_len(j.fidx, k));
			if (ret)
				log_err("restore: cannot write standard "
					"output at offset %llu: %s",
					(unsigned long long)(k *
					snap_fidx_chunk_size(j.fidx)),
					strerror(-ret));
		}
		pthread_mutex_lock(&j.lock);
		s->ready = false;
		s->index = k + j.nslots;
		pthread_cond_broadcast(&j.cond);
		pthread_mutex_unlock(&j.lock);
		progress_update(prog, (k + 1) * snap_fidx_chunk_size(j.fidx));
	}
	progress_end(prog, ret);
	pthread_mutex_lock(&j.lock);
	j.stop = true;
	pthread_cond_broadcast(&j.cond);
	pthread_mutex_unlock(&j.lock);
	threads_join(tids, started);
	for (unsigned int i = 0; i < j.nslots; i++)
		free(j.slots[i].buf);
	free(j.slots);
	pthread_cond_destroy(&j.cond);
	pthread_mutex_destroy(&j.lock);
	return ret;
}

struct vjob {
	const struct verify_conf *conf;	/* immutable */
	const struct snap_fidx *fidx;	/* immutable */
	int fd;				/* immutable */
	uint64_t next;			/* atomic */
	uint64_t first_bad;		/* atomic: lowest mismatching chunk */
	int error;			/* atomic */
	uint64_t checked;		/* atomic: bytes hashed */
	unsigned int ended;		/* atomic: workers returned */
};

static void *vworker(void *arg)
{
	struct vjob *j = arg;
	const struct key_material *key = repo_archive_key(j->conf->archive);
	uint64_t cs = snap_fidx_chunk_size(j->fidx);
	uint64_t n = snap_fidx_count(j->fidx);
	uint8_t *buf = malloc(cs);
	uint8_t d[32];

	thread_name("lm-verify");
	if (!buf) {
		__atomic_store_n(&j->error, -ENOMEM, __ATOMIC_RELAXED);
		/* The main thread waits for every worker to say it ended. */
		__atomic_add_fetch(&j->ended, 1, __ATOMIC_RELEASE);
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
		__atomic_add_fetch(&j->checked, len, __ATOMIC_RELAXED);
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
	__atomic_add_fetch(&j->ended, 1, __ATOMIC_RELEASE);
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
	struct progress *prog = NULL;
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
		blkdev_size(j.fd, &isize);
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
	prog = progress_start(conf->progress, "verify",
			      repo_archive_name(conf->archive), size, 0);
	for (; started < nthreads; started++)
		if (pthread_create(&tids[started], NULL, vworker, &j))
			break;
	while (__atomic_load_n(&j.ended, __ATOMIC_ACQUIRE) < started) {
		progress_update(prog, __atomic_load_n(&j.checked,
						      __ATOMIC_RELAXED));
		sleep_ms(100);
	}
	for (unsigned int i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	/* The bar goes before any line about the result. */
	if (!j.error && j.first_bad == UINT64_MAX)
		progress_update(prog, size);
	progress_end(prog, !started ? -EAGAIN : j.error ? j.error :
			   j.first_bad != UINT64_MAX ? -EUCLEAN : 0);
	prog = NULL;
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
