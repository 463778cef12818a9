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
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "cli.h"
#include "log.h"
#include "mount.h"
#include "mountpoint.h"
#include "repo.h"
#include "status.h"
#include "sup.h"
#include "util.h"
#include "banned.h"

static const char mount_desc[] =
	"Mount every disk of SNAPSHOT as MOUNTPOINT/<name>.img, readable and\n"
	"writable at once, and copy the backup into the targets in the\n"
	"background.  When 'status' says complete, unmount (fusermount3 -u)\n"
	"and use the targets directly.\n";

/* --block-size: a power of two from 512 to 4M. */
static int opt_block_size(void *value, const char *arg, char *why,
			  size_t len)
{
	uint64_t v;

	if (parse_size(arg, &v) || v < 512 || v > (4u << 20) ||
	    (v & (v - 1))) {
		snprintf(why, len, "'%s' is not a power of two from 512 to 4M",
			 arg);
		return -EINVAL;
	}
	*(uint64_t *)value = v;
	return 0;
}

/* What --cache-size may take at most: the machine's memory. */
static uint64_t phys_mem(void)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	long psize = sysconf(_SC_PAGESIZE);

	return pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
}

struct ready_pipe {
	int fd;		/* write end, -1 in the foreground */
	const char *mnt;
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

/* A daemon's server: no terminal, messages to the log file or syslog. */
static void detach_stdio(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	log_init("pbs-livemount", true, LOG_INFO);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		close(null);
	}
}

/* The first server of a daemon serves: its supervisor detaches now. */
static void server_ready(void *arg)
{
	(void)arg;
	detach_stdio();
}

/*
 * The mount's first process: check what it can before anything exists,
 * ask the terminal for the secrets while it is there, detach, and
 * supervise the servers (sup.h), which run this binary again with
 * @argv (the command line as given) in the current directory.
 */
/*
 * The first server serves: the terminal's parent may return (detached)
 * and systemd hears READY=1 (Type=notify; nothing without
 * $NOTIFY_SOCKET).
 */
static void mount_ready(void *arg)
{
	struct ready_pipe *rp = arg;

	daemon_ready(rp);
	sd_notifyf(0, "READY=1\nSTATUS=serving %s", rp->mnt);
}

static int supervise(struct cli *c, const char *repo, const char *mnt,
		     bool foreground, int argc, char **argv)
{
	struct ready_pipe rp = { .fd = -1, .mnt = mnt };
	char exe[PATH_MAX];
	char cwd[PATH_MAX];
	char *settings = NULL;
	char *pass = NULL;
	ssize_t n;
	int ret;

	if (mountpoint_check(mnt))
		return EXIT_FAILURE;
	/* The installed binary, by name: restarts run what is there then. */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0 || !getcwd(cwd, sizeof(cwd))) {
		log_err("mount: cannot tell this program's path: %s",
			strerror(errno));
		return EXIT_FAILURE;
	}
	exe[n] = '\0';
	/* The terminal is still ours: ask for what is missing now. */
	if (cli_credentials(c, repo))
		return EXIT_FAILURE;
	if (c->keyfile && cli_get_passphrase(c, &pass))
		return EXIT_FAILURE;
	/* The store's credentials, for every server to come. */
	settings = store_conf_pack(&c->store);
	/* Before any thread exists. */
	if (!foreground && daemonize(&rp)) {
		log_err("mount: cannot detach: %s", strerror(errno));
		ret = EXIT_FAILURE;
		goto out;
	}
	{
		struct sup_conf sc = {
			.exe = exe,
			.argv = argv,
			.cwd = cwd,
			.mountpoint = mnt,
			.detach = !foreground,
			.secret = settings,
			.passphrase = pass,
			/* A hot loop gives up in about two seconds. */
			.max_deaths = 20,
			.window_s = 10,
			.ready = mount_ready,
			.ready_arg = &rp,
		};

		(void)argc;
		ret = sup_run(&sc);
		sd_notify(0, "STOPPING=1");
	}
