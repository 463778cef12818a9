/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Local bytes that stand in for a fetch (reuse.h).
 *
 * Seeds are indexed once, by a builder thread that loads each regular
 * file's digests from the cache or has @threads hashers compute them
 * (an atomic cursor over every range of every seed), writes the cache,
 * and builds one table of (digest, seed, range) sorted by digest.  The
 * table is published with a release store of ->ready and never changes
 * afterwards but for the per-entry "changed" flags (atomic bytes), so
 * lookups (binary search, then a read and a digest of the range) take
 * no lock.
 *
 * Threads: the builder and its hashers run at nice 19 (a restore must
 * not slow the VM it serves); reuse_seeds_close() stops and joins them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunk.h"
#include "crypto.h"
#include "excl.h"
#include "log.h"
#include "reuse.h"
#include "util.h"
#include "banned.h"

#define CACHE_MAGIC "PBSLMSD1"
#define REUSE_NICE 19

/* The digest of @len zero bytes, remembered per thread. */
static void zero_digest(size_t len, const struct key_material *key,
			const uint8_t *zeros, uint8_t out[32])
{
	static __thread uint8_t memo[32];
	static __thread size_t memo_len;
	static __thread const struct key_material *memo_key;

	if (memo_len != len || memo_key != key) {
		chunk_digest(zeros, len, key, memo);
		memo_len = len;
		memo_key = key;
	}
	memcpy(out, memo, 32);
}

int reuse_read_digest(int fd, int dfd, bool *direct_off, uint64_t off,
		      size_t len, const struct key_material *key,
		      uint8_t *buf, uint8_t digest[32])
{
	off_t d = lseek(fd, (off_t)off, SEEK_DATA);
	struct stat st;
	int ret;

	/* All hole (ENXIO: no data after @off; devices say EINVAL), and
	 * inside the file: past its end is an error, not zeros. */
	if (((d < 0 && errno == ENXIO) ||
	     (d >= 0 && (uint64_t)d >= off + len)) &&
	    !fstat(fd, &st) && off + len <= (uint64_t)st.st_size) {
		memset(buf, 0, len);
		zero_digest(len, key, buf, digest);
		return 0;
	}
	ret = pread_split(fd, dfd, direct_off, buf, len, (off_t)off);
	if (ret)
		return ret;
	if (dfd < 0 || __atomic_load_n(direct_off, __ATOMIC_RELAXED))
		posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
	chunk_digest(buf, len, key, digest);
	return 0;
}

/* ---- seeds ---- */

struct seed {
	char *path;
	int fd;
	int dfd;		/* O_DIRECT, or -1 */
	bool direct_off;	/* atomic: dfd refused a read */
	uint64_t size;
	uint64_t nranges;
	uint64_t first;		/* its first range in the global cursor */
	uint8_t *digests;	/* nranges * 32; written by hashers before
				   ->ready, read-only after */
	char *cache;		/* its cache file, or NULL */
	bool hashed;		/* not from the cache: write it */
	bool told;		/* atomic: "changed" said */
};

struct entry {
	uint8_t digest[32];
	uint64_t range;
	uint32_t seed;
};

struct reuse_seeds {
	struct reuse_seeds_conf conf;	/* immutable; paths not kept */
	struct seed *seeds;		/* immutable array */
	size_t nseeds;
	uint64_t total_ranges;		/* immutable */
	struct entry *table;		/* built before ->ready, then
					   read-only */
	uint64_t nentries;
	uint8_t *changed;		/* per entry, atomic */
	bool ready;			/* atomic, release after the table */
	bool stop;			/* atomic */
	uint64_t cursor;		/* atomic: next global range */
	uint64_t indexed;		/* atomic: bytes */
	uint64_t used;			/* atomic */
	uint64_t nchanged;		/* atomic */
	pthread_t builder;
	bool builder_started;
	pthread_mutex_t lock;
	pthread_cond_t built;		/* with ->lock: ->finished set */
	bool finished;			/* protected by ->lock: the builder
					   ended (ready or stopped) */
};

static uint64_t range_len(const struct reuse_seeds *s, const struct seed *sd,
			  uint64_t r)
{
	return MIN(s->conf.chunk_size, sd->size - r * s->conf.chunk_size);
}

