/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The server's end of the supervisor's socket (sup.h): its HELLO, the
 * FUSE connection asked for and handed over, "serving", the memo for
 * the next server, and `restart` passed on.
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
	ret = sup_msg_recv(c->sock, &h, payload, MSG_MAX, NULL);
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
	ret = sup_take_blob(&p, payload + h.len, &c->secret, &c->secret_len);
	if (!ret)
		ret = sup_take_blob(&p, payload + h.len, &c->passphrase,
				&c->passphrase_len);
	if (!ret) {
		size_t alloc = 0;
		char *memo = NULL;

		ret = sup_take_blob(&p, payload + h.len, &memo, &alloc);
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

	ret = sup_msg_send(c->sock, MSG_MOUNT, 0, 0, 0, fuse_opts,
		       strlen(fuse_opts) + 1, -1);
	if (!ret)
		ret = sup_msg_recv(c->sock, &h, payload, MSG_MAX - 1, &got);
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
	return sup_msg_send(c->sock, MSG_SERVING, want, max_write, 0, NULL, 0, -1);
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
	return sup_msg_send(c->sock, MSG_MEMO, 0, 0, 0, text, len, -1);
}

int sup_client_restart(struct sup_client *c)
{
	return sup_msg_send(c->sock, MSG_RESTART, 0, 0, 0, NULL, 0, -1);
}
