/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_CLI_H
#define PBSLM_CLI_H

#include <stdbool.h>

#include "compiler.h"
#include "key.h"
#include "opt.h"
#include "store.h"
#include "xfer.h"

/*
 * The command line: one file per command (cmd_*.c, git's builtin/
 * layout) and, here, what they share: the repository, secret and
 * network options, secrets from files, descriptors or the environment
 * (never argv), and opening the repository.  Main thread only.
 */

/* The defaults of the repository options: the transports' (xfer.h). */
#define CLI_CONNECTIONS 0		/* adaptive */
#define CLI_REMOTE_TIMEOUT_MS XFER_REMOTE_TIMEOUT_MS
#define CLI_REQUEST_TIMEOUT_MS XFER_REQUEST_TIMEOUT_MS
#define CLI_CONNECT_TIMEOUT_MS XFER_CONNECT_TIMEOUT_MS

/* A backend's option row (store_backend.h) of struct cli. */
struct cli_store_opt {
	struct cli *c;
	const struct store_option *o;
};

/* The state of one command's repository options. */
struct cli {
	struct store_conf store;
	const char *ns;
	const char *keyfile;
	char keyfd_path[32];
	const char *passfile;
	int passfd;
	char *passphrase;		/* owned: given (a supervisor's) */
	bool quiet;
	const char *auth_file;		/* --auth-file, read at open */
	char *auth_header;		/* owned */
	struct key_material *key;	/* owned */
	struct store *s;		/* owned */
	struct opt opts[40];		/* cli_repo_opts() */
	size_t nopts;
	struct cli_store_opt store_opts[16]; /* the backends' rows */
	size_t nstore_opts;
};

/* The entry points, argv[0] being the command's name. */
int cmd_mount(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_cutover(int argc, char **argv);
int cmd_restart(int argc, char **argv);
int cmd_vmconfig(int argc, char **argv);
int cmd_map(int argc, char **argv);
int cmd_unmap(int argc, char **argv);

void cli_init(struct cli *c);
/*
 * The options every command that reads a repository takes, as a table
 * whose rows set @c's fields (kept in @c->opts): include it in the
 * command's own with OPT_INCLUDE.
 */
const struct opt *cli_repo_opts(struct cli *c);
/* --output-format, as proxmox-backup-client spells it. */
enum cli_format {
	CLI_FORMAT_TEXT,
	CLI_FORMAT_JSON,
	CLI_FORMAT_JSON_PRETTY,
};
/* OPT_CALLBACK handler of --output-format: sets an enum cli_format. */
int cli_opt_output_format(void *value, const char *arg, char *why,
			  size_t len);
/* --repository's value, or NULL. */
const char *cli_repository(void);
/* OPT_CALLBACK handler for a file descriptor number: sets an int. */
int cli_opt_fd(void *value, const char *arg, char *why, size_t len);
/* Closes the store, frees the key, wipes secrets. */
void cli_release(struct cli *c);
/* First line of a secret, without CR/LF; *@out malloc'ed. */
int cli_read_secret_fd(int fd, char **out);
int cli_read_secret_file(const char *path, char **out);
/* The key passphrase: --passphrase-fd/-file, PBS_ENCRYPTION_PASSWORD,
 * or the terminal; *@out NULL when none is to be had. */
int cli_get_passphrase(struct cli *c, char **out);
/* The same for a new key: a terminal is asked twice (-EINVAL, logged,
 * when the two differ). */
int cli_get_new_passphrase(struct cli *c, char **out);
/* The key named by --keyfile/--keyfd, if any, into c->key. */
int cli_load_key(struct cli *c);
/*
 * Environment defaults, the key, the PBS secret, then the store of
 * @repo (a local path made absolute first).  NULL: PBS_REPOSITORY.
 */
int cli_open_repo(struct cli *c, const char *repo);
/*
 * The credentials of @repo's backend, where that backend says they come
 * from (PBS: --password-fd, --password-file, PBS_PASSWORD, ..., or a
 * prompt; S3: the AWS variables and files), into c->store's settings:
 * now, before a daemon detaches from the terminal.  0 or -errno.
 */
int cli_credentials(struct cli *c, const char *repo);
/*
 * The REPO argument: @argv[0] if the command got @nargs positionals
 * and needs @want, or PBS_REPOSITORY when it got one fewer (then
 * *@shift is 0: the other arguments start at @argv[0]).  NULL when
 * neither applies.
 */
const char *cli_repo_arg(int nargs, int want, char **argv, int *shift);
int cli_exit_code(int ret);
/*
 * Where state of a kind @leaf ("traces", "state") lives: $@env if set,
 * else /var/lib/pbs-livemount/@leaf for root and
 * $XDG_STATE_HOME/pbs-livemount/@leaf (~/.local/state/...) for others.
 * Malloc'ed; NULL when no home is known.
 */
char *cli_default_dir(const char *env, const char *leaf);

#endif