/* The cache file of a regular file seed, named by what identifies it. */
static char *cache_name(const struct reuse_seeds *s, const struct stat *st)
{
	struct {
		uint64_t dev, ino, size, sec, nsec, chunk;
		uint8_t id_key[32];
	} who = {
		st->st_dev, st->st_ino, (uint64_t)st->st_size,
		(uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec,
		s->conf.chunk_size, { 0 },
	};
	uint8_t h[32];
	char hex[65];

	if (s->conf.key)
		memcpy(who.id_key, s->conf.key->id_key, 32);
	crypto_sha256(&who, sizeof(who), h);
	explicit_bzero(&who, sizeof(who));
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	return xasprintf("%s/seed-%s.digests", s->conf.cache_dir, hex);
}

/* The cache's digests for @sd, if they are whole and for it. */
static bool cache_load(struct reuse_seeds *s, struct seed *sd)
{
	uint8_t *buf = NULL;
	uint64_t hdr[3];
	size_t len = 0;
	bool ok;

	if (read_file(sd->cache, 64 + sd->nranges * 32, &buf, &len))
		return false;
	ok = len == 8 + sizeof(hdr) + sd->nranges * 32 &&
	     !memcmp(buf, CACHE_MAGIC, 8);
	if (ok) {
		memcpy(hdr, buf + 8, sizeof(hdr));
		ok = hdr[0] == s->conf.chunk_size && hdr[1] == sd->size &&
		     hdr[2] == sd->nranges;
	}
	if (ok)
		memcpy(sd->digests, buf + 8 + sizeof(hdr), sd->nranges * 32);
	free(buf);
	return ok;
}

static void cache_save(struct reuse_seeds *s, struct seed *sd)
{
	uint64_t hdr[3] = { s->conf.chunk_size, sd->size, sd->nranges };
	struct buf b;
	int ret;

	buf_init(&b, SIZE_MAX);
	ret = mkdir_p(s->conf.cache_dir, 0700);
	if (!ret)
		ret = buf_append(&b, CACHE_MAGIC, 8);
	if (!ret)
		ret = buf_append(&b, hdr, sizeof(hdr));
	if (!ret)
		ret = buf_append(&b, sd->digests, sd->nranges * 32);
	/* A cache is worth no fsync: a torn one is read as no cache. */
	if (!ret)
		ret = write_file_rename(sd->cache, b.data, b.len, 0600);
	if (ret)
		log_debug(LOG_CAT_FETCH, "reuse: cannot keep the digests of "
			  "'%s' in '%s': %s", sd->path, sd->cache,
			  strerror(-ret));
	buf_release(&b);
}

static void lower_priority(void)
{
	/* Linux: setpriority() on a thread ID sets that thread's nice. */
	setpriority(PRIO_PROCESS, (id_t)gettid(), REUSE_NICE);
}

/* The seed holding global range @g, and its range there. */
static struct seed *locate(struct reuse_seeds *s, uint64_t g, uint64_t *r)
{
	size_t lo = 0;
	size_t hi = s->nseeds;

	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (s->seeds[mid].first <= g)
			lo = mid;
		else
			hi = mid;
	}
	*r = g - s->seeds[lo].first;
	return &s->seeds[lo];
}

static void *hasher(void *arg)
{
	struct reuse_seeds *s = arg;
	uint8_t *buf = xmalloc_direct(s->conf.chunk_size);

	thread_name("lm-hash");
	lower_priority();
	while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		uint64_t g = __atomic_fetch_add(&s->cursor, 1,
						__ATOMIC_RELAXED);
		struct seed *sd;
		uint64_t r;
		uint64_t len;
		int ret;

		if (g >= s->total_ranges)
			break;
		sd = locate(s, g, &r);
		if (!sd->hashed)
			continue;	/* from the cache */
		len = range_len(s, sd, r);
		ret = reuse_read_digest(sd->fd, sd->dfd, &sd->direct_off,
					r * s->conf.chunk_size, len,
					s->conf.key, buf,
					sd->digests + r * 32);
		if (ret) {
			/* Unreadable: a digest no chunk has. */
			memset(sd->digests + r * 32, 0xff, 32);
			log_warn("reuse: cannot read seed '%s' at offset "
				 "%" PRIu64 ": %s", sd->path,
				 r * s->conf.chunk_size, strerror(-ret));
		}
		__atomic_add_fetch(&s->indexed, len, __ATOMIC_RELAXED);
	}
	free(buf);
	return NULL;
}

static int cmp_entry(const void *a, const void *b)
{
	return memcmp(((const struct entry *)a)->digest,
		      ((const struct entry *)b)->digest, 32);
}

