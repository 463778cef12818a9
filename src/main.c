/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount: the dispatcher.  Each command lives in cmd_<name>.c,
 * what they share in cli.c.
 *
 * Threads: main creates none itself.  restore and verify start their
 * workers inside restore_run()/verify_run() and join them before return;
 * a network store's threads live from store_open() to store_close();
 * mount_run() lists the mount's.
 */
#include "config.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "log.h"
#include "sup.h"
#include "banned.h"

static const char main_help[] =
	"usage: pbs-livemount COMMAND [options] ...\n"
	"\n"
	"Boot virtual machines straight from Proxmox Backup Server backups.\n"
	"\n"
	"commands:\n"
	"  mount     mount a snapshot's disks and restore them live\n"
	"  status    progress of a live mount\n"
	"  cutover   move a running VM from the mount onto its targets\n"
	"  restart   replace a mount's server with the installed binary\n"
	"  pack      write a snapshot from raw images (PBS datastore layout)\n"
	"  restore   restore one disk archive to a file or block device\n"
	"  verify    check an image against a backup\n"
	"  list      list snapshots and their archives\n"
	"  vm-config a QEMU or libvirt start line from a backup's VM configuration\n"
	"  map       mount one archive and attach it to a loop device\n"
	"  unmap     detach a map's loop device and end its mount\n"
	"  key       create or inspect an encryption key file\n"
	"\n"
	"'pbs-livemount COMMAND --help' describes each command.\n";

int main(int argc, char **argv)
{
	const char *cmd;

	log_init("pbs-livemount", false, LOG_INFO);
	/*
	 * Chunk buffers (up to 16 MiB) come and go all the time on many
	 * threads: a fixed mmap threshold returns them to the system on
	 * free instead of letting per-thread arenas keep them (RSS bound).
	 */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	/* A mount's supervisor re-executed by `restart`: no command line. */
	if (sup_resuming())
		return sup_resume();
	if (argc < 2) {
		fputs(main_help, stderr);
		return EXIT_USAGE;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") ||
	    !strcmp(cmd, "help")) {
		fputs(main_help, stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
		printf("pbs-livemount %s\n", PROG_VERSION);
		return 0;
	}
	/* Asked by a supervisor before it re-executes this binary. */
	if (!strcmp(cmd, "__supervisor-abi")) {
		puts(sup_abi());
		return 0;
	}
	if (!strcmp(cmd, "mount"))
		return cmd_mount(argc - 1, argv + 1);
	if (!strcmp(cmd, "status"))
		return cmd_status(argc - 1, argv + 1);
	if (!strcmp(cmd, "cutover"))
		return cmd_cutover(argc - 1, argv + 1);
	if (!strcmp(cmd, "restart"))
		return cmd_restart(argc - 1, argv + 1);
	if (!strcmp(cmd, "pack"))
		return cmd_pack(argc - 1, argv + 1);
	if (!strcmp(cmd, "restore"))
		return cmd_restore(argc - 1, argv + 1);
	if (!strcmp(cmd, "verify"))
		return cmd_verify(argc - 1, argv + 1);
	if (!strcmp(cmd, "list"))
		return cmd_list(argc - 1, argv + 1);
	if (!strcmp(cmd, "map"))
		return cmd_map(argc - 1, argv + 1);
	if (!strcmp(cmd, "unmap"))
		return cmd_unmap(argc - 1, argv + 1);
	if (!strcmp(cmd, "vm-config"))
		return cmd_vmconfig(argc - 1, argv + 1);
	if (!strcmp(cmd, "key"))
		return cmd_key(argc - 1, argv + 1);
	fprintf(stderr, "pbs-livemount: unknown command '%s' (see "
		"'pbs-livemount --help')\n", cmd);
	return EXIT_USAGE;
}
