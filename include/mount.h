/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_MOUNT_H
#define PBSLM_MOUNT_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend.h"
#include "repo.h"
#include "sup.h"

/*
 * The live mount's server: opens every image, the chunk cache, takes up
 * the FUSE connection from its supervisor (sup.h; mounted then for the
 * first server), starts the streamer and the checkpoint thread, serves
 * until unmounted or signalled, then stops them in reverse order and
 * commits.  Returns -EPROTO when it must not serve this connection.
 */
struct mount_conf {
	struct repo_snapshot *snap;	/* borrowed */
	struct sup_client *sup;		/* borrowed: this server's supervisor */
	const struct frontend_ops *frontend; /* NULL: FUSE */
	const char *const *archives;	/* NULL: every .img.fidx */
	unsigned int narchives;
	const char *mountpoint;
	const char *target;		/* one archive: its target */
	const char *target_dir;		/* or: DIR/<archive>.raw each */
	bool pve_names;			/* DIR/vm-ID-disk-N.raw instead */
	const char *state;		/* one archive: its state file */
	const char *state_dir;		/* block devices' state files */
	uint64_t cache_size;
	uint64_t block_size;
	unsigned int connections;	/* streamer chunks in flight */
	bool no_stream;
	bool verify;			/* re-hash unwritten chunks at the end */
	bool read_only;
	bool overwrite;			/* targets may hold data: fill them */
	bool in_place;			/* targets hold older versions */
	const char *const *seeds;	/* --seed files and devices */
	unsigned int nseeds;
	uint64_t lock_wait_ms;		/* wait for an earlier owner to go */
	bool allow_other;
	const char *fuse_opts;
	const char *on_complete;	/* sh -c command, or NULL */
	/*
	 * At completion, move the QEMU behind this monitor socket, or this
	 * libvirt domain (on @libvirt_uri, NULL: qemu:///system), onto the
	 * targets, then end the mount (cutover.h).  NULL: none.
	 */
	const char *cutover_qmp;
	const char *cutover_libvirt;
	const char *libvirt_uri;
	/*
	 * Boot traces (trace.h): read at start to prefetch, written once
	 * the guest has run @trace_time_s (or at unmount).  Per disk
	 * trace_default_path(@trace_dir, ...), or @trace_file for the one
	 * disk; neither: no traces.
	 */
	const char *trace_dir;
	const char *trace_file;
	uint64_t trace_time_s;
	/* Called once everything is up (daemon hand-shake); may be NULL. */
	void (*ready)(void *arg);
	void *ready_arg;
};

int mount_run(const struct mount_conf *conf);

#endif
