/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * restore and verify.
 *
 * restore plans one work item per distinct digest, ordered by the
 * digest's first position, so that a chunk used at several offsets is
 * fetched and decoded once and written everywhere it belongs.  Worker
 * threads take items through an atomic cursor; each owns a chunk-sized
 * buffer; they share nothing else but the error flag and the state.
 * Zero chunks are never fetched: a fresh file target gets a hole, a
 * block device gets BLKZEROOUT unless --target-zeroed says it already
 * reads zeros, a resumed file gets its range punched.
 *
 * --in-place: each position is first read back from the target and
 * hashed; one that has the item's digest is left alone, and its bytes
 * (verified) serve the item's other positions.  Then seeds, then the
 * store (reuse.h).
 *
 * Progress: every chunk position written is marked in an allocation
 * state (ovl.h, one block per chunk), which the main thread commits once
 * a second while the workers run; a commit syncs the target before the
 * state says a chunk is in, so after kill -9 or an outage the same
 * command resumes from what is durable.  The state goes once the restore
 * is complete (a file renamed into place, a device synced).
 *
 * Whole chunks are written with O_DIRECT where the target takes it: a
 * restore reads nothing back, so the page cache only costs a copy and
 * the writeback of a whole disk evicting everything else (a 1 GiB image
 * from a local datastore to ext4: 880 to 910 MiB/s, 580 to 850 buffered).
 * Tails that are not whole pages, and file systems that refuse O_DIRECT
 * (tmpfs), go through the page cache (util: pwrite_split).
 *
 * Standard output ("-") is written in order: workers fetch into a ring
 * of chunk buffers, the main thread writes the ring's head as it fills.
 *
 * Target writes are asynchronous (writer.h): a worker hands its decoded
 * chunk to the writer's queue and goes on with the next item, so the
 * fetches and decodes never wait for the target; the writer marks a
 * position in the state once it is written.
 *
 * Thread inventory: restore_run() starts conf->threads workers and the
 * writer's threads and joins them all before it returns; the main
 * thread commits meanwhile.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include "chunk.h"
#include "excl.h"
#include "log.h"
#include "ovl.h"
#include "restore.h"
#include "restore_i.h"
#include "target.h"
#include "util.h"
#include "writer.h"
#include "banned.h"

/*
 * Target writes: chunks decoded ahead of the writer, and its threads
 * (writer.h).  Two writers overlap one write's submission with another's
 * completion; more gain nothing on one file.
 */
#define WRITE_QUEUE 4
#define PARK_MS 20	/* a parked worker looks at the window again */
#define WRITERS 2

/* A mount unmounted a moment ago is gone within about a second. */
#define BUSY_HINT "; unmount that mount or wait for that restore"

struct item {
	uint64_t first;		/* index of the first position */
	uint64_t npos;
	uint64_t *pos;		/* points into plan->positions */
};

struct plan {
	struct item *items;
	uint64_t nitems;
	uint64_t *positions;	/* all chunk indexes, grouped by digest */
};

struct job {
	const struct restore_conf *conf;    /* immutable */
	const struct snap_fidx *fidx;	    /* immutable */
	struct plan plan;		    /* immutable once workers run */
	struct target *hold;		    /* immutable: an existing file
					       TARGET, locked till replaced */
	struct target *tgt;		    /* immutable: what is written */
	struct ovl *ovl;		    /* own locking */
	char *partial;			    /* immutable: file targets */
	char *state;			    /* immutable */
	int fd;				    /* immutable */
	int dfd;			    /* immutable: O_DIRECT, or -1 */
	bool direct_off;		    /* atomic: dfd refused a write */
	bool is_blk;			    /* immutable */
	bool replace;			    /* immutable: TARGET was a file */
	bool fresh_file;		    /* immutable: a new sparse file */
	struct writer *writer;		    /* own locking: the target's
					       writes */
	uint64_t next;			    /* atomic: next item */
	unsigned int ids;		    /* atomic: workers numbered */
	unsigned int ncpu;		    /* immutable: decodes at once */
	int error;			    /* atomic: first -errno */
	uint64_t fetched_bytes;		    /* atomic */
	uint64_t zero_chunks;		    /* atomic */
	uint64_t target_chunks;		    /* atomic: in place already */
	uint64_t seed_chunks;		    /* atomic */
	uint64_t done_before;		    /* immutable: resumed chunks */
	pthread_mutex_t lock;
	pthread_cond_t cond;		    /* with ->lock: a worker ended */
	unsigned int running;		    /* protected by ->lock */
	struct progress *progress;	    /* the main thread's */
};