out:
	if (pass) {
		explicit_bzero(pass, strlen(pass));
		free(pass);
	}
	explicit_bzero(settings, strlen(settings));
	free(settings);
	return ret;
}

/* The mount command line, parsed: what struct mount_conf lacks. */
struct mount_args {
	struct opt_list archives;
	struct opt_list seeds;
	char *target;
	char *target_dir;
	char *state;
	char *trace_dir;
	char *trace_file;
	char *log_file;
	char *cutover_qmp;
	unsigned int trace_time;
	bool no_trace;
	bool foreground;
};

static void mount_args_release(struct mount_args *a)
{
	opt_list_release(&a->archives);
	opt_list_release(&a->seeds);
	free(a->target);
	free(a->target_dir);
	free(a->state);
	free(a->trace_dir);
	free(a->trace_file);
	free(a->log_file);
	free(a->cutover_qmp);
}

/* Options that exclude or need each other, and the REPO argument (NULL:
 * missing); the usage error, or 0. */
static int check_args(struct mount_args *a, struct mount_conf *mc,
		      const char *repo)
{
	const char *why = NULL;

	if (mc->in_place && (mc->overwrite || mc->read_only))
		why = "--in-place keeps what the target holds: not with "
		      "--overwrite or --read-only";
	else if (a->cutover_qmp && mc->cutover_libvirt)
		why = "--cutover-qmp and --cutover-libvirt exclude each other";
	else if ((a->cutover_qmp || mc->cutover_libvirt) &&
		 (mc->read_only || mc->no_stream))
		why = "a cut-over needs the stream to complete: not with "
		      "--read-only or --no-stream";
	else if (!repo)
		why = "needs REPO SNAPSHOT MOUNTPOINT (or PBS_REPOSITORY)";
	else if (!mc->read_only && !a->target && !a->target_dir)
		why = "needs --target, --target-dir or --read-only";
	else if (a->target && a->target_dir)
		why = "--target and --target-dir exclude each other";
	else if (mc->pve_names && !a->target_dir)
		why = "--pve-names names the files of --target-dir";
	else if (a->state && !a->target)
		why = "--state goes with --target";
	else if (a->no_trace && (a->trace_dir || a->trace_file))
		why = "--no-trace excludes --trace-dir and --prefetch-trace";
	if (why)
		return opt_usage_error("mount", "%s", why);
	mc->archives = a->archives.v;
	mc->narchives = (unsigned int)a->archives.n;
	mc->seeds = a->seeds.v;
	mc->nseeds = (unsigned int)a->seeds.n;
	mc->trace_time_s = a->trace_time;
	mc->cutover_qmp = a->cutover_qmp;
	if (!a->no_trace && !a->trace_file && !a->trace_dir)
		a->trace_dir = cli_default_dir("PBSLM_TRACE_DIR", "traces");
	mc->target = a->target;
	mc->target_dir = a->target_dir;
	mc->state = a->state;
	mc->trace_dir = a->trace_dir;
	mc->trace_file = a->trace_file;
	return 0;
}

/* A server of the mount at @mnt, started by its supervisor @sup. */
static int serve(struct cli *c, struct mount_args *a, struct mount_conf *mc,
		 const char *repo, const char *snapshot, const char *mnt,
		 struct sup_client *sup)
{
	struct repo_snapshot *snap = NULL;
	bool made_dir = false;
	int ret;

