/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Sequential readahead.
 *
 * Detection, per image: a read that starts within SLACK after where the
 * last one ended, or ends within SLACK before it, is sequential (QEMU and
 * the FUSE threads may deliver a sequential stream slightly out of
 * order).  A sequential read queues the chunks after it, up to
 * `window_bytes` ahead, that were not queued since the stream of reads
 * began.  Workers take chunks off the queue and call
 * image_prefetch(), which decodes them into the cache.
 * A guest read of a chunk a worker is loading waits for that one fetch
 * (the cache is single-flight), never a second.
 *
 * Threads: readahead_start() creates the workers; readahead_stop() sets
 * ->stop, wakes them and joins them.  readahead_note() runs on FUSE
 * threads after every read; it takes ->lock only when it has chunks to
 * queue.
 * Lock order: ->lock only; never held across image_prefetch().
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "readahead.h"
#include "util.h"
#include "banned.h"

#define QUEUE_LEN 64
#define SLACK (1u << 20)

/*
 * Per image, read on every guest read: atomics, no lock, so random reads
 * never contend.  A race between two readers costs at most one chunk
 * read ahead twice (the cache loads it once) or once too few.
 */
struct seq {
	struct image *img;	/* immutable */
	uint64_t next_off;	/* atomic: end of the last read */
	uint64_t queued_to;	/* atomic: last chunk queued + 1; raised
				   under ->lock */
};

struct item {
	struct image *img;
	uint64_t chunk;
};

struct readahead {
	struct readahead_conf conf;	/* immutable */
	struct seq *seq;		/* array of conf.nimages */
	pthread_t *tids;		/* immutable after start */
	unsigned int nthreads;		/* immutable after start */
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* with ->lock: work or stop */
	struct item queue[QUEUE_LEN];	/* protected by ->lock: a ring */
	unsigned int head;		/* protected by ->lock */
	unsigned int len;		/* protected by ->lock */
	bool stop;			/* protected by ->lock */
};

static void *worker(void *arg)
{
	struct readahead *ra = arg;

	thread_name("lm-readahead");
	pthread_mutex_lock(&ra->lock);
	for (;;) {
		struct item it;
		int ret;

		while (!ra->stop && !ra->len)
			pthread_cond_wait(&ra->wake, &ra->lock);
		if (ra->stop)
			break;
		it = ra->queue[ra->head];
		ra->head = (ra->head + 1) % QUEUE_LEN;
		ra->len--;
		pthread_mutex_unlock(&ra->lock);
		ret = image_prefetch(it.img, it.chunk);
		if (ret)
			log_debug(LOG_CAT_FETCH, "readahead: chunk %llu of '%s': "
				  "%d", (unsigned long long)it.chunk,
				  image_name(it.img), ret);
		pthread_mutex_lock(&ra->lock);
	}
	pthread_mutex_unlock(&ra->lock);
	return NULL;
}

int readahead_start(const struct readahead_conf *conf,
		    struct readahead **out)
{
	struct readahead *ra = xcalloc(1, sizeof(*ra));
	unsigned int n;

	ra->conf = *conf;
	if (!ra->conf.threads)
		ra->conf.threads = 4;
	if (!ra->conf.window_bytes)
		ra->conf.window_bytes = 32u << 20;
	ra->seq = xcalloc(conf->nimages ? conf->nimages : 1,
			  sizeof(*ra->seq));
	for (unsigned int i = 0; i < conf->nimages; i++)
		ra->seq[i].img = conf->images[i];
	pthread_mutex_init(&ra->lock, NULL);
	pthread_cond_init(&ra->wake, NULL);
	n = ra->conf.threads;
	ra->tids = xcalloc(n, sizeof(*ra->tids));
	ra->nthreads = threads_start(ra->tids, n, worker, ra);
	if (!ra->nthreads) {
		readahead_stop(ra);
		return -EAGAIN;
	}
	*out = ra;
	return 0;
}

void readahead_stop(struct readahead *ra)
{
	if (!ra)
		return;
	pthread_mutex_lock(&ra->lock);
	ra->stop = true;
	pthread_cond_broadcast(&ra->wake);
	pthread_mutex_unlock(&ra->lock);
	threads_join(ra->tids, ra->nthreads);
	pthread_cond_destroy(&ra->wake);
	pthread_mutex_destroy(&ra->lock);
	free(ra->tids);
	free(ra->seq);
	free(ra);
}

/* ->lock held: queue @chunk unless the ring is full. */
static bool push(struct readahead *ra, struct image *img, uint64_t chunk)
{
	if (ra->len == QUEUE_LEN)
		return false;
	ra->queue[(ra->head + ra->len) % QUEUE_LEN] =
		(struct item){ .img = img, .chunk = chunk };
	ra->len++;
	return true;
}

void readahead_note(struct readahead *ra, struct image *img, uint64_t off,
		    size_t len)
{
	uint64_t cs = image_chunk_size(img);
	uint64_t n = image_chunk_count(img);
	uint64_t last;
	uint64_t stop;
	struct seq *sq = NULL;
	uint64_t prev;
	bool queued = false;

	if (!ra || !len)
		return;
	for (unsigned int i = 0; i < ra->conf.nimages && !sq; i++)
		if (ra->seq[i].img == img)
			sq = &ra->seq[i];
	if (!sq)
		return;
	last = (off + len - 1) / cs;
	stop = MIN(last + 1 + MAX(ra->conf.window_bytes / cs, 1), n);
	prev = __atomic_load_n(&sq->next_off, __ATOMIC_RELAXED);
	/* Judged by the read's end: a late note of a large read still
	   ends near the stream's end. */
	if (!prev || off + len + SLACK < prev || off > prev + SLACK) {
		/* A new stream of reads, or none: start counting here. */
		__atomic_store_n(&sq->next_off, off + len, __ATOMIC_RELAXED);
		__atomic_store_n(&sq->queued_to, last + 1, __ATOMIC_RELAXED);
		return;
	}
	if (off + len > prev)
		__atomic_store_n(&sq->next_off, off + len, __ATOMIC_RELAXED);
	/* Most reads of a sequential stream stay inside the window. */
	if (__atomic_load_n(&sq->queued_to, __ATOMIC_RELAXED) >= stop)
		return;
	pthread_mutex_lock(&ra->lock);
	for (uint64_t c = MAX(__atomic_load_n(&sq->queued_to, __ATOMIC_RELAXED),
			      last + 1); c < stop; c++) {
		bool want = image_chunk_wanted(img, c);

		if (want && !push(ra, img, c))
			break;
		queued |= want;
		__atomic_store_n(&sq->queued_to, c + 1, __ATOMIC_RELAXED);
	}
	if (queued)
		pthread_cond_broadcast(&ra->wake);
	pthread_mutex_unlock(&ra->lock);
}
