/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Live-mount orchestration and the ".status" document.
 *
 * Threads (created here, joined here, in this order of shutdown):
 *   FUSE workers     created by fs_run() (libfuse), gone when it returns
 *   watcher          one: notices the end of the FUSE session (unmount,
 *                    SIGTERM/SIGINT) at once and aborts the work
 *                    in progress, so that fs_run() need not wait for
 *                    FUSE workers blocked on the network
 *   checkpoint       one: commits each image's state once a second while
 *                    it changes, samples progress, detects completion
 *   stream workers   stream_start(); joined by stream_stop()
 *   readahead        readahead_start(); joined by readahead_stop()
 * Start order: images -> fs (mounted) -> ready hand-shake -> stream ->
 * checkpoint, watcher -> fs_run.  Stop: session ends -> watcher aborts
 * (every image cancelled, every transfer of the store aborted) ->
 * fs_run returns -> watcher, checkpoint, stream, readahead joined -> fs
 * freed (unmounted, connection closed) -> images closed (final commit,
 * target and state unlocked) -> exit.  Nothing waits for the store, so
 * the daemon is gone about a second after an unmount whatever the
 * store's health or --limit-rate; the target's lock goes with it, and a
 * new mount of the same target waits for that (image_open).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ccache.h"
#include "cutover.h"
#include "frontend.h"
#include "image.h"
#include "log.h"
#include "mount.h"
#include "mount_i.h"
#include "qmp.h"
#include "readahead.h"
#include "status.h"
#include "stream.h"
#include "sup.h"
#include "trace.h"
#include "util.h"
#include "banned.h"

bool mount_stopping(struct mount *m)
{
	bool stop;

	pthread_mutex_lock(&m->lock);
	stop = m->stop;
	pthread_mutex_unlock(&m->lock);
	return stop;
}

/* One of the variables --on-complete is told (none inherited). */
static bool on_complete_var(const char *e)
{
	static const char *const names[] = {
		"PBSLM_MOUNTPOINT=", "PBSLM_SNAPSHOT=", "PBSLM_NS=",
		"PBSLM_STATE=", "PBSLM_CUTOVER=", "PBSLM_DISKS=",
		"PBSLM_IMAGE_", "PBSLM_TARGET_",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strncmp(e, names[i], strlen(names[i])))
			return true;
	return false;
}

/*
 * --on-complete's environment: ours and what it is told of the mount
 * (man page, ENVIRONMENT), built before fork() since the child of a
 * threaded process may not allocate.
 */
static char **on_complete_env(struct mount *m, const char *cutover)
{
	extern char **environ;
	const struct snap_manifest *man = repo_snapshot_manifest(m->conf->snap);
	const char *path = repo_snapshot_path(m->conf->snap);
	size_t nenv = 0;
	size_t n = 0;
	char **env;
	char ts[21];
	char *ns;
	char *p;

	while (environ[nenv])
		nenv++;
	env = xcalloc(nenv + 8 + 2 * (size_t)m->nimages, sizeof(*env));
	for (size_t i = 0; i < nenv; i++)
		if (!on_complete_var(environ[i]))
			env[n++] = xstrdup(environ[i]);
	/* "ns/a/ns/b/vm/100/T" -> "a/b" */
	ns = xstrdup(path);
	p = ns;
	for (char *q = ns; !strncmp(q, "ns/", 3);) {
		char *end = strchr(q + 3, '/');

		if (!end)
			break;
		if (p != ns)
			*p++ = '/';
		memmove(p, q + 3, end - q - 3);
		p += end - q - 3;
		q = end + 1;
	}
	*p = '\0';
	snap_format_time(snap_manifest_time(man), ts);
	env[n++] = xasprintf("PBSLM_MOUNTPOINT=%s", m->conf->mountpoint);
	env[n++] = xasprintf("PBSLM_SNAPSHOT=%s/%s/%s", snap_manifest_type(man),
			     snap_manifest_id(man), ts);
	env[n++] = xasprintf("PBSLM_NS=%s", ns);
	pthread_mutex_lock(&m->lock);
	env[n++] = xasprintf("PBSLM_STATE=%s", m->verdict ? m->verdict :
							    "complete");
	pthread_mutex_unlock(&m->lock);
	env[n++] = xasprintf("PBSLM_CUTOVER=%s", cutover);
	env[n++] = xasprintf("PBSLM_DISKS=%u", m->nimages);
	for (unsigned int i = 0; i < m->nimages; i++) {
		env[n++] = xasprintf("PBSLM_IMAGE_%u=%s/%s", i,
				     m->conf->mountpoint,
				     image_name(m->images[i]));
		env[n++] = xasprintf("PBSLM_TARGET_%u=%s", i,
				     image_target(m->images[i]) ?
				     image_target(m->images[i]) : "");
	}
	free(ns);
	return env;
}

