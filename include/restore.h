/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_RESTORE_H
#define PBSLM_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "progress.h"
#include "repo.h"
#include "reuse.h"

/*
 * restore: copy one archive into a file, a block device or standard
 * output, several chunks in flight, every chunk verified.
 *
 * Nothing the user did not name is replaced: a target that holds data
 * is refused unless @overwrite; a symbolic link (but one to a block
 * device), a FIFO, a socket, a directory, a character device, or
 * anything under /dev that is not a block device is refused at once.
 * A file target is written as "<target>.partial" and renamed over
 * <target> only when complete and durable; a device is written in
 * place, locked and opened exclusively as a live mount's target.
 * Progress is kept in a state file (ovl.h: "<target>.partial.lmstate",
 * or <state_dir>/restore-<device name> for a device), so that a restore
 * that was killed, or stopped by an outage or a full disk, resumes from
 * what it had written when run again.  "-" writes the image to standard
 * output, in order (not a terminal).
 *
 * @in_place: TARGET (a file of the image's size, or a device) holds an
 * older version of the disk and is written in place: a chunk whose
 * range there has the index's digest is left as it is (progress in
 * "<target>.restore.lmstate").  @seeds: chunks found there, verified,
 * are not fetched.
 */
struct restore_conf {
	struct repo_archive *archive;	/* borrowed */
	const char *target;		/* path, or "-" */
	const char *state_dir;		/* devices' state files */
	unsigned int threads;		/* chunks in flight */
	bool target_zeroed;		/* block device known to read zeros */
	bool overwrite;			/* a target holding data may go */
	bool in_place;			/* it is an older version: reuse */
	struct reuse_seeds *seeds;	/* borrowed, may be NULL */
	bool quiet;
	enum progress_mode progress;	/* a bar, JSON lines, or none */
};

/* 0, or -errno after one line (two when a resumable restore stopped). */
int restore_run(const struct restore_conf *conf);

struct verify_conf {
	struct repo_archive *archive;	/* borrowed */
	const char *image;
	unsigned int threads;
	enum progress_mode progress;
};

/* 0 identical; -EUCLEAN (logged with chunk and offset) when not. */
int verify_run(const struct verify_conf *conf);

#endif
