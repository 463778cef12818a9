/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_CCACHE_H
#define PBSLM_CCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Cache of decoded chunks keyed by digest, with a byte budget.
 *
 * RCU flavour: urcu-bp (bullet-proof, lazy registration), because
 * libfuse creates the threads that call in and we cannot register them.
 * Lookups take no lock; misses are single-flight (one fill per digest,
 * concurrent callers wait for it); a failed fill is never cached.
 * Eviction is CLOCK over the budget; an entry that a caller holds is never
 * freed, so the cache may exceed its budget by what callers hold; buffers
 * being filled count against the budget and make older entries go.
 * Buffers of CCACHE_SPARE_SIZE (4 MiB chunks) of evicted entries are
 * kept for the next fills while the cache and they fit the budget, and
 * CCACHE_SPARE more beyond it.
 *
 * All functions may be called from any thread and may block (a fill).
 */
struct ccache;
struct ccache_entry;

#define CCACHE_SPARE 4			/* spares kept beyond the budget */
#define CCACHE_SPARE_SIZE (4u << 20)	/* a fixed index's chunk */

struct ccache_conf {
	uint64_t budget_bytes;	/* default 256 MiB when 0 */
};

int ccache_new(const struct ccache_conf *conf, struct ccache **out);
/* No entry may still be held. */
void ccache_free(struct ccache *c);

/*
 * Produce the chunk into @buf (@len bytes, owned by the cache).  Called
 * without any cache lock held; may block on the network.
 */
typedef int (*ccache_fill_fn)(void *arg, uint8_t *buf, size_t len);

/*
 * A referenced READY entry for @key: a hit, or the result of @fill (ours
 * or a concurrent caller's).  -errno from the fill goes to every waiter.
 * Release with ccache_put().
 */
int ccache_get(struct ccache *c, const uint8_t key[32], size_t len,
	       ccache_fill_fn fill, void *arg, struct ccache_entry **out);
/* Valid until ccache_put(). */
const uint8_t *ccache_data(const struct ccache_entry *e);
size_t ccache_len(const struct ccache_entry *e);
void ccache_put(struct ccache *c, struct ccache_entry *e);
/* True if @key is cached and READY (no fill, no reference taken). */
bool ccache_peek(struct ccache *c, const uint8_t key[32]);

struct ccache_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t waits;		/* callers that waited for another's fill */
	uint64_t evictions;
	uint64_t fill_errors;
	uint64_t bytes;
	uint64_t entries;
	uint64_t spare;		/* evicted buffers kept for fills */
};
void ccache_get_stats(struct ccache *c, struct ccache_stats *st);

#endif
