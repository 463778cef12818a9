/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_STATUS_H
#define PBSLM_STATUS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "ccache.h"
#include "image.h"
#include "reuse.h"

/*
 * The ".status" document of a live mount, both ways: written here from
 * the facts a mount gathers (status_doc_write, on every open of the
 * file), and read by `pbs-livemount status`, which prints it for
 * people: per disk a progress bar, rate, ETA and errors.  One module,
 * so that writer and reader agree on every field.
 */

/* One disk's line of the document. */
struct status_disk {
	const char *name;
	struct image_stats st;
	double rate;		/* bytes/s, sampled by the checkpointer */
};

enum status_cut { STATUS_CUT_NONE, STATUS_CUT_WAITING, STATUS_CUT_DONE,
		  STATUS_CUT_FAILED };

/* A snapshot of a mount's state, plain values; strings borrowed. */
struct status_facts {
	int pid;
	int supervisor;
	unsigned int restarts;
	const char *restart_cause;	/* NULL: no server ran before */
	uint64_t guest_wait_ms;		/* of the last restart */
	const char *state;		/* "streaming", "complete", ... */
	const char *stalled;		/* why the stream waits, or NULL */
	enum status_cut cut;
	double cut_took;		/* seconds, STATUS_CUT_DONE */
	unsigned int cut_moved;		/* disks, STATUS_CUT_DONE */
	const char *cut_error;		/* STATUS_CUT_WAITING or _FAILED */
	const char *snapshot;
	long long started;		/* time(2) */
	long long elapsed;		/* seconds; frozen at completion */
	double took;			/* seconds to completion, or -1 */
	uint64_t stream_errors;
	bool stream_yielding;
	bool has_seeds;
	struct reuse_seeds_stats seeds;
	uint64_t prefetch_chunks;
	uint64_t prefetch_done;
	struct ccache_stats cache;
	unsigned int ndisks;
	const struct status_disk *disks;
};

/* The document for @f, malloc'ed, in *@out: 0 or -ENOMEM. */
int status_doc_write(const struct status_facts *f, char **out);
struct status_conf {
	const char *mountpoint;
	bool json;	/* print the document as it is */
	bool watch;	/* redraw every second until complete */
};

/* @doc for people: a summary line, then per disk a bar and its figures. */
void status_print(json_object *doc, FILE *out);

/* 0: printed (with --watch: the mount completed); -errno otherwise. */
int status_run(const struct status_conf *conf, FILE *out);

/*
 * MOUNTPOINT/.status, parsed, into *@doc (json_object_put), and its
 * text into *@text (malloc'ed) unless NULL.  A failure is logged in one
 * line as @who's ("the daemon has exited ..." for a dead mount); with
 * @who NULL, not at all.
 */
int status_read(const char *who, const char *mnt, char **text,
		json_object **doc);

#endif
