/* SPDX-License-Identifier: GPL-2.0-or-later */
/* PBS key files (JSON; kdf none, scrypt, pbkdf2) read from a file. */
#include "config.h"

#include "fuzz.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	fd = fuzz_memfd("keyfile", path, sizeof(path));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct key_material *k = NULL;

	fuzz_memfd_set(fd, data, size);
	if (!key_load_file(path, "fuzz-passphrase", &k))
		key_free(k);
	k = NULL;
	if (!key_load_file(path, NULL, &k))
		key_free(k);
	return 0;
}
