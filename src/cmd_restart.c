/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount restart: replace a live mount's server by one running
 * the binary now installed (an upgrade in place).  The request is the
 * attribute user.pbs-livemount.restart of the mount's .status; the
 * server answers, hands over to its supervisor and ends; the guest
 * waits for the next server and goes on.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "log.h"
#include "status.h"
#include "util.h"
#include "banned.h"

#define WAIT_S 60

static const char restart_desc[] =
	"Replace the process that serves the live mount at MOUNTPOINT by a new\n"
	"one, running the pbs-livemount binary now installed: an upgrade with\n"
	"no unmount.  The guest waits a moment and goes on; the mount's state\n"
	"carries over.  Returns once the new server serves.\n";

/* The serving PID, 0 if none answers now; *@err: why (if asked). */
static pid_t server_pid(const char *who, const char *mnt, int *err)
{
	json_object *doc = NULL;
	pid_t pid = 0;
	int ret;

	ret = status_read(who, mnt, NULL, &doc);
	if (!ret)
		pid = json_object_get_int(json_object_object_get(doc, "pid"));
	json_object_put(doc);
	if (err)
		*err = ret;
	return pid;
}

int cmd_restart(int argc, char **argv)
{
	bool quiet = false;
	char *mnt = NULL;
	char *ctl = NULL;
	pid_t old;
	pid_t now = 0;
	int nargs;
	int ret;

	const struct opt opts[] = {
		OPT_BOOL('q', "quiet", &quiet, "only errors"),
		OPT_END(),
	};
	const struct opt_cmd cmd = {
		.name = "restart",
		.usage = "[options] MOUNTPOINT",
		.desc = restart_desc,
		.opts = opts,
	};

	if (!opt_parse_main(&cmd, argc, argv, &nargs, &ret))
		return ret;
	if (nargs != 1)
		return opt_usage_error("restart", "needs MOUNTPOINT");
	mnt = abs_path(argv[1]);
	ctl = xasprintf("%s/.status", mnt);
	old = server_pid("restart", mnt, NULL);
	if (!old) {
		ret = -ENOENT;
		goto out;
	}
	if (setxattr(ctl, "user.pbs-livemount.restart", "1", 1, 0)) {
		ret = -errno;
		log_err("restart: cannot restart the server of '%s': %s", mnt,
			strerror(errno));
		goto out;
	}
	/* .status answers again once the new server serves. */
	for (int i = 0; i < WAIT_S * 10; i++) {
		int err;

		now = server_pid(NULL, mnt, &err);
		if (now && now != old)
			break;
		/* The supervisor gave up (or died): the mount is over. */
		if (err == -ENOTCONN || err == -ECONNABORTED) {
			log_err("restart: the mount on '%s' ended instead of "
				"taking the new server (its log says why)",
				mnt);
			ret = err;
			goto out;
		}
		usleep(100000);
	}
	if (!now || now == old) {
		log_err("restart: no new server on '%s' after %d s", mnt,
			WAIT_S);
		ret = -ETIMEDOUT;
		goto out;
	}
	if (!quiet)
		log_info("restart: '%s' is served by PID %d now (was %d)", mnt,
			 (int)now, (int)old);
out:
	free(ctl);
	free(mnt);
	return cli_exit_code(ret);
}