static int cmp_pos(const void *a, const void *b, void *ctx)
{
	const struct snap_fidx *f = ctx;
	uint64_t x = *(const uint64_t *)a;
	uint64_t y = *(const uint64_t *)b;
	int c = memcmp(snap_fidx_digest(f, x), snap_fidx_digest(f, y), 32);

	if (c)
		return c;
	return (x > y) - (x < y);
}

static int cmp_item(const void *a, const void *b)
{
	const struct item *x = a;
	const struct item *y = b;

	return (x->first > y->first) - (x->first < y->first);
}

static int plan_build(const struct snap_fidx *f, struct plan *p)
{
	uint64_t n = snap_fidx_count(f);
	uint64_t i;
	uint64_t j;

	p->positions = calloc(n, sizeof(*p->positions));
	p->items = calloc(n, sizeof(*p->items));
	if (!p->positions || !p->items)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		p->positions[i] = i;
	qsort_r(p->positions, n, sizeof(*p->positions), cmp_pos, (void *)f);
	p->nitems = 0;
	for (i = 0; i < n; i = j) {
		struct item *it = &p->items[p->nitems++];

		for (j = i + 1; j < n &&
				!memcmp(snap_fidx_digest(f, p->positions[i]),
					snap_fidx_digest(f, p->positions[j]),
					32);
		     j++)
			;
		it->first = p->positions[i];
		it->pos = &p->positions[i];
		it->npos = j - i;
	}
	qsort(p->items, p->nitems, sizeof(*p->items), cmp_item);
	return 0;
}

static void plan_free(struct plan *p)
{
	free(p->items);
	free(p->positions);
}

static bool is_done(const struct job *job, uint64_t i)
{
	return ovl_chunk_state(job->ovl, i) == OVL_PRESENT;
}

/* Chunk position @i is written: the next commit says so. */
static int mark_done(struct job *job, uint64_t i)
{
	int ret;

	ovl_lock_chunk(job->ovl, i);
	ret = ovl_mark_present(job->ovl, i, 1);
	ovl_unlock_chunk(job->ovl, i);
	return ret;
}

static int zero_chunk(struct job *job, uint64_t off, uint64_t len)
{
	/* A fresh file reads zeros already: leave a hole. */
	if (job->fresh_file || (job->is_blk && job->conf->target_zeroed))
		return 0;
	return zero_range(job->fd, job->is_blk, off, len);
}

static int write_err(struct job *job, uint64_t off, int ret)
{
	log_err("restore: cannot write '%s' at offset %llu: %s",
		job->partial ? job->partial : job->conf->target,
		(unsigned long long)off, strerror(-ret));
	return ret;
}

/*
 * Chunk @i's bytes into @buf: from a seed (verified; 1), or fetched
 * (0); -errno.
 */
int restore_read_chunk(const struct restore_conf *c, uint64_t i, uint8_t *buf)
{
	const struct snap_fidx *f = repo_archive_fidx(c->archive);

	if (c->seeds &&
	    !reuse_seeds_read(c->seeds, snap_fidx_digest(f, i), buf,
			      snap_fidx_chunk_len(f, i)))
		return 1;
	return repo_archive_read_chunk(c->archive, i, STORE_PRIO_DEMAND, buf);
}

/* --in-place: does the target hold position @i already?  Its bytes are
 * then in *@chk. */
