/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_STORE_H
#define PBSLM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetch.h"

/*
 * Where a datastore lives: one interface, one backend per file
 * (store_dir.c: a directory on this machine; store_http.c: the same tree
 * under an http(s) URL; store_pbs.c: a datastore of a Proxmox Backup
 * Server, through its API and reader protocol; store_s3.c: a PBS 4 S3
 * datastore in a bucket), each described by a struct store_backend
 * (store_backend.h) in the table of store.c.  Paths are relative to the datastore root, in
 * FORMATS.md section 6 layout ("vm/100/<time>/index.json.blob").
 *
 * Every function may block and may be called from any thread at once.
 * Returned buffers are malloc'ed and owned by the caller.
 */

enum store_prio {
	STORE_PRIO_DEMAND,	/* a reader is waiting */
	STORE_PRIO_READAHEAD,
	STORE_PRIO_STREAM,	/* background copy: lowest */
};

/*
 * Chunk check callback: decode and verify @raw (@len bytes).  Return 0 to
 * accept, -EBADMSG to have the store fetch the chunk again (bounded
 * retries, never served), any other -errno to fail at once.  Runs on the
 * calling thread, never on a network event loop.
 */
typedef int (*store_check_fn)(const uint8_t *raw, size_t len, void *arg);

struct store;

/* The largest chunk blob a store gives (PBS: 16 MiB of data + header). */
#define STORE_CHUNK_MAX ((16u << 20) + 4096)

struct store_ops {
	const char *name;
	bool local;		/* on this machine: a chunk costs CPU and
				   disk, not a round trip */
	/* -ENOENT when missing; -EFBIG when larger than @max. */
	int (*get_file)(struct store *s, const char *path, size_t max,
			uint8_t **buf, size_t *len);
	/* The raw blob of @digest, checked by @check; -ENOENT if absent. */
	int (*get_chunk)(struct store *s, const uint8_t digest[32],
			 enum store_prio prio, store_check_fn check, void *arg);
	/*
	 * Entry names (no "." or "..") in directory @path; *@names is a
	 * malloc'ed array of malloc'ed strings.  -ENOTSUP if the backend
	 * cannot list.
	 */
	int (*list)(struct store *s, const char *path, char ***names,
		    size_t *n);
	/*
	 * Write @path (a file of a snapshot or ".chunks/XXXX/<hex>"): pack
	 * to a bucket.  With @if_absent an existing object is kept and
	 * -EEXIST returned (dedup).  NULL where pack writes directly.
	 */
	int (*put)(struct store *s, const char *path, const void *buf,
		   size_t len, bool if_absent);
	/*
	 * Shutting down: requests in flight end at once and later ones
	 * fail, all with -ECANCELED.  Any thread; returns at once.  NULL
	 * where every request is short (a local disk).
	 */
	void (*cancel)(struct store *s);
	/* Chunk requests in flight allowed now (xfer.h); NULL where there
	 * is no such bound (a local disk). */
	unsigned int (*window)(struct store *s);
	void (*close)(struct store *s);
};

/* Embedded first in every backend's own struct. */
struct store {
	const struct store_ops *ops; /* immutable after open */
	const char *where;	/* immutable after open, the backend's:
				   what paths are relative to, for log
				   lines (a directory, URL or repository) */
};

/* One option of a backend's own, a setting of the same name. */
struct store_option {
	const char *name;		/* "s3-region": --s3-region VALUE */
	const char *metavar;
	const char *help;
	/* NULL, or 0 if @arg will do; else -EINVAL and why. */
	int (*check)(const char *arg, char *why, size_t len);
};

/*
 * Where a backend may look for credentials: the command line's readers
 * (cli.c), so that no backend reads the environment or a terminal on
 * its own, and a test can give it any environment.
 */
struct store_env {
	const char *(*get)(const char *name);	/* an environment variable */
	/* Wipe and remove variable @name (not for what we start). */
	void (*drop)(const char *name);
	/* The first line of descriptor @fd or file @path: 0, -errno. */
	int (*read_fd)(int fd, char **out);
	int (*read_file)(const char *path, char **out);
	/* $@env, else ~/@rel: malloc'ed or NULL. */
	char *(*home_file)(const char *env, const char *rel);
	/* Key @key of section [@section] of an INI file: malloc'ed or
	 * NULL. */
	char *(*ini_get)(const char *path, const char *section,
			 const char *key);
	/* Ask the terminal: 0; -ENOTTY without one. */
	int (*prompt)(const char *text, char **out);
};

/* A backend's own option or credential, by name (store_backend.h). */
struct store_setting {
	char *key;			/* owned */
	char *value;			/* owned; wiped when released */
};

#define STORE_SETTINGS_MAX 16

/* Options for every backend; strings are borrowed until store_close(). */
struct store_conf {
	const char *url;		/* path, file://, http://, https:// */
	unsigned int connections;	/* in flight; 0: adaptive (xfer.h) */
	uint64_t remote_timeout_ms;	/* total per request incl. retries */
	uint64_t request_timeout_ms;	/* one attempt */
	uint64_t connect_timeout_ms;	/* until a first answer: give up on
					   a refused or unresolvable server
					   after this */
	uint64_t limit_rate;		/* bytes/s, 0 = none */
	const char *ca_file;
	const char *fingerprint;	/* "aa:bb:..", SHA-256 of leaf cert */
	bool insecure;			/* skip verification (warned) */
	const char *auth_header;	/* full "Authorization: ..." or NULL */
	/* The backend's options given and credentials found. */
	struct store_setting set[STORE_SETTINGS_MAX];
	unsigned int nset;
};

