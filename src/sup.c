/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The supervisor and its server's end of the control socket (sup.h).
 *
 * Facts this relies on (Linux 6.9+, libfuse 3.14; see fs.c for libfuse):
 *   - the kernel keeps a FUSE connection while any process holds its
 *     /dev/fuse descriptor; the server gets the supervisor's (the same
 *     open file, so the requests a server has read are in that file's
 *     "processing" list, not in a clone's that would abort them);
 *   - a request a dead server had read but not answered waits until
 *     FUSE_NOTIFY_RESEND (code 7, unique 0, no payload) puts it back in
 *     the queue with bit 63 of its unique set; the next server answers
 *     it like any other.  Every request is safe to answer twice (a
 *     resent write writes the same bytes in the same place; the guest
 *     journal of ovl.c keeps what the dead server acknowledged);
 *   - a kernel without it refuses the notification (EINVAL): the
 *     requests taken would never be answered, so the supervisor does
 *     not take over there: it aborts the connection, as a crash did
 *     before, and says why once;
 *   - /proc/sys/fs/fuse/default_request_timeout (Linux 6.15, 0 = off)
 *     aborts a connection whose request waits longer: set, it must
 *     exceed a takeover (under a second here), or a takeover ends the
 *     mount as a crash would.
 *
 * Control protocol: SOCK_SEQPACKET, one message a datagram, a fixed
 * header (type, payload length, three numbers) and a bounded payload;
 * the FUSE descriptor travels in SCM_RIGHTS.  Supervisor to server:
 * HELLO (restarts, when and how the last server ended, the secrets),
 * CONN (descriptor, FUSE_INIT, the first server's agreement) or FAIL.
 * Server to supervisor: MOUNT (options), SERVING (its agreement),
 * RESTART (replace me).
 *
 * The supervisor is single-threaded: one poll loop on a signalfd
 * (SIGCHLD, SIGTERM, SIGINT, SIGHUP, all blocked) and the socket.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "fs.h"
#include "log.h"
#include "sup.h"
#include "util.h"
#include "banned.h"

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

/* One message; @fd (-1: none) goes along in SCM_RIGHTS. */
static int msg_send(int sock, uint32_t type, uint64_t a, uint64_t b,
		    uint64_t c, const void *payload, size_t len, int fd)
{
	struct msg_head h = { type, (uint32_t)len, a, b, c };
	char cbuf[FD_CMSG_SPACE];
	struct iovec iov[2] = { { &h, sizeof(h) },
				{ (void *)payload, len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };

	if (len > MSG_MAX)
		return -EMSGSIZE;
	if (fd >= 0)
		msg_attach_fd(&mh, cbuf, fd);
	for (;;) {
		if (sendmsg(sock, &mh, MSG_NOSIGNAL) >= 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

/*
 * One message into @h and @payload (@cap bytes); a descriptor that came
 * with it into *@fd (-1 if none; NULL: closed).  0, -ECONNRESET at the
 * end, -EBADMSG for anything malformed.
 */
static int msg_recv(int sock, struct msg_head *h, void *payload, size_t cap,
		    int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov[2] = { { h, sizeof(*h) }, { payload, cap } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2,
			     .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	int got = -1;
	ssize_t n;

	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm;
	     cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET &&
		    cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&got, CMSG_DATA(cm), sizeof(int));
	if (fd)
		*fd = got;
	else if (got >= 0)
		close(got);
	if (n == 0)
		return -ECONNRESET;
	if ((size_t)n < sizeof(*h) || (mh.msg_flags & MSG_TRUNC) ||
	    h->len != (size_t)n - sizeof(*h) || h->len > cap) {
		if (fd && got >= 0)
			close(got);
		return -EBADMSG;
	}
	return 0;
}

/* Appends fail only past the buffer's limit: a short state is caught
 * by its reader (and a HELLO never comes near it). */
static void put_blob(struct buf *b, const char *s)
{
	uint32_t n = s ? (uint32_t)strlen(s) : UINT32_MAX;

	if (!buf_append(b, &n, sizeof(n)) && s)
		buf_append(b, s, strlen(s));
}

struct sup;
static int take_blob(const uint8_t **p, const uint8_t *end, char **out,
		     size_t *alloc);
static void reexec(struct sup *s);

/* ---- the supervisor ---- */

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

static void describe(int status, char *out, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(out, len, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else if (WIFEXITED(status) && WEXITSTATUS(status))
		snprintf(out, len, "exited with status %d",
			 WEXITSTATUS(status));
	else
		snprintf(out, len, "exited");
}

static int start_server(struct sup *s)
{
	const struct sup_conf *c = s->conf;
	pid_t me = getpid();
	struct buf hello;
	sigset_t none;
	int sv[2];
	int ret;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	s->server = fork();
	if (s->server < 0) {
		ret = -errno;
		close(sv[0]);
		close(sv[1]);
		return ret;
	}
	if (!s->server) {
		char num[16];

		/* Dies with its supervisor: the connection aborts then. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != me)
			_exit(127);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		snprintf(num, sizeof(num), "%d", sv[1]);
		if (fcntl(sv[1], F_SETFD, 0) < 0 ||
		    setenv(ENV_FD, num, 1) < 0)
			_exit(127);
		if (c->cwd && chdir(c->cwd) < 0 && chdir("/") < 0)
			_exit(127);
		c->argv[0] = (char *)c->exe;
		execv(c->exe, c->argv);
		/* Removed meanwhile (an upgrade half done): ourselves. */
		execv("/proc/self/exe", c->argv);
		_exit(127);
	}
	close(sv[1]);
	s->ctl = sv[0];
	s->started_ns = now_ns();
	s->restart_asked = false;
	s->serving = false;
	buf_init(&hello, MSG_MAX);
	buf_append(&hello, s->cause, strlen(s->cause) + 1);
	put_blob(&hello, c->secret);
	put_blob(&hello, c->passphrase);
	put_blob(&hello, s->memo);
	ret = msg_send(s->ctl, MSG_HELLO, s->restarts, s->died_ns,
		       c->detach, hello.data, hello.len, -1);
	explicit_bzero(hello.data, hello.len);
	buf_release(&hello);
	log_debug(LOG_CAT_FS, "sup: server %d started", (int)s->server);
	return ret == -EPIPE ? 0 : ret;	/* died at once: SIGCHLD says */
}

/* The first server asks for the mount: mount, read INIT, hand it over. */
static void handle_mount(struct sup *s, const char *opts)
{
	uint8_t *buf = NULL;
	size_t cap = (1u << 20) + 65536;
	char why[256] = "";
	ssize_t n = -1;
	int ret;

	if (s->fuse < 0) {
		ret = fs_mount_only(s->conf->mountpoint, opts, &s->mnt);
		if (ret) {
			snprintf(why, sizeof(why), "cannot mount on '%s'",
				 s->conf->mountpoint);
			goto fail;
		}
		s->fuse = fs_mount_fd(s->mnt);
		/* The kernel's first request, sent at mount time. */
		buf = xmalloc(cap);
		do
			n = read(s->fuse, buf, cap);
		while (n < 0 && errno == EINTR);
		if (n < 16 || n > INIT_MAX ||
		    *(uint32_t *)buf != (uint32_t)n ||
		    *(uint32_t *)(buf + 4) != OPCODE_INIT) {
			snprintf(why, sizeof(why), "the kernel's first FUSE "
				 "request is not INIT (%zd bytes)", n);
			goto fail;
		}
		memcpy(s->init, buf, (size_t)n);
		s->init_len = (size_t)n;
		free(buf);
		buf = NULL;
	}
	msg_send(s->ctl, MSG_CONN, s->want, s->max_write, s->agreed, s->init,
		 s->init_len, s->fuse);
	return;
fail:
	free(buf);
	log_err("sup: %s", why);
	msg_send(s->ctl, MSG_FAIL, 0, 0, 0, why, strlen(why) + 1, -1);
}

static void handle_msg(struct sup *s)
{
	struct msg_head h = { 0 };
	char payload[MEMO_MAX];
	int ret;

	ret = msg_recv(s->ctl, &h, payload, sizeof(payload) - 1, NULL);
	if (ret) {
		/* The server went (or spoke nonsense): SIGCHLD follows. */
		close(s->ctl);
		s->ctl = -1;
		return;
	}
	payload[h.len] = '\0';
	switch (h.type) {
	case MSG_MOUNT:
		handle_mount(s, payload);
		break;
	case MSG_SERVING:
		if (!s->agreed) {
			s->want = h.a;
			s->max_write = h.b;
			s->agreed = true;
		}
		s->served = true;
		s->serving = true;
		s->failed = 0;
		if (!s->ready_done && s->conf->ready)
			s->conf->ready(s->conf->ready_arg);
		s->ready_done = true;
		break;
	case MSG_RESTART:
		s->restart_asked = true;
		break;
	case MSG_MEMO:
		memcpy(s->memo, payload, h.len + 1);
		break;
	default:
		log_warn("sup: server %d sent message %u: ignored",
			 (int)s->server, h.type);
	}
}

/* Put back what the dead server had taken; false: the kernel cannot. */
static bool resend(struct sup *s)
{
	struct {
		uint32_t len;
		int32_t error;
		uint64_t unique;
	} n = { 16, NOTIFY_RESEND, 0 };
	static bool told;

	if (s->fuse < 0 || write(s->fuse, &n, sizeof(n)) == sizeof(n))
		return true;
	if (!told)
		log_err("sup: cannot take the mount over: the kernel refuses "
			"FUSE_NOTIFY_RESEND (%s; Linux 6.9 has it), so requests "
			"the dead server had taken would wait forever",
			strerror(errno));
	told = true;
	return false;
}

/* The mount ends: unmounted already, or now, lazily. */
static void end_mount(struct sup *s)
{
	fs_mount_release(s->mnt, true);
	s->mnt = NULL;
	s->fuse = -1;
}

/* Too many deaths in the window? */
static bool too_many(struct sup *s, uint64_t now)
{
	unsigned int n = s->conf->max_deaths;

	s->deaths[s->ndeaths++ % n] = now;
	return s->ndeaths >= n &&
	       now - s->deaths[s->ndeaths % n] <
		       (uint64_t)s->conf->window_s * 1000000000ull;
}

/*
 * The server is gone with @status.  0: a new one was started; 1: the
 * mount is over with exit status *@code.
 */
static int handle_exit(struct sup *s, int status, int *code)
{
	uint64_t now = now_ns();

	s->server = 0;
	if (s->ctl >= 0) {
		close(s->ctl);
		s->ctl = -1;
	}
	describe(status, s->cause, sizeof(s->cause));
	if (!s->served) {
		/* The first server failed to start: it said why. */
		end_mount(s);
		*code = WIFEXITED(status) && WEXITSTATUS(status) ?
				WEXITSTATUS(status) : 1;
		return 1;
	}
	if (s->stopping || (WIFEXITED(status) && !WEXITSTATUS(status) &&
			    !s->restart_asked)) {
		/* Unmounted, or ended on purpose (SIGTERM). */
		end_mount(s);
		*code = 0;
		return 1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == SUP_EXIT_INCOMPATIBLE)
		goto give_up;
	if (!s->restart_asked) {
		if (too_many(s, now))
			goto give_up;
		log_err("sup: the server %s; another takes the mount over",
			s->cause);
	} else {
		snprintf(s->cause, sizeof(s->cause), "restarted on request");
	}
	/* One that never served: retry slower, and not for ever. */
	if (!s->serving && !s->restart_asked && ++s->failed >= FAIL_MAX)
		goto give_up;
	s->died_ns = now;
	if (!resend(s))
		goto give_up;
	/* One that served: the guest waits, start another at once. */
	s->backoff_ms = s->serving || s->restart_asked ? 0 :
			s->backoff_ms ? MIN(s->backoff_ms * 2, BACKOFF_MAX_MS) :
					BACKOFF_MIN_MS;
	if (s->backoff_ms) {
		struct timespec ts = { s->backoff_ms / 1000,
				       (long)(s->backoff_ms % 1000) * 1000000 };

		nanosleep(&ts, NULL);
	}
	s->restarts++;
	/* An upgrade: this process becomes the new binary too, if it can. */
	if (s->restart_asked)
		reexec(s);
	if (!start_server(s))
		return 0;
	log_err("sup: cannot start a server: %s", strerror(errno));
give_up:
	log_err("sup: giving up on the mount on '%s': the server %s (%u deaths "
		"in %u s, or %d in a row before serving, at most); the "
		"connection is aborted and the guest's I/O fails",
		s->conf->mountpoint, s->cause, s->conf->max_deaths,
		s->conf->window_s, FAIL_MAX);
	end_mount(s);
	*code = 1;
	return 1;
}

static void handle_signal(struct sup *s, int *done, int *code)
{
	struct signalfd_siginfo si;
	int status;
	pid_t pid;

	if (read(s->sigfd, &si, sizeof(si)) != sizeof(si))
		return;
	switch (si.ssi_signo) {
	case SIGCHLD:
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			if (pid == s->server && handle_exit(s, status, code))
				*done = 1;
		break;
	case SIGTERM:
	case SIGINT:
		s->stopping = true;
		if (s->server)
			kill(s->server, SIGTERM);
		else
			*done = 1;
		break;
	case SIGHUP:
		log_request_reopen();
		if (s->server)
			kill(s->server, SIGHUP);
		break;
	}
}

/* Signals arrive on a descriptor; the mask survives a re-exec. */
static int watch_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	return signalfd(-1, &set, SFD_CLOEXEC);
}

/* Run the mount from a started server on; the exit status. */
static int run(struct sup *s)
{
	int done = 0;
	int code = 1;

	while (!done) {
		struct pollfd p[2] = { { s->sigfd, POLLIN, 0 },
				       { s->ctl, POLLIN, 0 } };

		if (poll(p, s->ctl >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			break;
		if (s->ctl >= 0 && (p[1].revents & (POLLIN | POLLHUP)))
			handle_msg(s);
		if (p[0].revents & POLLIN)
			handle_signal(s, &done, &code);
	}
	return code;
}

static void sup_free(struct sup *s)
{
	if (s->sigfd >= 0)
		close(s->sigfd);
	if (s->ctl >= 0)
		close(s->ctl);
	end_mount(s);
	free(s->deaths);
	free((char *)s->own.exe);
	free((char *)s->own.cwd);
	free((char *)s->own.mountpoint);
	for (int i = 0; s->own.argv && i < s->argc; i++)
		free(s->own.argv[i]);
	free(s->own.argv);
	if (s->own.secret)
		crypto_secure_free((char *)s->own.secret,
				   strlen(s->own.secret) + 1);
	if (s->own.passphrase)
		crypto_secure_free((char *)s->own.passphrase,
				   strlen(s->own.passphrase) + 1);
}

/* A sysctl of fs.fuse in seconds; 0 if unset or absent (before 6.15). */
static unsigned int fuse_sysctl(const char *name)
{
	char *path = xasprintf("/proc/sys/fs/fuse/%s", name);
	uint8_t *buf = NULL;
	uint64_t v = 0;
	size_t len;

	if (!read_file_any(path, 64, &buf, &len)) {
		buf[strcspn((char *)buf, "\n")] = '\0';
		if (parse_u64((char *)buf, &v) || v > UINT_MAX)
			v = 0;
	}
	free(buf);
	free(path);
	return (unsigned int)v;
}

/*
 * Since Linux 6.15 the kernel aborts a connection whose request waits
 * longer than a timeout fixed at mount (fuse_init_server_timeout():
 * the default, capped by the maximum, at least 15 s); a request taken
 * again keeps the time it was first sent, so a takeover counts.
 */
static void tell_request_timeout(void)
{
	unsigned int def = fuse_sysctl("default_request_timeout");
	unsigned int max = fuse_sysctl("max_request_timeout");
	unsigned int t = def;

	if (max && (!t || t > max))
		t = max;
	if (!t)
		return;
	log_info("sup: the kernel aborts this mount if a request waits more "
		 "than %u s (/proc/sys/fs/fuse/*request_timeout), a takeover "
		 "included", MAX(t, 15u));
}

int sup_run(const struct sup_conf *conf)
{
	struct sup s = {
		.conf = conf,
		.fuse = -1,
		.ctl = -1,
	};
	int code = 1;

	s.deaths = xcalloc(conf->max_deaths ? conf->max_deaths : 1,
			   sizeof(*s.deaths));
	s.sigfd = watch_signals();
	tell_request_timeout();
	if (s.sigfd < 0 || start_server(&s))
		log_err("sup: cannot start the server: %s", strerror(errno));
	else
		code = run(&s);
	sup_free(&s);
	return code;
}

/* ---- re-executing the supervisor (restart) ---- */

const char *sup_abi(void)
{
	/* Bumped with any change to the state layout or the protocol. */
	return "pbs-livemount supervisor 2";
}

/*
 * Does @exe speak our supervisor's language?  It is asked, in a child,
 * before this process bets the connection on it.
 */
static bool probe(const char *exe)
{
	char *const argv[] = { (char *)exe, (char *)"__supervisor-abi", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	char out[128] = "";
	size_t got = 0;
	sigset_t none;
	int pipefd[2];
	pid_t pid = -1;
	int st;
	bool ok = false;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return false;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
	if (posix_spawn(&pid, exe, &fa, &at, argv, environ))
		pid = -1;
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(pipefd[1]);
	for (uint64_t end = now_ns() + PROBE_MS * 1000000ull;
	     pid > 0 && got < sizeof(out) - 1;) {
		struct pollfd p = { pipefd[0], POLLIN, 0 };
		uint64_t now = now_ns();
		ssize_t n;

		if (now >= end || poll(&p, 1, (int)((end - now) / 1000000)) <= 0)
			break;
		n = read(pipefd[0], out + got, sizeof(out) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(pipefd[0]);
	if (pid > 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		out[got] = '\0';
		out[strcspn(out, "\n")] = '\0';
		ok = !strcmp(out, sup_abi());
	}
	if (!ok)
		log_warn("sup: '%s' does not answer as a supervisor of this "
			 "version ('%s'): this one stays, only the server is "
			 "replaced", exe, out);
	return ok;
}

static void put_u64(struct buf *b, uint64_t v)
{
	buf_append(b, &v, sizeof(v));
}

/* All a successor needs, in a sealed memory file; -1 if it cannot. */
static int save_state(const struct sup *s)
{
	const struct sup_conf *c = s->conf;
	struct log_conf lc;
	struct buf b;
	int argc = 1;		/* argv[0] is set when a server starts */
	int fd;

	while (c->argv[argc])
		argc++;
	log_get_conf(&lc);
	buf_init(&b, 1u << 20);
	put_u64(&b, STATE_MAGIC);
	put_blob(&b, c->exe);
	put_blob(&b, c->cwd);
	put_blob(&b, c->mountpoint);
	put_blob(&b, c->secret);
	put_blob(&b, c->passphrase);
	put_u64(&b, c->detach);
	put_u64(&b, c->max_deaths);
	put_u64(&b, c->window_s);
	put_u64(&b, (uint64_t)argc);
	for (int i = 1; i < argc; i++)
		put_blob(&b, c->argv[i]);
	put_u64(&b, lc.use_syslog);
	put_u64(&b, (uint64_t)(int64_t)lc.level);
	put_u64(&b, lc.debug_mask);
	put_blob(&b, lc.path);
	put_u64(&b, (uint64_t)s->fuse);
	put_u64(&b, s->init_len);
	buf_append(&b, s->init, s->init_len);
	put_u64(&b, s->want);
	put_u64(&b, s->max_write);
	put_u64(&b, s->agreed);
	put_u64(&b, s->failed);
	put_u64(&b, s->restarts);
	put_u64(&b, s->died_ns);
	put_blob(&b, s->cause);
	put_blob(&b, s->memo);
	put_u64(&b, s->ndeaths);
	for (unsigned int i = 0; i < c->max_deaths; i++)
		put_u64(&b, s->deaths[i]);
	fd = memfd_create("pbs-livemount-supervisor",
			  MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd >= 0 && (write_full(fd, b.data, b.len) ||
			fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
						       F_SEAL_WRITE |
						       F_SEAL_SEAL))) {
		close(fd);
		fd = -1;
	}
	explicit_bzero(b.data, b.len);
	buf_release(&b);
	return fd;
}

/*
 * Become the binary now installed, keeping the connection: its
 * descriptor and our state cross the exec.  Returns only if it could
 * not (then this supervisor goes on, and says why).
 */
static void reexec(struct sup *s)
{
	char num[16];
	int state;

	if (!probe(s->conf->exe))
		return;
	state = save_state(s);
	if (state < 0) {
		log_warn("sup: cannot save the supervisor's state: %s",
			 strerror(errno));
		return;
	}
	snprintf(num, sizeof(num), "%d", state);
	if (fcntl(state, F_SETFD, 0) || fcntl(s->fuse, F_SETFD, 0) ||
	    setenv(ENV_STATE, num, 1))
		goto fail;
	log_info("sup: the supervisor re-executes '%s'", s->conf->exe);
	s->conf->argv[0] = (char *)s->conf->exe;
	execv(s->conf->exe, s->conf->argv);
fail:
	log_warn("sup: cannot re-execute '%s': %s; this supervisor stays",
		 s->conf->exe, strerror(errno));
	unsetenv(ENV_STATE);
	fcntl(s->fuse, F_SETFD, FD_CLOEXEC);
	close(state);
}

struct cursor {
	const uint8_t *p;
	const uint8_t *end;
	bool bad;
};

static uint64_t get_u64(struct cursor *c)
{
	uint64_t v = 0;

	if (c->end - c->p < 8) {
		c->bad = true;
		return 0;
	}
	memcpy(&v, c->p, 8);
	c->p += 8;
	return v;
}

/* A blob as a malloc'ed string (secure memory for a secret), or NULL. */
static char *get_blob(struct cursor *c, bool secret)
{
	size_t alloc = 0;
	char *out = NULL;

	if (c->bad || take_blob(&c->p, c->end, &out, &alloc)) {
		c->bad = true;
		return NULL;
	}
	if (out && !secret) {
		char *plain = xstrdup(out);

		crypto_secure_free(out, alloc);
		out = plain;
	}
	return out;
}

bool sup_resuming(void)
{
	return getenv(ENV_STATE) != NULL;
}

/* The previous supervisor's state from @cur into @s (the log's
 * settings into @lc, its path malloc'ed into *@log_path): 0, or -EINVAL
 * said. */
static int decode_state(struct sup *s, struct cursor *cur,
			struct log_conf *lc, char **log_path)
{
	char *text;
	uint64_t n;

	if (get_u64(cur) != STATE_MAGIC) {
		log_err("sup: the previous supervisor's state is not ours");
		return -EINVAL;
	}
	s->conf = &s->own;
	s->own.exe = get_blob(cur, false);
	s->own.cwd = get_blob(cur, false);
	s->own.mountpoint = get_blob(cur, false);
	s->own.secret = get_blob(cur, true);
	s->own.passphrase = get_blob(cur, true);
	s->own.detach = get_u64(cur);
	s->own.max_deaths = (unsigned int)get_u64(cur);
	s->own.window_s = (unsigned int)get_u64(cur);
	n = get_u64(cur);
	s->argc = (int)MIN(n, 4096);
	s->own.argv = xcalloc((size_t)s->argc + 1, sizeof(char *));
	for (int i = 1; i < s->argc; i++)
		s->own.argv[i] = get_blob(cur, false);
	lc->use_syslog = get_u64(cur);
	lc->level = (int)(int64_t)get_u64(cur);
	lc->debug_mask = (unsigned int)get_u64(cur);
	*log_path = get_blob(cur, false);
	lc->path = *log_path;
	s->fuse = (int)get_u64(cur);
	s->init_len = get_u64(cur);
	if (s->init_len > INIT_MAX || cur->end - cur->p < (ptrdiff_t)s->init_len)
		cur->bad = true;
	else
		memcpy(s->init, cur->p, s->init_len);
	cur->p += cur->bad ? 0 : s->init_len;
	s->want = get_u64(cur);
	s->max_write = get_u64(cur);
	s->agreed = get_u64(cur);
	s->failed = (unsigned int)get_u64(cur);
	s->restarts = (unsigned int)get_u64(cur);
	s->died_ns = get_u64(cur);
	text = get_blob(cur, false);
	snprintf(s->cause, sizeof(s->cause), "%s", text ? text : "");
	free(text);
	text = get_blob(cur, false);
	snprintf(s->memo, sizeof(s->memo), "%s", text ? text : "");
	free(text);
	s->ndeaths = (unsigned int)get_u64(cur);
	if (!s->own.max_deaths)
		cur->bad = true;
	s->deaths = xcalloc(s->own.max_deaths ? s->own.max_deaths : 1,
			    sizeof(*s->deaths));
	for (unsigned int i = 0; !cur->bad && i < s->own.max_deaths; i++)
		s->deaths[i] = get_u64(cur);
	if (cur->bad || !s->own.exe || !s->own.mountpoint || s->fuse < 0) {
		log_err("sup: the previous supervisor's state is damaged");
		return -EINVAL;
	}
	return 0;
}

/* The state the previous supervisor left in descriptor $ENV_STATE:
 * malloc'ed, *@len bytes; NULL, said. */
static uint8_t *read_state(size_t *len)
{
	uint8_t *data;
	struct stat st;
	uint64_t fd;

	if (parse_u64(getenv(ENV_STATE), &fd) || fd > INT_MAX ||
	    fstat((int)fd, &st) || st.st_size <= 0 || st.st_size > 1 << 20) {
		log_err("sup: no state from the previous supervisor");
		unsetenv(ENV_STATE);
		return NULL;
	}
	unsetenv(ENV_STATE);
	*len = (size_t)st.st_size;
	data = xmalloc(*len);
	if (pread_full((int)fd, data, *len, 0)) {
		log_err("sup: cannot read the previous supervisor's state: %s",
			strerror(errno));
		free(data);
		data = NULL;
	}
	close((int)fd);
	return data;
}

int sup_resume(void)
{
	struct sup s = { .fuse = -1, .ctl = -1, .served = true,
			 .ready_done = true, .sigfd = -1 };
	struct log_conf lc = { 0 };
	char *log_path = NULL;
	struct cursor cur = { 0 };
	size_t len = 0;
	uint8_t *data;
	int code = 1;
	int ret;

	data = read_state(&len);
	if (!data)
		return 1;
	cur.p = data;
	cur.end = data + len;
	if (decode_state(&s, &cur, &lc, &log_path))
		goto out;
	ret = log_set_conf(&lc);
	if (ret)
		log_warn("sup: cannot reopen the log file '%s': %s", log_path,
			 strerror(-ret));
	fcntl(s.fuse, F_SETFD, FD_CLOEXEC);
	fs_mount_adopt(s.own.mountpoint, s.fuse, &s.mnt);
	s.sigfd = watch_signals();
	log_info("sup: supervisor %d re-executed; the mount on '%s' goes on",
		 (int)getpid(), s.own.mountpoint);
	if (s.sigfd < 0 || start_server(&s)) {
		log_err("sup: cannot start the server: %s", strerror(errno));
		goto out;
	}
	code = run(&s);
out:
	free(log_path);
	explicit_bzero(data, len);
	free(data);
	/* The connection aborts with the descriptor, as a crash would. */
	sup_free(&s);
	return code;
}

/* ---- the server's end ---- */

struct sup_client {
	int sock;
	struct sup_hello hello;
	char *memo;		/* the last server's, or NULL */
	char *secret;		/* secure memory, or NULL */
	size_t secret_len;
	char *passphrase;
	size_t passphrase_len;
};

/* A length-prefixed string of the HELLO payload, into secure memory. */
static int take_blob(const uint8_t **p, const uint8_t *end, char **out,
		     size_t *alloc)
{
	uint32_t n;

	*out = NULL;
	if (end - *p < 4)
		return -EBADMSG;
	memcpy(&n, *p, 4);
	*p += 4;
	if (n == UINT32_MAX)
		return 0;
	if ((size_t)(end - *p) < n)
		return -EBADMSG;
	*alloc = (size_t)n + 1;
	*out = crypto_secure_alloc(*alloc);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, *p, n);
	(*out)[n] = '\0';
	*p += n;
	return 0;
}

int sup_client_open(struct sup_client **out)
{
	const char *v = getenv(ENV_FD);
	struct sup_client *c;
	struct msg_head h = { 0 };
	uint8_t *payload;
	const uint8_t *p;
	uint64_t fd;
	size_t cl;
	int ret;

	if (!v)
		return -ENOENT;
	if (parse_u64(v, &fd) || fd > INT_MAX)
		return -EINVAL;
	unsetenv(ENV_FD);
	c = xcalloc(1, sizeof(*c));
	c->sock = (int)fd;
	fcntl(c->sock, F_SETFD, FD_CLOEXEC);
	payload = xmalloc(MSG_MAX);
	ret = msg_recv(c->sock, &h, payload, MSG_MAX, NULL);
	if (!ret && h.type != MSG_HELLO)
		ret = -EBADMSG;
	if (ret)
		goto err;
	c->hello.restarts = (unsigned int)h.a;
	c->hello.died_ns = h.b;
	c->hello.detach = h.c;
	c->hello.supervisor = getppid();
	cl = strnlen((char *)payload, h.len);
	if (cl == h.len) {
		ret = -EBADMSG;
		goto err;
	}
	snprintf(c->hello.cause, sizeof(c->hello.cause), "%s", payload);
	p = payload + cl + 1;
	ret = take_blob(&p, payload + h.len, &c->secret, &c->secret_len);
	if (!ret)
		ret = take_blob(&p, payload + h.len, &c->passphrase,
				&c->passphrase_len);
	if (!ret) {
		size_t alloc = 0;
		char *memo = NULL;

		ret = take_blob(&p, payload + h.len, &memo, &alloc);
		if (memo && *memo)
			c->memo = xstrdup(memo);
		if (memo)
			crypto_secure_free(memo, alloc);
	}
	if (ret)
		goto err;
	explicit_bzero(payload, MSG_MAX);
	free(payload);
	*out = c;
	return 0;
err:
	explicit_bzero(payload, MSG_MAX);
	free(payload);
	log_err("sup: cannot read the supervisor's hello: %s", strerror(-ret));
	sup_client_close(c);
	return ret;
}

void sup_client_close(struct sup_client *c)
{
	if (!c)
		return;
	close(c->sock);
	free(c->memo);
	crypto_secure_free(c->secret, c->secret_len);
	crypto_secure_free(c->passphrase, c->passphrase_len);
	free(c);
}

const struct sup_hello *sup_client_hello(const struct sup_client *c)
{
	return &c->hello;
}

const char *sup_client_secret(const struct sup_client *c)
{
	return c->secret;
}

const char *sup_client_passphrase(const struct sup_client *c)
{
	return c->passphrase;
}

int sup_client_connect(struct sup_client *c, const char *fuse_opts, int *fd,
		       void **init, size_t *len, uint64_t *want,
		       uint64_t *max_write)
{
	struct msg_head h = { 0 };
	uint8_t *payload = xmalloc(MSG_MAX);
	int got = -1;
	int ret;

	ret = msg_send(c->sock, MSG_MOUNT, 0, 0, 0, fuse_opts,
		       strlen(fuse_opts) + 1, -1);
	if (!ret)
		ret = msg_recv(c->sock, &h, payload, MSG_MAX - 1, &got);
	if (!ret && h.type == MSG_FAIL) {
		payload[h.len] = '\0';
		log_err("sup: the supervisor cannot serve the mount: %s",
			payload);
		ret = -EIO;
	} else if (!ret && (h.type != MSG_CONN || got < 0 || !h.len)) {
		ret = -EBADMSG;
	}
	if (ret) {
		if (got >= 0)
			close(got);
		free(payload);
		return ret;
	}
	*fd = got;
	*init = payload;
	*len = h.len;
	*want = h.c ? h.a : 0;
	*max_write = h.c ? h.b : 0;
	return 0;
}

int sup_client_serving(struct sup_client *c, uint64_t want,
		       uint64_t max_write)
{
	return msg_send(c->sock, MSG_SERVING, want, max_write, 0, NULL, 0, -1);
}

const char *sup_client_memo(const struct sup_client *c)
{
	return c->memo;
}

int sup_client_set_memo(struct sup_client *c, const char *text)
{
	size_t len = strlen(text) + 1;

	if (len > MEMO_MAX)
		return -EMSGSIZE;
	return msg_send(c->sock, MSG_MEMO, 0, 0, 0, text, len, -1);
}

int sup_client_restart(struct sup_client *c)
{
	return msg_send(c->sock, MSG_RESTART, 0, 0, 0, NULL, 0, -1);
}
