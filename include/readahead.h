/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_READAHEAD_H
#define PBSLM_READAHEAD_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"

/*
 * Sequential readahead: when a guest reads an image sequentially, the
 * next few chunks are fetched at readahead priority and decoded into the
 * cache by a small worker pool, so that the guest's next reads find them
 * there instead of waiting for a fetch and a decode each.  Writing them
 * to the target is left to copy-on-read after the guest's read, which
 * runs after the reply: the guest never waits for the target write.
 * Random reads trigger nothing.
 */
struct readahead;

struct readahead_conf {
	struct image **images;	/* borrowed, outlive the readahead */
	unsigned int nimages;
	unsigned int threads;	/* workers, default 4 */
	uint64_t window_bytes;	/* how far ahead, default 32 MiB; keep it
				   well under the cache budget */
};

int readahead_start(const struct readahead_conf *conf,
		    struct readahead **out);
/* Drop what is queued, finish what runs, join the workers. */
void readahead_stop(struct readahead *ra);
/* A guest read of [off, off+len) of @img succeeded: maybe read ahead. */
void readahead_note(struct readahead *ra, struct image *img, uint64_t off,
		    size_t len);

#endif
