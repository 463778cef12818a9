/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Background streamer.
 *
 * Work order: one pass over (image, position) pairs in four phases:
 * with --in-place, the check of every chunk against the old target
 * (local reads and hashes: CHECKS_PER_CPU workers per CPU; the other
 * workers meanwhile fetch the chunks found to differ, so that the disk
 * and the network work at once); the prefetch lists (boot traces of
 * earlier mounts of the group), the overlay's own trace (what the guest
 * read before a resume), then every chunk in index order.  Fetches wait
 * for the seeds' index, so that nothing a seed holds is fetched.
 * Prefetch chunks are what the guest is about to read, so no worker
 * gives way to guest I/O for them, but only PREFETCH_WORKERS fetch them
 * at once, in order; a cache-only stream (no target) decodes a bounded
 * number of them into the cache and ends.  The
 * cursor is a small struct under ->lock: taking the next item costs a
 * mutex next to a 4 MiB fetch and write, which is nothing.  A chunk
 * whose fill fails with -EIO is retried by the same worker after a
 * back-off (1 s doubling to 30 s) so the stream pauses while the store
 * is down and resumes by itself; other errors (a chunk missing or bad
 * in the store: -EBADMSG) are counted and the chunk is left for a later
 * pass.  A fill that cannot write the target (full, read-only, failing)
 * stalls its worker on that chunk, retrying every STALL_RETRY_MS, so
 * the stream resumes by itself once there is room; the reason is logged
 * once and shown in .status.  Guest reads go first at the fetch layer
 * (demand priority), and fills never overwrite guest data (image.c
 * re-checks under the chunk lock).
 *
 * Giving way: while the guest does I/O (any read or write within the
 * last YIELD_MS), at most BUSY_WORKERS workers copy; the rest wait.  The
 * guest's absent reads then share the link with two stream transfers,
 * not fourteen, and its present I/O with two writers; a guest that never
 * rests still lets the stream finish.
 *
 * CPU: a restore must not slow the VM it serves.  Workers run at nice 19
 * (per thread), so vCPU threads and the guest's own reads (FUSE threads,
 * nice 0) win a contended core and the stream gets what is left.  Not
 * SCHED_IDLE: a guest read may wait for the chunk a worker is decoding,
 * and nice 19 still gives that worker a real share of the CPU.
 *
 * Threads: stream_start() creates conf->threads workers; stream_stop()
 * sets ->stop, wakes sleepers and joins them all.
 * Lock order: ->lock only; never held across image calls that lock or
 * do I/O (under it: image_trace, image_get_stats, image_guest_io_ns,
 * image_needs_check, image_check_differs, image_chunk_incomplete, which
 * read counters and states without a lock).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "stream.h"
#include "util.h"
#include "banned.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000
#define STREAM_NICE 19
#define YIELD_MS 200
#define BUSY_WORKERS 2
#define PREFETCH_WORKERS 2
#define YIELD_POLL_MS 50
#define STALL_RETRY_MS 5000
/*
 * --in-place checks at once, per CPU: a check reads 4 MiB (O_DIRECT: no
 * CPU), then hashes it; with more checks than CPUs one reads while
 * another hashes.  8 GiB, 2 CPUs, local store: 1 per CPU 1181 MiB/s, 2
 * 1550-1650, 3 1610-2070 (dd iflag=direct: 2100).
 */
#define CHECKS_PER_CPU 3

enum phase {
	PH_CHECK,	/* --in-place: compare with the old target */
	PH_PREFETCH,	/* conf.prefetch lists */
	PH_TRACE,	/* the overlay's trace */
	PH_SEQ,		/* every chunk */
};

