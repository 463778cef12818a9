/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_RESTORE_H
#define PBSLM_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "repo.h"

/*
 * restore: copy one archive into a file or block device, several chunks
 * in flight, every chunk verified.  A regular-file target is written
 * under "<target>.partial" and renamed only when complete and durable,
 * so a failed restore never leaves a target that looks complete.
 * verify: hash an image chunk by chunk against the index.
 */
struct restore_conf {
	struct repo_archive *archive;	/* borrowed */
	const char *target;
	unsigned int threads;		/* chunks in flight */
	bool target_zeroed;		/* block device known to read zeros */
	bool quiet;
};

int restore_run(const struct restore_conf *conf);

struct verify_conf {
	struct repo_archive *archive;	/* borrowed */
	const char *image;
	unsigned int threads;
};

/* 0 identical; -EUCLEAN (logged with chunk and offset) when not. */
int verify_run(const struct verify_conf *conf);

#endif
