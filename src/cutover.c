/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The cut-over (cutover.h).
 *
 * Why a mirror job and not blockdev-reopen: replacing the "file" child
 * of the disk's format node with blockdev-reopen needs every option of
 * that node restated, and a node that -drive created (plain QEMU,
 * Proxmox VE) has an automatic name that reopen refuses ("Cannot change
 * the option 'node-name'", QEMU 7.2); a mirror with sync "none" works
 * on -drive and -blockdev alike, copies nothing (the guest's writes
 * during the job are in the target already: the mount wrote them
 * there), and its completion drains the disk and swaps the node in one
 * step, without stopping the VM.
 *
 * Order for each disk: our node on the target (add-fd, blockdev-add),
 * the job (blockdev-mirror, auto-dismiss off so that its outcome can be
 * read), ready, block-job-complete, concluded without an error, the
 * device's root is our node.  Until block-job-complete nothing changes
 * for the guest, and a failure removes the job and the node again.
 * Nodes and jobs are named "pbslm-..."; ones left by an attempt that
 * was killed are removed first.  Afterwards the nodes still on the
 * mount's files are deleted (those -blockdev made stay otherwise) and
 * QEMU's descriptors are checked in /proc/PID/fd.
 *
 * No state outside the call.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cutover.h"
#include "jsonx.h"
#include "log.h"
#include "util.h"
#include "virt.h"
#include "banned.h"

#define PREFIX "pbslm-"
#define POLL_MS 10
#define JOB_WAIT_MS 30000

struct disk_plan {
	const struct cutover_disk *d;
	char root[128];		/* the device's root node */
	char device[128];	/* its name, for messages */
	bool direct;
	bool no_flush;
	char aio[16];
	bool unmap;
	char node[40];		/* ours, on the target */
	char job[40];
	bool added;
	bool mirrored;
	bool moved;
};

static int fail(struct cutover_result *res, int ret, const char *fmt, ...)
	PRINTF_FMT(3, 4);

static int fail(struct cutover_result *res, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
	return ret;
}

static bool jbool(json_object *o, const char *key)
{
	json_object *v;

	return o && json_object_object_get_ex(o, key, &v) &&
	       json_object_get_boolean(v);
}

/* Is QEMU's @path (relative: to its cwd) the file @image? */
static bool same_file(pid_t pid, const char *path, const char *image)
{
	struct stat a;
	struct stat b;
	char *p;
	bool same;

	if (!path || !strncmp(path, "json:", 5) || stat(image, &b))
		return false;
	p = path[0] == '/' || !pid ? xstrdup(path) :
				     xasprintf("/proc/%d/cwd/%s", (int)pid, path);
	same = !stat(p, &a) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	free(p);
	return same;
}

/*
 * What QEMU's command line says of the drive on @image: its aio mode
 * and whether discards reach it (neither shows in QMP's answers).
 */
static void drive_opts(pid_t pid, const char *image, struct disk_plan *p)
{
	char path[64];
	uint8_t *cmd = NULL;
	size_t len = 0;

	snprintf(p->aio, sizeof(p->aio), "threads");
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if (!pid || read_file_any(path, 1 << 20, &cmd, &len))
		return;
	for (size_t off = 0; off < len; off += strlen((char *)cmd + off) + 1) {
		const char *arg = (const char *)cmd + off;

		if (!strstr(arg, image))
			continue;
		if (strstr(arg, "aio=native") ||
		    strstr(arg, "\"aio\":\"native\""))
			snprintf(p->aio, sizeof(p->aio), "native");
		else if (strstr(arg, "aio=io_uring") ||
			 strstr(arg, "\"aio\":\"io_uring\""))
			snprintf(p->aio, sizeof(p->aio), "io_uring");
		p->unmap = strstr(arg, "discard=unmap") ||
			   strstr(arg, "discard=on") ||
			   strstr(arg, "\"discard\":\"unmap\"");
	}
	free(cmd);
}

/* Which disks of the mount QEMU has open as a device's root. */
static int find_disks(struct qmp *q, pid_t pid,
		      const struct cutover_disk *disks, size_t n,
		      struct disk_plan *plans, size_t *np,
		      struct cutover_result *res)
{
	json_object *blocks = NULL;
	char err[512];
	int ret;

	*np = 0;
	ret = qmp_call(q, "query-block", NULL, &blocks, err, sizeof(err));
	if (ret)
		return fail(res, ret, "query-block: %s", err);
	for (size_t i = 0; i < json_object_array_length(blocks); i++) {
		json_object *b = json_object_array_get_idx(blocks, i);
		json_object *ins;
		json_object *cache = NULL;

		if (!json_object_object_get_ex(b, "inserted", &ins))
			continue;
		for (size_t k = 0; k < n; k++) {
			struct disk_plan *p = &plans[*np];
			const char *dev = jsonx_str(b, "device");

			if (!same_file(pid, jsonx_str(ins, "file"), disks[k].image))
				continue;
			memset(p, 0, sizeof(*p));
			p->d = &disks[k];
			snprintf(p->root, sizeof(p->root), "%s",
				 jsonx_str(ins, "node-name") ?: "");
			snprintf(p->device, sizeof(p->device), "%s",
				 dev && *dev ? dev : jsonx_str(b, "qdev") ?: p->root);
			json_object_object_get_ex(ins, "cache", &cache);
			p->direct = jbool(cache, "direct");
			p->no_flush = jbool(cache, "no-flush");
			drive_opts(pid, disks[k].image, p);
			snprintf(p->node, sizeof(p->node), PREFIX "%d-%zu",
				 (int)getpid() % 100000, k);
			snprintf(p->job, sizeof(p->job), PREFIX "cut-%d-%zu",
				 (int)getpid() % 100000, k);
			(*np)++;
		}
	}
	json_object_put(blocks);
	return 0;
}

/* The job @id's status ("ready", "concluded", ...), and its error. */
static int job_status(struct qmp *q, const char *id, char *status,
		      size_t slen, char *jerr, size_t elen, char *err,
		      size_t len)
{
	json_object *jobs = NULL;
	int ret;

	status[0] = '\0';
	jerr[0] = '\0';
	ret = qmp_call(q, "query-jobs", NULL, &jobs, err, len);
	if (ret)
		return ret;
	for (size_t i = 0; i < json_object_array_length(jobs); i++) {
		json_object *j = json_object_array_get_idx(jobs, i);

		if (strcmp(jsonx_str(j, "id") ?: "", id))
			continue;
		snprintf(status, slen, "%s", jsonx_str(j, "status") ?: "");
		snprintf(jerr, elen, "%s", jsonx_str(j, "error") ?: "");
	}
	json_object_put(jobs);
	return 0;
}

/* Wait until job @id is @want or concluded; "" when it is gone. */
static int job_wait(struct qmp *q, const char *id, const char *want,
		    char *status, size_t slen, char *jerr, size_t elen,
		    char *err, size_t len)
{
	uint64_t deadline = now_ns() + JOB_WAIT_MS * 1000000ull;
	int ret;

	for (;;) {
		ret = job_status(q, id, status, slen, jerr, elen, err, len);
		if (ret || !status[0] || !strcmp(status, want) ||
		    !strcmp(status, "concluded") || !strcmp(status, "null"))
			return ret;
		if (now_ns() > deadline) {
			snprintf(err, len, "job %s still %s after %d s", id,
				 status, JOB_WAIT_MS / 1000);
			return -ETIMEDOUT;
		}
		sleep_ms(POLL_MS);
	}
}

static json_object *args1(const char *k, json_object *v)
{
	json_object *a = json_object_new_object();

	json_object_object_add(a, k, v);
	return a;
}

/* Call @cmd with @args (consumed); errors ignored: best-effort undo. */
static void try_call(struct qmp *q, const char *cmd, json_object *args)
{
	char err[256];

	qmp_call(q, cmd, args, NULL, err, sizeof(err));
	json_object_put(args);
}

/* Cancel job @id (if any) and wait for it to go. */
static void drop_job(struct qmp *q, const char *id)
{
	char st[32];
	char jerr[256];
	char err[256];
	json_object *a = args1("device", json_object_new_string(id));

	json_object_object_add(a, "force", json_object_new_boolean(true));
	try_call(q, "block-job-cancel", a);
	job_wait(q, id, "concluded", st, sizeof(st), jerr, sizeof(jerr), err,
		 sizeof(err));
	if (!strcmp(st, "concluded"))
		try_call(q, "job-dismiss",
			 args1("id", json_object_new_string(id)));
}

/* What an attempt that was killed half way left: our jobs and nodes. */
static void clean_leftovers(struct qmp *q)
{
	json_object *list = NULL;
	char err[256];

	if (!qmp_call(q, "query-jobs", NULL, &list, err, sizeof(err))) {
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			const char *id = jsonx_str(json_object_array_get_idx(list, i),
					      "id");

			if (id && !strncmp(id, PREFIX, strlen(PREFIX)))
				drop_job(q, id);
		}
	}
	json_object_put(list);
	list = NULL;
	if (!qmp_call(q, "query-named-block-nodes", NULL, &list, err,
		      sizeof(err))) {
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			const char *nn = jsonx_str(json_object_array_get_idx(list, i),
					      "node-name");

			/* In use (an earlier cut-over's): refused, kept. */
			if (nn && !strncmp(nn, PREFIX, strlen(PREFIX)))
				try_call(q, "blockdev-del",
					 args1("node-name",
					       json_object_new_string(nn)));
		}
	}
	json_object_put(list);
}

