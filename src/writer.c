/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The asynchronous writer (writer.h).  Buffers are in one array; free
 * ones on a stack, queued ones in a FIFO ring of the same capacity (a
 * buffer is in at most one of them, so neither can overflow).  Writer
 * threads take the ring's head and run the write without the lock.
 *
 * Locking: ->lock guards the stack, the ring, ->busy, ->err and ->stop;
 * ->cond is broadcast on every change (few threads, rare waits).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "util.h"
#include "writer.h"
#include "banned.h"

struct job {
	void *buf;
	void *arg;
};

struct writer {
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* with ->lock: any change */
	void **all;			/* immutable: every buffer */
	void **free;			/* ->lock: stack of free buffers */
	unsigned int nfree;		/* ->lock */
	struct job *ring;		/* ->lock: queued writes, FIFO */
	unsigned int head;		/* ->lock */
	unsigned int nqueued;		/* ->lock */
	unsigned int busy;		/* ->lock: writes running */
	int err;			/* ->lock: the first failure */
	bool stop;			/* ->lock: threads end when idle */
	unsigned int nbufs;		/* immutable */
	writer_fn fn;			/* immutable */
	void *ctx;			/* immutable */
	pthread_t *tids;		/* immutable */
	unsigned int nthreads;		/* immutable: started */
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	thread_name("lm-writer");
	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct job j;
		int ret;

		while (!w->nqueued && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (!w->nqueued)
			break;
		j = w->ring[w->head];
		w->head = (w->head + 1) % w->nbufs;
		w->nqueued--;
		w->busy++;
		pthread_mutex_unlock(&w->lock);
		ret = w->fn(w->ctx, j.buf, j.arg);
		pthread_mutex_lock(&w->lock);
		if (ret && !w->err)
			w->err = ret;
		w->busy--;
		w->free[w->nfree++] = j.buf;
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int writer_new(size_t size, unsigned int nbufs, unsigned int nthreads,
	       writer_fn fn, void *ctx, struct writer **out)
{
	struct writer *w = calloc(1, sizeof(*w));
	int ret = -ENOMEM;

	*out = NULL;
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->fn = fn;
	w->ctx = ctx;
	w->nbufs = nbufs ? nbufs : 1;
	w->all = calloc(w->nbufs, sizeof(*w->all));
	w->free = calloc(w->nbufs, sizeof(*w->free));
	w->ring = calloc(w->nbufs, sizeof(*w->ring));
	w->tids = calloc(nthreads ? nthreads : 1, sizeof(*w->tids));
	if (!w->all || !w->free || !w->ring || !w->tids)
		goto err_free;
	for (unsigned int i = 0; i < w->nbufs; i++) {
		if (posix_memalign(&w->all[i], DIRECT_ALIGN, size))
			goto err_free;
		w->free[w->nfree++] = w->all[i];
	}
	w->nthreads = threads_start(w->tids, nthreads ? nthreads : 1,
				    writer_thread, w);
	if (!w->nthreads) {
		ret = -EAGAIN;
		goto err_free;
	}
	*out = w;
	return 0;
err_free:
	writer_free(w);
	return ret;
}

void writer_free(struct writer *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	threads_join(w->tids, w->nthreads);
	for (unsigned int i = 0; w->all && i < w->nbufs; i++)
		free(w->all[i]);
	free(w->all);
	free(w->free);
	free(w->ring);
	free(w->tids);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

void *writer_get(struct writer *w)
{
	void *buf;

	pthread_mutex_lock(&w->lock);
	while (!w->nfree)
		pthread_cond_wait(&w->cond, &w->lock);
	buf = w->free[--w->nfree];
	pthread_mutex_unlock(&w->lock);
	return buf;
}

void writer_put(struct writer *w, void *buf)
{
	pthread_mutex_lock(&w->lock);
	w->free[w->nfree++] = buf;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void writer_submit(struct writer *w, void *buf, void *arg)
{
	pthread_mutex_lock(&w->lock);
	w->ring[(w->head + w->nqueued) % w->nbufs] =
		(struct job){ .buf = buf, .arg = arg };
	w->nqueued++;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int writer_drain(struct writer *w)
{
	int ret;

	pthread_mutex_lock(&w->lock);
	while (w->nqueued || w->busy)
		pthread_cond_wait(&w->cond, &w->lock);
	ret = w->err;
	pthread_mutex_unlock(&w->lock);
	return ret;
}
