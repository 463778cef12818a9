/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Baseline for `make bench`: the work a restore cannot skip, done in a
 * plain loop: read each distinct chunk of an index from a local
 * datastore, CRC-check, decrypt, decompress and hash it; on one thread,
 * or with -j N on N threads taking the chunks in turn (all cores: the
 * most a decoding client can do here).
 * usage: decode-loop [-j N] DATASTORE FIDX [KEYFILE PASSPHRASE]
 * Prints "bytes seconds".
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunk.h"
#include "compiler.h"
#include "key.h"
#include "snap.h"
#include "util.h"

struct loop {
	const char *ds;
	struct key_material *k;
	struct snap_fidx *f;
	uint64_t *todo;		/* distinct chunk indexes */
	uint64_t ntodo;
	uint64_t next;		/* atomic */
	uint64_t bytes;		/* atomic */
	int failed;		/* atomic */
};

static void *decoder(void *arg)
{
	struct loop *l = arg;
	uint8_t *out = calloc(1, snap_fidx_chunk_size(l->f));
	char rel[80];
	char path[PATH_MAX];

	for (;;) {
		uint64_t n = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED);
		uint64_t i;
		const uint8_t *d;
		uint8_t *raw;
		size_t len;

		if (n >= l->ntodo || !out)
			break;
		i = l->todo[n];
		d = snap_fidx_digest(l->f, i);
		snap_chunk_path(d, rel);
		snprintf(path, sizeof(path), "%s/%s", l->ds, rel);
		if (read_file(path, 32u << 20, &raw, &len)) {
			fprintf(stderr, "decode-loop: cannot read '%s'\n", path);
			__atomic_store_n(&l->failed, 1, __ATOMIC_RELAXED);
			break;
		}
		if (chunk_decode_verify(raw, len, l->k, d, out,
					snap_fidx_chunk_len(l->f, i), NULL)) {
			fprintf(stderr, "decode-loop: cannot decode '%s'\n",
				path);
			__atomic_store_n(&l->failed, 1, __ATOMIC_RELAXED);
		}
		__atomic_add_fetch(&l->bytes, snap_fidx_chunk_len(l->f, i),
				   __ATOMIC_RELAXED);
		free(raw);
	}
	free(out);
	return NULL;
}

int main(int argc, char **argv)
{
	struct loop l = { 0 };
	struct snap_error err;
	pthread_t tids[64];
	unsigned int nthreads = 1;
	unsigned int started;
	uint8_t *buf;
	uint8_t *zero;
	uint8_t zd[32];
	size_t len;
	uint64_t t0;

	if (argc > 2 && !strcmp(argv[1], "-j")) {
		nthreads = (unsigned int)strtoul(argv[2], NULL, 10);
		nthreads = MAX(1u, MIN(nthreads, 64u));
		argv += 2;
		argc -= 2;
	}
	if (argc < 3)
		return 2;
	l.ds = argv[1];
	if (argc > 4 && key_load_file(argv[3], argv[4], &l.k))
		return 1;
	if (read_file(argv[2], 1u << 30, &buf, &len) ||
	    snap_fidx_parse(buf, len, &l.f, &err)) {
		fprintf(stderr, "decode-loop: cannot read '%s'\n", argv[2]);
		return 1;
	}
	/* The all-zero chunk is never fetched: restore and the mount
	 * answer it from memory. */
	zero = calloc(1, snap_fidx_chunk_size(l.f));
	chunk_digest(zero, snap_fidx_chunk_size(l.f), l.k, zd);
	free(zero);
	l.todo = calloc(snap_fidx_count(l.f) + 1, sizeof(*l.todo));
	t0 = now_ns();
	for (uint64_t i = 0; i < snap_fidx_count(l.f); i++) {
		const uint8_t *d = snap_fidx_digest(l.f, i);
		bool seen = !memcmp(d, zd, 32);

		/* distinct chunks only, as restore fetches them */
		for (uint64_t j = 0; j < l.ntodo && !seen; j++)
			seen = !memcmp(d, snap_fidx_digest(l.f, l.todo[j]), 32);
		if (!seen)
			l.todo[l.ntodo++] = i;
	}
	started = threads_start(tids, nthreads, decoder, &l);
	threads_join(tids, started);
	if (!started || l.failed)
		return 1;
	printf("%llu %.3f\n", (unsigned long long)l.bytes,
	       (now_ns() - t0) / 1e9);
	free(l.todo);
	free(buf);
	snap_fidx_free(l.f);
	key_free(l.k);
	return 0;
}