static bool in_place(struct job *job, const struct item *it, uint64_t i,
		     uint8_t *chk)
{
	uint64_t len = snap_fidx_chunk_len(job->fidx, i);
	uint8_t d[32];

	if (!job->conf->in_place ||
	    reuse_read_digest(job->fd, job->dfd, &job->direct_off,
			      i * snap_fidx_chunk_size(job->fidx),
			      len, repo_archive_key(job->conf->archive), chk,
			      d))
		return false;	/* unreadable: written like any other */
	return !memcmp(d, snap_fidx_digest(job->fidx, it->first), 32);
}

static void set_error(int *error, int ret)
{
	int zero = 0;

	__atomic_compare_exchange_n(error, &zero, ret, false, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
}

static uint8_t *writer_buf(void *arg)
{
	return writer_get(arg);
}

/*
 * Chunk @i's bytes into *@buf (a writer's buffer, taken here if NULL):
 * from a seed, or fetched and decoded into a buffer taken only once the
 * bytes are here, so a request waiting on the network holds none.  1
 * (seed), 0 (fetched) or -errno.
 */
static int read_chunk(struct job *job, uint64_t i, uint8_t **buf)
{
	const struct restore_conf *c = job->conf;

	if (c->seeds) {
		if (!*buf)
			*buf = writer_get(job->writer);
		return restore_read_chunk(c, i, *buf);
	}
	return repo_archive_read_chunk_into(c->archive, i, STORE_PRIO_DEMAND,
					    writer_buf, job->writer, buf);
}

/*
 * Item @it: positions in place or zero are done here; the chunk's bytes
 * go to the writer with the positions still to write (write_item).
 * @chk is this worker's pair of buffers for --in-place reads: the first
 * position found in place leaves its verified bytes in chk[1].
 */
static int do_item(struct job *job, const struct item *it, uint8_t *chk[2])
{
	const struct repo_archive *a = job->conf->archive;
	uint64_t cs = snap_fidx_chunk_size(job->fidx);
	uint64_t len = snap_fidx_chunk_len(job->fidx, it->first);
	bool zero = repo_archive_is_zero(a, it->first);
	bool verified = false;	/* chk[1] holds the item's bytes */
	uint8_t *buf = NULL;
	int ret = 0;

	for (uint64_t k = 0; k < it->npos && !ret; k++) {
		uint64_t i = it->pos[k];

		if (is_done(job, i))
			continue;	/* a resumed restore wrote it */
		if (in_place(job, it, i, chk[0])) {
			__atomic_add_fetch(&job->target_chunks, 1,
					   __ATOMIC_RELAXED);
			if (!verified) {
				uint8_t *t = chk[0];

				chk[0] = chk[1];
				chk[1] = t;
				verified = true;
			}
		} else if (zero) {
			__atomic_add_fetch(&job->zero_chunks, 1,
					   __ATOMIC_RELAXED);
			ret = zero_chunk(job, i * cs, len);
			if (ret)
				ret = write_err(job, i * cs, ret);
		} else {
			if (!buf && verified) {
				/* Verified bytes: the other positions' too. */
				buf = writer_get(job->writer);
				memcpy(buf, chk[1], len);
			} else if (!buf) {
				ret = read_chunk(job, it->first, &buf);
				if (ret < 0)
					break;
				__atomic_add_fetch(ret ? &job->seed_chunks :
							 &job->fetched_bytes,
						   ret ? 1 : len,
						   __ATOMIC_RELAXED);
				ret = 0;
			}
			continue;	/* the writer writes it */
		}
		if (!ret)
			ret = mark_done(job, i);
	}
	if (buf && !ret) {
		writer_submit(job->writer, buf, (void *)it);
		buf = NULL;
	}
	if (buf)
		writer_put(job->writer, buf);
	return ret;
}

/* The writer's thread: every position of item @arg not yet done gets
 * @buf (writer.h). */
static int write_item(void *ctx, void *buf, void *arg)
{
	struct job *job = ctx;
	const struct item *it = arg;
	uint64_t cs = snap_fidx_chunk_size(job->fidx);
	int ret = 0;

	/* Stopping: what is queued stays unwritten (and unmarked). */
	if (__atomic_load_n(&job->error, __ATOMIC_RELAXED))
		return 0;
	for (uint64_t k = 0; k < it->npos && !ret; k++) {
		uint64_t i = it->pos[k];

		if (is_done(job, i))
			continue;
		ret = pwrite_split(job->fd, job->dfd, &job->direct_off, buf,
				   snap_fidx_chunk_len(job->fidx, i), i * cs);
		if (ret)
			ret = write_err(job, i * cs, ret);
		else
			ret = mark_done(job, i);
	}
	if (ret)
		set_error(&job->error, ret);
	return ret;
}

/*
 * Worker @me waits while more than the transport's window and a decode
 * per core are busy: threads are started for the largest window, and
 * those beyond the current one would only queue requests (and hold
 * their thread's share of the CPU and memory).
 */
static bool parked(struct job *job, unsigned int me)
{
	unsigned int w = repo_archive_window(job->conf->archive);

	return w && me >= w + job->ncpu &&
	       __atomic_load_n(&job->next, __ATOMIC_RELAXED) <
		       job->plan.nitems;
}

static void *worker(void *arg)
{
	struct job *job = arg;
	unsigned int me = __atomic_fetch_add(&job->ids, 1, __ATOMIC_RELAXED);
	void *chk[2] = { NULL, NULL };
	int ret = 0;

	thread_name("lm-restore");
	/* --in-place reads the target with O_DIRECT: aligned buffers. */
	for (int b = 0; b < 2 && job->conf->in_place && !ret; b++)
		if (posix_memalign(&chk[b], DIRECT_ALIGN,
				   snap_fidx_chunk_size(job->fidx)))
			ret = -ENOMEM;
	while (!ret && !__atomic_load_n(&job->error, __ATOMIC_RELAXED)) {
		uint64_t k;

		if (parked(job, me)) {
			sleep_ms(PARK_MS);
			continue;
		}
		k = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
		if (k >= job->plan.nitems)
			break;
		ret = do_item(job, &job->plan.items[k], (uint8_t **)chk);
	}
	/* -ECANCELED follows another worker's failure, which says why. */
	if (ret && ret != -ECANCELED)
		set_error(&job->error, ret);
	free(chk[0]);
	free(chk[1]);
	pthread_mutex_lock(&job->lock);
	job->running--;
	pthread_cond_signal(&job->cond);
	pthread_mutex_unlock(&job->lock);
	return NULL;
}

/* ---- what TARGET is, and may it be written ---- */

enum kind {
	K_NEW,		/* nothing there: a new file */
	K_FILE,		/* an existing regular file */
	K_BLK,		/* a block device (or a symlink to one) */
};

/* Refuse what restore must never write or replace; logged. */
static int classify(const char *path, enum kind *kind)
{
	char *abs = abs_path(path);
	bool in_dev = !strncmp(abs, "/dev/", 5);
	const char *what = NULL;
	char link[PATH_MAX];
	struct stat st;
	ssize_t n;
	int ret = 0;

	if (lstat(path, &st) < 0) {
		if (errno != ENOENT) {
			ret = -errno;
			log_err("restore: cannot use '%s': %s", path,
				strerror(errno));
		} else if (in_dev) {
			log_err("restore: cannot use '%s': no such block "
				"device", path);
			ret = -ENOENT;
		} else {
			*kind = K_NEW;
		}
		goto out;
	}
	if (S_ISLNK(st.st_mode)) {
		/* /dev/vg0/lv, /dev/disk/by-id/...: the device itself. */
		if (!stat(path, &st) && S_ISBLK(st.st_mode)) {
			*kind = K_BLK;
			goto out;
		}
		n = readlink(path, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = '\0';
		log_err("restore: cannot use '%s': a symbolic link to '%s'; "
			"name the file itself (a link is never replaced)%s",
			path, link, strncmp(link, "/proc/self/fd/", 14) ? "" :
			", or '-' for standard output");
		ret = -ELOOP;
		goto out;
	}
	if (S_ISBLK(st.st_mode))
		*kind = K_BLK;
	else if (S_ISREG(st.st_mode) && !in_dev)
		*kind = K_FILE;
	else if (S_ISREG(st.st_mode))
		what = "a file under /dev but not a block device";
	else if (S_ISDIR(st.st_mode))
		what = "a directory";
	else if (S_ISFIFO(st.st_mode))
		what = "a FIFO; to write into a pipe, give '-' and redirect "
		       "standard output";
	else if (S_ISSOCK(st.st_mode))
		what = "a socket";
	else if (S_ISCHR(st.st_mode))
		what = "a character device; '-' writes to standard output";
	else
		what = "not a file or block device";
	if (what) {
		log_err("restore: cannot use '%s': %s", path, what);
		ret = -EINVAL;
	}
out:
	free(abs);
	return ret;
}

static int refuse_data(const char *path, struct target *t)
{
	uint64_t where = 0;
	int ret;

	ret = target_find_data(t, &where);
	if (ret < 0) {
		log_err("restore: cannot read '%s': %s", path, strerror(-ret));
		return ret;
	}
	if (!ret)
		return 0;
	if (target_is_blk(t))
		log_err("restore: cannot use '%s': the device holds data "
			"(non-zero bytes at offset %llu); give --in-place if "
			"it holds an older version of this disk (only what "
			"differs is fetched and written), --overwrite to "
			"restore over it all", path, (unsigned long long)where);
	else
		log_err("restore: cannot use '%s': it holds data (a file of "
			"%llu bytes); give --in-place if it is an older "
			"version of this disk (only what differs is fetched "
			"and written, in the file itself), --overwrite to "
			"replace it once the restore is complete", path,
			(unsigned long long)target_size(t));
	return -EEXIST;
}

/*
 * Open the progress state: resume it (0, *@resumed) if it describes
 * this backup and target, else start a fresh one, after @fresh_ok()
 * allows it.  A stale state is replaced.
 */
static int open_state(struct job *job, bool mark, bool *resumed)
{
	struct ovl_conf oc = {
		.state_path = job->state,
		.target_fd = job->fd,
		.size = snap_fidx_size(job->fidx),
		.chunk_size = snap_fidx_chunk_size(job->fidx),
		.block_size = snap_fidx_chunk_size(job->fidx),
		.lock_wait_ms = LOCK_WAIT_MS,
		.probe = true,
	};
	int ret;

	memcpy(oc.index_csum, snap_fidx_csum(job->fidx), 32);
	ret = target_identity(job->tgt, mark, oc.target_id,
			      sizeof(oc.target_id));
	if (ret)
		return ret;
	ret = ovl_open(&oc, &job->ovl);
	*resumed = !ret && !ovl_is_new(job->ovl);
	return ret;
}

/* The state of an earlier run for this target, or why it cannot be. */
static int try_resume(struct job *job, bool *resumed)
{
	int ret;

	*resumed = false;
	if (access(job->state, F_OK))
		return 0;
	ret = open_state(job, false, resumed);
	if (ret == -ESTALE || ret == -EBADMSG) {
		log_info("restore: '%s' is from another restore: starting "
			 "over", job->state);
		unlink(job->state);
		return 0;
	}
	return ret;
}

/*
 * --in-place onto a file: the file itself is written, no copy beside
 * it; it must be an older version of this disk, so of its size.
 */
static int open_in_place(struct job *job, enum kind kind)
{
	const struct restore_conf *c = job->conf;
	uint64_t size = snap_fidx_size(job->fidx);
	struct target_conf tc = {
		.path = c->target,
		.who = "restore",
		.busy_hint = BUSY_HINT,
		.lock_wait_ms = LOCK_WAIT_MS,
	};
	bool resumed = false;
	int ret;

	if (kind != K_FILE) {
		log_err("restore: cannot restore in place onto '%s': there is "
			"nothing there", c->target);
		return -ENOENT;
	}
	ret = target_open(&tc, &job->tgt);
	if (ret)
		return ret;
	job->fd = target_fd(job->tgt);
	if (target_size(job->tgt) != size) {
		log_err("restore: cannot restore in place onto '%s': it has "
			"%llu bytes, the disk %llu (not an older version of "
			"this disk)", c->target,
			(unsigned long long)target_size(job->tgt),
			(unsigned long long)size);
		return -EINVAL;
	}
	job->state = xasprintf("%s.restore.lmstate", c->target);
	ret = try_resume(job, &resumed);
	if (ret || resumed)
		return ret;
	return open_state(job, true, &resumed);
}

static int open_file(struct job *job, enum kind kind)
{
	const struct restore_conf *c = job->conf;
	uint64_t size = snap_fidx_size(job->fidx);
	struct target_conf tc = {
		.who = "restore",
		.busy_hint = BUSY_HINT,
		.lock_wait_ms = LOCK_WAIT_MS,
	};
	bool resumed = false;
	struct stat st;
	int ret;

	if (c->in_place)
		return open_in_place(job, kind);
	job->replace = kind == K_FILE;
	if (kind == K_FILE) {
		/* Locked until the finished copy is renamed over it. */
		tc.path = c->target;
		tc.read_only = true;
		ret = target_open(&tc, &job->hold);
		if (!ret && !c->overwrite)
			ret = refuse_data(c->target, job->hold);
		if (ret)
			return ret;
	}
	job->partial = xasprintf("%s.partial", c->target);
	job->state = xasprintf("%s.lmstate", job->partial);
	if (!lstat(job->partial, &st) && !S_ISREG(st.st_mode)) {
		log_err("restore: cannot use '%s': it is in the way and not a "
			"file", job->partial);
		return -EEXIST;
	}
	tc.path = job->partial;
	tc.read_only = false;
	tc.create = true;
	ret = target_open(&tc, &job->tgt);
	if (ret)
		return ret;
	job->fd = target_fd(job->tgt);
	if (!target_created(job->tgt)) {
		ret = try_resume(job, &resumed);
		if (ret)
			return ret;
		if (!resumed && !target_is_marked(job->tgt) &&
		    target_size(job->tgt)) {
			log_err("restore: cannot use '%s': it exists and was "
				"not left by a restore; remove it", job->partial);
			return -EEXIST;
		}
	}
	if (resumed) {
		if (target_size(job->tgt) != size) {
			log_err("restore: cannot resume '%s': it has %llu "
				"bytes, not %llu; remove it and '%s' to start "
				"over", job->partial,
				(unsigned long long)target_size(job->tgt),
				(unsigned long long)size, job->state);
			return -ESTALE;
		}
		return 0;
	}
	/*
	 * Ours and not resumable, or new: start from an empty file.  A
	 * state left without its file is an orphan of ours (we hold the
	 * file's lock, which every owner of that state takes first).
	 */
	unlink(job->state);
	if (ftruncate(job->fd, 0) < 0 || ftruncate(job->fd, size) < 0) {
		ret = -errno;
		log_err("restore: cannot size '%s': %s", job->partial,
			strerror(errno));
		return ret;
	}
	job->fresh_file = true;
	return open_state(job, true, &resumed);
}

static int open_device(struct job *job)
{
	const struct restore_conf *c = job->conf;
	struct target_conf tc = {
		.path = c->target,
		.who = "restore",
		.busy_hint = BUSY_HINT,
		.lock_wait_ms = LOCK_WAIT_MS,
		.size = snap_fidx_size(job->fidx),
	};
	char name[256];
	bool resumed = false;
	int ret;

	ret = target_open(&tc, &job->tgt);
	if (ret)
		return ret;
	job->fd = target_fd(job->tgt);
	job->is_blk = true;
	target_state_name(job->tgt, name, sizeof(name));
	ret = mkdir_p(c->state_dir, 0700);
	if (ret) {
		log_err("restore: cannot create '%s': %s", c->state_dir,
			strerror(-ret));
		return ret;
	}
	job->state = xasprintf("%s/restore-%s", c->state_dir, name);
	ret = try_resume(job, &resumed);
	if (ret || resumed)
		return ret;
	if (!c->overwrite && !c->in_place) {
		ret = refuse_data(c->target, job->tgt);
		if (ret)
			return ret;
	}
	return open_state(job, true, &resumed);
}

/* ---- running it ---- */

static uint64_t chunks_done(const struct job *job)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < snap_fidx_count(job->fidx); i++)
		n += is_done(job, i);
	return n;
}

