/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_PROGRESS_H
#define PBSLM_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Progress of a long offline command (restore, verify, pack): on a
 * terminal a bar on stderr with rate and ETA, redrawn at most four times
 * a second and cleared at the end; with --output-format json one JSON
 * object per line on stdout, at most one a second and a last one with
 * the result; otherwise nothing.  One thread calls it.
 */

enum progress_mode {
	PROGRESS_NONE,
	PROGRESS_TTY,
	PROGRESS_JSON,
};

struct progress;

/* JSON when @json; else a bar when stderr is a terminal and not @quiet. */
enum progress_mode progress_mode_for(bool json, bool quiet);
/*
 * @what: "restore", "verify", "pack"; @name: the archive; @total bytes;
 * @done: already there (a resumed restore), not counted in the rate.
 * NULL for PROGRESS_NONE.
 */
struct progress *progress_start(enum progress_mode mode, const char *what,
				const char *name, uint64_t total,
				uint64_t done);
/* @done bytes of the total now; NULL: nothing. */
void progress_update(struct progress *p, uint64_t done);
/* The end: @result 0 or -errno; frees @p.  NULL: nothing. */
void progress_end(struct progress *p, int result);

#endif