	/* The supervisor holds the secrets and the terminal. */
	if (sup_client_secret(sup) &&
	    store_conf_unpack(&c->store, sup_client_secret(sup))) {
		log_err("mount: the supervisor's settings are garbled");
		return EXIT_FAILURE;
	}
	if (sup_client_passphrase(sup))
		c->passphrase = xstrdup(sup_client_passphrase(sup));
	if (sup_client_hello(sup)->detach && sup_client_hello(sup)->restarts)
		detach_stdio();
	ret = cli_open_repo(c, repo);
	if (!ret)
		ret = repo_snapshot_open(c->s, c->ns, snapshot, c->key, &snap);
	if (ret)
		return EXIT_FAILURE;
	if (a->target_dir && access(a->target_dir, F_OK))
		made_dir = !mkdir_p(a->target_dir, 0750);
	mc->state_dir = cli_default_dir("PBSLM_STATE_DIR", "state");
	mc->snap = snap;
	mc->sup = sup;
	mc->mountpoint = mnt;
	mc->connections = store_parallelism(c->s, c->store.connections);
	if (sup_client_hello(sup)->detach)
		mc->ready = server_ready;
	ret = mount_run(mc);
	ret = ret == -EPROTO ? SUP_EXIT_INCOMPATIBLE : cli_exit_code(ret);
	/* A failed mount leaves no directory it made (if still empty). */
	if (ret && made_dir)
		rmdir(a->target_dir);
	free((char *)mc->state_dir);
	repo_snapshot_close(snap);
	return ret;
}

/* mount's option table, into @out (room for 40 rows). */
static void mount_options(struct opt *out, struct mount_args *a,
			  struct mount_conf *mc, struct cli *c)
{
	const struct opt t[] = {
		OPT_PATH("target", &a->target, "PATH",
			 "target file or block device (one disk)"),
		OPT_PATH("target-dir", &a->target_dir, "DIR",
			 "targets DIR/<name>.raw, one per disk"),
		OPT_BOOL(0, "pve-names", &mc->pve_names,
			 "--target-dir's files named as PVE's restore\n"
			 "would: vm-ID-disk-N.raw"),
		OPT_PATH("state", &a->state, "PATH",
			 "state file (default TARGET.lmstate)"),
		OPT_BOOL(0, "overwrite", &mc->overwrite,
			 "a target that holds data and has no state\n"
			 "file is restored over (refused otherwise)"),
		OPT_BOOL(0, "in-place", &mc->in_place,
			 "the target holds an older version of the\n"
			 "disk: only chunks that differ are fetched"),
		OPT_LIST("seed", &a->seeds, "PATH",
			 "a file or device that may hold chunks of\n"
			 "the disk, read instead of fetched (repeatable)"),
		OPT_LIST("archive", &a->archives, "NAME",
			 "mount only this archive (repeatable)"),
		OPT_SIZE("cache-size", &mc->cache_size, "SIZE", 16u << 20,
			 phys_mem(), "decoded-chunk cache (default 256M)"),
		OPT_CALLBACK(0, "block-size", &mc->block_size, "SIZE",
			     opt_block_size,
			     "allocation granularity (default 4K)"),
		OPT_BOOL(0, "no-stream", &mc->no_stream,
			 "no background copy: fill on access only"),
		OPT_BOOL(0, "read-only", &mc->read_only,
			 "no target: on-demand reads only"),
		OPT_BOOL(0, "verify", &mc->verify,
			 "at completion, re-hash every chunk the\n"
			 "guest did not write against the backup"),
		OPT_STRING(0, "on-complete", &mc->on_complete, "CMD",
			   "run CMD (sh -c) when the restore completes\n"
			   "(after the cut-over, if any)"),
		OPT_PATH("cutover-qmp", &a->cutover_qmp, "SOCKET",
			 "at completion, move the QEMU behind this\n"
			 "monitor socket onto the targets, then end"),
		OPT_STRING(0, "cutover-libvirt", &mc->cutover_libvirt, "DOMAIN",
			   "the same for a running libvirt domain"),
		OPT_STRING(0, "libvirt-uri", &mc->libvirt_uri, "URI",
			   "libvirt to ask (default qemu:///system)"),
		OPT_PATH("trace-dir", &a->trace_dir, "DIR",
			 "boot traces (default /var/lib/pbs-livemount/\n"
			 "traces as root; also PBSLM_TRACE_DIR)"),
		OPT_PATH("prefetch-trace", &a->trace_file, "FILE",
			 "this disk's boot trace: read from FILE if\n"
			 "it exists, written to it (one disk)"),
		OPT_UINT("trace-time", &a->trace_time, "SECS", 1, 86400,
			 "record the chunks the guest reads in its\n"
			 "first SECS (default 120)"),
		OPT_BOOL(0, "no-trace", &a->no_trace,
			 "neither read nor write boot traces"),
		OPT_BOOL(0, "allow-other", &mc->allow_other,
			 "let other users (e.g. QEMU) open the files"),
		OPT_STRING('o', NULL, &mc->fuse_opts, "OPTS",
			   "extra FUSE mount options"),
		OPT_BOOL('f', "foreground", &a->foreground,
			 "do not detach; log to stderr"),
		OPT_PATH("log-file", &a->log_file, "FILE",
			 "log to FILE (appended; reopened on SIGHUP)\n"
			 "instead of syslog once detached"),
		OPT_INCLUDE(cli_repo_opts(c), "repository options:"),
		OPT_END(),
	};

