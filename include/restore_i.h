/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_RESTORE_I_H
#define PBSLM_RESTORE_I_H

#include <stdint.h>

#include "restore.h"

/* Inside restore: restore.c (into a file or device, resumable) and
 * restore_out.c (to standard output; verify). */

/* How long to wait for the lock of a target another process writes. */
#define LOCK_WAIT_MS 5000

/* Chunk @i's bytes into @buf: from a seed whose bytes have its digest
 * (1), or the store (0); -errno. */
int restore_read_chunk(const struct restore_conf *c, uint64_t i,
		       uint8_t *buf);
/* restore_run() with "-" as the target. */
int restore_stdout(const struct restore_conf *conf);

#endif