static void builder_end(struct reuse_seeds *s)
{
	pthread_mutex_lock(&s->lock);
	s->finished = true;
	pthread_cond_broadcast(&s->built);
	pthread_mutex_unlock(&s->lock);
}

static void *build(void *arg);

static void *builder(void *arg)
{
	thread_name("lm-seed");
	build(arg);
	builder_end(arg);
	return NULL;
}

static void *build(void *arg)
{
	struct reuse_seeds *s = arg;
	unsigned int n = s->conf.threads;
	pthread_t *tids = xcalloc(n, sizeof(*tids));
	unsigned int started;
	uint64_t k = 0;
	bool any = false;

	lower_priority();
	for (size_t i = 0; i < s->nseeds; i++) {
		struct seed *sd = &s->seeds[i];

		sd->hashed = !sd->cache || !cache_load(s, sd);
		any |= sd->hashed;
		if (!sd->hashed)
			__atomic_add_fetch(&s->indexed, sd->size,
					   __ATOMIC_RELAXED);
	}
	started = any ? threads_start(tids, n, hasher, s) : 0;
	if (any && !started)
		hasher(s);	/* no thread to spare: this one hashes */
	threads_join(tids, started);
	free(tids);
	if (__atomic_load_n(&s->stop, __ATOMIC_RELAXED))
		return NULL;
	for (size_t i = 0; i < s->nseeds; i++)
		if (s->seeds[i].hashed && s->seeds[i].cache)
			cache_save(s, &s->seeds[i]);
	s->table = xcalloc(s->total_ranges ? s->total_ranges : 1,
			   sizeof(*s->table));
	s->changed = xcalloc(s->total_ranges ? s->total_ranges : 1, 1);
	for (size_t i = 0; i < s->nseeds; i++) {
		for (uint64_t r = 0; r < s->seeds[i].nranges; r++, k++) {
			memcpy(s->table[k].digest,
			       s->seeds[i].digests + r * 32, 32);
			s->table[k].seed = (uint32_t)i;
			s->table[k].range = r;
		}
	}
	s->nentries = k;
	qsort(s->table, s->nentries, sizeof(*s->table), cmp_entry);
	__atomic_store_n(&s->ready, true, __ATOMIC_RELEASE);
	log_info("reuse: %zu seed%s indexed: %" PRIu64 " ranges of %" PRIu64
		 " KiB", s->nseeds, s->nseeds == 1 ? "" : "s", s->nentries,
		 s->conf.chunk_size >> 10);
	return NULL;
}

static int open_seed(struct reuse_seeds *s, const char *path,
		     struct seed *sd)
{
	struct stat st;
	int ret;

	sd->fd = -1;
	sd->dfd = -1;
	sd->path = xstrdup(path);
	sd->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (sd->fd < 0 || fstat(sd->fd, &st) < 0) {
		ret = -errno;
		log_err("reuse: cannot open seed '%s': %s", path,
			strerror(errno));
		return ret;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		log_err("reuse: cannot use seed '%s': not a file or block "
			"device", path);
		return -EINVAL;
	}
	/* No restore or mount writes it while we read it. */
	ret = excl_lock(sd->fd, path, true, s->conf.lock_wait_ms, "reuse",
			"; a seed must not change while it is used");
	if (ret)
		return ret;
	if (S_ISBLK(st.st_mode)) {
		ret = blkdev_size(sd->fd, &sd->size);
		if (ret) {
			log_err("reuse: cannot tell the size of seed '%s': %s",
				path, strerror(-ret));
			return ret;
		}
	} else {
		sd->size = (uint64_t)st.st_size;
		/* A device's content changes without its time: no cache. */
		if (s->conf.cache_dir)
			sd->cache = cache_name(s, &st);
	}
	sd->dfd = open_direct(sd->fd, O_RDONLY);
	sd->nranges = (sd->size + s->conf.chunk_size - 1) / s->conf.chunk_size;
	sd->digests = xcalloc(sd->nranges ? sd->nranges : 1, 32);
	return 0;
}