/* Our node on the target, opened by us and handed over (add-fd). */
static int add_target(struct qmp *q, struct disk_plan *p,
		      struct cutover_result *res)
{
	json_object *ret = NULL;
	json_object *a;
	json_object *cache;
	json_object *fdset;
	char err[512];
	char fname[48];
	int64_t id;
	int fd;
	int r;

	fd = open(p->d->target, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail(res, -errno, "cannot open target '%s': %s",
			    p->d->target, strerror(errno));
	r = qmp_call_fd(q, "add-fd", NULL, fd, &ret, err, sizeof(err));
	close(fd);
	if (r)
		return fail(res, r, "add-fd: %s", err);
	json_object_object_get_ex(ret, "fdset-id", &fdset);
	id = json_object_get_int64(fdset);
	json_object_put(ret);
	snprintf(fname, sizeof(fname), "/dev/fdset/%lld", (long long)id);
	a = json_object_new_object();
	cache = json_object_new_object();
	json_object_object_add(cache, "direct",
			       json_object_new_boolean(p->direct));
	json_object_object_add(cache, "no-flush",
			       json_object_new_boolean(p->no_flush));
	json_object_object_add(a, "driver", json_object_new_string(
				    p->d->blk ? "host_device" : "file"));
	json_object_object_add(a, "node-name", json_object_new_string(p->node));
	json_object_object_add(a, "filename", json_object_new_string(fname));
	json_object_object_add(a, "cache", cache);
	json_object_object_add(a, "aio", json_object_new_string(p->aio));
	if (p->unmap)
		json_object_object_add(a, "discard",
				       json_object_new_string("unmap"));
	r = qmp_call(q, "blockdev-add", a, NULL, err, sizeof(err));
	json_object_put(a);
	/* QEMU holds its own duplicate now; the set can go. */
	try_call(q, "remove-fd", args1("fdset-id", json_object_new_int64(id)));
	if (r)
		return fail(res, r, "cannot open target '%s' in QEMU: %s",
			    p->d->target, err);
	p->added = true;
	return 0;
}

static int start_mirror(struct qmp *q, struct disk_plan *p,
			struct cutover_result *res)
{
	json_object *a = json_object_new_object();
	char err[512];
	int r;

