/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_CLI_H
#define PBSLM_CLI_H

#include <stdbool.h>

#include "compiler.h"
#include "key.h"
#include "store.h"

/*
 * The command line: one file per command (cmd_*.c, git's builtin/
 * layout) and, here, what they share: the repository, secret and
 * network options, secrets from files, descriptors or the environment
 * (never argv), and opening the repository.  Main thread only.
 */

#define EXIT_USAGE 2

/* Long-only option codes. */
/* Long-only option codes. */
enum {
	OPT_NS = 256,
	OPT_KEYFILE,
	OPT_KEYFD,
	OPT_PASSFILE,
	OPT_PASSFD,
	OPT_CONNECTIONS,
	OPT_REMOTE_TIMEOUT,
	OPT_REQUEST_TIMEOUT,
	OPT_CA_FILE,
	OPT_FINGERPRINT,
	OPT_INSECURE,
	OPT_LIMIT_RATE,
	OPT_AUTH_FILE,
	OPT_PASSWORD_FILE,
	OPT_PASSWORD_FD,
	OPT_S3_ENDPOINT,
	OPT_S3_REGION,
	OPT_S3_ADDRESSING,
	OPT_LAZY_DIRS,
	OPT_DEBUG,
	OPT_TYPE,
	OPT_ID,
	OPT_TIME,
	OPT_CHUNK_SIZE,
	OPT_TARGET_ZEROED,
	OPT_THREADS,
	OPT_TARGET,
	OPT_TARGET_DIR,
	OPT_STATE,
	OPT_CACHE_SIZE,
	OPT_BLOCK_SIZE,
	OPT_NO_STREAM,
	OPT_VERIFY,
	OPT_READ_ONLY,
	OPT_ON_COMPLETE,
	OPT_ALLOW_OTHER,
	OPT_ARCHIVE,
	OPT_JSON,
	OPT_WATCH,
	OPT_OVERWRITE,
	OPT_TRACE_DIR,
	OPT_PREFETCH_TRACE,
	OPT_NO_TRACE,
	OPT_TRACE_TIME,
};

/* Options every command that reads a repository accepts. */


#define REPO_LONGOPTS                                                      \
	{ "ns", required_argument, NULL, OPT_NS },                         \
	{ "keyfile", required_argument, NULL, OPT_KEYFILE },               \
	{ "keyfd", required_argument, NULL, OPT_KEYFD },                   \
	{ "passphrase-file", required_argument, NULL, OPT_PASSFILE },      \
	{ "passphrase-fd", required_argument, NULL, OPT_PASSFD },          \
	{ "connections", required_argument, NULL, OPT_CONNECTIONS },       \
	{ "remote-timeout", required_argument, NULL, OPT_REMOTE_TIMEOUT }, \
	{ "request-timeout", required_argument, NULL, OPT_REQUEST_TIMEOUT }, \
	{ "ca-file", required_argument, NULL, OPT_CA_FILE },               \
	{ "fingerprint", required_argument, NULL, OPT_FINGERPRINT },       \
	{ "insecure", no_argument, NULL, OPT_INSECURE },                   \
	{ "limit-rate", required_argument, NULL, OPT_LIMIT_RATE },         \
	{ "auth-file", required_argument, NULL, OPT_AUTH_FILE },           \
	{ "password-file", required_argument, NULL, OPT_PASSWORD_FILE },   \
	{ "password-fd", required_argument, NULL, OPT_PASSWORD_FD },       \
	{ "s3-endpoint", required_argument, NULL, OPT_S3_ENDPOINT },       \
	{ "s3-region", required_argument, NULL, OPT_S3_REGION },           \
	{ "s3-addressing", required_argument, NULL, OPT_S3_ADDRESSING },   \
	{ "debug", required_argument, NULL, OPT_DEBUG },                   \
	{ "quiet", no_argument, NULL, 'q' },                               \
	{ "help", no_argument, NULL, 'h' }