int reuse_seeds_open(const struct reuse_seeds_conf *conf,
		     struct reuse_seeds **out)
{
	struct reuse_seeds *s = xcalloc(1, sizeof(*s));
	int ret = 0;

	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->built, NULL);
	s->conf = *conf;
	s->conf.paths = NULL;
	s->conf.cache_dir = conf->cache_dir ? xstrdup(conf->cache_dir) : NULL;
	if (!s->conf.threads)
		s->conf.threads = cpu_count();
	s->seeds = xcalloc(conf->npaths ? conf->npaths : 1, sizeof(*s->seeds));
	for (size_t i = 0; i < conf->npaths; i++)
		s->seeds[i].fd = -1;
	s->nseeds = conf->npaths;
	for (size_t i = 0; !ret && i < conf->npaths; i++) {
		ret = open_seed(s, conf->paths[i], &s->seeds[i]);
		s->seeds[i].first = s->total_ranges;
		s->total_ranges += s->seeds[i].nranges;
	}
	if (!ret) {
		ret = -pthread_create(&s->builder, NULL, builder, s);
		s->builder_started = !ret;
		if (ret)
			log_err("reuse: cannot start indexing the seeds: %s",
				strerror(-ret));
	}
	if (ret) {
		reuse_seeds_close(s);
		return ret;
	}
	*out = s;
	return 0;
}

void reuse_seeds_close(struct reuse_seeds *s)
{
	if (!s)
		return;
	__atomic_store_n(&s->stop, true, __ATOMIC_RELAXED);
	if (s->builder_started)
		pthread_join(s->builder, NULL);
	for (size_t i = 0; i < s->nseeds; i++) {
		if (s->seeds[i].fd >= 0)
			close(s->seeds[i].fd);
		if (s->seeds[i].dfd >= 0)
			close(s->seeds[i].dfd);
		free(s->seeds[i].path);
		free(s->seeds[i].digests);
		free(s->seeds[i].cache);
	}
	free(s->seeds);
	free(s->table);
	free(s->changed);
	pthread_cond_destroy(&s->built);
	pthread_mutex_destroy(&s->lock);
	free((char *)s->conf.cache_dir);
	free(s);
}

void reuse_seeds_wait(struct reuse_seeds *s)
{
	pthread_mutex_lock(&s->lock);
	while (s->builder_started && !s->finished)
		pthread_cond_wait(&s->built, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

bool reuse_seeds_ready(const struct reuse_seeds *s)
{
	return __atomic_load_n(&s->ready, __ATOMIC_ACQUIRE);
}

int reuse_seeds_read(struct reuse_seeds *s, const uint8_t digest[32],
		     uint8_t *buf, size_t len)
{
	uint64_t lo = 0;
	uint64_t hi;

	if (!reuse_seeds_ready(s))
		return -ENOENT;
	/* The first entry with @digest. */
	hi = s->nentries;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (memcmp(s->table[mid].digest, digest, 32) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint64_t k = lo;
	     k < s->nentries && !memcmp(s->table[k].digest, digest, 32); k++) {
		struct seed *sd = &s->seeds[s->table[k].seed];
		uint64_t r = s->table[k].range;
		uint8_t d[32];

		if (__atomic_load_n(&s->changed[k], __ATOMIC_RELAXED) ||
		    range_len(s, sd, r) != len)
			continue;
		/* Trust nothing local: the bytes read are the bytes hashed. */
		if (!reuse_read_digest(sd->fd, sd->dfd, &sd->direct_off,
				       r * s->conf.chunk_size, len,
				       s->conf.key, buf, d) &&
		    !memcmp(d, digest, 32)) {
			__atomic_add_fetch(&s->used, 1, __ATOMIC_RELAXED);
			return 0;
		}
		__atomic_store_n(&s->changed[k], 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->nchanged, 1, __ATOMIC_RELAXED);
		if (!__atomic_exchange_n(&sd->told, true, __ATOMIC_RELAXED))
			log_warn("reuse: seed '%s' changed since it was indexed "
				 "(offset %" PRIu64 "): what changed is not "
				 "used", sd->path, r * s->conf.chunk_size);
	}
	return -ENOENT;
}

void reuse_seeds_get_stats(const struct reuse_seeds *s,
			   struct reuse_seeds_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < s->nseeds; i++)
		st->bytes += s->seeds[i].size;
	st->indexed = __atomic_load_n(&s->indexed, __ATOMIC_RELAXED);
	st->used = __atomic_load_n(&s->used, __ATOMIC_RELAXED);
	st->changed = __atomic_load_n(&s->nchanged, __ATOMIC_RELAXED);
	st->ready = reuse_seeds_ready(s);
	st->ranges = st->ready ? s->nentries : 0;
}
