/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_EXCL_H
#define PBSLM_EXCL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * One owner per target and state file (DESIGN.md section 3,
 * "Ownership"): flock(2) locks on the open file descriptions, which a
 * process keeps until it closes them or exits, and which neither
 * closing another descriptor of the file nor fork-and-exec drops (POSIX
 * record locks would).  Unlike OFD locks, /proc/locks names the holder's
 * PID, so a refusal can say who holds the file.
 */

/*
 * Lock @fd (which was opened from @path) exclusively, or shared with
 * @shared.  If another process holds a conflicting lock, wait up to
 * @wait_ms for it to go, then fail with -EBUSY after logging one line:
 * "<who>: cannot use '<path>': in use by PID N (comm)<hint>".  Blocking;
 * any thread.
 */
int excl_lock(int fd, const char *path, bool shared, uint64_t wait_ms,
	      const char *who, const char *hint);

/* The PID holding a flock on the file of @fd (per /proc/locks), or 0. */
pid_t excl_holder(int fd);

#endif