/* Workers run; commit once a second meanwhile, then join them. */
static int run_workers(struct job *job, unsigned int nthreads)
{
	/* A buffer for each decode at once, each write queued or running,
	 * and each seed read (seeds are read into a buffer taken first). */
	unsigned int nbufs = job->ncpu + WRITE_QUEUE + WRITERS +
			     (job->conf->seeds ? nthreads : 0);
	pthread_t *tids;
	struct timespec ts;
	unsigned int started;
	int ret;

	ret = writer_new(snap_fidx_chunk_size(job->fidx), nbufs, WRITERS,
			 write_item, job, &job->writer);
	if (ret) {
		log_err("restore: cannot start the target's writer: %s",
			strerror(-ret));
		return ret;
	}
	tids = xcalloc(nthreads, sizeof(*tids));
	pthread_mutex_lock(&job->lock);
	job->running = nthreads;
	pthread_mutex_unlock(&job->lock);
	started = threads_start(tids, nthreads, worker, job);
	pthread_mutex_lock(&job->lock);
	job->running -= nthreads - started;
	/* Progress four times a second, a commit every fourth time. */
	for (unsigned int tick = 1; job->running; tick++) {
		deadline_ms(CLOCK_MONOTONIC, 250, &ts);
		if (pthread_cond_timedwait(&job->cond, &job->lock, &ts) !=
		    ETIMEDOUT)
			continue;
		pthread_mutex_unlock(&job->lock);
		progress_update(job->progress, ovl_present_bytes(job->ovl));
		if (tick % 4 == 0) {
			ret = ovl_commit(job->ovl);
			if (ret)
				set_error(&job->error, ret);
		}
		pthread_mutex_lock(&job->lock);
	}
	pthread_mutex_unlock(&job->lock);
	threads_join(tids, started);
	free(tids);
	ret = writer_drain(job->writer);
	if (ret)
		set_error(&job->error, ret);
	writer_free(job->writer);
	job->writer = NULL;
	if (!started) {
		log_err("restore: cannot start worker threads");
		return -EAGAIN;
	}
	return job->error;
}

