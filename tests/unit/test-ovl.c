/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ovl: state transitions, persistence, identity checks, torn commits. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#include <zlib.h>

#include "log.h"
#include "ovl.h"
#include "util.h"

#define MiB (1ull << 20)
static char path[64];

static struct ovl_conf conf_of(uint64_t size)
{
	struct ovl_conf c = {
		.state_path = path,
		.target_fd = -1,
		.size = size,
		.chunk_size = 4 * MiB,
		.block_size = 4096,
	};

	memset(c.index_csum, 0xab, 32);
	snprintf(c.target_id, sizeof(c.target_id), "file:1:2");
	return c;
}

static int setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "/tmp/test-ovl.%d.state", (int)getpid());
	unlink(path);
	log_init("test-ovl", false, LOG_CRIT);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void mark(struct ovl *o, uint64_t first, uint64_t n)
{
	uint64_t c = first / 1024;

	ovl_lock_chunk(o, c);
	assert_int_equal(ovl_mark_present(o, first, n), 0);
	ovl_unlock_chunk(o, c);
}

static void test_transitions(void **state)
{
	/* 2 full chunks + a short chunk of 5 blocks, the last one short. */
	uint64_t size = 8 * MiB + 4 * 4096 + 100;
	struct ovl_conf c = conf_of(size);
	struct ovl *o;

	(void)state;
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_int_equal(ovl_chunk_state(o, 0), OVL_ABSENT);
	mark(o, 10, 2);
	assert_int_equal(ovl_chunk_state(o, 0), OVL_PARTIAL);
	assert_true(ovl_block_present(o, 10));
	assert_true(ovl_block_present(o, 11));
	assert_false(ovl_block_present(o, 12));
	assert_int_equal(ovl_present_bytes(o), 8192);
	mark(o, 0, 10);
	mark(o, 12, 1012);
	assert_int_equal(ovl_chunk_state(o, 0), OVL_PRESENT);
	mark(o, 1024, 1024);
	assert_int_equal(ovl_chunk_state(o, 1), OVL_PRESENT);
	/* The short last chunk: 5 blocks, the fifth 100 bytes. */
	mark(o, 2048 + 4, 1);
	assert_int_equal(ovl_present_bytes(o), 8 * MiB + 100);
	assert_false(ovl_is_complete(o));
	mark(o, 2048, 4);
	assert_int_equal(ovl_chunk_state(o, 2), OVL_PRESENT);
	assert_true(ovl_is_complete(o));
	/* Marks may not span chunks. */
	ovl_lock_chunk(o, 0);
	assert_int_equal(ovl_mark_present(o, 1020, 8), -EINVAL);
	ovl_unlock_chunk(o, 0);
	ovl_free(o);
}

static void test_persist_and_identity(void **state)
{
	struct ovl_conf c = conf_of(64 * MiB);
	struct ovl_conf bad;
	const uint64_t *tr;
	struct ovl *o;

	(void)state;
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	mark(o, 5, 3);
	mark(o, 3 * 1024, 1024);
	ovl_lock_chunk(o, 3);
	ovl_mark_guest(o, 3);
	ovl_unlock_chunk(o, 3);
	ovl_trace_access(o, 7);
	ovl_trace_access(o, 2);
	ovl_trace_access(o, 7);
	assert_int_equal(ovl_commit(o), 0);
	mark(o, 9, 1);		/* not committed: lost on reopen */
	ovl_free(o);

	assert_int_equal(ovl_open(&c, &o), 0);
	assert_true(ovl_block_present(o, 5));
	assert_true(ovl_block_present(o, 7));
	assert_false(ovl_block_present(o, 8));
	assert_false(ovl_block_present(o, 9));
	assert_int_equal(ovl_chunk_state(o, 3), OVL_PRESENT);
	assert_true(ovl_chunk_guest(o, 3));
	assert_false(ovl_chunk_guest(o, 0));
	assert_int_equal(ovl_present_bytes(o), 3 * 4096 + 4 * MiB);
	assert_int_equal(ovl_trace(o, &tr), 2);
	assert_int_equal(tr[0], 7);
	assert_int_equal(tr[1], 2);
	ovl_free(o);

	bad = c;
	bad.index_csum[0] ^= 1;
	assert_int_equal(ovl_open(&bad, &o), -ESTALE);
	bad = c;
	bad.size += 4096;
	assert_int_equal(ovl_open(&bad, &o), -ESTALE);
	bad = c;
	bad.block_size = 8192;
	assert_int_equal(ovl_open(&bad, &o), -ESTALE);
	bad = c;
	bad.target_id[5] = '9';
	assert_int_equal(ovl_open(&bad, &o), -ESTALE);
}

