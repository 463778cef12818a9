/* A scratch directory per unit test program: made in setup, removed with
 * everything in it in teardown.  Header-only: each test is one file. */
#ifndef TESTS_UNIT_SCRATCH_H
#define TESTS_UNIT_SCRATCH_H

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "util.h"

static char scratch_dir[64];

/* Make /tmp/NAME.XXXXXX and quiet the log; cmocka group setup. */
static inline int scratch_setup(const char *name)
{
	snprintf(scratch_dir, sizeof(scratch_dir), "/tmp/%s.XXXXXX", name);
	if (!mkdtemp(scratch_dir))
		return -1;
	log_init(name, false, LOG_CRIT);
	return 0;
}

static inline int scratch_teardown(void)
{
	char *cmd = xasprintf("rm -rf '%s'", scratch_dir);
	int ret = system(cmd);

	free(cmd);
	return ret;
}

#endif