struct stream {
	struct stream_conf conf;	/* immutable */
	pthread_t *tids;		/* immutable after start */
	unsigned int nthreads;		/* immutable after start */
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* with ->lock: stop requests and
					   ends of prefetch copies; the
					   give-way wait polls on it */
	unsigned int img;		/* protected by ->lock: cursor image */
	uint64_t pos;			/* protected by ->lock: cursor */
	enum phase phase;		/* protected by ->lock */
	size_t handed;			/* protected by ->lock: cache-only
					   items given out */
	uint64_t prefetched;		/* atomic */
	unsigned int passes;		/* protected by ->lock */
	bool stop;			/* protected by ->lock */
	unsigned int copying;		/* protected by ->lock: workers on
					   an item */
	unsigned int held;		/* ->lock to change, atomic to read:
					   workers waiting in give_way() */
	unsigned int paused;		/* atomic: workers retrying a chunk
					   the store failed to give */
	unsigned int stalled;		/* atomic: workers waiting for a
					   target that refused a write */
	int stall_err;			/* atomic: its -errno */
	struct image *stall_img;	/* atomic: and which target */
	uint64_t errors;		/* atomic */
	bool announced;			/* atomic: on_done was called */
	unsigned int max_checks;	/* immutable: checks at once */
	unsigned int checking;		/* protected by ->lock: workers on
					   a check */
	unsigned int fimg;		/* protected by ->lock: fetches of
					   chunks found different, behind */
	uint64_t fpos;			/*   the check cursor */
};

/* Chunk @pos of the current phase's list for image @im; false past it. */
static bool phase_item(struct stream *s, struct image *im,
		       uint64_t *chunk)
{
	const uint64_t *list = NULL;
	size_t n = 0;

	switch (s->phase) {
	case PH_CHECK:
		/* Only what still needs it: most of a disk, or nothing. */
		while (s->pos < image_chunk_count(im) &&
		       !image_needs_check(im, s->pos))
			s->pos++;
		if (s->pos >= image_chunk_count(im))
			return false;
		*chunk = s->pos;
		return true;
	case PH_PREFETCH:
		if (s->conf.prefetch && s->conf.prefetch[s->img]) {
			list = s->conf.prefetch[s->img];
			n = s->conf.nprefetch[s->img];
		}
		break;
	case PH_TRACE:
		n = image_trace(im, &list);
		break;
	case PH_SEQ:
		if (s->pos >= image_chunk_count(im))
			return false;
		*chunk = s->pos;
		return true;
	}
	if (s->pos >= n)
		return false;
	*chunk = list[s->pos];
	return true;
}

/*
 * ->lock held: next (image, chunk) that may need work, or false at the
 * end of a pass.  *@prefetch: it comes from a prefetch list.
 */
static bool next_item(struct stream *s, struct image **img, uint64_t *chunk,
		      bool *prefetch)
{
	for (;;) {
		struct image *im;

		if (s->img >= s->conf.nimages) {
			if (s->phase == PH_SEQ ||
			    (s->conf.cache_only && s->phase == PH_PREFETCH))
				return false;
			s->phase++;
			s->img = 0;
			s->pos = 0;
			continue;
		}
		if (s->conf.cache_only && s->handed >= s->conf.cache_only_max)
			return false;
		im = s->conf.images[s->img];
		if (phase_item(s, im, chunk)) {
			s->pos++;
			if (*chunk >= image_chunk_count(im))
				continue;	/* a trace of a larger disk */
			*img = im;
			*prefetch = s->phase == PH_PREFETCH;
			s->handed += s->conf.cache_only;
			return true;
		}
		s->img++;
		s->pos = 0;
	}
}

static bool all_done(const struct stream *s)
{
	for (unsigned int i = 0; i < s->conf.nimages; i++) {
		struct image_stats st;

		image_get_stats(s->conf.images[i], &st);
		if (!st.complete)
			return false;
	}
	return true;
}

