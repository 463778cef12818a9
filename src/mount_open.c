/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A mount's disks: which archives, each opened as an image on its
 * target, the seeds of --seed, and each disk's boot trace (loaded to
 * prefetch, saved as it grows).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "log.h"
#include "mount_i.h"
#include "pve_conf.h"
#include "repo.h"
#include "reuse.h"
#include "trace.h"
#include "util.h"
#include "banned.h"

/*
 * Save image @i's boot trace: the chunks its guest read first.  At
 * unmount (@final) before the guest ran trace_time_s, only if it is not
 * shorter than the trace it started with: a short session must not
 * replace a whole boot.
 */
void mount_save_trace(struct mount *m, unsigned int i, bool final)
{
	struct boot_trace *t = &m->traces[i];
	uint64_t first = image_first_io_ns(m->images[i]);
	const uint64_t *chunks;
	size_t n;

	if (t->saved || !t->path || !first)
		return;
	if (!final &&
	    now_ns() - first < m->conf->trace_time_s * 1000000000ull)
		return;
	n = image_trace(m->images[i], &chunks);
	if (!n || (final && n < t->nprefetch &&
		   now_ns() - first < m->conf->trace_time_s * 1000000000ull))
		return;
	t->saved = true;
	if (!trace_save(t->path, image_chunk_size(m->images[i]), chunks, n))
		log_info("mount: boot trace of '%s' saved: %zu chunks in "
			 "'%s'", image_name(m->images[i]),
			 MIN(n, (size_t)TRACE_MAX_CHUNKS), t->path);
}

uint64_t mount_max_chunk(const struct mount *m)
{
	uint64_t cs = 1;

	for (unsigned int i = 0; i < m->nimages; i++)
		cs = MAX(cs, image_chunk_size(m->images[i]));
	return cs;
}

/* Image @i's boot trace: where it lives, and what to prefetch. */
static void open_trace(struct mount *m, unsigned int i)
{
	const struct mount_conf *c = m->conf;
	struct boot_trace *t = &m->traces[i];
	struct image *img = m->images[i];
	char loc[1024];

	if (c->trace_file) {
		t->path = xstrdup(c->trace_file);
	} else if (c->trace_dir) {
		store_describe(repo_snapshot_store(c->snap), "", loc,
			       sizeof(loc));
		t->path = trace_default_path(c->trace_dir, loc,
					     repo_snapshot_path(c->snap),
					     repo_archive_name(m->archives[i]));
	} else {
		return;
	}
	if (trace_load(t->path, image_chunk_size(img), image_chunk_count(img),
		       &t->prefetch, &t->nprefetch))
		return;		/* none yet, or logged */
	log_info("mount: '%s': %zu chunks of its boot trace '%s' come "
		 "first", image_name(img), t->nprefetch, t->path);
}

/*
 * --seed: indexed in the background in @a's chunk size, with its key
 * (every disk of a snapshot has the same); digests kept under the
 * state directory.
 */
static int open_seeds(struct mount *m, struct repo_archive *a)
{
	char *cache = xasprintf("%s/seeds", m->conf->state_dir);
	struct reuse_seeds_conf rc = {
		.paths = m->conf->seeds,
		.npaths = m->conf->nseeds,
		.chunk_size = snap_fidx_chunk_size(repo_archive_fidx(a)),
		.key = repo_archive_key(a),
		.cache_dir = cache,
		.lock_wait_ms = m->conf->lock_wait_ms,
	};
	int ret;

	ret = reuse_seeds_open(&rc, &m->seeds);
	free(cache);
	if (!ret)
		m->first_archive = a;
	return ret;
}

/*
 * The test's fault (PBSLM_FAULT_KILL_AFTER), first server only:
 * "check:N" is the images' (die after the Nth --in-place check), the
 * rest the file system's.
 */
const char *mount_test_fault(const struct mount *m, uint64_t *checks)
{
	const char *spec = getenv("PBSLM_FAULT_KILL_AFTER");

	*checks = 0;
	if (!spec || sup_client_hello(m->conf->sup)->restarts)
		return NULL;
	if (strncmp(spec, "check:", 6))
		return spec;
	if (parse_u64(spec + 6, checks) || !*checks)
		log_warn("mount: test fault '%s' not understood: ignored",
			 spec);
	return NULL;
}

/*
 * The disk archives to mount into @names (room for every file and
 * archive named): --archive's, or every .img.fidx.  Their count, or
 * -errno (logged) when none, or more than a one-target option allows.
 */
static int disk_names(const struct mount_conf *c, const char **names)
{
	const struct snap_manifest *man = repo_snapshot_manifest(c->snap);
	unsigned int n = 0;

	for (unsigned int i = 0; i < c->narchives; i++)
		names[n++] = c->archives[i];
	for (size_t i = 0; !c->narchives && i < snap_manifest_nfiles(man);
	     i++) {
		const char *f = snap_manifest_file(man, i)->filename;
		size_t len = strlen(f);

		if (len > 9 && !strcmp(f + len - 9, ".img.fidx"))
			names[n++] = f;
	}
	if (!n) {
		log_err("mount: cannot mount '%s': it has no disk archives",
			repo_snapshot_path(c->snap));
		return -ENOENT;
	}
	if (c->trace_file && n != 1) {
		log_err("mount: --prefetch-trace names one trace but the "
			"snapshot has %u disks: use --archive or --trace-dir",
			n);
		return -EINVAL;
	}
	if (c->pve_names && strcmp(snap_manifest_type(man), "vm")) {
		log_err("mount: --pve-names names a VM's disks; '%s' is a %s",
			repo_snapshot_path(c->snap), snap_manifest_type(man));
		return -EINVAL;
	}
	if (c->target && n != 1) {
		log_err("mount: --target names one target but the snapshot has "
			"%u disks: use --archive or --target-dir", n);
		return -EINVAL;
	}
	return (int)n;
}

