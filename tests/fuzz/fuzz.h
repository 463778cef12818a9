/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_FUZZ_H
#define PBSLM_FUZZ_H

/*
 * Shared by the libFuzzer targets (tests/fuzz/fuzz-*.c): quiet logs and
 * a fixed key.  Each target feeds untrusted bytes to one parser and
 * checks what it returns for consistency; ASan and UBSan do the rest.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "key.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The key of every encrypted seed (raw bytes 0x00..0x1f). */
static inline struct key_material *fuzz_key(void)
{
	static struct key_material *k;
	uint8_t raw[32];

	if (!k) {
		for (int i = 0; i < 32; i++)
			raw[i] = (uint8_t)i;
		if (key_from_raw(raw, &k))
			abort();
	}
	return k;
}

static inline void fuzz_quiet(void)
{
	log_init("fuzz", false, LOG_EMERG);
}

/*
 * For parsers that take a path: one memfd per target, its bytes replaced
 * by each input, named by @path (/proc/self/fd/N, 32 bytes at least).
 */
static inline int fuzz_memfd(const char *name, char *path, size_t n)
{
	int fd = memfd_create(name, 0);

	if (fd < 0)
		abort();
	snprintf(path, n, "/proc/self/fd/%d", fd);
	return fd;
}

static inline void fuzz_memfd_set(int fd, const uint8_t *data, size_t size)
{
	if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
}

#endif
