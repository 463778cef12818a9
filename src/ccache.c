/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Decoded-chunk cache.
 *
 * Entry states:  LOADING --fill ok--> READY --evicted--> (unlinked)
 *                LOADING --fill err-> FAILED (unlinked at once)
 * Invariants:
 *   - an entry in the hash holds one reference for the cache itself;
 *     callers hold one each; the memory is freed through call_rcu when
 *     the count reaches 0, which can only happen after it left the hash,
 *     so RCU readers never touch freed memory;
 *   - a reader takes a reference only if the count is not already 0;
 *   - READY entries are on the CLOCK list; ->bytes counts READY entries
 *     once and LOADING ones twice: the buffer being filled and the raw
 *     chunk being downloaded into the fill, so that what is in flight
 *     makes room in the cache rather than adding to the budget;
 *   - eviction frees only entries nobody else holds (refs == 1).
 * Locking: lookups are lock-free (RCU).  ->lock guards the CLOCK list,
 * ->bytes, entry state changes and the wait condition; it is never held
 * across a fill.  Lock order: ->lock, then rcu_read_lock.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <urcu-bp.h>
#include <urcu/rculfhash.h>

#include "ccache.h"
#include "compiler.h"
#include "util.h"
#include "banned.h"

enum entry_state {
	ENTRY_LOADING,
	ENTRY_READY,
	ENTRY_FAILED,
};

struct ccache_entry {
	struct cds_lfht_node node;	/* RCU hash linkage */
	struct rcu_head rcu;
	uint8_t key[32];		/* immutable */
	size_t len;			/* immutable */
	uint8_t *data;			/* immutable; contents valid when READY */
	struct bufpool *pool;		/* immutable: ->data's, or NULL */
	struct ccache *cache;		/* immutable */
	int state;			/* protected by ->lock; atomic reads */
	int error;			/* protected by ->lock */
	unsigned int refs;		/* atomic */
	bool referenced;		/* atomic: CLOCK bit */
	struct ccache_entry *prev;	/* protected by ->lock: CLOCK list */
	struct ccache_entry *next;	/* protected by ->lock */
};

struct ccache {
	struct cds_lfht *ht;		/* RCU */
	struct bufpool spare;		/* its own lock: evicted buffers,
					   kept within the budget */
	uint64_t budget;		/* immutable */
	pthread_mutex_t lock;
	pthread_cond_t done;		/* with ->lock: a fill finished */
	struct ccache_entry *head;	/* protected by ->lock: newest */
	struct ccache_entry *tail;	/* protected by ->lock: oldest */
	uint64_t bytes;			/* written under ->lock (atomic
					   stores); read under it, or
					   atomically by an RCU callback */
	uint64_t entries;		/* protected by ->lock */
	uint64_t hits;			/* atomic */
	uint64_t misses;		/* atomic */
	uint64_t waits;			/* atomic */
	uint64_t evictions;		/* atomic */
	uint64_t fill_errors;		/* atomic */
};

static unsigned long key_hash(const uint8_t key[32])
{
	unsigned long h;

	/* Digests are uniformly distributed already. */
	memcpy(&h, key, sizeof(h));
	return h;
}

static int key_match(struct cds_lfht_node *node, const void *key)
{
	struct ccache_entry *e = caa_container_of(node, struct ccache_entry,
						  node);

	/* Pairs with the release store of ->refs before publication. */
	(void)__atomic_load_n(&e->refs, __ATOMIC_ACQUIRE);
	return !memcmp(e->key, key, 32);
}

int ccache_new(const struct ccache_conf *conf, struct ccache **out)
{
	struct ccache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->budget = conf->budget_bytes ? conf->budget_bytes : 256u << 20;
	c->ht = cds_lfht_new(1024, 1024, 0,
			     CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	if (!c->ht) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->done, NULL);
	bufpool_init(&c->spare, CCACHE_SPARE_SIZE,
		     c->budget / CCACHE_SPARE_SIZE + CCACHE_SPARE);
	*out = c;
	return 0;
}

/* An entry's buffer, from the spares when a chunk fits one: a fresh
 * 4 MiB costs 1024 page faults on first touch, more than decoding it
 * on a virtual machine (a third of the stream's CPU). */
static int entry_data_alloc(struct ccache *c, struct ccache_entry *e)
{
	void *mem;

	if (e->len && e->len <= c->spare.size) {
		e->data = bufpool_get(&c->spare);
		e->pool = &c->spare;
	} else if (!posix_memalign(&mem, DIRECT_ALIGN, e->len ? e->len : 1)) {
		/* Aligned, so that fills can write it with O_DIRECT. */
		e->data = mem;
	}
	return e->data ? 0 : -ENOMEM;
}