	_Static_assert(sizeof(t) <= 40 * sizeof(*t), "mount: too many options");
	memcpy(out, t, sizeof(t));
}

int cmd_mount(int argc, char **argv)
{
	struct mount_conf mc = {
		.cache_size = 256u << 20,
		.block_size = 4096,
		/* An unmounted daemon is gone within about a second. */
		.lock_wait_ms = 5000,
	};
	struct mount_args a = { .trace_time = 120 };
	struct opt opts[40];
	char *mnt = NULL;
	const char *repo = NULL;
	char **args = NULL;
	int shift = 1;
	struct cli c;
	struct sup_client *sup = NULL;
	char **argv_copy = NULL;
	int nargs;
	int ret = 0;

	cli_init(&c);
	/* A server's command line is the supervisor's, as it was given. */
	argv_copy = xcalloc(argc + 2, sizeof(*argv_copy));
	memcpy(argv_copy + 1, argv, argc * sizeof(*argv));
	ret = sup_client_open(&sup);
	if (ret && ret != -ENOENT) {
		free(argv_copy);
		return EXIT_FAILURE;
	}
	mount_options(opts, &a, &mc, &c);
	const struct opt_cmd cmd = {
		.name = "mount",
		.usage = "[options] REPO SNAPSHOT MOUNTPOINT",
		.desc = mount_desc,
		.opts = opts,
	};

	if (!opt_parse_main(&cmd, argc, argv, &nargs, &ret))
		goto out;
	repo = cli_repo_arg(nargs, 3, argv + 1, &shift);
	ret = check_args(&a, &mc, repo);
	if (ret)
		goto out;
	args = argv + 1 + shift;
	mnt = abs_path(args[1]);
	ret = a.log_file ? log_set_file(a.log_file) : 0;
	if (ret) {
		log_err("mount: cannot open log file '%s': %s", a.log_file,
			strerror(-ret));
		ret = EXIT_FAILURE;
		goto out;
	}
	if (!sup)
		ret = supervise(&c, repo, mnt, a.foreground, argc, argv_copy);
	else
		ret = serve(&c, &a, &mc, repo, args[0], mnt, sup);
out:
	cli_release(&c);
	mount_args_release(&a);
	free(mnt);
	free(argv_copy);
	sup_client_close(sup);
	return ret;
}

static const char status_desc[] =
	"Progress of a live mount: per disk the share already in the target,\n"
	"rate, ETA, errors and the state (streaming, paused: store\n"
	"unreachable, complete).\n";

int cmd_status(int argc, char **argv)
{
	struct status_conf sc = { 0 };
	const struct opt opts[] = {
		OPT_BOOL(0, "json", &sc.json,
			 "print the status document (JSON)"),
		OPT_BOOL(0, "watch", &sc.watch,
			 "redraw every second until complete"),
		OPT_END(),
	};
	const struct opt_cmd cmd = {
		.name = "status",
		.usage = "[options] MOUNTPOINT",
		.desc = status_desc,
		.opts = opts,
	};
	int nargs;
	int ret;

	if (!opt_parse_main(&cmd, argc, argv, &nargs, &ret))
		return ret;
	if (nargs != 1)
		return opt_usage_error("status", "needs MOUNTPOINT");
	sc.mountpoint = argv[1];
	return cli_exit_code(status_run(&sc, stdout));
}
