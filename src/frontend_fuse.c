/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The FUSE front end as mount.c sees it (frontend.h): the connection
 * the supervisor keeps (mounted for the first server, handed to each
 * later one with the kernel's FUSE_INIT), a session on it (fs.c), and
 * the check that this server agrees with the kernel as the first did.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "frontend.h"
#include "fs.h"
#include "log.h"
#include "sup.h"
#include "util.h"
#include "banned.h"

struct frontend {
	struct fs *fs;			/* immutable after start */
	struct sup_client *sup;		/* immutable, borrowed */
	uint64_t want;			/* immutable: capabilities agreed */
	uint64_t max_write;		/* immutable */
};

/*
 * A server that would agree with the kernel otherwise than the first
 * (another libfuse?) must not serve: -EPROTO, said loudly.
 */
static int fuse_start(const struct frontend_conf *conf,
		      struct frontend **out)
{
	struct frontend *fe = xcalloc(1, sizeof(*fe));
	uint64_t want0 = 0;
	uint64_t mw0 = 0;
	void *init = NULL;
	size_t init_len = 0;
	char *opts = fs_mount_opts(conf);
	int fd = -1;
	int ret;

	fe->sup = conf->sup;
	ret = sup_client_connect(conf->sup, opts, &fd, &init, &init_len,
				 &want0, &mw0);
	free(opts);
	if (!ret)
		ret = fs_new(conf, fd, init, init_len, mw0, &fe->fs);
	free(init);
	if (ret)
		goto err;
	fs_agreement(fe->fs, &fe->want, &fe->max_write);
	if (mw0 && (fe->want != want0 || fe->max_write != mw0)) {
		log_err("mount: cannot serve '%s': this server would agree "
			"capabilities %#llx and max_write %llu with the kernel, "
			"the connection agreed %#llx and %llu (a libfuse or "
			"pbs-livemount update?); remount to use it",
			conf->mountpoint, (unsigned long long)fe->want,
			(unsigned long long)fe->max_write,
			(unsigned long long)want0, (unsigned long long)mw0);
		ret = -EPROTO;
		goto err;
	}
	*out = fe;
	return 0;
err:
	fs_free(fe->fs);
	free(fe);
	return ret;
}

static int fuse_announce(struct frontend *fe)
{
	return sup_client_serving(fe->sup, fe->want, fe->max_write);
}

static int fuse_run(struct frontend *fe)
{
	return fs_run(fe->fs);
}

static void fuse_unmount(struct frontend *fe)
{
	fs_unmount(fe->fs);
}

static int fuse_abort(struct frontend *fe)
{
	return fs_abort(fe->fs);
}

static bool fuse_exited(struct frontend *fe)
{
	return fs_is_exited(fe->fs);
}

static void fuse_free(struct frontend *fe)
{
	if (!fe)
		return;
	fs_free(fe->fs);
	free(fe);
}

const struct frontend_ops frontend_fuse = {
	.name = "fuse",
	.start = fuse_start,
	.announce = fuse_announce,
	.run = fuse_run,
	.unmount = fuse_unmount,
	.abort = fuse_abort,
	.exited = fuse_exited,
	.free = fuse_free,
};