void mount_run_on_complete(struct mount *m, const char *cmd,
			   const char *cutover)
{
	struct timespec ts = { 0, 50000000 };
	char **env = on_complete_env(m, cutover);
	static char sh[] = "sh";
	static char dash_c[] = "-c";
	char *const argv[] = { sh, dash_c, (char *)cmd, NULL };
	pid_t pid = fork();
	pid_t got;
	int status;

	if (pid == 0) {
		/* Not in the mount: it may be unmounted while this runs. */
		if (chdir("/") == 0)
			execve("/bin/sh", argv, env);
		_exit(127);
	}
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
	if (pid < 0) {
		log_err("mount: cannot run --on-complete '%s': %s", cmd,
			strerror(errno));
		return;
	}
	while (!(got = waitpid(pid, &status, WNOHANG))) {
		if (mount_stopping(m)) {
			log_warn("mount: --on-complete '%s' still runs (PID "
				 "%d); not waiting for it", cmd, (int)pid);
			return;
		}
		nanosleep(&ts, NULL);
	}
	if (got < 0)
		log_err("mount: cannot wait for --on-complete '%s': %s", cmd,
			strerror(errno));
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		log_warn("mount: --on-complete '%s' failed (status %d)", cmd,
			 status);
}

/*
 * The session is over (or start-up failed): stop all work in progress
 * now.  Idempotent; any thread.
 */
static void abort_work(struct mount *m)
{
	pthread_mutex_lock(&m->lock);
	if (m->aborted) {
		pthread_mutex_unlock(&m->lock);
		return;
	}
	m->aborted = true;
	m->stop = true;
	pthread_cond_broadcast(&m->wake);
	pthread_mutex_unlock(&m->lock);
	for (unsigned int i = 0; i < m->nimages; i++)
		image_cancel(m->images[i]);
	store_cancel(repo_snapshot_store(m->conf->snap));
}

