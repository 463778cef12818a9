/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * `restart` of a mount: the supervisor checks the installed binary,
 * writes its state (the connection, the INIT, the log, the servers'
 * history) to a sealed memfd and executes it; the new supervisor reads
 * it back and goes on with the same FUSE connection.
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
	sup_put_blob(&b, c->exe);
	sup_put_blob(&b, c->cwd);
	sup_put_blob(&b, c->mountpoint);
	sup_put_blob(&b, c->secret);
	sup_put_blob(&b, c->passphrase);
	put_u64(&b, c->detach);
	put_u64(&b, c->max_deaths);
	put_u64(&b, c->window_s);
	put_u64(&b, (uint64_t)argc);
	for (int i = 1; i < argc; i++)
		sup_put_blob(&b, c->argv[i]);
	put_u64(&b, lc.use_syslog);
	put_u64(&b, (uint64_t)(int64_t)lc.level);
	put_u64(&b, lc.debug_mask);
	sup_put_blob(&b, lc.path);
	put_u64(&b, (uint64_t)s->fuse);
	put_u64(&b, s->init_len);
	buf_append(&b, s->init, s->init_len);
	put_u64(&b, s->want);
	put_u64(&b, s->max_write);
	put_u64(&b, s->agreed);
	put_u64(&b, s->failed);
	put_u64(&b, s->restarts);
	put_u64(&b, s->died_ns);
	sup_put_blob(&b, s->cause);
	sup_put_blob(&b, s->memo);
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
void sup_reexec(struct sup *s)
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

	if (c->bad || sup_take_blob(&c->p, c->end, &out, &alloc)) {
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
	s.sigfd = sup_watch_signals();
	log_info("sup: supervisor %d re-executed; the mount on '%s' goes on",
		 (int)getpid(), s.own.mountpoint);
	if (s.sigfd < 0 || sup_start_server(&s)) {
		log_err("sup: cannot start the server: %s", strerror(errno));
		goto out;
	}
	code = sup_run_loop(&s);
out:
	free(log_path);
	explicit_bzero(data, len);
	free(data);
	/* The connection aborts with the descriptor, as a crash would. */
	sup_release(&s);
	return code;
}

