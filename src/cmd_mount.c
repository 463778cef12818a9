/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount mount and status: the live restore daemon, detached once
 * it is up, and its progress.
 *
 * Threads: the mount forks (daemonize) before any thread exists; the
 * store's threads live from cli_open_repo() to cli_release(); mount_run()
 * lists its own.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "mount.h"
#include "repo.h"
#include "status.h"
#include "util.h"
#include "banned.h"

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
	"  --trace-dir DIR         boot traces (default /var/lib/pbs-livemount/\n"
	"                          traces as root; also PBSLM_TRACE_DIR)\n"
	"  --prefetch-trace FILE   this disk's boot trace: read from FILE if\n"
	"                          it exists, written to it (one disk)\n"
	"  --trace-time SECS       record the chunks the guest reads in its\n"
	"                          first SECS (default 120)\n"
	"  --no-trace              neither read nor write boot traces\n"
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
	/* Every path in use is absolute (cli_abs_path): do not pin the cwd. */
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

/* Where boot traces live unless --trace-dir says: state, not cache. */
static char *default_trace_dir(void)
{
	const char *env = getenv("PBSLM_TRACE_DIR");
	const char *home = getenv("HOME");
	const char *xdg = getenv("XDG_STATE_HOME");

	if (env && *env)
		return cli_abs_path(env);
	if (!geteuid())
		return xstrdup("/var/lib/pbs-livemount/traces");
	if (xdg && *xdg == '/')
		return xasprintf("%s/pbs-livemount/traces", xdg);
	if (home && *home == '/')
		return xasprintf("%s/.local/state/pbs-livemount/traces", home);
	return NULL;
}

int cmd_mount(int argc, char **argv)
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
		{ "trace-dir", required_argument, NULL, OPT_TRACE_DIR },
		{ "prefetch-trace", required_argument, NULL,
		  OPT_PREFETCH_TRACE },
		{ "no-trace", no_argument, NULL, OPT_NO_TRACE },
		{ "trace-time", required_argument, NULL, OPT_TRACE_TIME },
		{ "foreground", no_argument, NULL, 'f' },
		REPO_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct mount_conf mc = {
		.cache_size = 256u << 20,
		.block_size = 4096,
		/* An unmounted daemon is gone within about a second. */
		.lock_wait_ms = 5000,
		.trace_time_s = 120,
	};
	struct ready_pipe rp = { .fd = -1 };
	struct repo_snapshot *snap = NULL;
	const char **archives = NULL;
	char *target = NULL;
	char *target_dir = NULL;
	char *state = NULL;
	char *trace_dir = NULL;
	char *trace_file = NULL;
	bool no_trace = false;
	char *mnt = NULL;
	const char *repo = NULL;
	char **args = NULL;
	int shift = 1;
	bool foreground = false;
	struct cli c;
	bool handled;
	uint64_t v;
	int ret = 0;
	int opt;

	cli_init(&c);
	archives = xcalloc(argc, sizeof(*archives));
	while ((opt = getopt_long(argc, argv, "qhfo:", longopts, NULL)) != -1) {
		ret = cli_parse_repo_opt(&c, "mount", opt, optarg, &handled);
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
			target = cli_abs_path(optarg);
			break;
		case OPT_TARGET_DIR:
			free(target_dir);
			target_dir = cli_abs_path(optarg);
			break;
		case OPT_STATE:
			free(state);
			state = cli_abs_path(optarg);
			break;
		case OPT_ARCHIVE:
			archives[mc.narchives++] = optarg;
			break;
		case OPT_CACHE_SIZE:
			if (parse_size(optarg, &v) || v < (16u << 20)) {
				ret = cli_usage_error("mount", "--cache-size needs "
						  "at least 16M");
				goto out;
			}
			mc.cache_size = v;
			break;
		case OPT_BLOCK_SIZE:
			if (parse_size(optarg, &v) || v < 512 ||
			    v > (4u << 20) || (v & (v - 1))) {
				ret = cli_usage_error("mount", "--block-size: a power "
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
		case OPT_TRACE_DIR:
			free(trace_dir);
			trace_dir = cli_abs_path(optarg);
			break;
		case OPT_PREFETCH_TRACE:
			free(trace_file);
			trace_file = cli_abs_path(optarg);
			break;
		case OPT_NO_TRACE:
			no_trace = true;
			break;
		case OPT_TRACE_TIME:
			if (parse_u64(optarg, &v) || !v || v > 86400) {
				ret = cli_usage_error("mount", "--trace-time: "
						  "seconds, 1 to 86400");
				goto out;
			}
			mc.trace_time_s = v;
			break;
		default:
			ret = EXIT_USAGE;
			goto out;
		}
	}
	repo = cli_repo_arg(argc - optind, 3, argv + optind, &shift);
	if (!repo) {
		ret = cli_usage_error("mount", "needs REPO SNAPSHOT MOUNTPOINT "
				      "(or PBS_REPOSITORY)");
		goto out;
	}
	args = argv + optind + shift;
	if (!mc.read_only && !target && !target_dir) {
		ret = cli_usage_error("mount", "needs --target, --target-dir or "
				  "--read-only");
		goto out;
	}
	if (target && target_dir) {
		ret = cli_usage_error("mount", "--target and --target-dir exclude "
				  "each other");
		goto out;
	}
	if (state && !target) {
		ret = cli_usage_error("mount", "--state goes with --target");
		goto out;
	}
	if (no_trace && (trace_dir || trace_file)) {
		ret = cli_usage_error("mount", "--no-trace excludes --trace-dir "
				  "and --prefetch-trace");
		goto out;
	}
	if (!no_trace && !trace_file && !trace_dir)
		trace_dir = default_trace_dir();
	mnt = cli_abs_path(args[1]);
	/* The terminal is still ours: ask for a missing password now. */
	if (cli_read_secret(&c, repo)) {
		ret = EXIT_FAILURE;
		goto out;
	}
	/* Before any thread exists (the http store starts one). */
	if (!foreground && daemonize(&rp)) {
		log_err("mount: cannot detach: %s", strerror(errno));
		ret = EXIT_FAILURE;
		goto out;
	}
	ret = cli_open_repo(&c, repo);
	if (!ret)
		ret = repo_snapshot_open(c.s, c.ns, args[0], c.key, &snap);
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
	mc.trace_dir = trace_dir;
	mc.trace_file = trace_file;
	/* A local store needs CPUs, not requests in flight. */
	mc.connections = store_is_local(c.s) ?
				 MIN(c.store.connections,
				     2 * (unsigned int)sysconf(_SC_NPROCESSORS_ONLN)) :
				 c.store.connections;
	mc.ready = daemon_ready;
	mc.ready_arg = &rp;
	ret = cli_exit_code(mount_run(&mc));
out:
	repo_snapshot_close(snap);
	cli_release(&c);
	free(archives);
	free(target);
	free(target_dir);
	free(state);
	free(trace_dir);
	free(trace_file);
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

int cmd_status(int argc, char **argv)
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
		return cli_usage_error("status", "needs MOUNTPOINT");
	sc.mountpoint = argv[optind];
	return cli_exit_code(status_run(&sc, stdout));
}