/*
 * Errors that running the same command again can get past: the store
 * gave up (-EIO), the target is full.  Not a bad or missing chunk.
 */
static bool resumable(int err)
{
	return err == -EIO || err == -ENOSPC || err == -EDQUOT;
}

/* The restore stopped: keep what a rerun can use, drop the rest. */
static void stopped(struct job *job, int err)
{
	uint64_t n = snap_fidx_count(job->fidx);
	uint64_t have;

	if (!job->ovl)
		return;
	/* Only what is durable counts: commit what was written. */
	if (ovl_commit(job->ovl))
		have = 0;
	else
		have = chunks_done(job);
	if (have && (job->is_blk || resumable(err))) {
		log_err("restore: stopped with %llu of %llu chunks in '%s'; "
			"run the same command again to resume",
			(unsigned long long)have, (unsigned long long)n,
			job->partial ? job->partial : job->conf->target);
		return;
	}
	unlink(job->state);
	if (job->partial)
		unlink(job->partial);
}

/* Complete: the target takes its place, the state goes. */
static int finish(struct job *job)
{
	const char *what = job->partial ? job->partial : job->conf->target;
	int ret = 0;

	if (fsync(job->fd) < 0) {
		ret = -errno;
		log_err("restore: cannot sync '%s': %s", what, strerror(errno));
		return ret;
	}
	/* Where there was nothing, something that appeared stays. */
	if (job->partial &&
	    renameat2(AT_FDCWD, job->partial, AT_FDCWD, job->conf->target,
		      job->replace ? 0 : RENAME_NOREPLACE) < 0) {
		ret = -errno;
		if (ret == -EEXIST)
			log_err("restore: cannot rename '%s' to '%s': that "
				"appeared meanwhile; the restore stays in '%s'",
				job->partial, job->conf->target, job->partial);
		else
			log_err("restore: cannot rename '%s' to '%s': %s",
				job->partial, job->conf->target,
				strerror(errno));
		return ret;
	}
	unlink(job->state);
	fsync_parent_dir(job->state);
	if (job->partial)
		fsync_parent_dir(job->conf->target);
	return 0;
}

