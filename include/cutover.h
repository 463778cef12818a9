/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_CUTOVER_H
#define PBSLM_CUTOVER_H

#include <stdbool.h>
#include <stddef.h>

#include "qmp.h"

/*
 * The cut-over: a running QEMU that has disks of a live mount open is
 * moved onto their targets through its monitor, with no data copy and
 * no restart (DESIGN.md "Cut-over").  Each disk's root node is mirrored
 * onto a new node of its target with sync "none" (nothing is copied but
 * what the guest writes meanwhile, which the mount wrote to the target
 * already) and the job completed, which drains the disk's in-flight I/O
 * and swaps the node; the VM keeps running.  The target reaches QEMU as
 * a descriptor (add-fd), so QEMU needs no right to open it (libvirt's
 * DAC and AppArmor).  Call once the targets are complete and durable.
 * Blocking; one caller at a time; no lock may be held (QEMU's I/O on
 * the mount must be served meanwhile).
 */
struct cutover_disk {
	const char *image;	/* the image file in the mount */
	const char *target;	/* the file or device it was restored into */
	bool blk;		/* @target is a block device */
};

struct cutover_result {
	unsigned int found;	/* disks of the mount QEMU had open */
	unsigned int moved;	/* of those, now on their targets */
	bool already;		/* none open, but QEMU has every target:
				   an earlier attempt swapped them */
	double took;		/* seconds, first command to the last swap */
	char error[768];	/* why it failed, for .status and the log */
};

/*
 * 0 when every disk of @disks that QEMU had open is on its target and
 * the QEMU process holds no file under @mountpoint any more (libvirt:
 * and the persistent definition names the targets); also when QEMU has
 * none open but every target (@res->already: an attempt that was killed
 * after the swap), so that running it again finishes the job.  Otherwise -errno,
 * the reason in @res->error, and every disk not yet switched stays on
 * the mount (a job or node of ours left half way is removed again).
 */
int cutover_run(struct qmp *q, const char *mountpoint,
		const struct cutover_disk *disks, size_t n,
		struct cutover_result *res);

#endif