/* A crash while appending: every prefix of the last record, and flipped
 * bytes in it, give the previous commit, never more. */
static void test_torn_commit(void **state)
{
	struct ovl_conf c = conf_of(64 * MiB);
	struct stat st;
	uint8_t *full;
	size_t len;
	off_t before;
	struct ovl *o;
	int fd;

	(void)state;
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	mark(o, 0, 4);
	assert_int_equal(ovl_commit(o), 0);
	assert_int_equal(stat(path, &st), 0);
	before = st.st_size;
	mark(o, 2048, 7);
	mark(o, 4096, 1024);
	assert_int_equal(ovl_commit(o), 0);
	ovl_free(o);
	assert_int_equal(read_file(path, 1 << 24, &full, &len), 0);
	for (size_t cut = before; cut < len; cut++) {
		fd = open(path, O_WRONLY | O_TRUNC);
		assert_true(write(fd, full, cut) == (ssize_t)cut);
		close(fd);
		assert_int_equal(ovl_open(&c, &o), 0);
		assert_int_equal(ovl_present_bytes(o), 4 * 4096);
		assert_false(ovl_block_present(o, 2048));
		ovl_free(o);
	}
	for (size_t pos = before; pos < len; pos += 3) {
		full[pos] ^= 0x40;
		fd = open(path, O_WRONLY | O_TRUNC);
		assert_true(write(fd, full, len) == (ssize_t)len);
		close(fd);
		assert_int_equal(ovl_open(&c, &o), 0);
		assert_int_equal(ovl_present_bytes(o), 4 * 4096);
		ovl_free(o);
		full[pos] ^= 0x40;
	}
	/* A damaged header is refused, not silently restarted. */
	full[20] ^= 1;
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(write(fd, full, len) == (ssize_t)len);
	close(fd);
	assert_int_equal(ovl_open(&c, &o), -EBADMSG);
	free(full);
}

/* Commit cost follows the change, not the disk: 1 TiB, one chunk. */
static void test_commit_cost(void **state)
{
	struct ovl_conf c = conf_of(1ull << 40);
	struct stat a;
	struct stat b;
	struct ovl *o;

	(void)state;
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(stat(path, &a), 0);
		mark(o, 1024 * (1000 + i) + 3, 1);
		assert_int_equal(ovl_commit(o), 0);
		assert_int_equal(stat(path, &b), 0);
		assert_true(b.st_size - a.st_size < 256);
	}
	/* An idle commit writes nothing. */
	assert_int_equal(ovl_commit(o), 0);
	assert_int_equal(stat(path, &a), 0);
	assert_int_equal(a.st_size, b.st_size);
	ovl_free(o);
}

struct targ {
	struct ovl *o;
	int id;
};

static void *marker(void *p)
{
	struct targ *t = p;

	for (uint64_t b = t->id; b < 64 * 1024; b += 4)
		mark(t->o, b, 1);
	return NULL;
}

static void *committer(void *p)
{
	struct ovl *o = p;

	for (int i = 0; i < 50; i++)
		assert_int_equal(ovl_commit(o), 0);
	return NULL;
}

static void test_concurrent(void **state)
{
	struct ovl_conf c = conf_of(256 * MiB);
	pthread_t tid[5];
	struct targ t[4];
	struct ovl *o;

	(void)state;
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct targ){ o, i };
		pthread_create(&tid[i], NULL, marker, &t[i]);
	}
	pthread_create(&tid[4], NULL, committer, o);
	for (int i = 0; i < 5; i++)
		pthread_join(tid[i], NULL);
	assert_true(ovl_is_complete(o));
	assert_int_equal(ovl_commit(o), 0);
	ovl_free(o);
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_true(ovl_is_complete(o));
	ovl_free(o);
}

/* One owner: a second open waits (here: not at all) and is refused,
 * also after a compaction replaced the file; the owner's free lets go. */
static void test_lock(void **state)
{
	struct ovl_conf c = conf_of(64 * MiB);
	struct ovl *o;
	struct ovl *o2 = NULL;

	(void)state;
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_true(ovl_is_new(o));
	assert_int_equal(ovl_open(&c, &o2), -EBUSY);
	/* Grow the journal past 1 MiB: commits compact it by rename. */
	for (uint64_t b = 0; b < 16 * 1024; b += 2) {
		mark(o, b, 1);
		assert_int_equal(ovl_commit(o), 0);
	}
	assert_int_equal(ovl_open(&c, &o2), -EBUSY);
	ovl_free(o);
	assert_int_equal(ovl_open(&c, &o2), 0);
	assert_false(ovl_is_new(o2));
	assert_true(ovl_block_present(o2, 16 * 1024 - 2));
	assert_false(ovl_block_present(o2, 1));
	ovl_free(o2);
}

