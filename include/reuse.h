/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_REUSE_H
#define PBSLM_REUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "key.h"

/*
 * Local bytes that stand in for a fetch (DESIGN.md "Reuse"): the old
 * content of the target (--in-place) and seeds (--seed: any files or
 * block devices that may hold chunks of the disk).  Nothing local is
 * trusted: bytes are used only once their digest, computed as PBS does
 * (chunk_digest()) on the very bytes read, equals the index's.
 */

/*
 * Read [off, off + len) of @fd into @buf and its chunk digest (with
 * @key's id_key when not NULL) into @digest.  A range that is all hole
 * is not read: it is zeros.  The read goes around the page cache where
 * it can (@dfd, @direct_off: pread_split(); a check reads a whole disk
 * once, and copying it through the cache cost more than the hash);
 * otherwise the pages read are dropped from it.  0 or -errno.
 */
int reuse_read_digest(int fd, int dfd, bool *direct_off, uint64_t off,
		      size_t len, const struct key_material *key,
		      uint8_t *buf, uint8_t digest[32]);

/*
 * Seeds: each file or device is opened read-only, locked shared (no
 * restore or mount writes it meanwhile), and indexed in the background:
 * the digest of every range at a multiple of @chunk_size (the last one
 * shorter), on @threads threads.  A regular file's digests are kept in
 * @cache_dir, keyed by its identity, size, modification time, the chunk
 * size and the key, and read back instead of hashing it again.
 *
 * Lookups take no lock; any thread.
 */
struct reuse_seeds;

struct reuse_seeds_conf {
	const char *const *paths;
	size_t npaths;
	uint64_t chunk_size;
	const struct key_material *key;	/* borrowed; NULL: plain digests */
	const char *cache_dir;		/* NULL: no cache; copied */
	unsigned int threads;		/* default: the online CPUs */
	uint64_t lock_wait_ms;
};

/* Opens and locks every seed (a failure is logged and returned), then
 * indexes them in the background. */
int reuse_seeds_open(const struct reuse_seeds_conf *conf,
		     struct reuse_seeds **out);
/* Stops the indexing; NULL is a no-op. */
void reuse_seeds_close(struct reuse_seeds *s);
bool reuse_seeds_ready(const struct reuse_seeds *s);
/* Until the index is ready (or the indexing ended otherwise). */
void reuse_seeds_wait(struct reuse_seeds *s);
/*
 * 0 and @len bytes in @buf whose digest is @digest, read from a seed;
 * -ENOENT if no seed holds them (or the index is not ready yet).  A
 * seed range whose bytes no longer match its digest (the seed changed)
 * is not used again, and said once per seed.
 */
int reuse_seeds_read(struct reuse_seeds *s, const uint8_t digest[32],
		     uint8_t *buf, size_t len);

struct reuse_seeds_stats {
	uint64_t bytes;		/* of all seeds */
	uint64_t indexed;	/* bytes hashed or read from the cache */
	uint64_t ranges;	/* ranges indexed */
	uint64_t used;		/* ranges read for a chunk */
	uint64_t changed;	/* ranges found changed */
	bool ready;
};
void reuse_seeds_get_stats(const struct reuse_seeds *s,
			   struct reuse_seeds_stats *st);

#endif