	json_object_object_add(a, "job-id", json_object_new_string(p->job));
	json_object_object_add(a, "device", json_object_new_string(p->root));
	json_object_object_add(a, "target", json_object_new_string(p->node));
	json_object_object_add(a, "sync", json_object_new_string("none"));
	json_object_object_add(a, "auto-dismiss",
			       json_object_new_boolean(false));
	r = qmp_call(q, "blockdev-mirror", a, NULL, err, sizeof(err));
	json_object_put(a);
	if (r)
		return fail(res, r, "disk %s: blockdev-mirror: %s", p->device,
			    err);
	p->mirrored = true;
	return 0;
}

/* The device's root node now, or "". */
static void root_of(struct qmp *q, const struct disk_plan *p, char *out,
		    size_t len)
{
	json_object *blocks = NULL;
	char err[256];

	out[0] = '\0';
	if (qmp_call(q, "query-block", NULL, &blocks, err, sizeof(err)))
		return;
	for (size_t i = 0; i < json_object_array_length(blocks); i++) {
		json_object *b = json_object_array_get_idx(blocks, i);
		json_object *ins;
		const char *dev = jsonx_str(b, "device");
		const char *qdev = jsonx_str(b, "qdev");

		if (!json_object_object_get_ex(b, "inserted", &ins))
			continue;
		if ((dev && !strcmp(dev, p->device)) ||
		    (qdev && !strcmp(qdev, p->device)))
			snprintf(out, len, "%s", jsonx_str(ins, "node-name") ?: "");
	}
	json_object_put(blocks);
}

/* Ready, complete, concluded without an error: the swap. */
static int complete(struct qmp *q, struct disk_plan *p,
		    struct cutover_result *res)
{
	char st[32];
	char jerr[512];
	char err[512];
	char now[128];
	int r;

