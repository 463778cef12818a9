/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * util: pwrite_split() writes exactly what pwrite_full() would, at any
 * alignment, and a reader through the page cache sees it at once even
 * when it had cached the old bytes (the promise the live mount's fills
 * rely on); pread_split() reads what pread_full() would, even right
 * after a buffered write (the --in-place check reads around the cache).  The file is in /var/tmp, which is rarely tmpfs: where
 * O_DIRECT is refused everything goes buffered and the same holds.
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
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

#define LEN (256u << 10)

static char path[64];

static int setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "/var/tmp/test-util.%d", (int)getpid());
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void fill(uint8_t *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31 + seed + (i >> 9));
}

/* pread_split() of all, and of an unaligned piece, equals @model. */
static void read_back(int fd, int dfd, bool *off_flag, const uint8_t *model)
{
	uint8_t *back = xmalloc_direct(LEN);

	assert_int_equal(pread_split(fd, dfd, off_flag, back, LEN, 0), 0);
	assert_memory_equal(back, model, LEN);
	assert_int_equal(pread_split(fd, dfd, off_flag, back, 3 * 4096 + 7,
				     8192), 0);
	assert_memory_equal(back, model + 8192, 3 * 4096 + 7);
	assert_int_equal(pread_split(fd, dfd, off_flag, back + 1, 5000, 4096),
			 0);
	assert_memory_equal(back + 1, model + 4096, 5000);
	free(back);
}

/* Write @len bytes of @src + @boff at @off both ways and compare. */
static void one(int fd, int dfd, bool *off_flag, uint8_t *model,
		uint8_t *src, size_t boff, size_t len, off_t off)
{
	uint8_t *back = malloc(LEN);

	assert_non_null(back);
	/* The old bytes in the page cache first. */
	assert_int_equal(pread_full(fd, back, LEN, 0), 0);
	assert_memory_equal(back, model, LEN);
	assert_int_equal(pwrite_split(fd, dfd, off_flag, src + boff, len, off),
			 0);
	memcpy(model + off, src + boff, len);
	read_back(fd, dfd, off_flag, model);
	assert_int_equal(pread_full(fd, back, LEN, 0), 0);
	assert_memory_equal(back, model, LEN);
	free(back);
}

static void test_split(void **state)
{
	uint8_t *model = calloc(1, LEN);
	void *mem = NULL;
	uint8_t *src;
	bool off_flag = false;
	int fd;
	int dfd;

	(void)state;
	assert_non_null(model);
	assert_int_equal(posix_memalign(&mem, DIRECT_ALIGN, LEN), 0);
	src = mem;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, LEN), 0);
	dfd = open_direct(fd, O_RDWR);
	if (dfd >= 0)
		assert_true(fcntl(dfd, F_GETFL) & O_DIRECT);
	fill(src, LEN, 1);
	/* Aligned whole, aligned head with a tail, unaligned offset,
	   unaligned buffer, less than one block. */
	one(fd, dfd, &off_flag, model, src, 0, 64 << 10, 0);
	fill(src, LEN, 2);
	one(fd, dfd, &off_flag, model, src, 0, (64 << 10) + 1000, 64 << 10);
	fill(src, LEN, 3);
	one(fd, dfd, &off_flag, model, src, 0, 40000, 4096 + 512);
	fill(src, LEN, 4);
	one(fd, dfd, &off_flag, model, src, 100, 3 * 4096, 128 << 10);
	fill(src, LEN, 5);
	one(fd, dfd, &off_flag, model, src, 0, 100, 200 << 10);
	/* No O_DIRECT descriptor: the same bytes. */
	fill(src, LEN, 6);
	one(fd, -1, &off_flag, model, src, 0, 32 << 10, 160 << 10);
	/* A buffered write, still dirty, read around the cache. */
	fill(src, LEN, 7);
	assert_int_equal(pwrite_full(fd, src, 10000, 4096 * 3 + 5), 0);
	memcpy(model + 4096 * 3 + 5, src, 10000);
	read_back(fd, dfd, &off_flag, model);
	assert_false(off_flag);
	if (dfd >= 0)
		close(dfd);
	close(fd);
	free(mem);
	free(model);
}

/* Spare buffers come back aligned, at most @keep are kept. */
static void test_bufpool(void **state)
{
	struct bufpool p;
	void *a;
	void *b;
	void *c;

	(void)state;
	bufpool_init(&p, 1 << 20, 1);
	a = bufpool_get(&p);
	b = bufpool_get(&p);
	assert_non_null(a);
	assert_non_null(b);
	assert_true(a != b);
	assert_int_equal((uintptr_t)a % DIRECT_ALIGN, 0);
	memset(a, 1, 1 << 20);
	bufpool_put(&p, a);
	bufpool_put(&p, b);	/* over @keep: freed */
	c = bufpool_get(&p);
	assert_ptr_equal(c, a);
	bufpool_put(&p, c);
	bufpool_put(&p, NULL);
	bufpool_destroy(&p);
}

/* A buf on the caller's memory keeps its limit and never reallocates. */
static void test_buf_on(void **state)
{
	uint8_t mem[100];
	struct buf b;

	(void)state;
	buf_init_on(&b, mem, sizeof(mem), 50);
	assert_int_equal(buf_append(&b, "0123456789", 10), 0);
	assert_ptr_equal(b.data, mem);
	assert_int_equal(buf_append(&b, mem + 60, 41), -EFBIG);
	assert_int_equal(buf_append(&b, mem + 60, 40), 0);
	assert_int_equal(b.len, 50);
	assert_int_equal(mem[50], 0);
	assert_ptr_equal(b.data, mem);
	/* The limit is cut to the memory. */
	buf_init_on(&b, mem, sizeof(mem), 1000);
	assert_int_equal(buf_reserve(&b, 100), -EFBIG);
	assert_int_equal(buf_reserve(&b, 99), 0);
	assert_ptr_equal(b.data, mem);
}

static void test_fmt_bytes(void **state)
{
	char b[32];

	(void)state;
	fmt_bytes(0, b, sizeof(b));
	assert_string_equal(b, "0 B");
	fmt_bytes(1023, b, sizeof(b));
	assert_string_equal(b, "1023 B");
	fmt_bytes(1536, b, sizeof(b));
	assert_string_equal(b, "1.5 KiB");
	fmt_bytes(3.0 * (1 << 20), b, sizeof(b));
	assert_string_equal(b, "3.0 MiB");
	fmt_bytes(2048.0 * 1024 * 1024 * 1024 * 1024 * 1024, b, sizeof(b));
	assert_string_equal(b, "2048.0 PiB");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_bufpool),
		cmocka_unit_test(test_buf_on),
		cmocka_unit_test(test_fmt_bytes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
