/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_VIRT_H
#define PBSLM_VIRT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * A running libvirt domain, for the cut-over: its QEMU monitor through
 * libvirt's pass-through (libvirt-qemu), the QEMU process, and its
 * persistent definition, so that the next boot uses the target.  The
 * only user of libvirt and of libxml2 (the domain XML).  One caller at
 * a time; every call may block on libvirtd.
 */
struct virt;

/*
 * @uri NULL: qemu:///system.  -errno with libvirt's reason in @err:
 * -ENOENT no such domain, -ESRCH it is not running.
 */
int virt_open(const char *uri, const char *domain, struct virt **out,
	      char *err, size_t len);
void virt_close(struct virt *v);

/*
 * One QMP command (@json, a whole message), with @fd (borrowed, -1:
 * none) passed along.  0 with QEMU's reply in *@reply (malloc'ed JSON);
 * -EIO with libvirt's reason in @err.
 */
int virt_monitor(struct virt *v, const char *json, int fd, char **reply,
		 char *err, size_t len);
/* The domain's QEMU process, or 0 when it cannot be told. */
pid_t virt_pid(const struct virt *v);

/*
 * In the persistent definition, the disk whose source is @old now names
 * @new (a file, or a block device when @blk).  1 if the domain has no
 * persistent definition (nothing to do), 0 done, -errno with the
 * reason in @err.
 */
int virt_persist_disk(struct virt *v, const char *old, const char *new,
		      bool blk, char *err, size_t len);

#endif
