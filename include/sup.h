/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_SUP_H
#define PBSLM_SUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The supervisor of a mount (DESIGN.md "Takeover"): the mount's first
 * process, which owns the FUSE connection and runs the process that
 * serves it, again and again.  It mounts when the first server asks
 * (after that server opened its targets), reads the kernel's FUSE_INIT
 * once and hands the connection and that request to every server;
 * when a server dies it has the kernel resend what that server had
 * taken (FUSE_NOTIFY_RESEND) and starts another, from the binary now
 * installed.  It never talks to the network and parses only its own
 * server's fixed-size messages.  If it dies, its server dies too
 * (PR_SET_PDEATHSIG) and the connection aborts, as before.
 *
 * The server learns from its environment (PBSLM_SERVE_FD) that it is
 * one, and talks to the supervisor through struct sup_client.
 */

struct sup_conf {
	const char *exe;	/* the binary a server runs */
	char **argv;		/* a server's argv; argv[0] is replaced */
	const char *cwd;	/* a server's working directory */
	const char *mountpoint;
	bool detach;		/* a daemon: servers drop the terminal */
	const char *secret;	/* the store's settings (credentials),
				   packed: store_conf_pack() */
	const char *passphrase;	/* the key's passphrase, or NULL */
	unsigned int max_deaths; /* give up after this many deaths ... */
	unsigned int window_s;	/* ... within this many seconds */
	/* Called once the first server serves (daemon hand-shake). */
	void (*ready)(void *arg);
	void *ready_arg;
};

/*
 * Run the mount until it ends: 0 when it was unmounted (or the server
 * ended it: SIGTERM), 1 when the first server could not start or the
 * supervisor gave up.  SIGTERM and SIGINT are passed on to the server,
 * SIGHUP too (its log file).  Call with no other thread running.
 */
int sup_run(const struct sup_conf *conf);

/*
 * A supervisor re-executed by `restart` (an upgrade) finds its
 * predecessor's state in its environment: sup_resuming() says so, and
 * sup_resume() takes the mount on where it was (the same connection,
 * the same count of restarts) until it ends; its exit status.
 */
bool sup_resuming(void);
int sup_resume(void);
/* What a binary answers to "__supervisor-abi": a supervisor re-executes
 * only a binary that answers the same. */
const char *sup_abi(void);

/* ---- in a server ---- */

struct sup_client;

/* What the supervisor told a new server. */
struct sup_hello {
	unsigned int restarts;	/* servers that ran before this one */
	uint64_t died_ns;	/* when the last one died (CLOCK_MONOTONIC) */
	char cause[128];	/* how it ended: "killed by signal 9" */
	bool detach;
	pid_t supervisor;
};

/*
 * 0 and *@out when this process is a supervised server (PBSLM_SERVE_FD
 * is set; it is removed from the environment), -ENOENT when it is not,
 * or -errno.  The secrets are the supervisor's: sup_client_secret().
 */
int sup_client_open(struct sup_client **out);
void sup_client_close(struct sup_client *c);
const struct sup_hello *sup_client_hello(const struct sup_client *c);
/* The PBS secret and key passphrase the supervisor holds, or NULL. */
const char *sup_client_secret(const struct sup_client *c);
const char *sup_client_passphrase(const struct sup_client *c);

/*
 * The FUSE connection: mounted now with @fuse_opts if this is the first
 * server.  *@fd (the caller's), the kernel's FUSE_INIT request to replay
 * (*@init, malloc'ed, *@len bytes), and what the first server agreed
 * with the kernel (*@want, *@max_write; 0 for the first server itself).
 * -errno, logged by the supervisor on its side and here.
 */
int sup_client_connect(struct sup_client *c, const char *fuse_opts, int *fd,
		       void **init, size_t *len, uint64_t *want,
		       uint64_t *max_write);
/* The session is up and serves, with what it agreed with the kernel. */
int sup_client_serving(struct sup_client *c, uint64_t want,
		       uint64_t max_write);
/*
 * What this server leaves to the next (frontend_conf.memo: owners and modes
 * the kernel remembers), replacing what it left before; and what the
 * last server left (NULL: nothing).  Any thread; in order.
 */
int sup_client_set_memo(struct sup_client *c, const char *text);
const char *sup_client_memo(const struct sup_client *c);
/* This server ends to be replaced by the binary now installed. */
int sup_client_restart(struct sup_client *c);

/* A server whose FUSE agreement differs from the connection's exits so. */
#define SUP_EXIT_INCOMPATIBLE 3

#endif
