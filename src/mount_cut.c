/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What a mount is asked through its front end (".status" extended
 * attributes): a cut-over of the VM onto the targets, then the unmount;
 * a restart of the serving process; and --cutover-*'s own cut-over
 * once the restore is complete.  One cut-over at a time (->cut_lock).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cutover.h"
#include "image.h"
#include "log.h"
#include "mount_i.h"
#include "qmp.h"
#include "sup.h"
#include "util.h"
#include "banned.h"

static void ask_unmount(struct mount *m)
{
	pthread_mutex_lock(&m->lock);
	m->unmount_asked = true;
	pthread_cond_broadcast(&m->wake);
	pthread_mutex_unlock(&m->lock);
}

/*
 * QEMU is not there yet: no monitor at the socket, a domain not
 * running, or no disk of the mount open.
 */
static bool qemu_absent(int err)
{
	return err == -ENOENT || err == -ECONNREFUSED || err == -ESRCH;
}

static int do_cutover(struct mount *m, const struct cut_req *r, bool patient)
{
	struct cutover_disk *disks = NULL;
	struct cutover_result res = { 0 };
	struct qmp *q = NULL;
	unsigned int n = 0;
	int ret;

	if (pthread_mutex_trylock(&m->cut_lock))
		return -EBUSY;
	pthread_mutex_lock(&m->lock);
	ret = !m->complete ? -EAGAIN : m->cut == CUT_DONE ? -EALREADY :
	      m->cut == CUT_RUNNING ? -EBUSY : 0;
	if (!ret)
		m->cut = CUT_RUNNING;
	pthread_mutex_unlock(&m->lock);
	if (ret)
		goto out_unlock;
	/* Complete and durable first: QEMU will read the targets. */
	for (unsigned int i = 0; i < m->nimages; i++)
		image_flush(m->images[i]);
	ret = r->qmp ? qmp_open_socket(r->qmp, &q, res.error,
				       sizeof(res.error)) :
		       qmp_open_libvirt(r->uri, r->domain, &q, res.error,
					sizeof(res.error));
	if (ret)
		goto out;
	disks = xcalloc(m->nimages, sizeof(*disks));
	for (unsigned int i = 0; i < m->nimages; i++) {
		if (!image_target(m->images[i]))
			continue;
		disks[n].image = xasprintf("%s/%s", m->conf->mountpoint,
					   image_name(m->images[i]));
		disks[n].target = image_target(m->images[i]);
		disks[n].blk = image_target_is_blk(m->images[i]);
		n++;
	}
	ret = cutover_run(q, m->conf->mountpoint, disks, n, &res);
	if (!ret && res.already)
		log_info("mount: %s has every target open and no disk of the "
			 "mount: cut over already; the mount ends",
			 qmp_describe(q));
	else if (!ret)
		log_info("mount: cut over in %.3f s: %u disk%s of %s now on "
			 "%s target%s, no restart; the mount ends", res.took,
			 res.moved, res.moved == 1 ? "" : "s",
			 qmp_describe(q), res.moved == 1 ? "its" : "their",
			 res.moved == 1 ? "" : "s");
out:
	/* Waiting for QEMU (--cutover-qmp): said once, by the caller. */
	if (ret && !(patient && qemu_absent(ret)))
		log_err("mount: cannot cut over: %s; the VM stays on the "
			"mount, which serves on", res.error);
	pthread_mutex_lock(&m->lock);
	m->cut = !ret ? CUT_DONE : patient && qemu_absent(ret) ? CUT_WAITING :
							     CUT_FAILED;
	m->cut_res = res;
	pthread_mutex_unlock(&m->lock);
	for (unsigned int i = 0; i < n; i++)
		free((char *)disks[i].image);
	free(disks);
	qmp_close(q);
out_unlock:
	pthread_mutex_unlock(&m->cut_lock);
	return ret;
}

/*
 * The cutover command's request, as the value of the attribute
 * user.pbs-livemount.cutover of .status: {"qmp": SOCKET} or
 * {"libvirt": DOMAIN, "uri": URI}.  Runs on the FUSE worker that
 * carries it; the reply is the outcome.
 */
int mount_control(void *arg, const char *name, const char *value,
		   size_t len)
{
	struct mount *m = arg;
	struct cut_req r = { 0 };
	json_object *o;
	char *text;
	int ret;

	if (!strcmp(name, "user.pbs-livemount.restart")) {
		pthread_mutex_lock(&m->lock);
		m->restart_asked = true;
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	if (strcmp(name, "user.pbs-livemount.cutover"))
		return -ENOTSUP;
	text = strndup(value, len);
	o = text ? json_tokener_parse(text) : NULL;
	free(text);
	r.qmp = json_object_get_string(json_object_object_get(o, "qmp"));
	r.domain = json_object_get_string(json_object_object_get(o, "libvirt"));
	r.uri = json_object_get_string(json_object_object_get(o, "uri"));
	ret = !r.qmp == !r.domain ? -EINVAL : do_cutover(m, &r, false);
	json_object_put(o);
	return ret;
}

/* Owners and modes set through the mount, for the next server. */
void mount_memo_out(void *arg, const char *text)
{
	struct mount *m = arg;
	int ret = sup_client_set_memo(m->conf->sup, text);

	if (ret)
		log_warn("mount: cannot leave the images' owners to the next "
			 "server: %s", strerror(-ret));
}

void mount_control_done(void *arg)
{
	struct mount *m = arg;
	bool done;
	bool restart;

	pthread_mutex_lock(&m->lock);
	done = m->cut == CUT_DONE;
	restart = m->restart_asked;
	pthread_mutex_unlock(&m->lock);
	if (done)
		ask_unmount(m);
	if (restart && !sup_client_restart(m->conf->sup)) {
		log_info("mount: restart asked for: this server (PID %d) "
			 "hands over", (int)getpid());
		_exit(0);
	}
}

/*
 * --cutover-qmp/--cutover-libvirt, once a second after completion until
 * QEMU has a disk of the mount open: false when done with (cut over, or
 * failed for good); --on-complete then runs, and a cut-over ends the
 * mount.  *@told: the wait was logged.
 */
bool mount_auto_cutover(struct mount *m, bool *told)
{
	struct cut_req r = {
		.qmp = m->conf->cutover_qmp,
		.domain = m->conf->cutover_libvirt,
		.uri = m->conf->libvirt_uri,
	};
	int ret;

	ret = do_cutover(m, &r, true);
	if (qemu_absent(ret)) {
		if (!*told)
			log_info("mount: waiting to cut over: %s",
				 m->cut_res.error);
		*told = true;
		return true;
	}
	if (m->conf->on_complete && !mount_stopping(m))
		mount_run_on_complete(m, m->conf->on_complete,
				      ret ? "failed" : "done");
	if (!ret)
		ask_unmount(m);
	return false;
}
