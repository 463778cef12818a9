/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by several modules.  No state of their own.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "banned.h"

void hex_encode(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *hex, uint8_t *out, size_t len)
{
	if (strlen(hex) != 2 * len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		int hi = hex_val(hex[2 * i]);
		int lo = hex_val(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void fingerprint_encode(const uint8_t *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 3 * i, 4, i + 1 < n ? "%02x:" : "%02x", in[i]);
}

int fingerprint_decode(const char *s, uint8_t out[32])
{
	char hex[65];
	size_t n = 0;

	for (; *s; s++) {
		if (*s == ':')
			continue;
		if (n == 64)
			return -EINVAL;
		hex[n++] = *s;
	}
	hex[n] = '\0';
	return hex_decode(hex, out, 32);
}

/* pread(2) or pwrite(2) until all of it is done: the one loop of both. */
static int full_io(bool write, int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = write ? pwrite(fd, p, len, off) :
				    pread(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= n;
		off += n;
	}
	return 0;
}

int pread_full(int fd, void *buf, size_t len, off_t off)
{
	return full_io(false, fd, buf, len, off);
}

/* (full_io does not write to @buf when @write.) */
int pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	return full_io(true, fd, (void *)buf, len, off);
}

int open_direct(int fd, int mode)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, mode | O_DIRECT | O_CLOEXEC);
}

/* The aligned head of [off, off + len) that may go through @dfd, or 0. */
static size_t direct_head(int dfd, const bool *direct_off, const void *buf,
			  size_t len, off_t off)
{
	if (dfd < 0 || (uintptr_t)buf % DIRECT_ALIGN ||
	    (uint64_t)off % DIRECT_ALIGN ||
	    __atomic_load_n(direct_off, __ATOMIC_RELAXED))
		return 0;
	return len & ~(size_t)(DIRECT_ALIGN - 1);
}

/* The aligned head through @dfd, the rest (or all of it) through @fd. */
static int split_io(bool write, int fd, int dfd, bool *direct_off, void *buf,
		    size_t len, off_t off)
{
	size_t head = direct_head(dfd, direct_off, buf, len, off);
	uint8_t *p = buf;
	int ret;

	if (!head)
		return full_io(write, fd, p, len, off);
	ret = full_io(write, dfd, p, head, off);
	if (ret == -EINVAL) {
		__atomic_store_n(direct_off, true, __ATOMIC_RELAXED);
		return full_io(write, fd, p, len, off);
	}
	if (ret || head == len)
		return ret;
	return full_io(write, fd, p + head, len - head, off + (off_t)head);
}

int pwrite_split(int fd, int dfd, bool *direct_off, const void *buf,
		 size_t len, off_t off)
{
	return split_io(true, fd, dfd, direct_off, (void *)buf, len, off);
}

int pread_split(int fd, int dfd, bool *direct_off, void *buf, size_t len,
		off_t off)
{
	return split_io(false, fd, dfd, direct_off, buf, len, off);
}

int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= n;
	}
	return 0;
}

int blkdev_size(int fd, uint64_t *size)
{
	return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
}

int zero_range(int fd, bool is_blk, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];
	uint64_t range[2] = { off, len };

	if (!is_blk) {
		if (!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       off, len))
			return 0;
		if (errno != EOPNOTSUPP)
			return -errno;
	} else if (!ioctl(fd, BLKZEROOUT, range)) {
		return 0;
	}
	while (len) {
		uint64_t n = len < sizeof(zeros) ? len : sizeof(zeros);
		int ret = pwrite_full(fd, zeros, n, off);

		if (ret)
			return ret;
		off += n;
		len -= n;
	}
	return 0;
}

int read_file(const char *path, size_t max, uint8_t **buf, size_t *len)
{
	struct stat st;
	uint8_t *data = NULL;
	int ret;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EISDIR;
		goto out_close;
	}
	if ((uint64_t)st.st_size > max) {
		ret = -EFBIG;
		goto out_close;
	}
	data = malloc(st.st_size + 1);
	if (!data) {
		ret = -ENOMEM;
		goto out_close;
	}
	ret = pread_full(fd, data, st.st_size, 0);
	if (ret < 0) {
		free(data);
		goto out_close;
	}
	data[st.st_size] = '\0';
	*buf = data;
	*len = st.st_size;
out_close:
	close(fd);
	return ret;
}

int read_file_into(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
	struct stat st;
	int ret;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		ret = -errno;
	else if (!S_ISREG(st.st_mode))
		ret = -EISDIR;
	else if ((uint64_t)st.st_size > cap)
		ret = -EFBIG;
	else
		ret = pread_full(fd, buf, st.st_size, 0);
	if (!ret)
		*len = st.st_size;
	close(fd);
	return ret;
}

