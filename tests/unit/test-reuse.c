/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * reuse: digests of file ranges (holes without reading), and seeds:
 * ranges at chunk-aligned offsets found by digest, the bytes verified
 * on every read, a changed seed caught, the digest cache reused.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "chunk.h"
#include "log.h"
#include "reuse.h"
#include "util.h"
#include "scratch.h"

#define CS 65536u

static int setup(void **state)
{
	(void)state;
	return scratch_setup("test-reuse");
}

static int teardown(void **state)
{
	(void)state;
	return scratch_teardown();
}

/* Bytes that never repeat within a test (xorshift64). */
static void fill(uint8_t *p, size_t n, unsigned int seed)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

static void test_read_digest(void **state)
{
	char *path = xasprintf("%s/sparse", scratch_dir);
	uint8_t *data = malloc(CS);
	uint8_t *buf = xmalloc_direct(CS);
	bool doff = false;
	uint8_t want[32];
	uint8_t d[32];
	int dfd;
	int fd;

	(void)state;
	fill(data, CS, 1);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	dfd = open_direct(fd, O_RDONLY);	/* -1 on tmpfs: buffered */
	/* A hole, then data: [0, CS) reads as zeros, [CS, 2 CS) as data. */
	assert_int_equal(pwrite_full(fd, data, CS, CS), 0);
	memset(buf, 0xaa, CS);
	assert_int_equal(reuse_read_digest(fd, dfd, &doff, 0, CS, NULL, buf,
					   d), 0);
	{
		uint8_t *zeros = calloc(1, CS);

		chunk_digest(zeros, CS, NULL, want);
		assert_memory_equal(buf, zeros, CS);
		free(zeros);
	}
	assert_memory_equal(d, want, 32);
	assert_int_equal(reuse_read_digest(fd, dfd, &doff, CS, CS, NULL, buf,
					   d), 0);
	chunk_digest(data, CS, NULL, want);
	assert_memory_equal(d, want, 32);
	assert_memory_equal(buf, data, CS);
	/* A short range at the end. */
	assert_int_equal(reuse_read_digest(fd, dfd, &doff, CS + 100, CS - 100,
					   NULL, buf, d), 0);
	chunk_digest(data + 100, CS - 100, NULL, want);
	assert_memory_equal(d, want, 32);
	/* Past the end: an error, not zeros. */
	assert_int_not_equal(reuse_read_digest(fd, dfd, &doff, 2 * CS, CS,
					       NULL, buf, d), 0);
	if (dfd >= 0)
		close(dfd);
	close(fd);
	free(path);
	free(data);
	free(buf);
}

static struct reuse_seeds *open_seeds(const char *path)
{
	const char *paths[] = { path };
	char *cache = xasprintf("%s/cache", scratch_dir);
	struct reuse_seeds_conf c = {
		.paths = paths,
		.npaths = 1,
		.chunk_size = CS,
		.cache_dir = cache,
		.threads = 2,
	};
	struct reuse_seeds *s = NULL;

	assert_int_equal(reuse_seeds_open(&c, &s), 0);
	free(cache);
	reuse_seeds_wait(s);
	assert_true(reuse_seeds_ready(s));
	return s;
}

static void test_seeds(void **state)
{
	char *path = xasprintf("%s/seed", scratch_dir);
	uint8_t *data = malloc(4 * CS);
	uint8_t *buf = malloc(CS);
	uint8_t d[4][32];
	uint8_t odd[32];
	struct reuse_seeds_stats st;
	struct reuse_seeds *s;
	int fd;

	(void)state;
	/* Four ranges and a 1000-byte tail. */
	fill(data, 4 * CS, 2);
	for (int i = 0; i < 4; i++)
		chunk_digest(data + i * CS, CS, NULL, d[i]);
	/* Data at an unaligned offset is not found. */
	chunk_digest(data + 17, CS, NULL, odd);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(pwrite_full(fd, data, 4 * CS, 0), 0);
	assert_int_equal(pwrite_full(fd, data, 1000, 4 * CS), 0);
	s = open_seeds(path);
	for (int i = 0; i < 4; i++) {
		memset(buf, 0, CS);
		assert_int_equal(reuse_seeds_read(s, d[i], buf, CS), 0);
		assert_memory_equal(buf, data + i * CS, CS);
	}
	assert_int_equal(reuse_seeds_read(s, odd, buf, CS), -ENOENT);
	/* The tail is a range of its own length. */
	chunk_digest(data, 1000, NULL, odd);
	assert_int_equal(reuse_seeds_read(s, odd, buf, 1000), 0);
	assert_int_equal(reuse_seeds_read(s, odd, buf, CS), -ENOENT);
	reuse_seeds_get_stats(s, &st);
	assert_int_equal(st.ranges, 5);
	assert_int_equal(st.used, 5);
	assert_int_equal(st.bytes, 4 * CS + 1000);
	/* Changed under the index: caught, never returned, counted. */
	buf[0] = data[2 * CS] ^ 1;
	assert_int_equal(pwrite_full(fd, buf, 1, 2 * CS), 0);
	assert_int_equal(reuse_seeds_read(s, d[2], buf, CS), -ENOENT);
	assert_int_equal(reuse_seeds_read(s, d[2], buf, CS), -ENOENT);
	reuse_seeds_get_stats(s, &st);
	assert_int_equal(st.changed, 1);
	reuse_seeds_close(s);
	/* Opened again: indexed again (the file's time changed) or from
	 * the cache; either way what is read is what was hashed. */
	s = open_seeds(path);
	assert_int_equal(reuse_seeds_read(s, d[1], buf, CS), 0);
	assert_memory_equal(buf, data + CS, CS);
	reuse_seeds_close(s);
	close(fd);
	free(path);
	free(data);
	free(buf);
}

static void test_missing_seed(void **state)
{
	char *path = xasprintf("%s/none", scratch_dir);
	const char *paths[] = { path };
	struct reuse_seeds_conf c = {
		.paths = paths,
		.npaths = 1,
		.chunk_size = CS,
	};
	struct reuse_seeds *s = NULL;

	(void)state;
	assert_int_equal(reuse_seeds_open(&c, &s), -ENOENT);
	assert_null(s);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_digest),
		cmocka_unit_test(test_seeds),
		cmocka_unit_test(test_missing_seed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