#define REPO_HELP                                                            \
	"  --ns NS                 namespace (a/b)\n"                            \
	"  --keyfile FILE          encryption key file (PBS format)\n"           \
	"  --keyfd N               read the key file from descriptor N\n"     \
	"  --passphrase-file FILE  key passphrase (first line); also\n"          \
	"                          --passphrase-fd N, PBS_ENCRYPTION_PASSWORD\n" \
	"  --connections N         chunks in flight (default 16)\n"              \
	"  --remote-timeout SECS   give up on a chunk after this (default 60)\n" \
	"  --request-timeout SECS  one HTTP attempt (default 30)\n"              \
	"  --ca-file FILE          CA certificates for https\n"                  \
	"  --fingerprint FP        pin the server certificate (SHA-256, aa:bb:..;\n" \
	"                          also PBS_FINGERPRINT)\n"                      \
	"  --insecure              do not verify the server certificate\n"       \
	"  --limit-rate RATE       total download limit, bytes/s (K, M, G)\n"    \
	"  --auth-file FILE        Authorization header value (also PBSLM_AUTH)\n" \
	"  --password-file FILE    PBS password or API token secret (first\n"    \
	"                          line); also --password-fd N, PBS_PASSWORD,\n" \
	"                          PBS_PASSWORD_FILE, PBS_PASSWORD_FD\n"        \
	"  --s3-endpoint URL       s3:// on another S3 server than AWS\n"       \
	"  --s3-region REGION      (default AWS_REGION or us-east-1)\n"         \
	"  --s3-addressing MODE    path or vhost (default: vhost on AWS)\n"     \
	"  --debug LIST            debug categories: fetch,http,store,... or all\n" \
	"  -q, --quiet             only errors\n"

/* The state of one command's repository options. */
struct cli {
	struct store_conf store;
	const char *ns;
	const char *keyfile;
	char keyfd_path[32];
	const char *passfile;
	int passfd;
	bool quiet;
	char *auth_header;		/* owned */
	const char *password_file;
	int password_fd;
	char *secret;			/* owned: PBS password or token */
	char *s3_key_id;		/* owned */
	char *s3_secret;		/* owned */
	char *s3_token;			/* owned */
	char *s3_region;		/* owned */
	struct key_material *key;	/* owned */
	struct store *s;		/* owned */
};

/* The entry points, argv[0] being the command's name. */
int cmd_mount(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_key(int argc, char **argv);

/* "pbs-livemount CMD: <message> (see ...)" on stderr; EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) PRINTF_FMT(2, 3);
void cli_init(struct cli *c);
/* Closes the store, frees the key, wipes secrets. */
void cli_release(struct cli *c);
/* First line of a secret, without CR/LF; *@out malloc'ed. */
int cli_read_secret_fd(int fd, char **out);
int cli_read_secret_file(const char *path, char **out);
/* The key passphrase: --passphrase-fd/-file, PBS_ENCRYPTION_PASSWORD,
 * or the terminal; *@out NULL when none is to be had. */
int cli_get_passphrase(struct cli *c, char **out);
/* The key named by --keyfile/--keyfd, if any, into c->key. */
int cli_load_key(struct cli *c);
/*
 * An option of REPO_LONGOPTS: *@handled says whether it was one.
 * 0, or an exit status to return (usage error logged).
 */
int cli_parse_repo_opt(struct cli *c, const char *cmd, int opt,
		       const char *arg, bool *handled);
/*
 * Environment defaults, the key, the PBS secret, then the store of
 * @repo (a local path made absolute first).  NULL: PBS_REPOSITORY.
 */
int cli_open_repo(struct cli *c, const char *repo);
/*
 * For a PBS repository, read its secret now (before a daemon detaches
 * from the terminal): --password-fd, --password-file, PBS_PASSWORD,
 * PBS_PASSWORD_FD, PBS_PASSWORD_FILE, or a prompt.  PBS_PASSWORD is
 * then removed from the environment.  0 for other repositories.
 */
int cli_read_secret(struct cli *c, const char *repo);
/*
 * The REPO argument: @argv[0] if the command got @nargs positionals
 * and needs @want, or PBS_REPOSITORY when it got one fewer (then
 * *@shift is 0: the other arguments start at @argv[0]).  NULL when
 * neither applies.
 */
const char *cli_repo_arg(int nargs, int want, char **argv, int *shift);
int cli_exit_code(int ret);
/* @p made absolute against the current directory (malloc'ed). */
char *cli_abs_path(const char *p);

#endif