bool fd_is_at(int fd, const char *path)
{
	struct stat a;
	struct stat b;

	return !fstat(fd, &a) && !stat(path, &b) && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

char *abs_path(const char *p)
{
	char cwd[PATH_MAX];

	if (!p || p[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return p ? xstrdup(p) : NULL;
	return xasprintf("%s/%s", cwd, p);
}

int read_file_any(const char *path, size_t max, uint8_t **buf, size_t *len)
{
	struct buf b;
	char chunk[8192];
	ssize_t n;
	int ret = 0;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf_init(&b, max);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		ret = n < 0 ? -errno : buf_append(&b, chunk, (size_t)n);
		if (ret)
			break;
	}
	close(fd);
	if (ret) {
		buf_release(&b);
		return ret;
	}
	if (!b.data && buf_reserve(&b, 1))
		return -ENOMEM;
	b.data[b.len] = '\0';
	*buf = buf_steal(&b, len);
	return 0;
}

int fsync_parent_dir(const char *path)
{
	char *copy = strdup(path);
	int ret = 0;
	int fd;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
out:
	free(copy);
	return ret;
}

enum put_mode {
	PUT_REPLACE,		/* rename over @path */
	PUT_REPLACE_NOSYNC,	/* the same, without fsync */
	PUT_NEW,		/* link into place: -EEXIST if @path exists */
};

static int put_file(const char *path, const void *buf, size_t len,
		    mode_t mode, enum put_mode how)
{
	bool sync = how != PUT_REPLACE_NOSYNC;
	char tmp[PATH_MAX];
	int ret;
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	ret = write_full(fd, buf, len);
	if (!ret && sync && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && how == PUT_NEW && link(tmp, path) < 0)
		ret = -errno;
	if (!ret && how != PUT_NEW && rename(tmp, path) < 0)
		ret = -errno;
	if (ret || how == PUT_NEW)
		unlink(tmp);
	if (ret)
		return ret;
	return sync ? fsync_parent_dir(path) : 0;
}

int write_file_atomic(const char *path, const void *buf, size_t len,
		      mode_t mode)
{
	return put_file(path, buf, len, mode, PUT_REPLACE);
}

int write_file_rename(const char *path, const void *buf, size_t len,
		      mode_t mode)
{
	return put_file(path, buf, len, mode, PUT_REPLACE_NOSYNC);
}

int write_file_new(const char *path, const void *buf, size_t len,
		   mode_t mode)
{
	return put_file(path, buf, len, mode, PUT_NEW);
}

int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* The decimal number @s starts with (digits first, no sign), and what
 * follows it in *@end. */
static int leading_u64(const char *s, unsigned long long *v, char **end)
{
	if (!*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*v = strtoull(s, end, 10);
	return errno ? -errno : 0;
}

int parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;
	int ret = leading_u64(s, &v, &end);

	if (ret)
		return ret;
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

int url_host(const char *url, char *out, size_t len)
{
	const char *p = strstr(url, "://");
	const char *end;
	const char *at;
	size_t n;

	if (!p)
		return -EINVAL;
	p += 3;
	end = p + strcspn(p, "/?#");
	at = memchr(p, '@', (size_t)(end - p));
	if (at)
		p = at + 1;
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(end - p));

		if (!rb)
			return -EINVAL;
		p++;
		end = rb;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));

		if (colon)
			end = colon;
	}
	n = (size_t)(end - p);
	if (!n || n >= len)
		return -EINVAL;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/*
 * "4096", "64M", "1.5G": an integer or decimal number and an optional
 * unit K, M, G, T or P (powers of 1024, "KiB" and "KB" alike).  A
 * fraction needs a unit; what it leaves below one byte is dropped.
 */
int parse_size(const char *s, uint64_t *out)
{
	uint64_t ip = 0;
	uint64_t frac = 0;
	uint64_t scale = 1;
	unsigned int shift = 0;
	bool dot = false;
	const char *p = s;
	uint64_t v;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++)
		if (__builtin_mul_overflow(ip, 10, &ip) ||
		    __builtin_add_overflow(ip, (uint64_t)(*p - '0'), &ip))
			return -ERANGE;
	if (*p == '.') {
		dot = true;
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (scale >= 1000000000000ull)
				continue;	/* beyond a byte of a petabyte */
			frac = frac * 10 + (uint64_t)(*p - '0');
			scale *= 10;
		}
	}
	switch (*p) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	case 'p': case 'P': shift = 50; break;
	default: break;
	}
	if (shift) {
		p++;
		if (*p == 'i')
			p++;
	}
	if (*p == 'B')
		p++;
	if (*p || (dot && !shift))
		return -EINVAL;
	if (ip > (UINT64_MAX >> shift))
		return -ERANGE;
	v = ip << shift;
	/* frac / scale of a unit: frac < scale <= 10^12, unit <= 2^50. */
	if (frac) {
		unsigned __int128 f = (unsigned __int128)frac << shift;

		if (__builtin_add_overflow(v, (uint64_t)(f / scale), &v))
			return -ERANGE;
	}
	*out = v;
	return 0;
}