/* ->lock held: the cache's bytes change by @delta. */
static void bytes_add(struct ccache *c, int64_t delta)
{
	__atomic_store_n(&c->bytes, c->bytes + (uint64_t)delta,
			 __ATOMIC_RELAXED);
}

/*
 * A buffer given back (often by the RCU callback, a grace period after
 * its eviction, when fills have already taken the next ones): kept as a
 * spare while the cache and its spares stay within the budget, plus
 * CCACHE_SPARE.  With four spares in all, a stream's fills found none
 * and faulted fresh buffers in: a sixth of its CPU.
 */
static void entry_data_free(struct ccache *c, struct ccache_entry *e)
{
	uint64_t used = __atomic_load_n(&c->bytes, __ATOMIC_RELAXED);
	uint64_t room = used < c->budget ? c->budget - used : 0;

	if (e->pool)
		bufpool_put_upto(e->pool, e->data,
				 (unsigned int)(room / e->pool->size) +
					 CCACHE_SPARE);
	else
		free(e->data);
}

static void entry_free_rcu(struct rcu_head *head)
{
	struct ccache_entry *e = caa_container_of(head, struct ccache_entry,
						  rcu);

	/* Pairs with the last (release) decrement of ->refs. */
	(void)__atomic_load_n(&e->refs, __ATOMIC_ACQUIRE);
	entry_data_free(e->cache, e);
	free(e);
}

