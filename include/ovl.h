/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_OVL_H
#define PBSLM_OVL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Allocation state of one image (DESIGN.md sections 3 and 5): which
 * blocks of the target hold their current content, persisted in a
 * crash-safe state file.  Per chunk ABSENT, PARTIAL (with a block bitmap)
 * or PRESENT; memory and commit cost grow with chunks and changes, never
 * with a flat bitmap of the disk.
 *
 * Reads of the state (ovl_chunk_state, ovl_block_present) take no lock
 * and may run on any thread.  Marks need the chunk's lock.  Commits are
 * serialised internally and may run on any thread.
 */
struct ovl;

enum ovl_state {
	OVL_ABSENT,
	OVL_PARTIAL,
	OVL_PRESENT,
};

struct ovl_conf {
	const char *state_path;	/* created mode 0600 if missing */
	int target_fd;		/* borrowed; fdatasync'ed by commits; -1: none */
	uint64_t size;
	uint64_t chunk_size;	/* power of two */
	uint64_t block_size;	/* power of two, <= chunk_size */
	uint8_t index_csum[32];	/* identity of the backup image */
	char target_id[128];	/* identity of the target */
	uint64_t lock_wait_ms;	/* wait for another holder of the file */
	bool probe;		/* a state of another backup, geometry or
				   target is -ESTALE without a log line */
	bool guest_journal;	/* keep the guest journal (guest writes
				   outlive the process: ovl_guest_wrote) */
	const char *boot_id;	/* tests: instead of the kernel's */
};

/*
 * Create a fresh state, or resume the one in the file.  The file is
 * locked (flock) before its first byte is read and stays locked until
 * ovl_free(): another holder that does not let go within lock_wait_ms
 * gives -EBUSY, logged naming its PID.  A file that belongs to another
 * backup, size, geometry or target: -ESTALE, logged naming the file and
 * the field.  A damaged header: -EBADMSG.  A torn tail (crash during a
 * commit) is dropped: the state is the last complete commit.
 */
int ovl_open(const struct ovl_conf *conf, struct ovl **out);
/* Frees without committing; releases the lock. */
void ovl_free(struct ovl *o);
/* Removes the state file (and its guest journal), then frees: for a
 * state that ovl_open() just created and nothing used. */
void ovl_remove(struct ovl *o);
/* True if ovl_open() created the file (there was none). */
bool ovl_is_new(const struct ovl *o);

enum ovl_state ovl_chunk_state(const struct ovl *o, uint64_t chunk);
bool ovl_block_present(const struct ovl *o, uint64_t block);

/* Per-chunk lock: orders guest writes against background fills. */
void ovl_lock_chunk(struct ovl *o, uint64_t chunk);
void ovl_unlock_chunk(struct ovl *o, uint64_t chunk);
/*
 * Blocks [first, first + n) become present; all in one chunk whose lock
 * the caller holds; call only after the data was written to the target.
 */
int ovl_mark_present(struct ovl *o, uint64_t first, uint64_t n);

/*
 * Make the state durable: snapshot the changes so far, fdatasync the
 * target, then append them to the state file and sync it.  Marks made
 * after the snapshot go into the next commit, so a durable "present"
 * never describes data that was not yet durable.
 */
int ovl_commit(struct ovl *o);
/*
 * A flush (fsync on the image): like ovl_commit(), but the target is
 * fdatasync'ed even when no state changed, so every write acknowledged
 * before the call is on stable storage when it returns 0.
 */
int ovl_sync(struct ovl *o);

/*
 * A guest write (or discard) of blocks [first, first + n), all in one
 * chunk whose lock the caller holds, reached the target: they are
 * present and the chunk is the guest's.  With the guest journal, the
 * change is also recorded at once (in the page cache, no sync), so that
 * it outlives the death of this process even before the next commit: a
 * new owner of the state (a restarted server) sees it.  Call before the
 * write is acknowledged.
 */
int ovl_guest_wrote(struct ovl *o, uint64_t first, uint64_t n);

/*
 * The guest wrote into chunk @chunk (persisted with the next commit):
 * its content no longer comes from the backup, so --verify leaves it
 * alone.  Chunk lock held.
 */
void ovl_mark_guest(struct ovl *o, uint64_t chunk);
bool ovl_chunk_guest(const struct ovl *o, uint64_t chunk);
/*
 * Before guest bytes go over *present* blocks of @chunk (they reach the
 * target at once and survive a crash of the daemon), make the mark
 * durable: appends and syncs a record unless it is already on disk.
 * Concurrent callers share one sync.  Call WITHOUT the chunk lock (takes
 * the commit lock); may block on disk I/O.
 */
int ovl_guest_intent(struct ovl *o, uint64_t chunk);
bool ovl_guest_is_durable(const struct ovl *o, uint64_t chunk);

uint64_t ovl_present_bytes(const struct ovl *o);
bool ovl_is_complete(const struct ovl *o);

/* The first chunks the guest read (persisted; prefetch order later). */
void ovl_trace_access(struct ovl *o, uint64_t chunk);
size_t ovl_trace(const struct ovl *o, const uint64_t **chunks);

#endif
