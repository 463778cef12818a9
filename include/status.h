/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_STATUS_H
#define PBSLM_STATUS_H

#include <stdbool.h>
#include <stdio.h>

#include <json-c/json.h>

/*
 * `pbs-livemount status`: reads MOUNTPOINT/.status (the JSON document
 * mount.c serves) and prints it for people: per disk a progress bar,
 * rate, ETA and errors.
 */
struct status_conf {
	const char *mountpoint;
	bool json;	/* print the document as it is */
	bool watch;	/* redraw every second until complete */
};

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