int parse_duration_ms(const char *s, uint64_t *out)
{
	unsigned long long v;
	uint64_t mul = 1000;
	char *end;
	int ret = leading_u64(s, &v, &end);

	if (ret)
		return ret;
	if (!strcmp(end, "ms"))
		mul = 1;
	else if (!strcmp(end, "") || !strcmp(end, "s"))
		mul = 1000;
	else if (!strcmp(end, "m"))
		mul = 60000;
	else if (!strcmp(end, "h"))
		mul = 3600000;
	else
		return -EINVAL;
	if (__builtin_mul_overflow((uint64_t)v, mul, out))
		return -ERANGE;
	return 0;
}

unsigned int cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned int)n : 1;
}

void thread_name(const char *name)
{
	pthread_setname_np(pthread_self(), name);
}

unsigned int threads_start(pthread_t *tids, unsigned int n,
			   void *(*fn)(void *), void *arg)
{
	unsigned int started = 0;

	while (started < n && !pthread_create(&tids[started], NULL, fn, arg))
		started++;
	return started;
}

void threads_join(pthread_t *tids, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

void sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000,
			       .tv_nsec = (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

void deadline_ms(clockid_t clock, uint64_t ms, struct timespec *ts)
{
	clock_gettime(clock, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void oom(void)
{
	static const char msg[] = "pbs-livemount: out of memory\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		oom();
	return p;
}

void *xmalloc_direct(size_t n)
{
	void *p;

	if (posix_memalign(&p, DIRECT_ALIGN, n ? n : 1))
		oom();
	return p;
}

void bufpool_init(struct bufpool *p, size_t size, unsigned int keep)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	p->size = size;
	p->keep = keep;
	p->spare = xcalloc(keep ? keep : 1, sizeof(*p->spare));
}

void *bufpool_get(struct bufpool *p)
{
	void *b = NULL;

	pthread_mutex_lock(&p->lock);
	if (p->n)
		b = p->spare[--p->n];
	pthread_mutex_unlock(&p->lock);
	if (!b && posix_memalign(&b, DIRECT_ALIGN, p->size))
		b = NULL;
	return b;
}

void bufpool_put(struct bufpool *p, void *buf)
{
	bufpool_put_upto(p, buf, UINT_MAX);
}

void bufpool_put_upto(struct bufpool *p, void *buf, unsigned int max)
{
	if (!buf)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->n < p->keep && p->n < max) {
		p->spare[p->n++] = buf;
		buf = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	free(buf);
}

void bufpool_destroy(struct bufpool *p)
{
	/* The last puts may come from another thread (an RCU callback):
	 * what orders them before this is the lock. */
	pthread_mutex_lock(&p->lock);
	for (unsigned int i = 0; i < p->n; i++)
		free(p->spare[i]);
	p->n = 0;
	free(p->spare);
	p->spare = NULL;
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_destroy(&p->lock);
}

void *xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);

	if (!p)
		oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		oom();
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom();
	return p;
}

void buf_init(struct buf *b, size_t limit)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->limit = limit;
}

void buf_init_on(struct buf *b, void *mem, size_t size, size_t limit)
{
	b->data = mem;
	b->len = 0;
	b->cap = size - 1;	/* the NUL after the data */
	b->limit = limit < b->cap ? limit : b->cap;
	b->data[0] = '\0';
}

int buf_reserve(struct buf *b, size_t total)
{
	size_t ncap;
	uint8_t *p;

	if (total > b->limit)
		return -EFBIG;
	if (total <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 4096;
	while (ncap < total)
		ncap = ncap > SIZE_MAX / 2 ? total : ncap * 2;
	if (ncap > b->limit)
		ncap = b->limit;
	p = realloc(b->data, ncap + 1);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = ncap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	size_t total;
	int ret;

	if (!n)
		return 0;
	if (__builtin_add_overflow(b->len, n, &total))
		return -EFBIG;
	ret = buf_reserve(b, total);
	if (ret)
		return ret;
	memcpy(b->data + b->len, p, n);
	b->len = total;
	b->data[b->len] = '\0';
	return 0;
}

uint8_t *buf_steal(struct buf *b, size_t *len)
{
	uint8_t *p = b->data;

	if (len)
		*len = b->len;
	buf_init(b, b->limit);
	return p;
}

void buf_release(struct buf *b)
{
	free(b->data);
	buf_init(b, b->limit);
}

void msg_attach_fd(struct msghdr *mh, void *cbuf, int fd)
{
	struct cmsghdr *cm;

	memset(cbuf, 0, FD_CMSG_SPACE);
	mh->msg_control = cbuf;
	mh->msg_controllen = FD_CMSG_SPACE;
	cm = CMSG_FIRSTHDR(mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
}

void fmt_bytes(double v, char *out, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB",
					    "PiB" };
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}