/*
 * The guest's mark made durable ahead of the data (a write over present
 * blocks): on disk at once, without a commit, and without claiming any
 * block present; sync'd marks of a normal commit count as durable too.
 */
static void test_guest_intent(void **state)
{
	struct ovl_conf c = conf_of(64 * MiB);
	struct ovl *o;

	(void)state;
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	mark(o, 2 * 1024, 1024);		/* chunk 2 present */
	assert_int_equal(ovl_commit(o), 0);
	assert_false(ovl_guest_is_durable(o, 2));
	assert_int_equal(ovl_guest_intent(o, 2), 0);
	assert_int_equal(ovl_guest_intent(o, 5), 0);	/* absent chunk */
	assert_true(ovl_guest_is_durable(o, 2));
	assert_true(ovl_chunk_guest(o, 2));
	ovl_lock_chunk(o, 7);
	ovl_mark_guest(o, 7);
	ovl_unlock_chunk(o, 7);
	assert_false(ovl_guest_is_durable(o, 7));
	assert_int_equal(ovl_sync(o), 0);
	assert_true(ovl_guest_is_durable(o, 7));
	ovl_lock_chunk(o, 9);
	ovl_mark_guest(o, 9);		/* never committed: lost */
	ovl_unlock_chunk(o, 9);
	ovl_free(o);

	assert_int_equal(ovl_open(&c, &o), 0);
	assert_true(ovl_chunk_guest(o, 2));
	assert_true(ovl_guest_is_durable(o, 2));
	assert_true(ovl_chunk_guest(o, 5));
	assert_int_equal(ovl_chunk_state(o, 5), OVL_ABSENT);
	assert_true(ovl_chunk_guest(o, 7));
	assert_false(ovl_chunk_guest(o, 9));
	assert_int_equal(ovl_chunk_state(o, 2), OVL_PRESENT);
	assert_int_equal(ovl_present_bytes(o), 4 * MiB);
	ovl_free(o);
}

/*
 * Consecutive chunks in one state are one entry: a streamed 16 TiB disk
 * commits in a few bytes, and replays to the same states around runs
 * broken by guest marks and partial chunks.
 */
static void test_runs(void **state)
{
	struct ovl_conf c = conf_of(16ull << 40);
	struct stat a;
	struct stat b;
	struct ovl *o;

	(void)state;
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_int_equal(stat(path, &a), 0);
	for (uint64_t ch = 100000; ch > 0; ch--)	/* any order */
		mark(o, (ch - 1) * 1024, 1024);
	ovl_lock_chunk(o, 500);
	ovl_mark_guest(o, 500);
	ovl_unlock_chunk(o, 500);
	mark(o, 200000 * 1024 + 3, 5);		/* partial, alone */
	for (uint64_t ch = 200001; ch < 4000000; ch++)
		mark(o, ch * 1024, 1024);
	assert_int_equal(ovl_commit(o), 0);
	assert_int_equal(stat(path, &b), 0);
	assert_true(b.st_size - a.st_size < 512);
	ovl_free(o);

	assert_int_equal(ovl_open(&c, &o), 0);
	assert_int_equal(ovl_present_bytes(o),
			 (100000 + 4000000 - 200001) * 4 * MiB + 5 * 4096);
	assert_int_equal(ovl_chunk_state(o, 99999), OVL_PRESENT);
	assert_int_equal(ovl_chunk_state(o, 100000), OVL_ABSENT);
	assert_int_equal(ovl_chunk_state(o, 200000), OVL_PARTIAL);
	assert_true(ovl_block_present(o, 200000 * 1024 + 7));
	assert_false(ovl_block_present(o, 200000 * 1024 + 8));
	assert_int_equal(ovl_chunk_state(o, 3999999), OVL_PRESENT);
	assert_int_equal(ovl_chunk_state(o, 4000000), OVL_ABSENT);
	assert_true(ovl_chunk_guest(o, 500));
	assert_false(ovl_chunk_guest(o, 499));
	assert_false(ovl_chunk_guest(o, 501));
	ovl_free(o);
}

/* Rewrite the state file's header as format @v (CRC fixed). */
static void set_version(uint8_t v)
{
	uint8_t *full;
	size_t len;
	uint32_t crc;
	int fd;

	assert_int_equal(read_file(path, 1 << 24, &full, &len), 0);
	full[8] = v;
	crc = (uint32_t)crc32(0, full, 4092);
	for (int i = 0; i < 4; i++)
		full[4092 + i] = (uint8_t)(crc >> (8 * i));
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(write(fd, full, len) == (ssize_t)len);
	close(fd);
	free(full);
}

