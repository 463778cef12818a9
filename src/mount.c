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
#include "qmp.h"
#include "readahead.h"
#include "status.h"
#include "stream.h"
#include "sup.h"
#include "trace.h"
#include "util.h"
#include "banned.h"

#define ABORT_AFTER_MS 2000

struct progress {
	uint64_t last_present;	/* protected by mount->lock */
	double rate;		/* protected by mount->lock: bytes/s, EWMA;
				   after completion the mount's average */
	uint64_t start_present;	/* immutable after open: present at start */
};

/* One disk's boot trace. */
struct boot_trace {
	char *path;		/* immutable; NULL: no traces */
	uint64_t *prefetch;	/* immutable: loaded chunks, or NULL */
	size_t nprefetch;	/* immutable */
	bool saved;		/* checkpointer thread, then shutdown */
};

enum cut_state {
	CUT_NONE,
	CUT_WAITING,	/* --cutover-*: QEMU has none of the disks open yet */
	CUT_RUNNING,
	CUT_DONE,	/* the VM is on the targets: the mount ends */
	CUT_FAILED,	/* the VM stays on the mount, which serves on */
};

/* Which QEMU to move at a cut-over: a monitor socket or a domain. */
struct cut_req {
	const char *qmp;
	const char *domain;
	const char *uri;	/* libvirt's; NULL: qemu:///system */
};

struct mount {
	const struct mount_conf *conf;	/* immutable */
	struct image **images;		/* immutable after start */
	struct repo_archive **archives;	/* immutable after start */
	unsigned int nimages;		/* immutable after start */
	struct ccache *cache;		/* immutable pointer */
	struct reuse_seeds *seeds;	/* immutable pointer, or NULL */
	struct repo_archive *first_archive; /* the one seeds were opened
					       for; immutable */
	struct stream *stream;		/* immutable after start */
	struct stream *prefetcher;	/* immutable after start: no target */
	struct boot_trace *traces;	/* per image, see struct */
	struct readahead *readahead;	/* immutable after start */
	time_t started;			/* immutable */
	const struct frontend_ops *fe_ops; /* immutable */
	struct frontend *fe;		/* immutable after start */
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* with ->lock: stop the checkpointer
					   and the watcher */
	bool stop;			/* protected by ->lock */
	bool aborted;			/* protected by ->lock */
	bool complete;			/* protected by ->lock */
	uint64_t started_ns;		/* immutable */
	double took;			/* protected by ->lock: seconds to
					   completion, frozen then */
	const char *verdict;		/* protected by ->lock: verify result */
	struct progress *prog;		/* protected by ->lock */
	pthread_mutex_t cut_lock;	/* one cut-over at a time; taken
					   before ->lock, never held by a
					   FUSE op but the cut-over's own */
	enum cut_state cut;		/* protected by ->lock */
	struct cutover_result cut_res;	/* protected by ->lock */
	bool unmount_asked;		/* protected by ->lock: the watcher
					   unmounts (after a cut-over) */
	bool restart_asked;		/* protected by ->lock: the restart
					   command's request */
	uint64_t guest_wait_ms;		/* immutable once serving: the
					   takeover this server made */
};

static bool stopping(struct mount *m)
{
	bool stop;

	pthread_mutex_lock(&m->lock);
	stop = m->stop;
	pthread_mutex_unlock(&m->lock);
	return stop;
}