/* Sleep @ms unless stopped; returns true if stopped. */
static bool nap(struct stream *s, uint64_t ms)
{
	struct timespec ts;
	bool stop;

	deadline_ms(CLOCK_MONOTONIC, ms, &ts);
	pthread_mutex_lock(&s->lock);
	while (!s->stop &&
	       pthread_cond_timedwait(&s->wake, &s->lock, &ts) != ETIMEDOUT)
		;
	stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

static bool guest_busy(const struct stream *s)
{
	uint64_t now = now_ns();

	for (unsigned int i = 0; i < s->conf.nimages; i++) {
		uint64_t t = image_guest_io_ns(s->conf.images[i]);

		if (t && now - t < YIELD_MS * 1000000ull)
			return true;
	}
	return false;
}

/*
 * ->lock held: wait while the guest is busy and enough workers copy.
 * The stream is "yielding" while any worker waits here: a flag set and
 * cleared by whichever worker passed last would read false each time
 * one of the two copying workers takes its next chunk.
 */
static void give_way(struct stream *s)
{
	struct timespec ts;
	bool held = false;

	while (!s->stop && s->copying >= BUSY_WORKERS && guest_busy(s)) {
		if (!held) {
			held = true;
			__atomic_add_fetch(&s->held, 1, __ATOMIC_RELAXED);
		}
		deadline_ms(CLOCK_MONOTONIC, YIELD_POLL_MS, &ts);
		pthread_cond_timedwait(&s->wake, &s->lock, &ts);
	}
	if (held)
		__atomic_sub_fetch(&s->held, 1, __ATOMIC_RELAXED);
}

/*
 * ->lock held: in the prefetch phase, at most PREFETCH_WORKERS copy.
 * The trace is in the order the guest will read; fourteen transfers
 * sharing a slow link deliver its first chunk late.  Two keep the order,
 * fill a 1 Gbit/s link at 25 ms (about two compressed chunks in flight)
 * and keep both cores decoding.  Measured, 8 GiB Debian guest at 25 ms,
 * 100 Mbit/s: 27.5 s to service with fourteen, 25.3 with four, 24.0
 * with two; at 1 Gbit/s 21.6 s, 20.6 with two.
 */
static void hold_prefetch(struct stream *s)
{
	while (!s->stop && s->phase == PH_PREFETCH &&
	       s->copying >= PREFETCH_WORKERS)
		pthread_cond_wait(&s->wake, &s->lock);
}

/*
 * ->lock held, check phase: a chunk already found to differ, behind the
 * check cursor, to fetch now while the checks go on (the network and
 * the disk at once).  The scan stops at the first chunk still being
 * checked, so that none is passed over.
 */
static bool next_differs(struct stream *s, struct image **img,
			 uint64_t *chunk)
{
	while (s->fimg < s->conf.nimages && s->fimg <= s->img) {
		struct image *im = s->conf.images[s->fimg];
		uint64_t end = s->fimg < s->img ? image_chunk_count(im) :
						  s->pos;

		for (; s->fpos < end; s->fpos++) {
			if (image_needs_check(im, s->fpos))
				return false;	/* being checked */
			if (image_check_differs(im, s->fpos) &&
			    image_chunk_incomplete(im, s->fpos)) {
				*img = im;
				*chunk = s->fpos++;
				return true;
			}
		}
		if (s->fimg == s->img)
			return false;
		s->fimg++;
		s->fpos = 0;
	}
	return false;
}

/*
 * ->lock held: at most ->max_checks checks at once.  A worker
 * that may not check fetches a chunk found to differ meanwhile (true,
 * in *@img, *@chunk), or waits.
 */
static bool hold_check(struct stream *s, struct image **img, uint64_t *chunk)
{
	while (!s->stop && s->phase == PH_CHECK && s->checking >= s->max_checks) {
		if (next_differs(s, img, chunk))
			return true;
		pthread_cond_wait(&s->wake, &s->lock);
	}
	return false;
}

/* Before a fetch: the seeds' index, so that nothing they hold is
 * fetched.  True if stopped meanwhile. */
static bool wait_seeds(struct stream *s)
{
	while (s->conf.seeds && !reuse_seeds_ready(s->conf.seeds))
		if (nap(s, YIELD_POLL_MS))
			return true;
	return false;
}

/*
 * A fill could not write the target (full, read-only, failing): say so
 * once for the stream, not once per worker and chunk.
 */
static void stall(struct stream *s, struct image *img, int err, bool *stuck)
{
	if (*stuck)
		return;
	*stuck = true;
	__atomic_store_n(&s->stall_err, err, __ATOMIC_RELAXED);
	__atomic_store_n(&s->stall_img, img, __ATOMIC_RELAXED);
	if (!__atomic_fetch_add(&s->stalled, 1, __ATOMIC_RELAXED))
		log_err("stream: cannot write target '%s': %s; the stream "
			"waits for it, retrying every %d s", image_target(img),
			strerror(-err), STALL_RETRY_MS / 1000);
}

static void unstall(struct stream *s, struct image *img)
{
	if (__atomic_sub_fetch(&s->stalled, 1, __ATOMIC_RELAXED))
		return;
	log_info("stream: target '%s' takes writes again: the stream goes "
		 "on", image_target(img));
}

/* Fill one chunk, retrying while the store is down; true if stopped. */
static bool copy_item(struct stream *s, struct image *img, uint64_t chunk,
		      bool check)
{
	uint64_t backoff = BACKOFF_MIN_MS;
	bool stopped = false;
	bool failing = false;
	bool stuck = false;
	int terr;
	int ret;

	if (check) {
		/* A chunk that cannot be read is fetched in a later phase. */
		image_check_chunk(img, chunk);
		return false;
	}
	if (wait_seeds(s))
		return true;
	if (s->conf.cache_only) {
		/* Best effort: a failure here is the guest's to see. */
		ret = image_prefetch(img, chunk);
		return ret == -ECANCELED;
	}
	while (image_chunk_incomplete(img, chunk)) {
		ret = image_fill_chunk(img, chunk, STORE_PRIO_STREAM, &terr);
		if (!ret)
			break;
		if (ret == -ECANCELED) {
			stopped = true;	/* shutting down */
			break;
		}
		if (terr) {
			/* Not the store: wait for the target, same chunk. */
			stall(s, img, terr, &stuck);
			if (nap(s, STALL_RETRY_MS)) {
				stopped = true;
				break;
			}
			continue;
		}
		__atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
		if (ret != -EIO) {
			/* Not the network: leave it for a later pass. */
			stopped = nap(s, BACKOFF_MIN_MS);
			break;
		}
		/*
		 * Paused from the first failure until this chunk is in:
		 * through the naps and the attempts between them, which
		 * take as long as --remote-timeout.
		 */
		if (!failing) {
			failing = true;
			__atomic_add_fetch(&s->paused, 1, __ATOMIC_RELAXED);
		}
		log_debug(LOG_CAT_STREAM, "stream: chunk %llu of '%s' failed, "
			  "retrying in %llu ms", (unsigned long long)chunk,
			  image_name(img), (unsigned long long)backoff);
		if (nap(s, backoff)) {
			stopped = true;
			break;
		}
		backoff = MIN(backoff * 2, BACKOFF_MAX_MS);
	}
	if (failing)
		__atomic_sub_fetch(&s->paused, 1, __ATOMIC_RELAXED);
	if (stuck)
		unstall(s, img);
	return stopped;
}

static void *worker(void *arg)
{
	struct stream *s = arg;

	thread_name("lm-stream");
	/* Linux: setpriority() on a thread ID sets that thread's nice. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), STREAM_NICE))
		log_debug(LOG_CAT_STREAM, "stream: cannot lower priority: %s",
			  strerror(errno));
	for (;;) {
		struct image *img = NULL;
		uint64_t chunk = 0;
		bool prefetch = false;
		bool check = false;
		bool stopped;
		bool have = false;

		pthread_mutex_lock(&s->lock);
		if (s->phase == PH_PREFETCH) {
			hold_prefetch(s);
		} else {
			give_way(s);
			have = hold_check(s, &img, &chunk);
		}
		if (!have) {
			have = !s->stop &&
			       next_item(s, &img, &chunk, &prefetch);
			check = have && s->phase == PH_CHECK;
		}
		if (!have && !s->stop && !s->conf.cache_only && !all_done(s)) {
			/* End of a pass with chunks left: start another. */
			s->passes++;
			s->img = 0;
			s->pos = 0;
			have = next_item(s, &img, &chunk, &prefetch);
		}
		stopped = s->stop;
		if (have)
			s->copying++;
		s->checking += check;
		pthread_mutex_unlock(&s->lock);
		if (!have) {
			/* Not stopped: the pass found nothing left to do. */
			if (!stopped && !s->conf.cache_only &&
			    s->conf.on_done &&
			    !__atomic_exchange_n(&s->announced, true,
						 __ATOMIC_ACQ_REL))
				s->conf.on_done(s->conf.done_arg);
			break;
		}
		stopped = copy_item(s, img, chunk, check);
		if (prefetch && !stopped)
			__atomic_add_fetch(&s->prefetched, 1, __ATOMIC_RELAXED);
		pthread_mutex_lock(&s->lock);
		s->copying--;
		s->checking -= check;
		if (prefetch || check)
			pthread_cond_broadcast(&s->wake); /* hold_*() */
		pthread_mutex_unlock(&s->lock);
		if (stopped)
			break;
	}
	return NULL;
}