int restore_run(const struct restore_conf *conf)
{
	struct job job = {
		.conf = conf,
		.fidx = repo_archive_fidx(conf->archive),
		.fd = -1,
		.dfd = -1,
		.ncpu = cpu_count(),
	};
	unsigned int nthreads = conf->threads ? conf->threads : 4;
	uint64_t size = snap_fidx_size(job.fidx);
	uint64_t t0 = now_ns();
	enum kind kind = K_NEW;
	double secs;
	int ret;

	if (!strcmp(conf->target, "-"))
		return restore_stdout(conf);
	repo_archive_stop_on_error(conf->archive);
	pthread_mutex_init(&job.lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&job.cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	ret = classify(conf->target, &kind);
	if (!ret)
		ret = plan_build(job.fidx, &job.plan);
	if (!ret)
		ret = kind == K_BLK ? open_device(&job) : open_file(&job, kind);
	if (ret)
		goto out;
	job.done_before = chunks_done(&job);
	if (job.done_before && !conf->quiet)
		log_info("restore: resuming '%s': %llu of %llu chunks are in "
			 "already", job.partial ? job.partial : conf->target,
			 (unsigned long long)job.done_before,
			 (unsigned long long)snap_fidx_count(job.fidx));
	posix_fadvise(job.fd, 0, 0, POSIX_FADV_DONTNEED);
	job.dfd = open_direct(job.fd, O_RDWR);
	/* Nothing a seed holds is fetched: its index first. */
	if (conf->seeds)
		reuse_seeds_wait(conf->seeds);
	job.progress = progress_start(conf->progress, "restore",
				      repo_archive_name(conf->archive), size,
				      ovl_present_bytes(job.ovl));
	ret = run_workers(&job, nthreads);
	if (!ret)
		ret = finish(&job);
	if (!ret)
		progress_update(job.progress, size);
	progress_end(job.progress, ret);
	if (ret) {
		/* The failure was logged where it happened, once. */
		stopped(&job, ret);
		goto out;
	}
	secs = (now_ns() - t0) / 1e9;
	if (!conf->quiet)
		log_info("restore: %s -> %s: %.1f MiB, %.1f MiB fetched, %llu "
			 "zero chunks, %llu chunks in place, %llu from seeds, "
			 "%.2f s, %.1f MiB/s",
			 repo_archive_name(conf->archive), conf->target,
			 size / 1048576.0, job.fetched_bytes / 1048576.0,
			 (unsigned long long)job.zero_chunks,
			 (unsigned long long)job.target_chunks,
			 (unsigned long long)job.seed_chunks, secs,
			 size / 1048576.0 / (secs > 0 ? secs : 1e-9));
out:
	ovl_free(job.ovl);
	if (job.dfd >= 0)
		close(job.dfd);
	target_close(job.tgt, ret && !job.ovl);
	target_close(job.hold, false);
	plan_free(&job.plan);
	free(job.partial);
	free(job.state);
	pthread_cond_destroy(&job.cond);
	pthread_mutex_destroy(&job.lock);
	return ret;
}