	r = job_wait(q, p->job, "ready", st, sizeof(st), jerr, sizeof(jerr),
		     err, sizeof(err));
	if (!r && strcmp(st, "ready"))
		return fail(res, -EIO, "disk %s: the mirror job ended before it "
			    "was ready: %s", p->device, jerr[0] ? jerr : st);
	if (r)
		return fail(res, r, "disk %s: %s", p->device, err);
	r = qmp_call(q, "block-job-complete",
		     args1("device", json_object_new_string(p->job)), NULL,
		     err, sizeof(err));
	if (r)
		return fail(res, r, "disk %s: block-job-complete: %s",
			    p->device, err);
	r = job_wait(q, p->job, "concluded", st, sizeof(st), jerr,
		     sizeof(jerr), err, sizeof(err));
	try_call(q, "job-dismiss", args1("id", json_object_new_string(p->job)));
	p->mirrored = false;
	root_of(q, p, now, sizeof(now));
	p->moved = !strcmp(now, p->node);
	if (!p->moved)
		return fail(res, r ? r : -EIO, "disk %s: the swap did not "
			    "happen: %s", p->device,
			    jerr[0] ? jerr : r ? err : "root node unchanged");
	return 0;
}

/* Undo what was done for a disk that did not move. */
static void undo(struct qmp *q, struct disk_plan *p)
{
	if (p->mirrored)
		drop_job(q, p->job);
	if (p->added && !p->moved)
		try_call(q, "blockdev-del",
			 args1("node-name", json_object_new_string(p->node)));
}

/* Delete the nodes still on the mount's files (-blockdev keeps them). */
static void drop_old_nodes(struct qmp *q, pid_t pid,
			   const struct cutover_disk *disks, size_t n)
{
	json_object *list = NULL;
	char err[256];

	/* Format nodes come before their file nodes: twice is enough. */
	for (int round = 0; round < 2; round++) {
		if (qmp_call(q, "query-named-block-nodes", NULL, &list, err,
			     sizeof(err)))
			return;
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			json_object *nd = json_object_array_get_idx(list, i);
			const char *nn = jsonx_str(nd, "node-name");

			for (size_t k = 0; nn && k < n; k++)
				if (same_file(pid, jsonx_str(nd, "file"),
					      disks[k].image))
					try_call(q, "blockdev-del",
						 args1("node-name",
						       json_object_new_string(nn)));
		}
		json_object_put(list);
		list = NULL;
	}
}