/* A format 2 file (no runs) resumes, and is rewritten as format 3. */
static void test_format2(void **state)
{
	struct ovl_conf c = conf_of(64 * MiB);
	uint8_t *full;
	size_t len;
	struct ovl *o;

	(void)state;
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	mark(o, 3 * 1024, 1024);		/* one chunk: a state entry */
	assert_int_equal(ovl_commit(o), 0);
	ovl_free(o);
	set_version(2);
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_int_equal(ovl_present_bytes(o), 4 * MiB);
	ovl_free(o);
	assert_int_equal(read_file(path, 1 << 24, &full, &len), 0);
	assert_int_equal(full[8], 3);
	free(full);
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_int_equal(ovl_chunk_state(o, 3), OVL_PRESENT);
	ovl_free(o);
}

/* Another version's state file is refused by name, not misread. */
#define BOOT_A "0f3c2b1a-1111-4222-8333-944455556666"
#define BOOT_B "0f3c2b1a-1111-4222-8333-944455557777"

static void guest_write(struct ovl *o, uint64_t first, uint64_t n)
{
	uint64_t c = first / 1024;

	ovl_lock_chunk(o, c);
	assert_int_equal(ovl_guest_wrote(o, first, n), 0);
	ovl_unlock_chunk(o, c);
}

static off_t size_of(const char *suffix)
{
	char p[80];
	struct stat st;

	snprintf(p, sizeof(p), "%s%s", path, suffix);
	return stat(p, &st) ? -1 : st.st_size;
}

/*
 * Guest writes outlive the process before any commit (the guest
 * journal), in this boot only; a commit empties the journal file whose
 * records it covers.
 */
static void test_guest_journal(void **state)
{
	struct ovl_conf c = conf_of(16 * MiB);
	struct ovl *o;

	(void)state;
	unlink(path);
	c.guest_journal = true;
	c.boot_id = BOOT_A;
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_int_equal(ovl_commit(o), 0);
	guest_write(o, 5, 3);
	guest_write(o, 1024 + 100, 1);
	mark(o, 2048, 1024);		/* a fill: not journaled */
	ovl_free(o);			/* the process dies: no commit */
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_true(ovl_block_present(o, 5) && ovl_block_present(o, 7));
	assert_false(ovl_block_present(o, 8));
	assert_true(ovl_block_present(o, 1124));
	assert_true(ovl_chunk_guest(o, 0) && ovl_chunk_guest(o, 1));
	assert_int_equal(ovl_chunk_state(o, 2), OVL_ABSENT);
	assert_int_equal(ovl_present_bytes(o), 4 * 4096);
	/* Replayed marks go into the next commit, which empties a file. */
	assert_int_equal(ovl_commit(o), 0);
	guest_write(o, 3072, 1);
	assert_int_equal(ovl_commit(o), 0);
	assert_true(size_of(".v0") == 64 || size_of(".v1") == 64);
	ovl_free(o);
	/* After a reboot only commits count: the last write was one. */
	c.boot_id = BOOT_B;
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_true(ovl_block_present(o, 5) && ovl_block_present(o, 3072));
	guest_write(o, 3073, 1);
	ovl_free(o);
	c.boot_id = BOOT_A;
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_false(ovl_block_present(o, 3073));
	ovl_free(o);
	/* A new state never replays journals left by an older one. */
	c.boot_id = BOOT_B;
	assert_int_equal(ovl_open(&c, &o), 0);
	guest_write(o, 10, 1);
	ovl_free(o);
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	assert_false(ovl_block_present(o, 10));
	ovl_free(o);
	for (int i = 0; i < 2; i++) {
		char p[80];

		snprintf(p, sizeof(p), "%s.v%d", path, i);
		unlink(p);
	}
}

static void test_old_version(void **state)
{
	struct ovl_conf c = conf_of(64 * MiB);
	struct ovl *o;

	(void)state;
	unlink(path);
	assert_int_equal(ovl_open(&c, &o), 0);
	ovl_free(o);
	set_version(1);	/* format 1: identity by device and inode only */
	assert_int_equal(ovl_open(&c, &o), -ESTALE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_transitions),
		cmocka_unit_test(test_persist_and_identity),
		cmocka_unit_test(test_torn_commit),
		cmocka_unit_test(test_commit_cost),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_lock),
		cmocka_unit_test(test_guest_intent),
		cmocka_unit_test(test_guest_journal),
		cmocka_unit_test(test_old_version),
		cmocka_unit_test(test_runs),
		cmocka_unit_test(test_format2),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
