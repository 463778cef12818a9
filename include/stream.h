/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_STREAM_H
#define PBSLM_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "image.h"

/*
 * The background streamer: copies every absent chunk of every image into
 * its target at the lowest fetch priority, in the order the guest read
 * chunks on an earlier mount (the trace), then in index order.  Up to
 * `threads` chunks in flight; identical chunks are fetched once while
 * cached.  When the store fails, workers pause with growing back-off and
 * resume by themselves.
 */
struct stream;

struct stream_conf {
	struct image **images;	/* borrowed, outlive the streamer */
	unsigned int nimages;
	unsigned int threads;	/* chunks in flight, default 16 */
	/*
	 * Per image (NULL: none), chunks the guest is expected to read
	 * soon (a boot trace): copied first, by every worker, without
	 * giving way to guest I/O; then the sequential pass.
	 */
	const uint64_t *const *prefetch;
	const size_t *nprefetch;
	/*
	 * No target to copy into: decode at most @cache_only_max of the
	 * prefetch chunks into the cache (image_prefetch), then stop.
	 */
	bool cache_only;
	size_t cache_only_max;
	/* Fetches wait until its index is ready; borrowed, may be NULL. */
	struct reuse_seeds *seeds;
	/* Called once, on a worker thread, when every chunk is present. */
	void (*on_done)(void *arg);
	void *done_arg;
};

int stream_start(const struct stream_conf *conf, struct stream **out);
/* Stop and join every worker; in-flight fills complete first. */
void stream_stop(struct stream *s);
/* Every chunk of every image present. */
bool stream_is_done(const struct stream *s);
/* Prefetch chunks handled so far (copied, found present or cached). */
uint64_t stream_prefetched(const struct stream *s);
/* Workers are held back because the guest is doing I/O. */
bool stream_is_yielding(const struct stream *s);
/* A worker is backing off after a store failure. */
bool stream_is_paused(const struct stream *s);
uint64_t stream_errors(const struct stream *s);
/*
 * Workers wait for a target that refused a write: its -errno, and the
 * target's path in *@target (valid while the stream runs); 0 if none.
 */
int stream_stall(const struct stream *s, const char **target);

#endif
