/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_MOUNT_I_H
#define PBSLM_MOUNT_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cutover.h"
#include "frontend.h"
#include "mount.h"

/*
 * The inside of a live mount, shared by its three files: mount.c (the
 * threads, the status document, start and stop), mount_open.c (the
 * disks: archives, images, seeds, boot traces) and mount_cut.c (the
 * requests a mount takes through its front end: cut-over, unmount,
 * restart).  Nothing outside them includes this.
 */

#define ABORT_AFTER_MS 2000

struct progress {
	uint64_t last_present;	/* protected by mount->lock */
	double rate;		/* protected by mount->lock: bytes/s, EWMA;
				   after completion the mount's average */
	uint64_t start_present;	/* immutable after open: present at start */
};

/* One disk's boot trace. */
struct boot_trace {
	char *path;		/* immutable; NULL: no traces */
	uint64_t *prefetch;	/* immutable: loaded chunks, or NULL */
	size_t nprefetch;	/* immutable */
	bool saved;		/* checkpointer thread, then shutdown */
};

enum cut_state {
	CUT_NONE,
	CUT_WAITING,	/* --cutover-*: QEMU has none of the disks open yet */
	CUT_RUNNING,
	CUT_DONE,	/* the VM is on the targets: the mount ends */
	CUT_FAILED,	/* the VM stays on the mount, which serves on */
};

/* Which QEMU to move at a cut-over: a monitor socket or a domain. */
struct cut_req {
	const char *qmp;
	const char *domain;
	const char *uri;	/* libvirt's; NULL: qemu:///system */
};

struct mount {
	const struct mount_conf *conf;	/* immutable */
	struct image **images;		/* immutable after start */
	struct repo_archive **archives;	/* immutable after start */
	unsigned int nimages;		/* immutable after start */
	struct frontend_file *files;	/* immutable after start: the
					   snapshot's configuration blobs */
	unsigned int nfiles;		/* immutable after start */
	struct ccache *cache;		/* immutable pointer */
	struct reuse_seeds *seeds;	/* immutable pointer, or NULL */
	struct repo_archive *first_archive; /* the one seeds were opened
					       for; immutable */
	struct stream *stream;		/* immutable after start */
	struct stream *prefetcher;	/* immutable after start: no target */
	struct boot_trace *traces;	/* per image, see struct */
	struct readahead *readahead;	/* immutable after start */
	time_t started;			/* immutable */
	const struct frontend_ops *fe_ops; /* immutable */
	struct frontend *fe;		/* immutable after start */
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* with ->lock: stop the checkpointer
					   and the watcher */
	bool stop;			/* protected by ->lock */
	bool aborted;			/* protected by ->lock */
	bool complete;			/* protected by ->lock */
	uint64_t started_ns;		/* immutable */
	double took;			/* protected by ->lock: seconds to
					   completion, frozen then */
	const char *verdict;		/* protected by ->lock: verify result */
	struct progress *prog;		/* protected by ->lock */
	pthread_mutex_t cut_lock;	/* one cut-over at a time; taken
					   before ->lock, never held by a
					   FUSE op but the cut-over's own */
	enum cut_state cut;		/* protected by ->lock */
	struct cutover_result cut_res;	/* protected by ->lock */
	bool unmount_asked;		/* protected by ->lock: the watcher
					   unmounts (after a cut-over) */
	bool restart_asked;		/* protected by ->lock: the restart
					   command's request */
	uint64_t guest_wait_ms;		/* immutable once serving: the
					   takeover this server made */
};

/* mount.c */
bool mount_stopping(struct mount *m);
size_t mount_prefetch_total(const struct mount *m);
/* Runs --on-complete's @cmd (in /, told of the mount in PBSLM_*
 * variables; @cutover "none", "done" or "failed"); waits for it, but
 * not past an unmount. */
void mount_run_on_complete(struct mount *m, const char *cmd,
			   const char *cutover);

/* mount_open.c */
int mount_open_images(struct mount *m);
/* The snapshot's configuration blobs as the mount's read-only files. */
void mount_open_files(struct mount *m);
void mount_save_trace(struct mount *m, unsigned int i, bool final);
uint64_t mount_max_chunk(const struct mount *m);
/* PBSLM_FAULT_KILL_AFTER's fault for the front end; *@checks the
 * images' ("check:N"). */
const char *mount_test_fault(const struct mount *m, uint64_t *checks);

/* mount_cut.c: struct frontend_conf's callbacks, and the cut-over that
 * --cutover-* asks for once the restore is complete. */
int mount_control(void *arg, const char *name, const char *value,
		  size_t len);
void mount_control_done(void *arg);
void mount_memo_out(void *arg, const char *text);
bool mount_auto_cutover(struct mount *m, bool *told);

#endif
