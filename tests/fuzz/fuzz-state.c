/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The overlay's state file: a header and a journal of records, replayed
 * on resume.  The input is the file (the CRCs are not checked in fuzz
 * builds); whatever is resumed is a consistent state of the fixed
 * geometry, and a commit on top of it replays to the same state.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "ovl.h"

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	snprintf(path, sizeof(path), "/tmp/fuzz-state.%d", (int)getpid());
	return 0;
}

static struct ovl_conf conf(void)
{
	/* 3 chunks and a short one, 4 KiB blocks: small bitmaps. */
	struct ovl_conf c = {
		.state_path = path,
		.target_fd = -1,
		.size = 3 * (1 << 20) + 12345,
		.chunk_size = 1 << 20,
		.block_size = 4096,
	};

	memset(c.index_csum, 0xab, 32);
	snprintf(c.target_id, sizeof(c.target_id), "fuzz");
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ovl_conf c = conf();
	struct ovl *o = NULL;
	uint64_t present = 0;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	if (ovl_open(&c, &o))
		goto out;
	for (uint64_t b = 0; b < (c.size + 4095) / 4096; b++)
		present += ovl_block_present(o, b) ?
			   (b == c.size / 4096 ? c.size % 4096 : 4096) : 0;
	if (present != ovl_present_bytes(o))
		abort();
	ovl_lock_chunk(o, 1);
	ovl_mark_present(o, 256 + 3, 2);
	ovl_unlock_chunk(o, 1);
	if (ovl_commit(o))
		abort();
	present = ovl_present_bytes(o);
	ovl_free(o);
	o = NULL;
	if (ovl_open(&c, &o) || ovl_present_bytes(o) != present)
		abort();	/* our own commit did not replay */
	ovl_free(o);
out:
	unlink(path);
	return 0;
}
