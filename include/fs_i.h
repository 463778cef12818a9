/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_FS_I_H
#define PBSLM_FS_I_H

#include <stddef.h>

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 35
#endif
#include <fuse_lowlevel.h>

/* Inside fs: fs.c (the session that serves) and fs_mount.c (the
 * supervisor's mount, which never serves). */

/* A libfuse session of @opts (NULL: none) and @ops; NULL, said. */
struct fuse_session *fs_session(const char *opts,
				const struct fuse_lowlevel_ops *ops,
				size_t size, void *userdata);

#endif