int stream_start(const struct stream_conf *conf, struct stream **out)
{
	struct stream *s = xcalloc(1, sizeof(*s));
	pthread_condattr_t ca;
	unsigned int n;

	s->conf = *conf;
	s->max_checks = CHECKS_PER_CPU * cpu_count();
	/* Checks first where a target may hold the chunks already. */
	s->phase = PH_PREFETCH;
	for (unsigned int i = 0; !conf->cache_only && i < conf->nimages; i++) {
		struct image_stats st;

		image_get_stats(conf->images[i], &st);
		if (st.in_place)
			s->phase = PH_CHECK;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->wake, &ca);
	pthread_condattr_destroy(&ca);
	n = conf->threads ? conf->threads : 16;
	s->tids = xcalloc(n, sizeof(pthread_t));
	s->nthreads = threads_start(s->tids, n, worker, s);
	if (!s->nthreads) {
		stream_stop(s);
		return -EAGAIN;
	}
	*out = s;
	return 0;
}

void stream_stop(struct stream *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->wake);
	pthread_mutex_unlock(&s->lock);
	threads_join(s->tids, s->nthreads);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s->tids);
	free(s);
}

bool stream_is_done(const struct stream *s)
{
	return all_done(s);
}

uint64_t stream_prefetched(const struct stream *s)
{
	return __atomic_load_n(&s->prefetched, __ATOMIC_RELAXED);
}

bool stream_is_yielding(const struct stream *s)
{
	return __atomic_load_n(&s->held, __ATOMIC_RELAXED) > 0;
}

bool stream_is_paused(const struct stream *s)
{
	return __atomic_load_n(&s->paused, __ATOMIC_RELAXED) > 0;
}

int stream_stall(const struct stream *s, const char **target)
{
	if (!__atomic_load_n(&s->stalled, __ATOMIC_RELAXED))
		return 0;
	*target = image_target(__atomic_load_n(&s->stall_img,
					       __ATOMIC_RELAXED));
	return __atomic_load_n(&s->stall_err, __ATOMIC_RELAXED);
}

uint64_t stream_errors(const struct stream *s)
{
	return __atomic_load_n(&s->errors, __ATOMIC_RELAXED);
}
