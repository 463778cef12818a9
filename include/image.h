/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_IMAGE_H
#define PBSLM_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ccache.h"
#include "repo.h"
#include "reuse.h"
#include "store.h"

/*
 * The block logic of one live-mounted disk (DESIGN.md section 3): reads
 * split into present blocks (from the target) and absent ones (from the
 * decoded chunk), guest writes to the target, discard, flush, and the
 * fill of a chunk's absent blocks that the streamer and copy-on-read
 * share.  Every function may be called from any thread at once; none
 * holds a lock across network I/O.
 */

struct image;

struct image_conf {
	struct repo_archive *archive;	/* borrowed, outlives the image */
	struct ccache *cache;		/* borrowed, shared by all images */
	const char *name;		/* file name in the mount: "x.img" */
	const char *target;		/* file or block device; NULL: none */
	const char *state_path;		/* NULL: "<target>.lmstate" for a
					   file, <state_dir>/<device name>
					   for a block device */
	const char *state_dir;
	uint64_t block_size;		/* power of two, default 4096 */
	bool read_only;			/* no target: on-demand reads only */
	bool overwrite;			/* fill a target that holds data */
	/*
	 * The target holds an older version of this disk: a chunk whose
	 * range there has the index's digest is present with nothing
	 * fetched or written (checked before its first read, write or
	 * fill, and by the stream's check phase).
	 */
	bool in_place;
	struct reuse_seeds *seeds;	/* borrowed, may be NULL */
	uint64_t fault_checks;		/* tests: SIGKILL after N checks */
	uint64_t lock_wait_ms;		/* wait for another owner to go */
};

/*
 * Opens (creating a sparse file target of the image's size if missing)
 * the target and the allocation state, each locked for the image's
 * life (a state of a block device found beside its /dev node, where
 * it would not survive a reboot, is moved to @state_dir first) (another owner that does not let go within lock_wait_ms:
 * -EBUSY).  Resumes the state only onto the target it was written for:
 * identity (an id stored with a file at creation, or what names a block
 * device), size and restored data are checked, a mismatch is -ESTALE.
 * Without a state, a target that holds data is refused (-EEXIST) unless
 * @overwrite.  Every refusal is logged in one line.
 */
int image_open(const struct image_conf *conf, struct image **out);
/* Commits the state (unless read-only), closes and unlocks the target. */
void image_close(struct image *img);
/*
 * A mount that never served: close, and remove the target file and
 * the state file if image_open() created them.  NULL is a no-op.
 */
void image_discard(struct image *img);
/*
 * Shutting down: fills and --verify stop with -ECANCELED from now on.
 * Any thread; returns at once.
 */
void image_cancel(struct image *img);

const char *image_name(const struct image *img);
uint64_t image_size(const struct image *img);
bool image_is_read_only(const struct image *img);

/* Bytes read or -errno (-EIO: a chunk could not be fetched/verified). */
ssize_t image_read(struct image *img, void *buf, size_t len, uint64_t off);
ssize_t image_write(struct image *img, const void *buf, size_t len,
		    uint64_t off);
/*
 * Discard or zero [off, off + len) (clamped to the image): afterwards
 * the whole range reads as zeros at any alignment.  Whole blocks become
 * present and zero (a hole in a file target), partial blocks at either
 * end are written with zeros like a guest write.
 */
int image_zero(struct image *img, uint64_t off, uint64_t len);
/*
 * fsync: every write acknowledged before the call is on the target's
 * stable storage, then the state that describes it; in every state of
 * the mount, also when no allocation changed.
 */
int image_flush(struct image *img);
/* Commit the state if it changed (the once-a-second checkpoint). */
int image_checkpoint(struct image *img);

