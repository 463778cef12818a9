/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount command line: git-style subcommands, option parsing,
 * secrets from the environment or files (never argv), start and stop of
 * everything else.
 *
 * Threads: main creates none itself.  restore and verify start their
 * workers inside restore_run()/verify_run() and join them before return;
 * the http store's event-loop thread lives from store_open() to
 * store_close().
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "key.h"
#include "log.h"
#include "mount.h"
#include "pack.h"
#include "repo.h"
#include "restore.h"
#include "snap.h"
#include "status.h"
#include "store.h"
#include "util.h"
#include "banned.h"

#define EXIT_USAGE 2

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
	"  --debug LIST            debug categories: fetch,http,store,... or all\n" \
	"  -q, --quiet             only errors\n"

struct cli {
	struct store_conf store;
	const char *ns;
	const char *keyfile;
	char keyfd_path[32];
	const char *passfile;
	int passfd;
	bool quiet;
	char *auth_header;		/* owned */
	struct key_material *key;	/* owned */
	struct store *s;		/* owned */
};

static int usage_error(const char *cmd, const char *fmt, ...)
	PRINTF_FMT(2, 3);

static int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pbs-livemount %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'pbs-livemount %s --help')\n", cmd);
	return EXIT_USAGE;
}

static void cli_init(struct cli *c)
{
	memset(c, 0, sizeof(*c));
	c->store.connections = 16;
	c->store.remote_timeout_ms = 60000;
	c->store.request_timeout_ms = 30000;
	c->passfd = -1;
}

static void cli_release(struct cli *c)
{
	store_close(c->s);
	key_free(c->key);
	if (c->auth_header) {
		explicit_bzero(c->auth_header, strlen(c->auth_header));
		free(c->auth_header);
	}
}

/* First line of a secret, without CR/LF; *out is malloc'ed. */
static int read_secret_fd(int fd, char **out)
{
	char buf[4096];
	size_t len = 0;
	ssize_t n;

	while (len < sizeof(buf) - 1) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += n;
		if (memchr(buf, '\n', len))
			break;
	}
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	*out = xstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

static int read_secret_file(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	int ret;

	if (!f)
		return -errno;
	ret = read_secret_fd(fileno(f), out);
	fclose(f);
	return ret;
}

static int prompt_secret(const char *prompt, char **out)
{
	struct termios old;
	struct termios quiet;
	int fd = STDIN_FILENO;
	int ret;

	if (!isatty(fd) || tcgetattr(fd, &old) < 0)
		return -ENOTTY;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	fprintf(stderr, "%s", prompt);
	tcsetattr(fd, TCSAFLUSH, &quiet);
	ret = read_secret_fd(fd, out);
	tcsetattr(fd, TCSAFLUSH, &old);
	fprintf(stderr, "\n");
	return ret;
}

/* Passphrase from --passphrase-fd, --passphrase-file, env, or a tty. */
static int get_passphrase(struct cli *c, char **out)
{
	const char *env = getenv("PBS_ENCRYPTION_PASSWORD");
	int ret;

	if (c->passfd >= 0)
		return read_secret_fd(c->passfd, out);
	if (c->passfile) {
		ret = read_secret_file(c->passfile, out);
		if (ret)
			log_err("cannot read passphrase file '%s': %s",
				c->passfile, strerror(-ret));
		return ret;
	}
	if (env) {
		*out = xstrdup(env);
		return 0;
	}
	ret = prompt_secret("Encryption key password: ", out);
	if (ret == -ENOTTY)
		*out = NULL;	/* kdf-less key files need none */
	return ret == -ENOTTY ? 0 : ret;
}

static int load_key(struct cli *c)
{
	char *pass = NULL;
	int ret;

	if (!c->keyfile)
		return 0;
	ret = get_passphrase(c, &pass);
	if (ret)
		return ret;
	ret = key_load_file(c->keyfile, pass, &c->key);
	if (pass) {
		explicit_bzero(pass, strlen(pass));
		free(pass);
	}
	return ret;
}

