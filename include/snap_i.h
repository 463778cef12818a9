/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_SNAP_I_H
#define PBSLM_SNAP_I_H

#include "compiler.h"
#include "snap.h"

/* Inside snap (snap.c, snap_manifest.c) only. */

/* @err's message from @fmt: -EBADMSG. */
int snap_fail(struct snap_error *err, const char *fmt, ...) PRINTF_FMT(2, 3);

#endif
