/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_QMP_H
#define PBSLM_QMP_H

#include <stddef.h>
#include <sys/types.h>

struct virt;

#include <json-c/json.h>

/*
 * A client of QEMU's machine protocol (QMP): a command and its arguments
 * as JSON, QEMU's "return" or "error" back.  Two ways to reach QEMU: its
 * monitor's UNIX socket (plain QEMU, Proxmox VE's /run/qemu-server/
 * VMID.qmp), or, for a libvirt domain, libvirt's monitor pass-through
 * (virt.h).  Asynchronous events between replies are skipped.  One
 * caller at a time; every call may block (each read waits at most
 * QMP_TIMEOUT_MS).
 */
struct qmp;

#define QMP_TIMEOUT_MS 30000

/*
 * Connect, read the greeting, negotiate capabilities.  -errno with the
 * reason in @err: -ENOENT, -ECONNREFUSED when no QEMU listens there.
 */
int qmp_open_socket(const char *path, struct qmp **out, char *err,
		    size_t len);
/*
 * A libvirt domain's monitor; @uri NULL: qemu:///system.  -errno with
 * the reason in @err: -ENOENT no such domain, -ESRCH not running.
 */
int qmp_open_libvirt(const char *uri, const char *domain, struct qmp **out,
		     char *err, size_t len);
void qmp_close(struct qmp *q);

/*
 * Run @cmd with @args (borrowed; NULL: none).  0 with QEMU's "return"
 * value in *@ret (the caller's, json_object_put; may be NULL if @ret
 * is); -EREMOTEIO with QEMU's error text in @err; -errno when the
 * monitor cannot be reached (text in @err too).  Nothing is logged.
 */
int qmp_call(struct qmp *q, const char *cmd, json_object *args,
	     json_object **ret, char *err, size_t errlen);
/* The same, passing @fd (borrowed) along, as add-fd expects. */
int qmp_call_fd(struct qmp *q, const char *cmd, json_object *args, int fd,
		json_object **ret, char *err, size_t errlen);

/* The QEMU process's PID (the socket's peer, or libvirt's pid file), or
 * 0 when it cannot be told. */
pid_t qmp_pid(const struct qmp *q);
/* What this connects to, for messages: the socket path or "libvirt
 * domain NAME". */
const char *qmp_describe(const struct qmp *q);
/* The libvirt connection behind it, or NULL for a socket. */
struct virt *qmp_virt(struct qmp *q);

#endif