/* Handle an option shared by repository commands; false if not ours. */
static int parse_repo_opt(struct cli *c, const char *cmd, int opt,
			  const char *arg, bool *handled)
{
	uint64_t v;
	char *secret = NULL;
	int ret;

	*handled = true;
	switch (opt) {
	case OPT_NS:
		c->ns = arg;
		return 0;
	case OPT_KEYFILE:
		c->keyfile = arg;
		return 0;
	case OPT_KEYFD:
		if (parse_u64(arg, &v) || v > 1024)
			return usage_error(cmd, "bad --keyfd '%s'", arg);
		/* The descriptor's file, read like any key file. */
		snprintf(c->keyfd_path, sizeof(c->keyfd_path),
			 "/proc/self/fd/%u", (unsigned int)v);
		c->keyfile = c->keyfd_path;
		return 0;
	case OPT_PASSFILE:
		c->passfile = arg;
		return 0;
	case OPT_PASSFD:
		if (parse_u64(arg, &v) || v > 1024)
			return usage_error(cmd, "bad --passphrase-fd '%s'", arg);
		c->passfd = (int)v;
		return 0;
	case OPT_CONNECTIONS:
		if (parse_u64(arg, &v) || !v || v > 256)
			return usage_error(cmd, "--connections takes 1..256");
		c->store.connections = (unsigned int)v;
		return 0;
	case OPT_REMOTE_TIMEOUT:
		if (parse_duration_ms(arg, &v) || !v)
			return usage_error(cmd, "bad --remote-timeout '%s'", arg);
		c->store.remote_timeout_ms = v;
		return 0;
	case OPT_REQUEST_TIMEOUT:
		if (parse_duration_ms(arg, &v) || !v)
			return usage_error(cmd, "bad --request-timeout '%s'", arg);
		c->store.request_timeout_ms = v;
		return 0;
	case OPT_CA_FILE:
		c->store.ca_file = arg;
		return 0;
	case OPT_FINGERPRINT:
		c->store.fingerprint = arg;
		return 0;
	case OPT_INSECURE:
		c->store.insecure = 1;
		return 0;
	case OPT_LIMIT_RATE:
		if (parse_size(arg, &v))
			return usage_error(cmd, "bad --limit-rate '%s'", arg);
		c->store.limit_rate = v;
		return 0;
	case OPT_AUTH_FILE:
		ret = read_secret_file(arg, &secret);
		if (ret) {
			log_err("cannot read auth file '%s': %s", arg,
				strerror(-ret));
			return 1;
		}
		free(c->auth_header);
		c->auth_header = xasprintf("Authorization: %s", secret);
		explicit_bzero(secret, strlen(secret));
		free(secret);
		return 0;
	case OPT_DEBUG:
		if (log_set_debug(arg))
			return usage_error(cmd, "unknown debug category in '%s'",
					   arg);
		return 0;
	case 'q':
		c->quiet = true;
		log_init("pbs-livemount", false, LOG_WARNING);
		return 0;
	default:
		*handled = false;
		return 0;
	}
}

/* Environment defaults, then open the store. */
static int open_repo(struct cli *c, const char *repo)
{
	const char *env;
	int ret;

	if (!c->store.fingerprint)
		c->store.fingerprint = getenv("PBS_FINGERPRINT");
	env = getenv("PBSLM_AUTH");
	if (!c->auth_header && env && *env)
		c->auth_header = xasprintf("Authorization: %s", env);
	c->store.auth_header = c->auth_header;
	c->store.url = repo;
	ret = load_key(c);
	if (ret)
		return ret;
	return store_open(&c->store, &c->s);
}

