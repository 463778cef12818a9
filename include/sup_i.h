/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_SUP_I_H
#define PBSLM_SUP_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fs.h"
#include "sup.h"
#include "util.h"

/*
 * The inside of sup, shared by sup.c (the supervisor and the messages
 * between it and its servers), sup_reexec.c (a supervisor re-executed
 * by `restart`: its state handed over) and sup_client.c (the server's
 * end).  The protocol and the process model: the top of sup.c.
 */

#define ENV_FD "PBSLM_SERVE_FD"
#define ENV_STATE "PBSLM_SUP_STATE"
#define STATE_MAGIC 0x50534c31u	/* "PSL1": the layout below */
#define PROBE_MS 5000
#define MSG_MAX 65536
#define INIT_MAX 4096
#define NOTIFY_RESEND 7		/* Linux 6.9, FUSE 7.40 */
#define OPCODE_INIT 26
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define FAIL_MAX 5		/* servers in a row that die before serving */
#define MEMO_MAX 16384		/* what a server leaves to the next */

enum msg_type {
	MSG_HELLO = 1,
	MSG_MOUNT,
	MSG_CONN,
	MSG_FAIL,
	MSG_SERVING,
	MSG_RESTART,
	MSG_MEMO,
};

struct msg_head {
	uint32_t type;
	uint32_t len;		/* payload bytes after the header */
	uint64_t a;
	uint64_t b;
	uint64_t c;
};


struct sup {
	const struct sup_conf *conf;
	struct sup_conf own;	/* a resumed supervisor's conf (heap) */
	int argc;		/* entries of own.argv */
	struct fs_mount *mnt;	/* NULL until mounted */
	int fuse;		/* its connection; -1 until mounted */
	uint8_t init[INIT_MAX];	/* the kernel's FUSE_INIT */
	size_t init_len;
	uint64_t want;		/* the first server's agreement */
	uint64_t max_write;
	bool agreed;
	int sigfd;
	pid_t server;		/* 0: none running */
	int ctl;		/* its socket; -1 */
	uint64_t started_ns;	/* when it was started */
	bool serving;		/* this server served */
	bool served;		/* some server served */
	unsigned int failed;	/* servers in a row that died unserving */
	bool ready_done;
	bool restart_asked;	/* the server asked to be replaced */
	bool stopping;		/* SIGTERM/SIGINT: the mount ends */
	unsigned int restarts;
	uint64_t died_ns;
	char cause[128];
	char memo[MEMO_MAX];	/* the last server's MSG_MEMO, "" if none */
	uint64_t *deaths;	/* ring of conf->max_deaths times */
	unsigned int ndeaths;
	unsigned int backoff_ms;
};

/* Across the three files. */
void sup_put_blob(struct buf *b, const char *s);
int sup_run_loop(struct sup *s);
int sup_start_server(struct sup *s);
void sup_release(struct sup *s);
int sup_take_blob(const uint8_t **p, const uint8_t *end, char **out,
		     size_t *alloc);
int sup_watch_signals(void);
int sup_msg_recv(int sock, struct msg_head *h, void *payload, size_t cap,
		    int *fd);
int sup_msg_send(int sock, uint32_t type, uint64_t a, uint64_t b,
		    uint64_t c, const void *payload, size_t len, int fd);
void sup_reexec(struct sup *s);

#endif