static void entry_unref(struct ccache_entry *e)
{
	if (__atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
		call_rcu(&e->rcu, entry_free_rcu);
}

/* Take a reference unless the count already reached 0. */
static bool entry_tryref(struct ccache_entry *e)
{
	unsigned int r = __atomic_load_n(&e->refs, __ATOMIC_ACQUIRE);

	while (r) {
		if (__atomic_compare_exchange_n(&e->refs, &r, r + 1, false,
						__ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return true;
	}
	return false;
}

static void list_del(struct ccache *c, struct ccache_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void list_add_head(struct ccache *c, struct ccache_entry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

/* Remove a READY entry from hash and list; call with ->lock held. */
static void unlink_locked(struct ccache *c, struct ccache_entry *e)
{
	rcu_read_lock();
	cds_lfht_del(c->ht, &e->node);
	rcu_read_unlock();
	list_del(c, e);
	bytes_add(c, -(int64_t)e->len);
	c->entries--;
	entry_unref(e);		/* the cache's own reference */
}

/* CLOCK: second chance for referenced entries; skip those in use. */
static void evict_locked(struct ccache *c)
{
	uint64_t budget_scan = 2 * c->entries + 2;

	while (c->bytes > c->budget && c->tail && budget_scan--) {
		struct ccache_entry *e = c->tail;

		if (__atomic_exchange_n(&e->referenced, false,
					__ATOMIC_RELAXED) ||
		    __atomic_load_n(&e->refs, __ATOMIC_ACQUIRE) > 1) {
			list_del(c, e);
			list_add_head(c, e);
			continue;
		}
		unlink_locked(c, e);
		__atomic_add_fetch(&c->evictions, 1, __ATOMIC_RELAXED);
	}
}

static struct ccache_entry *lookup_ref(struct ccache *c, const uint8_t key[32])
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct ccache_entry *e = NULL;

	rcu_read_lock();
	cds_lfht_lookup(c->ht, key_hash(key), key_match, key, &it);
	node = cds_lfht_iter_get_node(&it);
	if (node) {
		e = caa_container_of(node, struct ccache_entry, node);
		if (!entry_tryref(e))
			e = NULL;
	}
	rcu_read_unlock();
	return e;
}

/* Wait for a LOADING entry; returns 0 if READY, else its error. */
static int wait_ready(struct ccache *c, struct ccache_entry *e)
{
	int ret;

	if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == ENTRY_READY)
		return 0;
	__atomic_add_fetch(&c->waits, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&c->lock);
	while (e->state == ENTRY_LOADING)
		pthread_cond_wait(&c->done, &c->lock);
	ret = e->state == ENTRY_READY ? 0 : e->error;
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static int fill_entry(struct ccache *c, struct ccache_entry *e,
		      ccache_fill_fn fill, void *arg)
{
	int ret = fill(arg, e->data, e->len);

	pthread_mutex_lock(&c->lock);
	/* counted while loading; re-added if READY */
	bytes_add(c, -2 * (int64_t)e->len);
	if (ret) {
		e->error = ret;
		__atomic_store_n(&e->state, ENTRY_FAILED, __ATOMIC_RELEASE);
		rcu_read_lock();
		cds_lfht_del(c->ht, &e->node);
		rcu_read_unlock();
		entry_unref(e);	/* the cache's reference: never cached */
		__atomic_add_fetch(&c->fill_errors, 1, __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&e->state, ENTRY_READY, __ATOMIC_RELEASE);
		list_add_head(c, e);
		bytes_add(c, (int64_t)e->len);
		c->entries++;
		evict_locked(c);
	}
	pthread_cond_broadcast(&c->done);
	pthread_mutex_unlock(&c->lock);
	return ret;
}

int ccache_get(struct ccache *c, const uint8_t key[32], size_t len,
	       ccache_fill_fn fill, void *arg, struct ccache_entry **out)
{
	struct cds_lfht_node *node;
	struct ccache_entry *e;
	struct ccache_entry *n;
	int ret;

	for (;;) {
		e = lookup_ref(c, key);
		if (e) {
			ret = wait_ready(c, e);
			if (!ret) {
				__atomic_store_n(&e->referenced, true,
						 __ATOMIC_RELAXED);
				__atomic_add_fetch(&c->hits, 1,
						   __ATOMIC_RELAXED);
				*out = e;
				return 0;
			}
			entry_unref(e);
			return ret;
		}
		n = calloc(1, sizeof(*n));
		if (!n)
			return -ENOMEM;
		n->len = len;
		n->cache = c;
		if (entry_data_alloc(c, n)) {
			free(n);
			return -ENOMEM;
		}
		memcpy(n->key, key, 32);
		n->state = ENTRY_LOADING;
		cds_lfht_node_init(&n->node);
		/*
		 * Publication goes through liburcu's own barriers; this
		 * release store (paired with acquire loads of ->refs) makes
		 * the ordering visible to ThreadSanitizer as well.
		 */
		__atomic_store_n(&n->refs, 2, __ATOMIC_RELEASE); /* cache + us */
		rcu_read_lock();
		node = cds_lfht_add_unique(c->ht, key_hash(key), key_match, key,
					   &n->node);
		rcu_read_unlock();
		if (node == &n->node)
			break;
		/* Lost the race to another caller: use theirs. */
		entry_data_free(c, n);
		free(n);
	}
	__atomic_add_fetch(&c->misses, 1, __ATOMIC_RELAXED);
	/* A loading buffer counts against the budget too: make room now. */
	pthread_mutex_lock(&c->lock);
	bytes_add(c, 2 * (int64_t)n->len);
	evict_locked(c);
	pthread_mutex_unlock(&c->lock);
	ret = fill_entry(c, n, fill, arg);
	if (ret) {
		entry_unref(n);
		return ret;
	}
	*out = n;
	return 0;
}

const uint8_t *ccache_data(const struct ccache_entry *e)
{
	return e->data;
}

size_t ccache_len(const struct ccache_entry *e)
{
	return e->len;
}

void ccache_put(struct ccache *c, struct ccache_entry *e)
{
	(void)c;
	entry_unref(e);
}

bool ccache_peek(struct ccache *c, const uint8_t key[32])
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	bool ready = false;

	rcu_read_lock();
	cds_lfht_lookup(c->ht, key_hash(key), key_match, key, &it);
	node = cds_lfht_iter_get_node(&it);
	if (node)
		ready = __atomic_load_n(&caa_container_of(node,
							  struct ccache_entry,
							  node)->state,
					__ATOMIC_ACQUIRE) == ENTRY_READY;
	rcu_read_unlock();
	return ready;
}

void ccache_get_stats(struct ccache *c, struct ccache_stats *st)
{
	st->hits = __atomic_load_n(&c->hits, __ATOMIC_RELAXED);
	st->misses = __atomic_load_n(&c->misses, __ATOMIC_RELAXED);
	st->waits = __atomic_load_n(&c->waits, __ATOMIC_RELAXED);
	st->evictions = __atomic_load_n(&c->evictions, __ATOMIC_RELAXED);
	st->fill_errors = __atomic_load_n(&c->fill_errors, __ATOMIC_RELAXED);
	pthread_mutex_lock(&c->lock);
	st->bytes = c->bytes;
	st->entries = c->entries;
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_lock(&c->spare.lock);
	st->spare = c->spare.n;
	pthread_mutex_unlock(&c->spare.lock);
}

void ccache_free(struct ccache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	while (c->tail)
		unlink_locked(c, c->tail);
	pthread_mutex_unlock(&c->lock);
	/* Every call_rcu callback has run: all memory is back. */
	rcu_barrier();
	bufpool_destroy(&c->spare);
	cds_lfht_destroy(c->ht, NULL);
	pthread_cond_destroy(&c->done);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
