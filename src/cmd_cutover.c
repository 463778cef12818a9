/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pbs-livemount cutover: ask a live mount's daemon to move a running
 * QEMU onto the targets.  The request is the value of the attribute
 * user.pbs-livemount.cutover of the mount's .status; the daemon does the cut-over
 * while it serves QEMU's I/O, and the attribute call returns its
 * outcome (the reason in .status).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "log.h"
#include "status.h"
#include "util.h"
#include "banned.h"

static const char cutover_desc[] =
	"Move a running QEMU that has disks of the live mount at MOUNTPOINT\n"
	"open onto their targets, through its monitor, with no restart and no\n"
	"data copy; then the mount ends.  Waits for the restore to complete\n"
	"first.  Any failure leaves the VM on the mount, which serves on.\n";

static const char *state_of(json_object *doc, double *pct)
{
	json_object *disks;
	json_object *v;
	double sum = 0;
	size_t n = 0;

	if (json_object_object_get_ex(doc, "disks", &disks))
		n = json_object_array_length(disks);
	for (size_t i = 0; i < n; i++)
		if (json_object_object_get_ex(json_object_array_get_idx(disks, i),
					      "percent", &v))
			sum += json_object_get_double(v);
	*pct = n ? sum / (double)n : 0;
	return json_object_get_string(json_object_object_get(doc, "state"));
}

/* Until the restore is complete: 0, or why it never will be. */
static int wait_complete(const char *mnt, bool quiet)
{
	bool told = false;

	for (;;) {
		json_object *doc = NULL;
		const char *st;
		double pct;
		int ret;

		ret = status_read("cutover", mnt, NULL, &doc);
		if (ret)
			return ret;
		st = state_of(doc, &pct);
		ret = !st ? -EBADMSG :
		      !strcmp(st, "complete") || !strcmp(st, "verified") ? 0 :
		      !strcmp(st, "read-only") || !strcmp(st, "cut over") ||
				      !strcmp(st, "verify-failed") ? -EINVAL :
		      -EAGAIN;
		if (ret == -EINVAL)
			log_err("cutover: cannot cut '%s' over: it is %s", mnt,
				st);
		else if (ret == -EAGAIN && !told && !quiet)
			log_info("cutover: waiting for the restore to complete "
				 "(%.1f %%, %s)", pct, st);
		told |= ret == -EAGAIN;
		json_object_put(doc);
		if (ret != -EAGAIN)
			return ret;
		sleep(1);
	}
}

/* The daemon's reason for a refusal, from .status. */
static void report(const char *mnt, int err)
{
	json_object *doc = NULL;
	const char *why = NULL;

	if (!status_read("cutover", mnt, NULL, &doc))
		why = json_object_get_string(json_object_object_get(doc,
							"cutover_error"));
	if (err == EBUSY)
		why = "another cut-over of this mount is running";
	log_err("cutover: cannot cut '%s' over: %s; the VM stays on the mount",
		mnt, why ? why : strerror(err));
	json_object_put(doc);
}

int cmd_cutover(int argc, char **argv)
{
	const char *qmp = NULL;
	const char *domain = NULL;
	const char *uri = NULL;
	json_object *req = NULL;
	char *mnt = NULL;
	char *ctl = NULL;
	char *sock = NULL;
	bool quiet = false;
	int nargs;
	int ret;

	const struct opt opts[] = {
		OPT_STRING(0, "qmp", &qmp, "SOCKET",
			   "QEMU's monitor socket (QMP, control mode)"),
		OPT_STRING(0, "libvirt", &domain, "DOMAIN",
			   "or a running libvirt domain"),
		OPT_STRING(0, "libvirt-uri", &uri, "URI",
			   "libvirt to ask (default qemu:///system)"),
		OPT_BOOL('q', "quiet", &quiet, "only errors"),
		OPT_END(),
	};
	const struct opt_cmd cmd = {
		.name = "cutover",
		.usage = "--qmp SOCKET | --libvirt DOMAIN MOUNTPOINT",
		.desc = cutover_desc,
		.opts = opts,
	};

	if (!opt_parse_main(&cmd, argc, argv, &nargs, &ret))
		return ret;
	if (nargs != 1)
		return opt_usage_error("cutover", "needs MOUNTPOINT");
	if (!qmp == !domain)
		return opt_usage_error("cutover", "needs --qmp or --libvirt");
	mnt = abs_path(argv[1]);
	ret = wait_complete(mnt, quiet);
	if (ret)
		goto out;
	req = json_object_new_object();
	if (qmp) {
		/* The daemon runs in "/". */
		sock = abs_path(qmp);
		json_object_object_add(req, "qmp", json_object_new_string(sock));
	} else {
		json_object_object_add(req, "libvirt",
				       json_object_new_string(domain));
		if (uri)
			json_object_object_add(req, "uri",
					       json_object_new_string(uri));
	}
	ctl = xasprintf("%s/.status", mnt);
	if (setxattr(ctl, "user.pbs-livemount.cutover",
		     json_object_to_json_string(req),
		     strlen(json_object_to_json_string(req)), 0)) {
		ret = -errno;
		report(mnt, errno);
		goto out;
	}
	if (!quiet)
		log_info("cutover: QEMU runs on the targets now; the mount on "
			 "'%s' ends", mnt);
out:
	json_object_put(req);
	free(sock);
	free(ctl);
	free(mnt);
	return cli_exit_code(ret);
}