static int exit_code(int ret)
{
	return ret ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- pack ---- */

static const char pack_help[] =
	"usage: pbs-livemount pack [options] IMAGE[:NAME]... DATASTORE\n"
	"\n"
	"Write a snapshot of raw images in PBS datastore layout.  Each IMAGE\n"
	"becomes NAME.img.fidx (default: the file name without .img/.raw).\n"
	"\n"
	"  --type TYPE             vm (default), ct or host\n"
	"  --id ID                 backup id (required), e.g. 100\n"
	"  --time TIME             backup time, epoch or YYYY-MM-DDTHH:MM:SSZ\n"
	"                          (default: now)\n"
	"  --ns NS                 namespace (a/b), created as needed\n"
	"  --chunk-size SIZE       power of two, 4K..16M (default 4M)\n"
	"  --keyfile FILE          encrypt with this key (passphrase as for\n"
	"                          restore)\n"
	"  --passphrase-file FILE, --passphrase-fd N\n"
	"  -q, --quiet             only errors\n";

static int cmd_pack(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "type", required_argument, NULL, OPT_TYPE },
		{ "id", required_argument, NULL, OPT_ID },
		{ "time", required_argument, NULL, OPT_TIME },
		{ "chunk-size", required_argument, NULL, OPT_CHUNK_SIZE },
		REPO_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct pack_conf conf = {
		.type = "vm",
		.time = time(NULL),
		.chunk_size = SNAP_DEFAULT_CHUNK_SIZE,
	};
	struct pack_image *imgs = NULL;
	char **paths = NULL;
	char **names = NULL;
	struct cli c;
	bool handled;
	uint64_t v;
	int nimg = 0;
	int ret = 0;
	int opt;

	cli_init(&c);
	while ((opt = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		ret = parse_repo_opt(&c, "pack", opt, optarg, &handled);
		if (ret)
			goto out;
		if (handled)
			continue;
		switch (opt) {
		case 'h':
			fputs(pack_help, stdout);
			goto out;
		case OPT_TYPE:
			conf.type = optarg;
			break;
		case OPT_ID:
			conf.id = optarg;
			break;
		case OPT_TIME:
			if (!snap_parse_time(optarg, &conf.time))
				break;
			if (parse_u64(optarg, &v) || v > INT64_MAX) {
				ret = usage_error("pack", "bad --time '%s'",
						  optarg);
				goto out;
			}
			conf.time = (int64_t)v;
			break;
		case OPT_CHUNK_SIZE:
			if (parse_size(optarg, &v) || v < 4096 ||
			    v > SNAP_MAX_CHUNK_SIZE || (v & (v - 1))) {
				ret = usage_error("pack", "bad --chunk-size '%s'",
						  optarg);
				goto out;
			}
			conf.chunk_size = v;
			break;
		default:
			ret = EXIT_USAGE;
			goto out;
		}
	}
	if (argc - optind < 2) {
		ret = usage_error("pack", "needs IMAGE... DATASTORE");
		goto out;
	}
	if (!conf.id || !snap_is_safe_id(conf.id)) {
		ret = usage_error("pack", "--id must be a plain name");
		goto out;
	}
	if (!snap_is_backup_type(conf.type)) {
		ret = usage_error("pack", "--type must be vm, ct or host");
		goto out;
	}
	nimg = argc - optind - 1;
	imgs = xcalloc(nimg, sizeof(*imgs));
	paths = xcalloc(nimg, sizeof(*paths));
	names = xcalloc(nimg, sizeof(*names));
	for (int i = 0; i < nimg; i++) {
		if (pack_archive_name(argv[optind + i], &paths[i], &names[i])) {
			ret = EXIT_FAILURE;
			nimg = i;
			goto out;
		}
		for (int k = 0; k < i; k++) {
			if (!strcmp(names[k], names[i])) {
				ret = usage_error("pack", "two images named '%s'",
						  names[i]);
				nimg = i + 1;
				goto out;
			}
		}
		imgs[i].path = paths[i];
		imgs[i].archive = names[i];
	}
	ret = load_key(&c);
	if (ret) {
		ret = EXIT_FAILURE;
		goto out;
	}
	conf.images = imgs;
	conf.nimages = nimg;
	conf.datastore = argv[argc - 1];
	conf.ns = c.ns;
	conf.key = c.key;
	conf.quiet = c.quiet;
	ret = exit_code(pack_run(&conf));
out:
	for (int i = 0; i < nimg; i++) {
		free(paths[i]);
		free(names[i]);
	}
	free(paths);
	free(names);
	free(imgs);
	cli_release(&c);
	return ret;
}

/* ---- restore / verify ---- */

static const char restore_help[] =
	"usage: pbs-livemount restore [options] REPO SNAPSHOT ARCHIVE TARGET\n"
	"\n"
	"Restore one disk archive into TARGET, a file (written as\n"
	"TARGET.partial and renamed when complete) or a block device.\n"
	"SNAPSHOT is TYPE/ID/TIME or TYPE/ID for the newest; ARCHIVE is e.g.\n"
	"drive-scsi0 or drive-scsi0.img.fidx.  REPO is a datastore directory,\n"
	"file://PATH or http(s)://HOST[:PORT]/PATH.\n"
	"\n"
	"  --target-zeroed         block device already reads zeros: skip\n"
	"                          zero chunks\n"
	REPO_HELP;

static const char verify_help[] =
	"usage: pbs-livemount verify [options] REPO SNAPSHOT ARCHIVE IMAGE\n"
	"\n"
	"Check IMAGE against the backup chunk by chunk (hashes only, no\n"
	"chunk download).  Exit 0 only if identical; otherwise names the\n"
	"first differing chunk.\n"
	"\n"
	REPO_HELP;

static int cmd_restore_verify(int argc, char **argv, bool verify)
{
	static const struct option longopts[] = {
		{ "target-zeroed", no_argument, NULL, OPT_TARGET_ZEROED },
		REPO_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd = verify ? "verify" : "restore";
	struct repo_snapshot *snap = NULL;
	struct repo_archive *a = NULL;
	bool target_zeroed = false;
	struct cli c;
	bool handled;
	int ret = 0;
	int opt;

	cli_init(&c);
	while ((opt = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		ret = parse_repo_opt(&c, cmd, opt, optarg, &handled);
		if (ret)
			goto out;
		if (handled)
			continue;
		switch (opt) {
		case 'h':
			fputs(verify ? verify_help : restore_help, stdout);
			goto out;
		case OPT_TARGET_ZEROED:
			target_zeroed = true;
			break;
		default:
			ret = EXIT_USAGE;
			goto out;
		}
	}
	if (argc - optind != 4) {
		ret = usage_error(cmd, "needs REPO SNAPSHOT ARCHIVE %s",
				  verify ? "IMAGE" : "TARGET");
		goto out;
	}
	ret = open_repo(&c, argv[optind]);
	if (!ret)
		ret = repo_snapshot_open(c.s, c.ns, argv[optind + 1], c.key,
					 &snap);
	if (!ret)
		ret = repo_archive_open(snap, argv[optind + 2], &a);
	if (ret) {
		ret = EXIT_FAILURE;
		goto out;
	}
	if (verify) {
		struct verify_conf vc = {
			.archive = a,
			.image = argv[optind + 3],
			.threads = 2,
		};

		ret = verify_run(&vc);
		if (!ret && !c.quiet)
			log_info("verify: '%s' matches %s/%s", vc.image,
				 repo_snapshot_path(snap), repo_archive_name(a));
	} else {
		struct restore_conf rc = {
			.archive = a,
			.target = argv[optind + 3],
			/* Local chunks cost CPU, not round trips. */
			.threads = store_is_local(c.s) ?
				   MIN(c.store.connections,
				       (unsigned int)sysconf(_SC_NPROCESSORS_ONLN)) :
				   c.store.connections,
			.target_zeroed = target_zeroed,
			.quiet = c.quiet,
		};

		ret = restore_run(&rc);
	}
	ret = exit_code(ret);
out:
	repo_archive_close(a);
	repo_snapshot_close(snap);
	cli_release(&c);
	return ret;
}

/* ---- list ---- */

static const char list_help[] =
	"usage: pbs-livemount list [options] REPO [TYPE/ID]\n"
	"\n"
	"List backup groups, their snapshots and archives.  Over http(s) the\n"
	"server must offer JSON directory listings (nginx: autoindex on;\n"
	"autoindex_format json;).\n"
	"\n"
	REPO_HELP;

static void print_snapshot(struct cli *c, const char *type, const char *id,
			   int64_t t)
{
	struct repo_snapshot *snap = NULL;
	const struct snap_manifest *m;
	char spec[300];
	char ts[21];

	snap_format_time(t, ts);
	snprintf(spec, sizeof(spec), "%s/%s/%s", type, id, ts);
	if (repo_snapshot_open(c->s, c->ns, spec, c->key, &snap)) {
		printf("%s  (unreadable)\n", spec);
		return;
	}
	m = repo_snapshot_manifest(snap);
	printf("%s", spec);
	if (snap_manifest_key_fingerprint(m))
		printf("  key %s", snap_manifest_key_fingerprint(m));
	printf("\n");
	for (size_t i = 0; i < snap_manifest_nfiles(m); i++) {
		const struct snap_file *f = snap_manifest_file(m, i);

		printf("    %-32s %14llu  %s\n", f->filename,
		       (unsigned long long)f->size,
		       snap_crypt_mode_name(f->crypt_mode));
	}
	repo_snapshot_close(snap);
}

static int cmd_list(int argc, char **argv)
{
	static const struct option longopts[] = {
		REPO_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct repo_group *groups = NULL;
	size_t ngroups = 0;
	struct cli c;
	bool handled;
	int ret = 0;
	int opt;

	cli_init(&c);
	while ((opt = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		ret = parse_repo_opt(&c, "list", opt, optarg, &handled);
		if (ret)
			goto out;
		if (handled)
			continue;
		if (opt == 'h') {
			fputs(list_help, stdout);
			goto out;
		}
		ret = EXIT_USAGE;
		goto out;
	}
	if (argc - optind < 1 || argc - optind > 2) {
		ret = usage_error("list", "needs REPO [TYPE/ID]");
		goto out;
	}
	ret = open_repo(&c, argv[optind]);
	if (ret) {
		ret = EXIT_FAILURE;
		goto out;
	}
	if (c.key) {
		char fp[96];

		key_fingerprint_str(c.key, fp);
		printf("key fingerprint: %s\n", fp);
	}
	if (argc - optind == 2) {
		char *slash = strchr(argv[optind + 1], '/');

		if (!slash || !snap_is_safe_id(slash + 1)) {
			ret = usage_error("list", "group must be TYPE/ID");
			goto out;
		}
		groups = xcalloc(1, sizeof(*groups));
		groups[0].type = strndup(argv[optind + 1],
					 slash - argv[optind + 1]);
		groups[0].id = xstrdup(slash + 1);
		ngroups = 1;
	} else {
		ret = repo_list_groups(c.s, c.ns, &groups, &ngroups);
		if (ret) {
			log_err("list: cannot list '%s': %s", argv[optind],
				ret == -ENOTSUP ?
					"the server offers no directory listing" :
					strerror(-ret));
			ret = EXIT_FAILURE;
			goto out;
		}
	}
	for (size_t g = 0; g < ngroups; g++) {
		int64_t *times = NULL;
		size_t n = 0;

		ret = repo_list_times(c.s, c.ns, groups[g].type, groups[g].id,
				      &times, &n);
		if (ret) {
			log_err("list: cannot list '%s/%s': %s", groups[g].type,
				groups[g].id, strerror(-ret));
			ret = EXIT_FAILURE;
			goto out;
		}
		for (size_t i = 0; i < n; i++)
			print_snapshot(&c, groups[g].type, groups[g].id,
				       times[i]);
		free(times);
	}
out:
	repo_free_groups(groups, ngroups);
	cli_release(&c);
	return ret;
}

/* ---- key ---- */

static const char key_help[] =
	"usage: pbs-livemount key create [options] FILE\n"
	"       pbs-livemount key show [options] FILE\n"
	"\n"
	"create: write a new random encryption key, protected by a\n"
	"passphrase with scrypt (mode 0600).  show: print its fingerprint.\n"
	"\n"
	"  --passphrase-file FILE, --passphrase-fd N, PBS_ENCRYPTION_PASSWORD,\n"
	"                          or a prompt on a terminal\n";

static int cmd_key(int argc, char **argv)
{
	static const struct option longopts[] = {
		REPO_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct key_material *k = NULL;
	uint8_t raw[32];
	char *pass = NULL;
	char fp[96];
	struct cli c;
	bool handled;
	int ret = 0;
	int opt;

	cli_init(&c);
	while ((opt = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		ret = parse_repo_opt(&c, "key", opt, optarg, &handled);
		if (ret)
			goto out;
		if (handled)
			continue;
		if (opt == 'h') {
			fputs(key_help, stdout);
			goto out;
		}
		ret = EXIT_USAGE;
		goto out;
	}
	if (argc - optind != 2 || (strcmp(argv[optind], "create") &&
				   strcmp(argv[optind], "show"))) {
		ret = usage_error("key", "needs 'create FILE' or 'show FILE'");
		goto out;
	}
	ret = get_passphrase(&c, &pass);
	if (ret || !pass) {
		log_err("key: cannot get a passphrase: %s",
			ret ? strerror(-ret) : "no terminal and none given");
		ret = EXIT_FAILURE;
		goto out;
	}
	if (!strcmp(argv[optind], "create")) {
		ret = crypto_random(raw, sizeof(raw));
		if (!ret)
			ret = key_create_file(argv[optind + 1], pass, raw);
		crypto_wipe(raw, sizeof(raw));
		if (ret) {
			ret = EXIT_FAILURE;
			goto out;
		}
	}
	ret = key_load_file(argv[optind + 1], pass, &k);
	if (ret) {
		ret = EXIT_FAILURE;
		goto out;
	}
	key_fingerprint_str(k, fp);
	printf("%s\n", fp);
out:
	if (pass) {
		explicit_bzero(pass, strlen(pass));
		free(pass);
	}
	key_free(k);
	cli_release(&c);
	return ret;
}


/* ---- mount / status ---- */

static const char mount_help[] =
	"usage: pbs-livemount mount [options] REPO SNAPSHOT MOUNTPOINT\n"
	"\n"
	"Mount every disk of SNAPSHOT as MOUNTPOINT/<name>.img, readable and\n"
	"writable at once, and copy the backup into the targets in the\n"
	"background.  When 'status' says complete, unmount (fusermount3 -u)\n"
	"and use the targets directly.\n"
	"\n"
	"  --target PATH           target file or block device (one disk)\n"
	"  --target-dir DIR        targets DIR/<name>.raw, one per disk\n"
	"  --state PATH            state file (default TARGET.lmstate)\n"
	"  --overwrite             a target that holds data and has no state\n"
	"                          file is restored over (refused otherwise)\n"
	"  --archive NAME          mount only this archive (repeatable)\n"
	"  --cache-size SIZE       decoded-chunk cache (default 256M)\n"
	"  --block-size SIZE       allocation granularity (default 4K)\n"
	"  --no-stream             no background copy: fill on access only\n"
	"  --read-only             no target: on-demand reads only\n"
	"  --verify                at completion, re-hash every chunk the\n"
	"                          guest did not write against the backup\n"
	"  --on-complete CMD       run CMD (sh -c) when the restore completes\n"
	"  --allow-other           let other users (e.g. QEMU) open the files\n"
	"  -o OPTS                 extra FUSE mount options\n"
	"  -f, --foreground        do not detach; log to stderr\n"
	REPO_HELP;

struct ready_pipe {
	int fd;		/* write end, -1 in the foreground */
};

/* Detach only once everything is up: the parent exits 0 then. */
static void daemon_ready(void *arg)
{
	struct ready_pipe *rp = arg;
	int null;

	if (rp->fd < 0)
		return;
	log_init("pbs-livemount", true, LOG_INFO);
	/* Every path in use is absolute (abs_path): do not pin the cwd. */
	if (chdir("/")) {
		/* "/" exists */
	}
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		close(null);
	}
	if (write(rp->fd, "R", 1) != 1) {
		/* the parent is gone; nothing to tell */
	}
	close(rp->fd);
	rp->fd = -1;
}

/* Fork before any thread exists; the parent waits for the hand-shake. */
static int daemonize(struct ready_pipe *rp)
{
	int pfd[2];
	pid_t pid;
	char c;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		int status = 0;

		close(pfd[1]);
		if (read(pfd[0], &c, 1) == 1)
			_exit(EXIT_SUCCESS);
		waitpid(pid, &status, 0);
		_exit(WIFEXITED(status) && WEXITSTATUS(status) ?
			      WEXITSTATUS(status) : EXIT_FAILURE);
	}
	close(pfd[0]);
	setsid();
	rp->fd = pfd[1];
	return 0;
}

/* Paths stay valid after the daemon changes to "/". */
static char *abs_path(const char *p)
{
	char cwd[PATH_MAX];

	if (!p || p[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return p ? xstrdup(p) : NULL;
	return xasprintf("%s/%s", cwd, p);
}

static int cmd_mount(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "target", required_argument, NULL, OPT_TARGET },
		{ "target-dir", required_argument, NULL, OPT_TARGET_DIR },
		{ "state", required_argument, NULL, OPT_STATE },
		{ "archive", required_argument, NULL, OPT_ARCHIVE },
		{ "cache-size", required_argument, NULL, OPT_CACHE_SIZE },
		{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
		{ "no-stream", no_argument, NULL, OPT_NO_STREAM },
		{ "verify", no_argument, NULL, OPT_VERIFY },
		{ "read-only", no_argument, NULL, OPT_READ_ONLY },
		{ "on-complete", required_argument, NULL, OPT_ON_COMPLETE },
		{ "allow-other", no_argument, NULL, OPT_ALLOW_OTHER },
		{ "overwrite", no_argument, NULL, OPT_OVERWRITE },
		{ "foreground", no_argument, NULL, 'f' },
		REPO_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct mount_conf mc = {
		.cache_size = 256u << 20,
		.block_size = 4096,
		/* An unmounted daemon is gone within about a second. */
		.lock_wait_ms = 5000,
	};
	struct ready_pipe rp = { .fd = -1 };
	struct repo_snapshot *snap = NULL;
	const char **archives = NULL;
	char *target = NULL;
	char *target_dir = NULL;
	char *state = NULL;
	char *mnt = NULL;
	char *repo = NULL;
	bool foreground = false;
	struct cli c;
	bool handled;
	uint64_t v;
	int ret = 0;
	int opt;

	cli_init(&c);
	archives = xcalloc(argc, sizeof(*archives));
	while ((opt = getopt_long(argc, argv, "qhfo:", longopts, NULL)) != -1) {
		ret = parse_repo_opt(&c, "mount", opt, optarg, &handled);
		if (ret)
			goto out;
		if (handled)
			continue;
		switch (opt) {
		case 'h':
			fputs(mount_help, stdout);
			goto out;
		case 'f':
			foreground = true;
			break;
		case 'o':
			mc.fuse_opts = optarg;
			break;
		case OPT_TARGET:
			free(target);
			target = abs_path(optarg);
			break;
		case OPT_TARGET_DIR:
			free(target_dir);
			target_dir = abs_path(optarg);
			break;
		case OPT_STATE:
			free(state);
			state = abs_path(optarg);
			break;
		case OPT_ARCHIVE:
			archives[mc.narchives++] = optarg;
			break;
		case OPT_CACHE_SIZE:
			if (parse_size(optarg, &v) || v < (16u << 20)) {
				ret = usage_error("mount", "--cache-size needs "
						  "at least 16M");
				goto out;
			}
			mc.cache_size = v;
			break;
		case OPT_BLOCK_SIZE:
			if (parse_size(optarg, &v) || v < 512 ||
			    v > (4u << 20) || (v & (v - 1))) {
				ret = usage_error("mount", "--block-size: a power "
						  "of two, 512 to 4M");
				goto out;
			}
			mc.block_size = v;
			break;
		case OPT_NO_STREAM:
			mc.no_stream = true;
			break;
		case OPT_VERIFY:
			mc.verify = true;
			break;
		case OPT_READ_ONLY:
			mc.read_only = true;
			break;
		case OPT_ON_COMPLETE:
			mc.on_complete = optarg;
			break;
		case OPT_ALLOW_OTHER:
			mc.allow_other = true;
			break;
		case OPT_OVERWRITE:
			mc.overwrite = true;
			break;
		default:
			ret = EXIT_USAGE;
			goto out;
		}
	}
	if (argc - optind != 3) {
		ret = usage_error("mount", "needs REPO SNAPSHOT MOUNTPOINT");
		goto out;
	}
	if (!mc.read_only && !target && !target_dir) {
		ret = usage_error("mount", "needs --target, --target-dir or "
				  "--read-only");
		goto out;
	}
	if (target && target_dir) {
		ret = usage_error("mount", "--target and --target-dir exclude "
				  "each other");
		goto out;
	}
	if (state && !target) {
		ret = usage_error("mount", "--state goes with --target");
		goto out;
	}
	mnt = abs_path(argv[optind + 2]);
	/* Before any thread exists (the http store starts one). */
	if (!foreground && daemonize(&rp)) {
		log_err("mount: cannot detach: %s", strerror(errno));
		ret = EXIT_FAILURE;
		goto out;
	}
	repo = strstr(argv[optind], "://") ? xstrdup(argv[optind]) :
					     abs_path(argv[optind]);
	ret = open_repo(&c, repo);
	if (!ret)
		ret = repo_snapshot_open(c.s, c.ns, argv[optind + 1], c.key,
					 &snap);
	if (ret) {
		ret = EXIT_FAILURE;
		goto out;
	}
	if (target_dir)
		mkdir_p(target_dir, 0750);
	mc.snap = snap;
	mc.archives = archives;
	mc.mountpoint = mnt;
	mc.target = target;
	mc.target_dir = target_dir;
	mc.state = state;
	/* A local store needs CPUs, not requests in flight. */
	mc.connections = store_is_local(c.s) ?
				 MIN(c.store.connections,
				     2 * (unsigned int)sysconf(_SC_NPROCESSORS_ONLN)) :
				 c.store.connections;
	mc.ready = daemon_ready;
	mc.ready_arg = &rp;
	ret = exit_code(mount_run(&mc));
out:
	repo_snapshot_close(snap);
	cli_release(&c);
	free(repo);
	free(archives);
	free(target);
	free(target_dir);
	free(state);
	free(mnt);
	return ret;
}

static const char status_help[] =
	"usage: pbs-livemount status [options] MOUNTPOINT\n"
	"\n"
	"Progress of a live mount: per disk the share already in the target,\n"
	"rate, ETA, errors and the state (streaming, paused: store\n"
	"unreachable, complete).\n"
	"\n"
	"  --json                  print the status document (JSON)\n"
	"  --watch                 redraw every second until complete\n";

static int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "watch", no_argument, NULL, OPT_WATCH },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct status_conf sc = { 0 };
	int opt;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(status_help, stdout);
			return 0;
		case OPT_JSON:
			sc.json = true;
			break;
		case OPT_WATCH:
			sc.watch = true;
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 1)
		return usage_error("status", "needs MOUNTPOINT");
	sc.mountpoint = argv[optind];
	return exit_code(status_run(&sc, stdout));
}

/* ---- dispatch ---- */

static const char main_help[] =
	"usage: pbs-livemount COMMAND [options] ...\n"
	"\n"
	"Boot virtual machines straight from Proxmox Backup Server backups.\n"
	"\n"
	"commands:\n"
	"  mount     mount a snapshot's disks and restore them live\n"
	"  status    progress of a live mount\n"
	"  pack      write a snapshot from raw images (PBS datastore layout)\n"
	"  restore   restore one disk archive to a file or block device\n"
	"  verify    check an image against a backup\n"
	"  list      list snapshots and their archives\n"
	"  key       create or inspect an encryption key file\n"
	"\n"
	"'pbs-livemount COMMAND --help' describes each command.\n";

int main(int argc, char **argv)
{
	const char *cmd;

	log_init("pbs-livemount", false, LOG_INFO);
	/*
	 * Chunk buffers (up to 16 MiB) come and go all the time on many
	 * threads: a fixed mmap threshold returns them to the system on
	 * free instead of letting per-thread arenas keep them (RSS bound).
	 */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	if (argc < 2) {
		fputs(main_help, stderr);
		return EXIT_USAGE;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") ||
	    !strcmp(cmd, "help")) {
		fputs(main_help, stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("pbs-livemount %s\n", PROG_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "mount"))
		return cmd_mount(argc - 1, argv + 1);
	if (!strcmp(cmd, "status"))
		return cmd_status(argc - 1, argv + 1);
	if (!strcmp(cmd, "pack"))
		return cmd_pack(argc - 1, argv + 1);
	if (!strcmp(cmd, "restore"))
		return cmd_restore_verify(argc - 1, argv + 1, false);
	if (!strcmp(cmd, "verify"))
		return cmd_restore_verify(argc - 1, argv + 1, true);
	if (!strcmp(cmd, "list"))
		return cmd_list(argc - 1, argv + 1);
	if (!strcmp(cmd, "key"))
		return cmd_key(argc - 1, argv + 1);
	fprintf(stderr, "pbs-livemount: unknown command '%s' (see "
		"'pbs-livemount --help')\n", cmd);
	return EXIT_USAGE;
}
