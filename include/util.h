/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_UTIL_H
#define PBSLM_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

/*
 * Small helpers without a module of their own: hex, full reads and
 * writes, atomic file replacement, size parsing, a capped byte buffer.
 * All are thread-safe and return 0 or -errno unless stated.
 */

/* Lowercase hex of @len bytes into @out, which holds 2 * len + 1. */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* Exactly 2 * @len hex digits (either case) to bytes; -EINVAL otherwise. */
int hex_decode(const char *hex, uint8_t *out, size_t len);

/*
 * Fingerprints as PBS writes them: lowercase hex pairs joined by ':'.
 * encode: @n bytes into @out (3 * n bytes).  decode: exactly 32 bytes,
 * either case, colons optional; -EINVAL otherwise.
 */
void fingerprint_encode(const uint8_t *in, size_t n, char *out);
int fingerprint_decode(const char *s, uint8_t out[32]);

/* Loop over short reads/writes and EINTR; a short read at EOF is -EIO. */
int pread_full(int fd, void *buf, size_t len, off_t off);
int pwrite_full(int fd, const void *buf, size_t len, off_t off);
int write_full(int fd, const void *buf, size_t len);

/*
 * I/O around the page cache.  open_direct() gives a second, O_DIRECT
 * descriptor of @fd's open file with access @mode (O_RDONLY, O_RDWR...;
 * reopened through /proc/self/fd, so the very file @fd locks), or -1
 * where the file system refuses O_DIRECT.  pwrite_split() and
 * pread_split() are pwrite_full() and pread_full() of [off, off + len)
 * with the DIRECT_ALIGN-aligned head through @dfd when @buf and @off are
 * aligned, the rest through @fd; EINVAL from @dfd (a device wanting more
 * alignment) sets *@direct_off, atomically, and everything goes through
 * @fd from then on.  Both stay coherent with @fd: the kernel writes back
 * dirty cached pages before an O_DIRECT read of them and drops those an
 * O_DIRECT write covers.
 */
#define DIRECT_ALIGN 4096u
int open_direct(int fd, int mode);
int pwrite_split(int fd, int dfd, bool *direct_off, const void *buf,
		 size_t len, off_t off);
int pread_split(int fd, int dfd, bool *direct_off, void *buf, size_t len,
		off_t off);
/*
 * Make [off, off + len) of @fd read as zeros: a hole in a file (punched),
 * BLKZEROOUT on a block device, written zeros where neither works.
 */
int zero_range(int fd, bool is_blk, uint64_t off, uint64_t len);
/* A block device's size in bytes; -errno. */
int blkdev_size(int fd, uint64_t *size);

/*
 * Read a whole file of at most @max bytes.  -EFBIG when larger, -ENOENT
 * when missing.  *@buf is malloc'ed, owned by the caller, and has one
 * extra NUL byte after *@len so that text can be parsed in place.
 */
int read_file(const char *path, size_t max, uint8_t **buf, size_t *len);
/* The same into @buf (@cap bytes, no NUL added): -EFBIG when larger. */
int read_file_into(const char *path, uint8_t *buf, size_t cap, size_t *len);
/*
 * The same for files whose size says nothing (/proc, a FUSE file made on
 * open, a pipe): read to EOF; -EFBIG past @max bytes.
 */
int read_file_any(const char *path, size_t max, uint8_t **buf, size_t *len);

/*
 * Replace @path atomically: write "<path>.tmp.<pid>", fsync, rename over
 * @path, fsync the directory.  A crash leaves the old file or the new
 * one, never a mixture.
 */
int write_file_atomic(const char *path, const void *buf, size_t len,
		      mode_t mode);
/*
 * The same without any fsync, for writers that sync the whole file
 * system once at the end (pack): still never a half-written @path.
 */
int write_file_rename(const char *path, const void *buf, size_t len,
		      mode_t mode);
/*
 * Create @path, which must not exist (-EEXIST, even against a racing
 * creator or a dangling symlink): written and synced under a temporary
 * name, then link()ed into place; never a half-written @path.
 */
int write_file_new(const char *path, const void *buf, size_t len,
		   mode_t mode);
int fsync_parent_dir(const char *path);
/*
 * Is the file open as @fd still the one at @path?  A lock taken after
 * waiting may be on a file that was renamed or removed meanwhile.
 */
