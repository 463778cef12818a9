/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_IMAGE_I_H
#define PBSLM_IMAGE_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ccache.h"
#include "image.h"
#include "ovl.h"
#include "repo.h"
#include "reuse.h"
#include "snap.h"
#include "store.h"
#include "target.h"
#include "util.h"

/*
 * The inside of image, shared by image.c (open, close, reads, stats)
 * and image_write.c (guest writes and discards, fills, --in-place
 * checks).  The rules: the top of image.c.
 */

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

/* image.c, for image_write.c */
uint64_t image_block_end(const struct image *img, uint64_t blk);
bool image_cancelled(const struct image *img);
int image_get_chunk(struct image *img, uint64_t i, enum store_prio prio,
		     struct ccache_entry **out);
bool image_is_zero_chunk(const struct image *img, uint64_t i);
void image_note_guest_io(struct image *img);

#endif