/* Polls the FUSE session: its end starts the shutdown at once. */
static void *watcher(void *arg)
{
	struct mount *m = arg;
	uint64_t abort_at = 0;
	struct timespec ts;
	int ret;

	thread_name("lm-watcher");
	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		bool unmount = m->unmount_asked;

		m->unmount_asked = false;
		pthread_mutex_unlock(&m->lock);
		/* The VM is elsewhere: end the mount as fusermount3 -u would. */
		if (unmount) {
			m->fe_ops->unmount(m->fe);
			abort_at = now_ns() + ABORT_AFTER_MS * 1000000ull;
		}
		/*
		 * Still served 2 s later: another mount namespace holds it
		 * (libvirt's QEMU has its own), where nothing uses it now.
		 */
		if (abort_at && now_ns() > abort_at &&
		    !m->fe_ops->exited(m->fe)) {
			abort_at = 0;
			ret = m->fe_ops->abort(m->fe);
			if (ret)
				log_warn("mount: the mount lives on in another "
					 "mount namespace, and its connection "
					 "cannot be aborted: %s; the daemon ends "
					 "when that namespace does",
					 strerror(-ret));
		}
		if (m->fe_ops->exited(m->fe)) {
			log_debug(LOG_CAT_FS, "mount: FUSE session ended: "
				  "aborting work in progress");
			abort_work(m);
		}
		deadline_ms(CLOCK_MONOTONIC, 20, &ts);
		pthread_mutex_lock(&m->lock);
		if (!m->stop)
			pthread_cond_timedwait(&m->wake, &m->lock, &ts);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* The stream is done: commit and announce now, not at the next tick. */
static void wake_checkpointer(void *arg)
{
	struct mount *m = arg;

	pthread_mutex_lock(&m->lock);
	pthread_cond_broadcast(&m->wake);
	pthread_mutex_unlock(&m->lock);
}

/*
 * Move the QEMU of @r onto the targets (cutover.h).  Any thread but a
 * FUSE worker other than the control request's own: QEMU's I/O on the
 * mount is served meanwhile.  0, -EAGAIN (not complete), -EBUSY (one
 * runs), -EALREADY (done), or the cut-over's error (kept for .status).
 * @patient (the mount's own --cutover-*): QEMU not there yet is not
 * logged as an error; the caller tries again.
 */

/*
 * After the control request's reply: a cut-over done ends the mount; a
 * restart ends this server at once, as a crash would (every request is
 * safe to answer twice, and the guest journal holds what it acked): the
 * supervisor starts the binary now installed in its place.
 */

/* Commit each image's state and trace, and follow its progress: true
 * when every block of every disk is local and that is news (->complete
 * then set, the rates frozen). */
static bool checkpoint_all(struct mount *m)
{
	bool done = true;
	bool news;

	for (unsigned int i = 0; i < m->nimages; i++) {
		struct image_stats st;

		image_checkpoint(m->images[i]);
		mount_save_trace(m, i, false);
		image_get_stats(m->images[i], &st);
		done &= st.complete;
		pthread_mutex_lock(&m->lock);
		if (!m->complete)
			m->prog[i].rate = 0.7 * m->prog[i].rate +
					  0.3 * (double)(st.present_bytes -
							 m->prog[i].last_present);
		m->prog[i].last_present = st.present_bytes;
		pthread_mutex_unlock(&m->lock);
	}
	pthread_mutex_lock(&m->lock);
	news = done && !m->complete && !m->conf->read_only;
	if (news) {
		m->complete = true;
		/* Frozen: how long it took, and the average rate. */
		m->took = (now_ns() - m->started_ns) / 1e9;
		for (unsigned int i = 0; i < m->nimages; i++)
			m->prog[i].rate = m->took > 0 ?
				(double)(image_size(m->images[i]) -
					 m->prog[i].start_present) / m->took :
				0;
	}
	pthread_mutex_unlock(&m->lock);
	return news;
}

/* --verify after completion: the verdict for .status and the log;
 * false if unmounted meanwhile (no verdict). */
static bool verify_all(struct mount *m)
{
	uint64_t bad = 0;
	uint64_t total = 0;
	int vret = 0;

	for (unsigned int i = 0; i < m->nimages; i++) {
		vret |= image_verify(m->images[i], &bad);
		total += bad;
	}
	if (mount_stopping(m))
		return false;
	pthread_mutex_lock(&m->lock);
	m->verdict = vret || total ? "verify-failed" : "verified";
	pthread_mutex_unlock(&m->lock);
	if (vret || total)
		log_err("mount: cannot verify the restore: %llu chunks differ "
			"from the backup", (unsigned long long)total);
	else
		log_info("mount: verified: every chunk the guest did not "
			 "write equals the backup");
	return true;
}

/* The restore just completed: flush, verify, and what comes next (a
 * cut-over: true, pending; or --on-complete).  False when unmounted. */
static bool completed(struct mount *m, bool *cut_pending)
{
	for (unsigned int i = 0; i < m->nimages; i++)
		image_flush(m->images[i]);
	log_info("mount: restore complete: every block of every disk is in "
		 "its target");
	if (m->conf->verify && !verify_all(m))
		return false;
	*cut_pending = m->conf->cutover_qmp || m->conf->cutover_libvirt;
	if (!*cut_pending && m->conf->on_complete && !mount_stopping(m))
		mount_run_on_complete(m, m->conf->on_complete, "none");
	return true;
}

static void *checkpointer(void *arg)
{
	struct mount *m = arg;
	struct timespec ts;
	bool cut_pending = false;
	bool told = false;

	thread_name("lm-checkpoint");
	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		pthread_mutex_unlock(&m->lock);
		/* A SIGHUP's reopen, even while nothing is logged. */
		log_reopen_if_asked();
		if (checkpoint_all(m) && !completed(m, &cut_pending)) {
			pthread_mutex_lock(&m->lock);
			break;
		}
		if (cut_pending && !mount_stopping(m))
			cut_pending = mount_auto_cutover(m, &told);
		deadline_ms(CLOCK_MONOTONIC, 1000, &ts);
		pthread_mutex_lock(&m->lock);
		if (!m->stop)
			pthread_cond_timedwait(&m->wake, &m->lock, &ts);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static const char *mount_state(struct mount *m)
{
	const char *target;

	if (m->conf->read_only)
		return "read-only";
	if (m->cut == CUT_RUNNING)
		return "cutover";
	if (m->cut == CUT_DONE)
		return "cut over";
	if (m->complete)
		return m->verdict ? m->verdict :
		       m->conf->verify ? "verifying" : "complete";
	if (!m->stream)
		return "on-demand";
	if (stream_stall(m->stream, &target))
		return "stalled";
	return stream_is_paused(m->stream) ? "paused" : "streaming";
}

size_t mount_prefetch_total(const struct mount *m)
{
	size_t n = 0;

	for (unsigned int i = 0; i < m->nimages; i++)
		n += m->traces[i].nprefetch;
	return n;
}

static enum status_cut cut_kind(const struct mount *m)
{
	switch (m->cut) {
	case CUT_DONE:
		return STATUS_CUT_DONE;
	case CUT_FAILED:
		return STATUS_CUT_FAILED;
	case CUT_WAITING:
		return STATUS_CUT_WAITING;
	default:
		return STATUS_CUT_NONE;
	}
}

/* The ".status" document, generated on every open (status.c writes
 * it from the facts gathered here). */
static int status_json(void *arg, char **out)
{
	struct mount *m = arg;
	const struct sup_hello *h = sup_client_hello(m->conf->sup);
	struct status_disk *disks;
	struct status_facts f = {
		.pid = (int)getpid(),
		.supervisor = (int)h->supervisor,
		.restarts = h->restarts,
		.restart_cause = h->restarts ? h->cause : NULL,
		.guest_wait_ms = m->guest_wait_ms,
		.snapshot = repo_snapshot_path(m->conf->snap),
		.started = (long long)m->started,
		.prefetch_chunks = mount_prefetch_total(m),
		.has_seeds = m->seeds != NULL,
		.ndisks = m->nimages,
	};
	const char *target = NULL;
	char stalled[600];
	int err;
	int ret;

	disks = xcalloc(m->nimages ? m->nimages : 1, sizeof(*disks));
	ccache_get_stats(m->cache, &f.cache);
	if (m->seeds)
		reuse_seeds_get_stats(m->seeds, &f.seeds);
	err = m->stream ? stream_stall(m->stream, &target) : 0;
	if (err) {
		snprintf(stalled, sizeof(stalled),
			 "cannot write target '%s': %s", target,
			 strerror(-err));
		f.stalled = stalled;
	}
	f.stream_errors = m->stream ? stream_errors(m->stream) : 0;
	f.prefetch_done = m->stream ? stream_prefetched(m->stream) :
			  m->prefetcher ? stream_prefetched(m->prefetcher) : 0;
	pthread_mutex_lock(&m->lock);
	f.state = mount_state(m);
	f.cut = cut_kind(m);
	f.cut_took = m->cut_res.took;
	f.cut_moved = m->cut_res.moved;
	f.cut_error = m->cut_res.error;
	/* Frozen at completion: how long the restore took. */
	f.elapsed = m->complete ? (long long)(m->took + 0.5) :
				  (long long)(time(NULL) - m->started);
	f.took = m->complete ? m->took : -1.0;
	f.stream_yielding = m->stream && !m->complete &&
			    stream_is_yielding(m->stream);
	for (unsigned int i = 0; i < m->nimages; i++) {
		disks[i].name = image_name(m->images[i]);
		disks[i].rate = m->prog[i].rate;
		image_get_stats(m->images[i], &disks[i].st);
	}
	f.disks = disks;
	ret = status_doc_write(&f, out);
	pthread_mutex_unlock(&m->lock);
	free(disks);
	return ret;
}

/* Readahead hears of every guest read (image_guest_read). */
static void note_read(void *arg, struct image *img, uint64_t off, size_t len)
{
	readahead_note(arg, img, off, len);
}

/*
 * The front end on its connection (from the supervisor: mounted now for
 * the first server), and the news that this server serves.
 */
static int start_frontend(struct mount *m, const struct frontend_conf *fc)
{
	const struct mount_conf *conf = m->conf;
	const struct sup_hello *h = sup_client_hello(conf->sup);
	int ret;

	for (unsigned int i = 0; i < m->nimages; i++)
		image_set_read_observer(m->images[i], note_read, m->readahead);
	ret = m->fe_ops->start(fc, &m->fe);
	if (ret)
		return ret;
	if (h->restarts) {
		m->guest_wait_ms = (now_ns() - h->died_ns) / 1000000;
		log_info("mount: %s served again on %s after %llu ms (the last "
			 "server %s)", repo_snapshot_path(conf->snap),
			 conf->mountpoint,
			 (unsigned long long)m->guest_wait_ms, h->cause);
	} else {
		log_info("mount: %s mounted on %s (%u disk%s)",
			 repo_snapshot_path(conf->snap), conf->mountpoint,
			 m->nimages, m->nimages == 1 ? "" : "s");
	}
	if (conf->ready)
		conf->ready(conf->ready_arg);
	return m->fe_ops->announce(m->fe);
}

/* The front end's view of @m: its images and the mount's callbacks. */
static void frontend_conf_of(struct mount *m, struct frontend_conf *fc,
			     uint64_t *checks)
{
	const struct mount_conf *conf = m->conf;

	*fc = (struct frontend_conf){
		.mountpoint = conf->mountpoint, .sup = conf->sup,
		.images = m->images, .nimages = m->nimages,
		.files = m->files, .nfiles = m->nfiles,
		.allow_other = conf->allow_other, .read_only = conf->read_only,
		.options = conf->fuse_opts,
		.status = status_json, .status_arg = m,
		.control = mount_control, .control_done = mount_control_done,
		.control_arg = m,
		.memo = sup_client_memo(conf->sup), .memo_out = mount_memo_out,
		.fault = mount_test_fault(m, checks),
	};
}

/*
 * The stream into the targets, or without one the prefetcher that warms
 * the cache with what the boot traces name.  The arrays of @sc are
 * @m's until stream_stop.
 */
static int start_streams(struct mount *m, struct stream_conf *sc)
{
	const struct mount_conf *conf = m->conf;
	const uint64_t **prefetch = xcalloc(m->nimages, sizeof(*prefetch));
	size_t *nprefetch = xcalloc(m->nimages, sizeof(*nprefetch));

	for (unsigned int i = 0; i < m->nimages; i++) {
		prefetch[i] = m->traces[i].prefetch;
		nprefetch[i] = m->traces[i].nprefetch;
	}
	sc->prefetch = prefetch;
	sc->nprefetch = nprefetch;
	sc->images = m->images;
	sc->nimages = m->nimages;
	if (!conf->no_stream && !conf->read_only) {
		/*
		 * Each stream worker may hold a decoded chunk and the raw
		 * one in flight: at most half the cache budget goes to
		 * them, so that memory follows --cache-size (16 workers at
		 * the default 256 MiB, 4 at 64 MiB).
		 */
		sc->threads = MIN(conf->connections,
				  MAX(2u, (unsigned int)(conf->cache_size /
							 (8 * mount_max_chunk(m)) * 2)));
		sc->on_done = wake_checkpointer;
		sc->done_arg = m;
		sc->seeds = m->seeds;
		return stream_start(sc, &m->stream);
	}
	if (!mount_prefetch_total(m))
		return 0;
	/* No copy into a target: warm the cache, half of it. */
	sc->threads = 4;
	sc->cache_only = true;
	sc->cache_only_max = conf->cache_size / 2 / mount_max_chunk(m);
	return stream_start(sc, &m->prefetcher);
}

/* What mount_run() made, gone; each image closed, or discarded when
 * it never served (@ran false: what this mount created goes again). */
static void release(struct mount *m, struct stream_conf *sc, bool ran)
{
	stream_stop(m->stream);
	stream_stop(m->prefetcher);
	for (unsigned int i = 0; ran && i < m->nimages; i++)
		mount_save_trace(m, i, true);
	if (m->fe)
		m->fe_ops->free(m->fe);
	readahead_stop(m->readahead);
	for (unsigned int i = 0; i < m->nimages; i++) {
		if (ran)
			image_close(m->images[i]);
		else
			image_discard(m->images[i]);
		repo_archive_close(m->archives[i]);
	}
	for (unsigned int i = 0; m->traces && i < m->nimages; i++) {
		free(m->traces[i].path);
		free(m->traces[i].prefetch);
	}
	free(m->traces);
	for (unsigned int i = 0; i < m->nfiles; i++) {
		free(m->files[i].name);
		free(m->files[i].data);
	}
	free(m->files);
	reuse_seeds_close(m->seeds);
	free((void *)sc->prefetch);
	free((void *)sc->nprefetch);
	free(m->images);
	free(m->archives);
	free(m->prog);
	ccache_free(m->cache);
	pthread_cond_destroy(&m->wake);
	pthread_mutex_destroy(&m->cut_lock);
	pthread_mutex_destroy(&m->lock);
}

int mount_run(const struct mount_conf *conf)
{
	struct ccache_conf cc = { .budget_bytes = conf->cache_size };
	struct stream_conf sc = { 0 };
	struct readahead_conf rc = { 0 };
	struct frontend_conf fc = { 0 };
	struct mount m = {
		.conf = conf,
		.fe_ops = conf->frontend ? conf->frontend : &frontend_fuse,
		.started = time(NULL),
		.started_ns = now_ns(),
	};
	pthread_condattr_t ca;
	pthread_t cp;
	pthread_t wt;
	uint64_t checks;		/* the images' fault: not the fs's */
	bool cp_started = false;
	bool wt_started = false;
	bool ran = false;
	int ret;

	pthread_mutex_init(&m.lock, NULL);
	pthread_mutex_init(&m.cut_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m.wake, &ca);
	pthread_condattr_destroy(&ca);
	ret = ccache_new(&cc, &m.cache);
	if (ret)
		goto out;
	ret = mount_open_images(&m);
	if (ret)
		goto out;
	mount_open_files(&m);
	rc.images = m.images;
	rc.nimages = m.nimages;
	/* Chunks read ahead must not push each other out of the cache. */
	rc.window_bytes = MIN(32ull << 20, conf->cache_size / 4);
	ret = readahead_start(&rc, &m.readahead);
	if (ret)
		goto out;
	frontend_conf_of(&m, &fc, &checks);
	ret = start_frontend(&m, &fc);
	if (!ret)
		ret = start_streams(&m, &sc);
	if (ret)
		goto out;
	if (!pthread_create(&cp, NULL, checkpointer, &m))
		cp_started = true;
	if (!pthread_create(&wt, NULL, watcher, &m))
		wt_started = true;
	ret = m.fe_ops->run(m.fe);
	ran = true;
out:
	abort_work(&m);
	if (wt_started)
		pthread_join(wt, NULL);
	if (cp_started)
		pthread_join(cp, NULL);
	release(&m, &sc, ran);
	if (!ret)
		log_info("mount: %s unmounted, state committed",
			 conf->mountpoint);
	return ret;
}
