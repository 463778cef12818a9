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
#include "sup_i.h"
#include "util.h"
#include "banned.h"

/* One message; @fd (-1: none) goes along in SCM_RIGHTS. */
int sup_msg_send(int sock, uint32_t type, uint64_t a, uint64_t b,
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
int sup_msg_recv(int sock, struct msg_head *h, void *payload, size_t cap,
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
void sup_put_blob(struct buf *b, const char *s)
{
	uint32_t n = s ? (uint32_t)strlen(s) : UINT32_MAX;

	if (!buf_append(b, &n, sizeof(n)) && s)
		buf_append(b, s, strlen(s));
}

/* A length-prefixed string of the HELLO payload, into secure memory. */
int sup_take_blob(const uint8_t **p, const uint8_t *end, char **out,
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

/* ---- the supervisor ---- */


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

int sup_start_server(struct sup *s)
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
	sup_put_blob(&hello, c->secret);
	sup_put_blob(&hello, c->passphrase);
	sup_put_blob(&hello, s->memo);
	ret = sup_msg_send(s->ctl, MSG_HELLO, s->restarts, s->died_ns,
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
	sup_msg_send(s->ctl, MSG_CONN, s->want, s->max_write, s->agreed, s->init,
		 s->init_len, s->fuse);
	return;
fail:
	free(buf);
	log_err("sup: %s", why);
	sup_msg_send(s->ctl, MSG_FAIL, 0, 0, 0, why, strlen(why) + 1, -1);
}

static void handle_msg(struct sup *s)
{
	struct msg_head h = { 0 };
	char payload[MEMO_MAX];
	int ret;

	ret = sup_msg_recv(s->ctl, &h, payload, sizeof(payload) - 1, NULL);
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
		sup_reexec(s);
	if (!sup_start_server(s))
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
int sup_watch_signals(void)
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
int sup_run_loop(struct sup *s)
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

void sup_release(struct sup *s)
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
	s.sigfd = sup_watch_signals();
	tell_request_timeout();
	if (s.sigfd < 0 || sup_start_server(&s))
		log_err("sup: cannot start the server: %s", strerror(errno));
	else
		code = sup_run_loop(&s);
	sup_release(&s);
	return code;
}
