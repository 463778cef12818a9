/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * PVE guest configurations (a backup's qemu-server.conf, or a file a
 * user names with vm-config --config), and both start lines made of
 * them: no crash, no leak, and a result that is text.
 */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "pve_conf.h"
#include "vmgen.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

static bool any_size(const char *path, unsigned long long *bytes)
{
	*bytes = strlen(path) * 4096;
	return path[strlen(path) - 5] != '9';	/* some images "missing" */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pve_conf *c = NULL;
	char err[200];

	if (pve_conf_parse((const char *)data, size, &c, err, sizeof(err)))
		return 0;
	for (int f = VMGEN_QEMU; f <= VMGEN_LIBVIRT; f++) {
		struct vmgen_conf vc = {
			.conf = c, .dir = "/mnt", .format = f, .kvm = f,
			.qmp = "/run/q,mp", .size = any_size,
		};
		char **notes = NULL;
		size_t n = 0;
		char *out = NULL;

		if (!vmgen_run(&vc, &out, &notes, &n) &&
		    strlen(out) < 20)
			abort();
		free(out);
		vmgen_free_notes(notes, n);
	}
	pve_conf_free(c);
	return 0;
}
