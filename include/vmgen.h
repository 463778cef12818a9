/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_VMGEN_H
#define PBSLM_VMGEN_H

#include <stdbool.h>
#include <stddef.h>

#include "pve_conf.h"

/*
 * A start line for a guest from its Proxmox VE configuration: a shell
 * script that runs QEMU, or a libvirt domain XML, with each disk of the
 * backup pointing at its image (a live mount's DIR/drive-scsi0.img).
 * What PVE would add that is host-specific (bridges, passthrough, TPM)
 * is left out or replaced by a stated placeholder, each said in a note.
 * Pure but for stat() of the images (or the @size hook).
 */

enum vmgen_format {
	VMGEN_QEMU,
	VMGEN_LIBVIRT,
};

struct vmgen_conf {
	const struct pve_conf *conf;
	const char *dir;	/* the images: DIR/ARCHIVE.img */
	const char *snapshot;	/* for the header, or NULL */
	enum vmgen_format format;
	bool kvm;		/* else TCG (QEMU) / type='qemu' (libvirt) */
	const char *qmp;	/* QEMU: a monitor socket for --cutover-qmp */
	const char *name;	/* NULL: the configuration's */
	const char *firmware_dir; /* OVMF's files; NULL: /usr/share/OVMF */
	/* The size of image @path, false if none (NULL: stat()). */
	bool (*size)(const char *path, unsigned long long *bytes);
};

/*
 * *@out (malloc'ed text) and *@notes (malloc'ed array of malloc'ed
 * lines, "net0: ...": what was left out or stands in for what) from
 * @vc.  -EINVAL (a note says why) when there is no disk to boot from or
 * the guest is not x86_64.
 */
int vmgen_run(const struct vmgen_conf *vc, char **out, char ***notes,
	      size_t *nnotes);
void vmgen_free_notes(char **notes, size_t n);

#endif
