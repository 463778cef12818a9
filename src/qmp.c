/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QMP client.  On a socket, each message is one line of JSON (QEMU
 * escapes newlines inside strings), so replies are read line by line
 * into a capped buffer; events are lines with "event" and are skipped.
 * A descriptor travels with a command in SCM_RIGHTS, as QMP's add-fd
 * expects.  Through libvirt (virt.c) each command is one pass-through
 * call and events never show.  No shared state: one caller at a time.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "compiler.h"
#include "qmp.h"
#include "util.h"
#include "virt.h"
#include "banned.h"

#define LINE_MAX_BYTES (4u << 20)

struct qmp {
	int fd;			/* the socket, or -1 through libvirt */
	struct virt *virt;	/* or libvirt's pass-through */
	pid_t pid;
	char *desc;
	struct buf in;		/* bytes read, not yet a whole line */
};

static int errf(char *err, size_t len, int ret, const char *fmt, ...)
	PRINTF_FMT(4, 5);

static int errf(char *err, size_t len, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return ret;
}

/* The next whole line from the socket, in *@line (malloc'ed). */
static int read_line(struct qmp *q, char **line, char *err, size_t len)
{
	char chunk[65536];

	for (;;) {
		uint8_t *nl = q->in.len ? memchr(q->in.data, '\n', q->in.len) :
					  NULL;
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		ssize_t n;
		int ret;

		if (nl) {
			size_t l = (size_t)(nl - q->in.data);

			*line = xmalloc(l + 1);
			memcpy(*line, q->in.data, l);
			(*line)[l] = '\0';
			memmove(q->in.data, nl + 1, q->in.len - l - 1);
			q->in.len -= l + 1;
			return 0;
		}
		ret = poll(&p, 1, QMP_TIMEOUT_MS);
		if (ret == 0)
			return errf(err, len, -ETIMEDOUT, "no answer from QEMU "
				    "in %d s", QMP_TIMEOUT_MS / 1000);
		if (ret < 0 && errno == EINTR)
			continue;
		n = ret < 0 ? -1 : read(q->fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return errf(err, len, n ? -errno : -ECONNRESET,
				    "the monitor closed the connection");
		ret = buf_append(&q->in, chunk, (size_t)n);
		if (ret)
			return errf(err, len, ret, "a monitor message over %u "
				    "bytes", LINE_MAX_BYTES);
	}
}

/* The next message that is not an event. */
static int read_reply(struct qmp *q, json_object **msg, char *err,
		      size_t len)
{
	for (;;) {
		char *line = NULL;
		json_object *o;
		int ret;

		ret = read_line(q, &line, err, len);
		if (ret)
			return ret;
		o = json_tokener_parse(line);
		free(line);
		if (!o || !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			return errf(err, len, -EBADMSG, "the monitor sent "
				    "something that is not QMP");
		}
		if (json_object_object_get_ex(o, "event", NULL)) {
			json_object_put(o);
			continue;
		}
		*msg = o;
		return 0;
	}
}

/* Send @text, with @fd in SCM_RIGHTS when >= 0. */
static int send_text(struct qmp *q, const char *text, int fd)
{
	char cbuf[FD_CMSG_SPACE];
	struct iovec iov = { .iov_base = (void *)text,
			     .iov_len = strlen(text) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	size_t done = 0;

	if (fd >= 0)
		msg_attach_fd(&mh, cbuf, fd);
	while (done < iov.iov_len) {
		ssize_t n = sendmsg(q->fd, &mh, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
		/* The descriptor went with the first bytes. */
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
		iov.iov_base = (char *)text + done;
		iov.iov_len = strlen(text) - done;
	}
	return 0;
}

/* "return" of a reply into *@ret, or QEMU's error text. */
static int take_reply(json_object *msg, json_object **ret, char *err,
		      size_t len)
{
	json_object *r;
	json_object *e;
	json_object *d;

	if (json_object_object_get_ex(msg, "return", &r)) {
		if (ret)
			*ret = json_object_get(r);
		return 0;
	}
	if (json_object_object_get_ex(msg, "error", &e) &&
	    json_object_object_get_ex(e, "desc", &d))
		return errf(err, len, -EREMOTEIO, "%s",
			    json_object_get_string(d));
	return errf(err, len, -EBADMSG, "a reply with neither return nor "
		    "error");
}

static int call(struct qmp *q, const char *cmd, json_object *args, int fd,
		json_object **ret, char *err, size_t len)
{
	json_object *m = json_object_new_object();
	json_object *msg = NULL;
	char *reply = NULL;
	int r;

	if (ret)
		*ret = NULL;
	err[0] = '\0';
	json_object_object_add(m, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(m, "arguments", json_object_get(args));
	if (q->virt) {
		r = virt_monitor(q->virt, json_object_to_json_string(m), fd,
				 &reply, err, len);
		if (!r) {
			msg = json_tokener_parse(reply);
			if (!msg)
				r = errf(err, len, -EBADMSG, "libvirt passed "
					 "back something that is not QMP");
		}
		free(reply);
	} else {
		char *text = xasprintf("%s\n", json_object_to_json_string(m));

		r = send_text(q, text, fd);
		free(text);
		if (r)
			errf(err, len, r, "cannot write to the monitor: %s",
			     strerror(-r));
		else
			r = read_reply(q, &msg, err, len);
	}
	json_object_put(m);
	if (!r)
		r = take_reply(msg, ret, err, len);
	json_object_put(msg);
	return r;
}

int qmp_call(struct qmp *q, const char *cmd, json_object *args,
	     json_object **ret, char *err, size_t errlen)
{
	return call(q, cmd, args, -1, ret, err, errlen);
}

int qmp_call_fd(struct qmp *q, const char *cmd, json_object *args, int fd,
		json_object **ret, char *err, size_t errlen)
{
	return call(q, cmd, args, fd, ret, err, errlen);
}

int qmp_open_socket(const char *path, struct qmp **out, char *err,
		    size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	json_object *greet = NULL;
	struct qmp *q;
	int ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return errf(err, len, -ENAMETOOLONG, "cannot connect to '%s': "
			    "path too long", path);
	q = xcalloc(1, sizeof(*q));
	buf_init(&q->in, LINE_MAX_BYTES);
	q->desc = xstrdup(path);
	memcpy(sa.sun_path, path, strlen(path));
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = errf(err, len, -errno, "cannot connect to '%s': %s", path,
			   strerror(errno));
		goto err;
	}
	if (!getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl))
		q->pid = cred.pid;
	ret = read_reply(q, &greet, err, len);
	if (!ret && !json_object_object_get_ex(greet, "QMP", NULL))
		ret = errf(err, len, -EPROTO, "'%s' sent no QMP greeting (is "
			   "it a QEMU monitor socket in control mode?)", path);
	json_object_put(greet);
	if (!ret)
		ret = qmp_call(q, "qmp_capabilities", NULL, NULL, err, len);
	*out = q;
	return 0;
err:
	qmp_close(q);
	return ret;
}

int qmp_open_libvirt(const char *uri, const char *domain, struct qmp **out,
		     char *err, size_t len)
{
	struct qmp *q;
	int ret;

	q = xcalloc(1, sizeof(*q));
	q->fd = -1;
	buf_init(&q->in, LINE_MAX_BYTES);
	q->desc = xasprintf("libvirt domain %s", domain);
	ret = virt_open(uri, domain, &q->virt, err, len);
	if (ret) {
		qmp_close(q);
		return ret;
	}
	q->pid = virt_pid(q->virt);
	*out = q;
	return 0;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	virt_close(q->virt);
	buf_release(&q->in);
	free(q->desc);
	free(q);
}

pid_t qmp_pid(const struct qmp *q)
{
	return q->pid;
}

const char *qmp_describe(const struct qmp *q)
{
	return q->desc;
}

struct virt *qmp_virt(struct qmp *q)
{
	return q->virt;
}