/* A descriptor of @pid (every process if 0) on a file of the mount. */
static bool holds_mount(pid_t pid, const char *mnt, char *what, size_t len)
{
	size_t ml = strlen(mnt);
	bool held = false;
	struct dirent *e;
	char dir[64];
	DIR *d;

	if (!pid) {
		DIR *procs = opendir("/proc");

		while (procs && !held && (e = readdir(procs))) {
			uint64_t v;

			if (!parse_u64(e->d_name, &v) && v != (uint64_t)getpid())
				held = holds_mount((pid_t)v, mnt, what, len);
		}
		if (procs)
			closedir(procs);
		return held;
	}
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	while (d && !held && (e = readdir(d))) {
		char link[PATH_MAX + 64];
		char target[PATH_MAX];
		ssize_t n;

		snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (!strncmp(target, mnt, ml) && target[ml] == '/') {
			snprintf(what, len, "PID %d holds '%s'", (int)pid,
				 target);
			held = true;
		}
	}
	if (d)
		closedir(d);
	return held;
}

/* Does @pid hold every target of @disks open (and so none of the mount)? */
static bool holds_targets(pid_t pid, const struct cutover_disk *disks,
			  size_t n)
{
	size_t held = 0;

	for (size_t k = 0; k < n; k++) {
		char dir[64];
		struct dirent *e;
		struct stat want;
		bool found = false;
		DIR *d;

		if (stat(disks[k].target, &want))
			return false;
		snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
		d = opendir(dir);
		while (d && !found && (e = readdir(d))) {
			char link[PATH_MAX];
			struct stat st;

			snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
			found = !stat(link, &st) && st.st_dev == want.st_dev &&
				st.st_ino == want.st_ino &&
				st.st_rdev == want.st_rdev;
		}
		if (d)
			closedir(d);
		held += found;
	}
	return n && held == n;
}

int cutover_run(struct qmp *q, const char *mountpoint,
		const struct cutover_disk *disks, size_t n,
		struct cutover_result *res)
{
	struct disk_plan *plans = xcalloc(n ? n : 1, sizeof(*plans));
	pid_t pid = qmp_pid(q);
	uint64_t t0;
	size_t np = 0;
	char what[PATH_MAX + 64];
	int ret;

	memset(res, 0, sizeof(*res));
	ret = find_disks(q, pid, disks, n, plans, &np, res);
	if (ret)
		goto out;
	res->found = (unsigned int)np;
	clean_leftovers(q);
	if (!np && pid && holds_targets(pid, disks, n)) {
		/* An earlier attempt swapped them, then was killed. */
		res->already = true;
		goto out;
	}
	if (!np) {
		ret = fail(res, -ENOENT, "QEMU (%s%s) has no disk of '%s' "
			   "open", qmp_describe(q), pid ? "" : ", PID unknown",
			   mountpoint);
		goto out;
	}
	for (size_t i = 0; !ret && i < np; i++)
		ret = add_target(q, &plans[i], res);
	t0 = now_ns();
	for (size_t i = 0; !ret && i < np; i++)
		ret = start_mirror(q, &plans[i], res);
	for (size_t i = 0; !ret && i < np; i++) {
		ret = complete(q, &plans[i], res);
		res->moved += plans[i].moved;
	}
	res->took = (now_ns() - t0) / 1e9;
	for (size_t i = 0; i < np; i++)
		undo(q, &plans[i]);
	if (ret)
		goto out;
	drop_old_nodes(q, pid, disks, n);
	/* QEMU closes a replaced node's file once its last user is gone. */
	for (int i = 0; holds_mount(pid, mountpoint, what, sizeof(what)); i++) {
		if (i == 100) {
			ret = fail(res, -EBUSY, "every disk is on its target, "
				   "but %s", what);
			goto out;
		}
		sleep_ms(POLL_MS);
	}
	for (size_t i = 0; qmp_virt(q) && i < np; i++) {
		char err[512];
		int r = virt_persist_disk(qmp_virt(q), plans[i].d->image,
					  plans[i].d->target, plans[i].d->blk,
					  err, sizeof(err));

		if (r < 0)
			log_warn("cutover: cannot make the persistent "
				 "definition use '%s': %s", plans[i].d->target,
				 err);
	}
out:
	free(plans);
	return ret;
}
