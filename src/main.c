/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdio.h>

#include "log.h"
#include "banned.h"

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	log_init("pbs-livemount", false, LOG_INFO);
	printf("pbs-livemount %s\n", PROG_VERSION);
	return 0;
}