/* Waits for the command, but not past an unmount: it is the user's. */
static void run_on_complete(struct mount *m, const char *cmd)
{
	struct timespec ts = { 0, 50000000 };
	pid_t pid = fork();
	pid_t got;
	int status;

	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	if (pid < 0) {
		log_err("mount: cannot run --on-complete '%s': %s", cmd,
			strerror(errno));
		return;
	}
	while (!(got = waitpid(pid, &status, WNOHANG))) {
		if (stopping(m)) {
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
 * Save image @i's boot trace: the chunks its guest read first.  At
 * unmount (@final) before the guest ran trace_time_s, only if it is not
 * shorter than the trace it started with: a short session must not
 * replace a whole boot.
 */
static void save_trace(struct mount *m, unsigned int i, bool final)
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

static void ask_unmount(struct mount *m)
{
	pthread_mutex_lock(&m->lock);
	m->unmount_asked = true;
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
static int control(void *arg, const char *name, const char *value,
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

/*
 * After the control request's reply: a cut-over done ends the mount; a
 * restart ends this server at once, as a crash would (every request is
 * safe to answer twice, and the guest journal holds what it acked): the
 * supervisor starts the binary now installed in its place.
 */
/* Owners and modes set through the mount, for the next server. */
static void memo_out(void *arg, const char *text)
{
	struct mount *m = arg;
	int ret = sup_client_set_memo(m->conf->sup, text);

	if (ret)
		log_warn("mount: cannot leave the images' owners to the next "
			 "server: %s", strerror(-ret));
}

static void control_done(void *arg)
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
static bool auto_cutover(struct mount *m, bool *told)
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
	if (m->conf->on_complete && !stopping(m))
		run_on_complete(m, m->conf->on_complete);
	if (!ret)
		ask_unmount(m);
	return false;
}

static void *checkpointer(void *arg)
{
	struct mount *m = arg;
	struct timespec ts;
	bool announce = false;
	bool cut_pending = false;
	bool told = false;

	pthread_mutex_lock(&m->lock);
	while (!m->stop) {
		bool done = true;

		pthread_mutex_unlock(&m->lock);
		/* A SIGHUP's reopen, even while nothing is logged. */
		log_reopen_if_asked();
		for (unsigned int i = 0; i < m->nimages; i++) {
			struct image_stats st;

			image_checkpoint(m->images[i]);
			save_trace(m, i, false);
			image_get_stats(m->images[i], &st);
			done &= st.complete;
			pthread_mutex_lock(&m->lock);
			if (!m->complete)
				m->prog[i].rate =
					0.7 * m->prog[i].rate +
					0.3 * (double)(st.present_bytes -
						       m->prog[i].last_present);
			m->prog[i].last_present = st.present_bytes;
			pthread_mutex_unlock(&m->lock);
		}
		pthread_mutex_lock(&m->lock);
		if (done && !m->complete && !m->conf->read_only) {
			m->complete = true;
			announce = true;
			/* Frozen: how long it took, and the average rate. */
			m->took = (now_ns() - m->started_ns) / 1e9;
			for (unsigned int i = 0; i < m->nimages; i++)
				m->prog[i].rate =
					m->took > 0 ?
					(double)(image_size(m->images[i]) -
						 m->prog[i].start_present) /
						m->took : 0;
		}
		pthread_mutex_unlock(&m->lock);
		if (announce) {
			announce = false;
			for (unsigned int i = 0; i < m->nimages; i++)
				image_flush(m->images[i]);
			log_info("mount: restore complete: every block of "
				 "every disk is in its target");
			if (m->conf->verify) {
				uint64_t bad = 0;
				uint64_t total = 0;
				int vret = 0;

				for (unsigned int i = 0; i < m->nimages; i++) {
					vret |= image_verify(m->images[i], &bad);
					total += bad;
				}
				if (stopping(m))
					break;	/* unmounted: no verdict */
				pthread_mutex_lock(&m->lock);
				m->verdict = vret || total ? "verify-failed" :
							     "verified";
				pthread_mutex_unlock(&m->lock);
				if (vret || total)
					log_err("mount: cannot verify the "
						"restore: %llu chunks differ "
						"from the backup",
						(unsigned long long)total);
				else
					log_info("mount: verified: every chunk "
						 "the guest did not write "
						 "equals the backup");
			}
			cut_pending = m->conf->cutover_qmp ||
				      m->conf->cutover_libvirt;
			if (!cut_pending && m->conf->on_complete &&
			    !stopping(m))
				run_on_complete(m, m->conf->on_complete);
		}
		if (cut_pending && !stopping(m))
			cut_pending = auto_cutover(m, &told);
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

static size_t prefetch_total(const struct mount *m)
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
		.prefetch_chunks = prefetch_total(m),
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

static uint64_t max_chunk(const struct mount *m)
{
	uint64_t cs = 1;

	for (unsigned int i = 0; i < m->nimages; i++)
		cs = MAX(cs, image_chunk_size(m->images[i]));
	return cs;
}

static char *archive_stem(const char *archive)
{
	char *s = xstrdup(archive);
	char *dot = strstr(s, ".img.fidx");

	if (dot)
		*dot = '\0';
	return s;
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
static const char *test_fault(const struct mount *m, uint64_t *checks)
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

static int open_images(struct mount *m)
{
	const struct mount_conf *c = m->conf;
	const struct snap_manifest *man = repo_snapshot_manifest(c->snap);
	const char **names;
	unsigned int n = 0;
	int ret = 0;

	names = xcalloc(snap_manifest_nfiles(man) + c->narchives + 1,
			sizeof(*names));
	if (c->narchives) {
		for (unsigned int i = 0; i < c->narchives; i++)
			names[n++] = c->archives[i];
	} else {
		for (size_t i = 0; i < snap_manifest_nfiles(man); i++) {
			const char *f = snap_manifest_file(man, i)->filename;
			size_t len = strlen(f);

			if (len > 9 && !strcmp(f + len - 9, ".img.fidx"))
				names[n++] = f;
		}
	}
	if (!n) {
		log_err("mount: cannot mount '%s': it has no disk archives",
			repo_snapshot_path(c->snap));
		ret = -ENOENT;
		goto out;
	}
	if (c->trace_file && n != 1) {
		log_err("mount: --prefetch-trace names one trace but the "
			"snapshot has %u disks: use --archive or --trace-dir",
			n);
		ret = -EINVAL;
		goto out;
	}
	if (c->target && n != 1) {
		log_err("mount: --target names one target but the snapshot has "
			"%u disks: use --archive or --target-dir", n);
		ret = -EINVAL;
		goto out;
	}
	m->images = xcalloc(n, sizeof(*m->images));
	m->archives = xcalloc(n, sizeof(*m->archives));
	m->prog = xcalloc(n, sizeof(*m->prog));
	m->traces = xcalloc(n, sizeof(*m->traces));
	for (unsigned int i = 0; i < n; i++) {
		struct repo_archive *a = NULL;
		struct image_conf ic = { 0 };
		char *stem;
		char *tpath = NULL;
		char *fname;

		ret = repo_archive_open(c->snap, names[i], &a);
		if (!ret && c->nseeds && !m->seeds)
			ret = open_seeds(m, a);
		if (ret) {
			repo_archive_close(a);
			goto out;
		}
		stem = archive_stem(repo_archive_name(a));
		fname = xasprintf("%s.img", stem);
		if (c->target)
			tpath = xstrdup(c->target);
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
		test_fault(m, &ic.fault_checks);
		ret = image_open(&ic, &m->images[i]);
		free(stem);
		free(fname);
		free(tpath);
		if (ret) {
			repo_archive_close(a);
			goto out;
		}
		m->archives[i] = a;
		open_trace(m, i);
		{
			struct image_stats st;

			/* A resumed mount's rate counts this mount only. */
			image_get_stats(m->images[i], &st);
			m->prog[i].start_present = st.present_bytes;
			m->prog[i].last_present = st.present_bytes;
		}
		m->nimages++;
	}
out:
	free(names);
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
	const uint64_t **prefetch = NULL;
	size_t *nprefetch = NULL;
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
	ret = open_images(&m);
	if (ret)
		goto out;
	rc.images = m.images;
	rc.nimages = m.nimages;
	/* Chunks read ahead must not push each other out of the cache. */
	rc.window_bytes = MIN(32ull << 20, conf->cache_size / 4);
	ret = readahead_start(&rc, &m.readahead);
	if (ret)
		goto out;
	fc.mountpoint = conf->mountpoint;
	fc.sup = conf->sup;
	fc.images = m.images;
	fc.nimages = m.nimages;
	fc.allow_other = conf->allow_other;
	fc.read_only = conf->read_only;
	fc.options = conf->fuse_opts;
	fc.status = status_json;
	fc.status_arg = &m;
	fc.control = control;
	fc.control_done = control_done;
	fc.control_arg = &m;
	fc.memo = sup_client_memo(conf->sup);
	fc.memo_out = memo_out;
	fc.fault = test_fault(&m, &checks);
	ret = start_frontend(&m, &fc);
	if (ret)
		goto out;
	prefetch = xcalloc(m.nimages, sizeof(*prefetch));
	nprefetch = xcalloc(m.nimages, sizeof(*nprefetch));
	for (unsigned int i = 0; i < m.nimages; i++) {
		prefetch[i] = m.traces[i].prefetch;
		nprefetch[i] = m.traces[i].nprefetch;
	}
	sc.prefetch = prefetch;
	sc.nprefetch = nprefetch;
	if (!conf->no_stream && !conf->read_only) {
		sc.images = m.images;
		sc.nimages = m.nimages;
		/*
		 * Each stream worker may hold a decoded chunk and the raw
		 * one in flight: at most half the cache budget goes to
		 * them, so that memory follows --cache-size (16 workers at
		 * the default 256 MiB, 4 at 64 MiB).
		 */
		sc.threads = MIN(conf->connections,
				 MAX(2u, (unsigned int)(conf->cache_size /
							(8 * max_chunk(&m)) * 2)));
		sc.on_done = wake_checkpointer;
		sc.done_arg = &m;
		sc.seeds = m.seeds;
		ret = stream_start(&sc, &m.stream);
		if (ret)
			goto out;
	} else if (prefetch_total(&m)) {
		/* No copy into a target: warm the cache, half of it. */
		sc.images = m.images;
		sc.nimages = m.nimages;
		sc.threads = 4;
		sc.cache_only = true;
		sc.cache_only_max = conf->cache_size / 2 / max_chunk(&m);
		ret = stream_start(&sc, &m.prefetcher);
		if (ret)
			goto out;
	}
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
	stream_stop(m.stream);
	stream_stop(m.prefetcher);
	for (unsigned int i = 0; ran && i < m.nimages; i++)
		save_trace(&m, i, true);
	if (m.fe)
		m.fe_ops->free(m.fe);
	readahead_stop(m.readahead);
	for (unsigned int i = 0; i < m.nimages; i++) {
		/* Never served: what this mount created goes again. */
		if (ran)
			image_close(m.images[i]);
		else
			image_discard(m.images[i]);
		repo_archive_close(m.archives[i]);
	}
	for (unsigned int i = 0; m.traces && i < m.nimages; i++) {
		free(m.traces[i].path);
		free(m.traces[i].prefetch);
	}
	free(m.traces);
	reuse_seeds_close(m.seeds);
	free(prefetch);
	free(nprefetch);
	free(m.images);
	free(m.archives);
	free(m.prog);
	ccache_free(m.cache);
	pthread_cond_destroy(&m.wake);
	pthread_mutex_destroy(&m.cut_lock);
	pthread_mutex_destroy(&m.lock);
	if (!ret)
		log_info("mount: %s unmounted, state committed",
			 conf->mountpoint);
	return ret;
}