/*
 * --pve-names: DIR/vm-ID-disk-N.raw, N as PVE's restore numbers the
 * snapshot's disks (all of them, mounted or not).
 */
static char *pve_target(struct mount *m, const char *stem)
{
	const struct snap_manifest *man = repo_snapshot_manifest(m->conf->snap);
	size_t nf = snap_manifest_nfiles(man);
	char **stems = xcalloc(nf ? nf : 1, sizeof(*stems));
	size_t n = 0;
	char *path;
	int num;

	for (size_t i = 0; i < nf; i++) {
		const char *f = snap_manifest_file(man, i)->filename;

		if (strlen(f) > 9 && !strcmp(f + strlen(f) - 9, ".img.fidx"))
			stems[n++] = snap_archive_stem(f);
	}
	num = pve_disk_number((const char *const *)stems, n, stem);
	path = xasprintf("%s/vm-%s-disk-%d.raw", m->conf->target_dir,
			 snap_manifest_id(man), num < 0 ? 0 : num);
	log_info("mount: %s -> %s", stem, path);
	for (size_t i = 0; i < n; i++)
		free(stems[i]);
	free(stems);
	return path;
}

/* Image @i of @m from archive @a (the caller closes @a on failure). */
static int open_image(struct mount *m, unsigned int i, struct repo_archive *a)
{
	const struct mount_conf *c = m->conf;
	struct image_conf ic = { 0 };
	struct image_stats st;
	char *stem = snap_archive_stem(repo_archive_name(a));
	char *fname = xasprintf("%s.img", stem);
	char *tpath = NULL;
	int ret;

	if (c->target)
		tpath = xstrdup(c->target);
	else if (c->target_dir && c->pve_names)
		tpath = pve_target(m, stem);
	else if (c->target_dir)
		tpath = xasprintf("%s/%s.raw", c->target_dir, stem);
	ic.archive = a;
	ic.cache = m->cache;
	ic.name = fname;
	ic.target = tpath;
	ic.state_path = c->target ? c->state : NULL;
	ic.state_dir = c->state_dir;
	ic.block_size = c->block_size;
	ic.read_only = c->read_only;
	ic.overwrite = c->overwrite;
	ic.in_place = c->in_place;
	/* Seeds were indexed in the first disk's chunk size. */
	if (m->seeds && snap_fidx_chunk_size(repo_archive_fidx(a)) ==
				snap_fidx_chunk_size(repo_archive_fidx(
					m->first_archive)))
		ic.seeds = m->seeds;
	ic.lock_wait_ms = c->lock_wait_ms;
	mount_test_fault(m, &ic.fault_checks);
	ret = image_open(&ic, &m->images[i]);
	free(stem);
	free(fname);
	free(tpath);
	if (ret)
		return ret;
	/* A resumed mount's rate counts this mount only. */
	image_get_stats(m->images[i], &st);
	m->prog[i].start_present = st.present_bytes;
	m->prog[i].last_present = st.present_bytes;
	return 0;
}

int mount_open_images(struct mount *m)
{
	const struct mount_conf *c = m->conf;
	const struct snap_manifest *man = repo_snapshot_manifest(c->snap);
	const char **names;
	int ret;
	int n;

	names = xcalloc(snap_manifest_nfiles(man) + c->narchives + 1,
			sizeof(*names));
	n = disk_names(c, names);
	ret = n < 0 ? n : 0;
	if (ret)
		goto out;
	m->images = xcalloc(n, sizeof(*m->images));
	m->archives = xcalloc(n, sizeof(*m->archives));
	m->prog = xcalloc(n, sizeof(*m->prog));
	m->traces = xcalloc(n, sizeof(*m->traces));
	for (int i = 0; i < n; i++) {
		struct repo_archive *a = NULL;

		ret = repo_archive_open(c->snap, names[i], &a);
		if (!ret && c->nseeds && !m->seeds)
			ret = open_seeds(m, a);
		if (!ret)
			ret = open_image(m, (unsigned int)i, a);
		if (ret) {
			repo_archive_close(a);
			goto out;
		}
		m->archives[i] = a;
		open_trace(m, (unsigned int)i);
		m->nimages++;
	}
out:
	free(names);
	return ret;
}

/*
 * Each "*.conf.blob" of the snapshot (qemu-server.conf, pct.conf,
 * fw.conf), verified and decrypted, under its name without ".blob".
 * One that fails its checks is left out with the reason in the log: the
 * disks are served all the same.
 */
void mount_open_files(struct mount *m)
{
	const struct snap_manifest *man = repo_snapshot_manifest(m->conf->snap);
	size_t n = snap_manifest_nfiles(man);

	m->files = xcalloc(n ? n : 1, sizeof(*m->files));
	for (size_t i = 0; i < n; i++) {
		const char *f = snap_manifest_file(man, i)->filename;
		struct frontend_file *ff = &m->files[m->nfiles];
		size_t len = strlen(f);

		if (len <= 10 || strcmp(f + len - 10, ".conf.blob"))
			continue;
		if (repo_read_blob(m->conf->snap, f, &ff->data, &ff->len)) {
			log_warn("mount: '%.*s' left out of the mount (above)",
				 (int)(len - 5), f);
			continue;
		}
		ff->name = strndup(f, len - 5);
		m->nfiles++;
	}
}