uint64_t image_chunk_count(const struct image *img);
uint64_t image_chunk_size(const struct image *img);
/* True while chunk @i has absent blocks. */
bool image_chunk_incomplete(const struct image *img, uint64_t i);
/*
 * Write the absent blocks of chunk @i into the target (from the cache or
 * a fetch at @prio) and mark them present.  Zero chunks are punched, not
 * fetched.  0, or -errno: -EIO the store gave up, -EBADMSG the chunk is
 * bad; when writing the target failed (full, read-only, an I/O error)
 * *@target_err (if not NULL) gets that -errno too, and nothing is logged.
 */
int image_fill_chunk(struct image *img, uint64_t i, enum store_prio prio,
		     int *target_err);
/*
 * --in-place: is chunk @i still to be checked against the target?  And
 * check it: its absent blocks become present if the target's range has
 * the index's digest.  0, or -errno if the target could not be read
 * (the chunk is then fetched like any other).
 */
bool image_needs_check(const struct image *img, uint64_t i);
int image_check_chunk(struct image *img, uint64_t i);
/* --in-place: chunk @i was checked and the target's range differs. */
bool image_check_differs(const struct image *img, uint64_t i);
/* The target's path (NULL without one), and whether it is a device. */
const char *image_target(const struct image *img);
bool image_target_is_blk(const struct image *img);
/*
 * A guest's read, the whole policy of it, for any front end: the bytes
 * (image_read), then the observer (readahead) told before the answer
 * (once answered, the guest's next read may reach another thread and be
 * noted first, which would look like a jump backwards), then
 * @reply(@arg, @buf, n) with n bytes or a -errno, then the chunks
 * fetched on demand filled into the target while still cached
 * (copy-on-read), off the guest's path.  Returns what @reply got.
 */
ssize_t image_guest_read(struct image *img, void *buf, size_t len,
			 uint64_t off,
			 void (*reply)(void *arg, const void *buf, ssize_t n),
			 void *arg);
/*
 * Who hears of each successful guest read (readahead), set before the
 * image is served; NULL: no one.
 */
typedef void (*image_read_fn)(void *arg, struct image *img, uint64_t off,
			      size_t len);
void image_set_read_observer(struct image *img, image_read_fn fn,
			     void *arg);
/*
 * Readahead: would fetching chunk @i help (not zero, absent blocks in the
 * target if there is one, not cached)?  image_prefetch() then loads it
 * into the cache at readahead priority; the guest's read of it copies it
 * into the target (copy-on-read), off the guest's path.
 */
bool image_chunk_wanted(const struct image *img, uint64_t i);
int image_prefetch(struct image *img, uint64_t i);
/* now_ns() of the last guest read or write, 0 if none yet. */
uint64_t image_guest_io_ns(const struct image *img);
/* When the guest first read or wrote (now_ns() clock), or 0. */
uint64_t image_first_io_ns(const struct image *img);

/*
 * Re-hash every chunk of the target that the guest never wrote and
 * compare it with the backup; *@bad counts (and the log names) those
 * that differ.  Call when the image is complete.
 */
int image_verify(struct image *img, uint64_t *bad);

/* The chunks the guest read first on an earlier mount (prefetch order). */
size_t image_trace(const struct image *img, const uint64_t **chunks);

struct image_stats {
	uint64_t size;
	uint64_t present_bytes;
	uint64_t fetched_bytes;		/* decoded chunk bytes fetched */
	uint64_t fetched_chunks;
	uint64_t target_chunks;		/* --in-place: found in the target */
	uint64_t target_bytes;
	uint64_t seed_chunks;		/* copied from seeds */
	uint64_t seed_bytes;
	bool in_place;
	uint64_t check_total;		/* chunks to check at the start */
	uint64_t check_done;		/* checked since */
	uint64_t check_bytes;		/* read and hashed */
	uint64_t check_ns;		/* from the first check to the last */
	uint64_t read_errors;
	uint64_t chunks_total;
	uint64_t chunks_incomplete;
	bool complete;
};
void image_get_stats(const struct image *img, struct image_stats *st);

#endif