/* Setting @key to a copy of @value (NULL: removed): 0, -ENOSPC. */
int store_conf_set(struct store_conf *conf, const char *key,
		   const char *value);
/* Setting @key, or NULL. */
const char *store_conf_get(const struct store_conf *conf, const char *key);
/* Every setting as one string (malloc'ed, to be wiped) for another
 * process, and back: 0, -EINVAL if it is not one. */
char *store_conf_pack(const struct store_conf *conf);
int store_conf_unpack(struct store_conf *conf, const char *packed);
/* Wipe and free the settings. */
void store_conf_release(struct store_conf *conf);

/*
 * Every backend's own options, in table order, @fn called with each;
 * the backend that claims @url is the one whose settings count.
 */
void store_each_option(void (*fn)(const struct store_option *o, void *arg),
		       void *arg);
/*
 * The credentials of the backend of @conf->url, from @env: before a
 * daemon detaches.  0, or -errno (logged); 0 for a repository that
 * store_open() will refuse (it says why).
 */
int store_credentials(struct store_conf *conf, const struct store_env *env);

int store_open(const struct store_conf *conf, struct store **out);
void store_close(struct store *s);

int store_get_file(struct store *s, const char *path, size_t max,
		   uint8_t **buf, size_t *len);
int store_get_chunk(struct store *s, const uint8_t digest[32],
		    enum store_prio prio, store_check_fn check, void *arg);
int store_list(struct store *s, const char *path, char ***names, size_t *n);
void store_describe(struct store *s, const char *path, char *out,
		    size_t outlen);
void store_free_names(char **names, size_t n);

/* -ENOTSUP for stores without put. */
int store_put(struct store *s, const char *path, const void *buf,
	      size_t len, bool if_absent);
/*
 * Errors the network layers log themselves, with the detail (URL,
 * status, the server's text): -EIO (gave up), -EACCES (credentials or
 * certificate refused), -EREMOTEIO (the server refused, saying why).
 * Callers pass these on without a second line.
 */
bool store_err_logged(int err);
void store_cancel(struct store *s);
/* Any thread: chunk requests the transport lets be in flight now, 0:
 * no bound.  For callers that keep that many (and no more) waiting. */
unsigned int store_window(struct store *s);
/*
 * Chunks worth having in flight: @connections (0: as many as the
 * transport's adaptive window may reach, XFER_SLOTS_MAX), but for a
 * store on this machine two per CPU (a chunk then costs CPU, not a round trip; two
 * keep a core busy while the other waits for the disk).
 */
unsigned int store_parallelism(const struct store *s,
			       unsigned int connections);

/*
 * What a REPO argument names.  "scheme://..." is a URL; a path starting
 * with '/', "./", "../" or "~" is a local directory; a name without ':'
 * is a local directory if one exists (otherwise refused: PBS would take
 * it for a datastore on localhost, write "localhost:NAME" for that);
 * anything else is a PBS repository [[USER@REALM[!TOKEN]@]HOST[:PORT]:]
 * DATASTORE, refused as ambiguous if a local directory of that name
 * exists too.  A refusal is logged in one line: -EINVAL.
 */
enum store_kind {
	STORE_KIND_URL,
	STORE_KIND_DIR,
	STORE_KIND_PBS,
};
int store_repo_kind(const char *repo, enum store_kind *kind);

/* A PBS repository string, parsed. */
struct pbs_repo {
	char auth_id[256];		/* "root@pam" or "u@realm!token" */
	bool token;			/* auth_id names an API token */
	char host[256];			/* name or address, no brackets */
	unsigned int port;		/* default 8007 */
	char store[128];
};
/* 0, or -EINVAL with the reason in @why. */
int pbs_repo_parse(const char *spec, struct pbs_repo *r, char *why,
		   size_t whylen);

/*
 * Parsers of what servers send, exposed for the unit tests and fuzz
 * targets (tests/fuzz).  Untrusted input; never crash, never trust.
 * An nginx JSON directory listing: entry names (no "", ".", "..", no
 * '/', no NUL); -ENOTSUP if it is not one.
 */
int store_http_parse_listing(const char *body, size_t len, char ***names,
			     size_t *n);
/*
 * A PBS REST answer {"data": [...]} of groups (@ncomp 1: the backup ids
 * of @type) or snapshots (@ncomp 2: their times as directory names).
 * -EBADMSG if it is not one.
 */
int store_pbs_parse_list(const char *body, size_t len, const char *type,
			 int ncomp, char ***names, size_t *n);
/* The children of namespace @parent ("" the root) in a PBS namespace
 * list ({"data":[{"ns":"a/b"},...]}): their last names. */
int store_pbs_parse_ns(const char *body, size_t len, const char *parent,
		       char ***names, size_t *n);
/*
 * One ListObjectsV2 answer for keys under @prefix: the subdirectories
 * (CommonPrefixes) or, with @times, the snapshot times that have an
 * index.json.blob; *@token the continuation token if truncated (NULL at
 * the end), malloc'ed.  -EBADMSG if it is not one.
 */
int store_s3_parse_list(const char *body, size_t len, const char *prefix,
			bool times, char ***names, size_t *n, char **token);

#endif