bool fd_is_at(int fd, const char *path);
/* @p made absolute against the current directory (malloc'ed; NULL for
 * NULL), so that it stays valid after a daemon changes to "/". */
char *abs_path(const char *p);
/* mkdir -p; existing directories are fine. */
int mkdir_p(const char *path, mode_t mode);

/*
 * The host of "scheme://[user@]host[:port][/...]" ("[v6]" without the
 * brackets) into @out; -EINVAL if there is none or it does not fit.
 */
int url_host(const char *url, char *out, size_t len);

/*
 * "4096", "4K", "256M", "1.5G", "2T" (powers of 1024; a fraction needs a
 * unit): -EINVAL for anything else, -ERANGE past 2^64 - 1.
 */
int parse_size(const char *s, uint64_t *out);
/* Unsigned decimal with overflow and garbage checks. */
int parse_u64(const char *s, uint64_t *out);
/* Seconds, optionally with ms/s/m/h suffix, into milliseconds. */
int parse_duration_ms(const char *s, uint64_t *out);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t now_ns(void);
/* "512 B", "1.5 GiB": for people (binary units, one decimal). */
void fmt_bytes(double v, char *out, size_t len);
/* Sleep @ms milliseconds (a signal may cut it short). */
void sleep_ms(unsigned int ms);
/* *@ts = now on @clock + @ms: a deadline for pthread_cond_timedwait. */
void deadline_ms(clockid_t clock, uint64_t ms, struct timespec *ts);

/* Online CPUs, at least 1. */
unsigned int cpu_count(void);
/* Name the calling thread (top -H, perf, gdb): at most 15 characters. */
void thread_name(const char *name);
/* Start up to @n threads running @fn(@arg) into @tids; how many started. */
unsigned int threads_start(pthread_t *tids, unsigned int n,
			   void *(*fn)(void *), void *arg);
void threads_join(pthread_t *tids, unsigned int n);

/* strdup and friends that never return NULL: abort on OOM at start-up. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
/* DIRECT_ALIGN-aligned, for pread_split()/pwrite_split(); free() it. */
void *xmalloc_direct(size_t n);

/*
 * A few spare buffers of one size, DIRECT_ALIGN-aligned, given out again
 * instead of freed: fresh memory costs a page fault per page on first
 * touch, and for a 4 MiB chunk read or hashed once those cost more
 * than the work (a third of restore's CPU from a local datastore).  At
 * most @keep stay spare (resident); more at once are allocated and
 * freed as usual.  Thread-safe.
 */
struct bufpool {
	pthread_mutex_t lock;		/* guards spare[] and n */
	void **spare;			/* immutable pointer: keep slots */
	unsigned int n;
	unsigned int keep;		/* immutable */
	size_t size;			/* immutable */
};
void bufpool_init(struct bufpool *p, size_t size, unsigned int keep);
void *bufpool_get(struct bufpool *p);	/* NULL: out of memory */
void bufpool_put(struct bufpool *p, void *buf);
/* The same, but kept only while fewer than @max are spare (a pool whose
 * need shrinks with its user's load: the rest is freed). */
void bufpool_put_upto(struct bufpool *p, void *buf, unsigned int max);
void bufpool_destroy(struct bufpool *p);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Growable byte buffer with a hard cap, for data that comes from outside.
 * Invariant: len <= cap <= limit.  Not thread-safe; one owner at a time.
 */
struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t limit;	/* appends past this fail with -EFBIG */
};
void buf_init(struct buf *b, size_t limit);
/* On @mem (@size bytes, the caller's: never reallocated or freed; do
 * not buf_release or buf_steal it): @limit is cut to fit. */
void buf_init_on(struct buf *b, void *mem, size_t size, size_t limit);
int buf_reserve(struct buf *b, size_t total);
int buf_append(struct buf *b, const void *p, size_t n);
/* Hand the data to the caller (who frees it) and reset @b. */
uint8_t *buf_steal(struct buf *b, size_t *len);
void buf_release(struct buf *b);

/* Room for one descriptor in a message's control data. */
#define FD_CMSG_SPACE CMSG_SPACE(sizeof(int))
/* Send @fd along with @mh (SCM_RIGHTS), in @cbuf (FD_CMSG_SPACE bytes). */
void msg_attach_fd(struct msghdr *mh, void *cbuf, int fd);

#endif
