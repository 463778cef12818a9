/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_TARGET_H
#define PBSLM_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A restore target: a regular file or a block device that a live mount
 * (image.c) or a restore (restore.c) writes.  Opening one locks it for
 * the owner's life (excl.h; block devices also O_EXCL), so that nothing
 * else writes it meanwhile; it can tell whether the target holds data,
 * and gives it an identity that a deleted and re-created file, a copy,
 * or another device cannot have, so that a state file resumes only onto
 * the target it was written for.  Every refusal is logged in one line
 * naming the path.  Any thread, one owner per struct target.
 */
struct target;

struct target_conf {
	const char *path;
	const char *who;		/* log prefix: "image", "restore" */
	const char *busy_hint;		/* appended when another owner holds
					   it: "; unmount that mount first" */
	uint64_t size;			/* a device must have at least this */
	uint64_t lock_wait_ms;		/* wait for another owner to let go */
	bool create;			/* create a missing file (mode 0600) */
	bool read_only;			/* open to check and lock only */
};

/* 0, -EBUSY (in use), -ENOSPC (device too small), -EINVAL (neither a
 * file nor a block device) or -errno; logged. */
int target_open(const struct target_conf *conf, struct target **out);
/* Closes (unlocks).  With @discard, a file this open created is
 * removed.  NULL is a no-op. */
void target_close(struct target *t, bool discard);

int target_fd(const struct target *t);
const char *target_path(const struct target *t);
bool target_is_blk(const struct target *t);
/* The file did not exist: target_open created it, empty. */
bool target_created(const struct target *t);
/* Bytes: a file's size when opened, a device's capacity. */
uint64_t target_size(const struct target *t);

/*
 * Does the target hold data?  A file: any allocated extent (SEEK_DATA).
 * A device: any non-zero byte in its first and last MiB and 62 places
 * between (every partition table, file system or volume label shows).
 * 1 with the offset found in *@where, 0 if none, or -errno.
 */
int target_find_data(const struct target *t, uint64_t *where);

/*
 * The identity of the target, for a state file's header.  A file: a
 * random id in the user.pbs-livemount.id extended attribute, set when
 * @mark (a new state), else read (a file without one gets an id that
 * matches no state); the birth time, then the inode, where xattrs are
 * not kept.  A device: what names its storage rather than its device
 * number (dm UUID, a loop device's backing file, WWID or serial).
 */
int target_identity(const struct target *t, bool mark, char *id, size_t len);

/* A file that carries the id a state was created with (ours). */
bool target_is_marked(const struct target *t);

/*
 * The state file name of a block device target, from what names its
 * storage: "dm-LVM-....lmstate", "loop-disk.img-....lmstate" (readable
 * part, then a hash of the identity), in *@out.
 */
void target_state_name(const struct target *t, char *out, size_t len);

/*
 * No state to resume: may this target start afresh for a disk of @disk
 * bytes?  Holding data it is refused unless @overwrite, or @in_place
 * (then it must be of the disk's size: an older version of it, kept).
 * A file is otherwise made a sparse file of @disk bytes, old blocks
 * dropped.  Refusals are logged as @who's: -EEXIST, -EINVAL or -errno.
 */
int target_prepare_fresh(struct target *t, const char *who, uint64_t disk,
			 bool in_place, bool overwrite);

/*
 * Where the target's state file lives, in *@out (malloc'ed): @state_path
 * if given, "<target>.lmstate" for a file, or for a block device a file
 * under @state_dir named by what names the device's storage (beside a
 * /dev node it would be on devtmpfs, gone at the next reboot with the
 * record of what the guest wrote); a state found beside the device node
 * is moved there.  0 or -errno, logged as @who's.
 */
int target_state_path(struct target *t, const char *who,
		      const char *state_path, const char *state_dir,
		      char **out);

#endif
