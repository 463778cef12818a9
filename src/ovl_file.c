/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ovl's files: the state file (header, records, replay up to the first
 * torn record, compaction into a new file) and the guest journal's two
 * files.  Formats, ordering and locking: the top of ovl.c.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "compiler.h"
#include "excl.h"
#include "log.h"
#include "ovl.h"
#include "ovl_i.h"
#include "util.h"
#include "banned.h"

/* ---- the guest journal ---- */

static void vj_header(const struct ovl *o, uint8_t *h)
{
	memset(h, 0, VJ_HDR);
	memcpy(h, VJ_MAGIC, 8);
	memcpy(h + 8, o->boot_id, strlen(o->boot_id));
}

/* Empty journal file @i: just the header of this boot. */
static int vj_reset(struct ovl *o, unsigned int i)
{
	uint8_t h[VJ_HDR];

	vj_header(o, h);
	if (ftruncate(o->vfd[i], 0) < 0 ||
	    pwrite_full(o->vfd[i], h, VJ_HDR, 0))
		return -EIO;
	o->vcount[i] = 0;
	return 0;
}

/* Blocks [first, first + n) of one chunk: present, the guest's. */
static void vj_apply(struct ovl *o, uint64_t c, uint32_t first, uint32_t n)
{
	uint64_t added = 0;

	bit_set(o->guest, c);
	if (!ovl_apply_bits(o, c, first, n, &added) && added)
		__atomic_add_fetch(&o->present_bytes, added,
				   __ATOMIC_RELAXED);
	ovl_note_dirty(o, c);
}

/*
 * Open (creating) journal file @i and replay its records if they are of
 * this boot; anything else is dropped.  Single-threaded open.
 */
static int vj_load(struct ovl *o, unsigned int i)
{
	uint8_t *data = NULL;
	size_t len = 0;
	uint64_t n = 0;
	int ret;

	o->vfd[i] = open(o->vpath[i], O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (o->vfd[i] < 0) {
		ret = -errno;
		log_err("ovl: cannot open '%s': %s", o->vpath[i],
			strerror(errno));
		return ret;
	}
	ret = read_file(o->vpath[i], 1u << 30, &data, &len);
	if (ret)
		goto out;
	if (len >= VJ_HDR && !memcmp(data, VJ_MAGIC, 8) &&
	    !strncmp((char *)data + 8, o->boot_id, 36)) {
		for (size_t off = VJ_HDR; off + VJ_REC <= len; off += VJ_REC) {
			const uint8_t *r = data + off;
			uint64_t c = get64(r);
			uint32_t first = get32(r + 8);
			uint32_t cnt = get32(r + 12);

			if (get32(r + 20) != (uint32_t)crc32(0, r, 20) ||
			    c >= o->nchunks || !cnt ||
			    first >= chunk_blocks(o, c) ||
			    cnt > chunk_blocks(o, c) - first)
				break;	/* torn: the process died here */
			vj_apply(o, c, first, cnt);
			n++;
		}
		if (n)
			log_info("ovl: '%s': %llu guest writes since the last "
				 "commit, from before a restart",
				 o->vpath[i], (unsigned long long)n);
	}
	/* Replayed into the dirty list; the next commit makes them durable. */
	ret = n ? 0 : vj_reset(o, i);
	o->vcount[i] = n;
out:
	free(data);
	return ret;
}

/* Append a record of [first, first + n) (one chunk) to the active file. */
static int vj_append(struct ovl *o, uint64_t c, uint32_t first, uint32_t n)
{
	uint8_t r[VJ_REC] = { 0 };
	unsigned int i;
	int ret;

	put64(r, c);
	put32(r + 8, first);
	put32(r + 12, n);
	put32(r + 20, (uint32_t)crc32(0, r, 20));
	pthread_mutex_lock(&o->vol_lock);
	i = o->vcur;
	ret = pwrite_full(o->vfd[i], r, VJ_REC,
			  (off_t)(VJ_HDR + o->vcount[i] * VJ_REC));
	if (!ret)
		o->vcount[i]++;
	pthread_mutex_unlock(&o->vol_lock);
	return ret;
}

int ovl_guest_wrote(struct ovl *o, uint64_t first, uint64_t n)
{
	uint64_t c = first / o->bpc;
	int ret;

	ret = ovl_mark_present(o, first, n);
	ovl_mark_guest(o, c);
	if (ret || o->vfd[0] < 0)
		return ret;
	ret = vj_append(o, c, (uint32_t)(first % o->bpc), (uint32_t)n);
	if (ret)
		log_err("ovl: cannot write '%s': %s", o->vpath[o->vcur],
			strerror(-ret));
	return ret;
}

/*
 * Before a commit's snapshot: new records go to the other file if it is
 * empty.  Returns the file whose records the snapshot covers (-1: none).
 */
int ovl_vj_switch(struct ovl *o)
{
	int old;

	if (o->vfd[0] < 0)
		return -1;
	pthread_mutex_lock(&o->vol_lock);
	old = (int)(o->vcur ^ 1);
	if (!o->vcount[old]) {
		old = (int)o->vcur;
		o->vcur ^= 1;
	}
	pthread_mutex_unlock(&o->vol_lock);
	return old;
}

/* The commit that followed ovl_vj_switch() is durable: file @old is done. */
void ovl_vj_done(struct ovl *o, int old)
{
	if (old < 0)
		return;
	pthread_mutex_lock(&o->vol_lock);
	if (o->vcount[old] && vj_reset(o, (unsigned int)old))
		log_warn("ovl: cannot empty '%s'", o->vpath[old]);
	pthread_mutex_unlock(&o->vol_lock);
}

/* ---- state file ---- */

static void make_header(const struct ovl *o, uint8_t *h)
{
	memset(h, 0, HDR_SIZE);
	memcpy(h, HDR_MAGIC, 8);
	put32(h + 8, HDR_VERSION);
	memcpy(h + 16, o->conf.index_csum, 32);
	put64(h + 48, o->conf.size);
	put64(h + 56, o->conf.chunk_size);
	put64(h + 64, o->conf.block_size);
	memcpy(h + 72, o->conf.target_id, 128);
	put32(h + HDR_SIZE - 4, (uint32_t)crc32(0, h, HDR_SIZE - 4));
}

static int check_header(struct ovl *o, const uint8_t *h)
{
	const char *field = NULL;
	uint8_t want[HDR_SIZE];

	if (memcmp(h, HDR_MAGIC, 8) ||
	    (get32(h + HDR_SIZE - 4) != (uint32_t)crc32(0, h, HDR_SIZE - 4) &&
	     !FUZZING)) {
		log_err("ovl: cannot resume '%s': not a pbs-livemount state "
			"file, or its header is damaged", o->path);
		return -EBADMSG;
	}
	o->old_format = get32(h + 8) == 2;
	if (get32(h + 8) != HDR_VERSION && !o->old_format) {
		log_err("ovl: cannot resume '%s': state format %u from another "
			"pbs-livemount version cannot prove its target is the "
			"same file; remove it to start the restore over",
			o->path, get32(h + 8));
		return -ESTALE;
	}
	make_header(o, want);
	if (memcmp(h + 16, want + 16, 32))
		field = "it belongs to another backup (index checksum differs)";
	else if (get64(h + 48) != o->conf.size)
		field = "image size differs";
	else if (get64(h + 56) != o->conf.chunk_size)
		field = "chunk size differs";
	else if (get64(h + 64) != o->conf.block_size)
		field = "block size differs (--block-size)";
	else if (memcmp(h + 72, want + 72, 128))
		field = "the target is not the file or device it was written "
			"for (deleted and re-created, replaced or copied since)";
	if (field && o->conf.probe) {
		log_debug(LOG_CAT_OVL, "ovl: not resuming '%s': %s", o->path,
			  field);
		return -ESTALE;
	}
	if (field) {
		log_err("ovl: cannot resume '%s': %s", o->path, field);
		return -ESTALE;
	}
	return 0;
}


int ovl_rec_begin(struct rec *r, uint64_t gen)
{
	uint8_t h[16];

	buf_init(&r->b, SIZE_MAX / 2);
	r->n = 0;
	put32(h, REC_MAGIC);
	put32(h + 4, 0);
	put64(h + 8, gen);
	return buf_append(&r->b, h, sizeof(h));
}

static int rec_state(struct rec *r, uint64_t c, uint8_t st, const uint8_t *bm,
		     size_t bmlen)
{
	uint8_t e[10];
	int ret;

	e[0] = ENT_STATE;
	put64(e + 1, c);
	e[9] = st;
	r->n++;
	ret = buf_append(&r->b, e, sizeof(e));
	if (!ret && (st & ~ST_GUEST) == OVL_PARTIAL)
		ret = buf_append(&r->b, bm, bmlen);
	return ret;
}

/* Consecutive chunks in one state, gathered into one entry. */

int ovl_run_flush(struct rec *r, struct run *run)
{
	uint8_t e[18];

	if (!run->n)
		return 0;
	if (run->n == 1) {
		run->n = 0;
		return rec_state(r, run->first, run->st, NULL, 0);
	}
	e[0] = ENT_RUN;
	put64(e + 1, run->first);
	put64(e + 9, run->n);
	e[17] = run->st;
	run->n = 0;
	r->n++;
	return buf_append(&r->b, e, sizeof(e));
}

/* Chunk @c in state @st: extends the run or starts one (after flush). */
int ovl_rec_chunk(struct rec *r, struct run *run, uint64_t c, uint8_t st,
		     const uint8_t *bm, size_t bmlen)
{
	int ret;

	if (run->n && c == run->first + run->n && st == run->st) {
		run->n++;
		return 0;
	}
	ret = ovl_run_flush(r, run);
	if (ret)
		return ret;
	if ((st & ~ST_GUEST) == OVL_PARTIAL)
		return rec_state(r, c, st, bm, bmlen);
	*run = (struct run){ c, 1, st };
	return 0;
}

int ovl_rec_trace(struct rec *r, uint64_t c)
{
	uint8_t e[9];

	e[0] = ENT_TRACE;
	put64(e + 1, c);
	r->n++;
	return buf_append(&r->b, e, sizeof(e));
}

int ovl_rec_end(struct rec *r)
{
	uint8_t crc[4];

	put32(r->b.data + 4, r->n);
	put32(crc, (uint32_t)crc32(0, r->b.data, r->b.len));
	return buf_append(&r->b, crc, sizeof(crc));
}

/* Replay chunk @c in state byte @st (PARTIAL: bitmap @bm). */
static void replay_chunk(struct ovl *o, uint64_t c, uint8_t st,
			 const uint8_t *bm)
{
	uint64_t added = 0;

	if (st & ST_GUEST)
		bit_set(o->guest, c);
	st &= ~ST_GUEST;
	if (st == OVL_PRESENT) {
		ovl_apply_bits(o, c, 0, chunk_blocks(o, c), &added);
		if (ovl_chunk_state(o, c) != OVL_PRESENT) {
			/* was PARTIAL: fill every bit */
			ovl_apply_bits(o, c, 0, chunk_blocks(o, c), &added);
		}
	} else if (st == OVL_PARTIAL) {
		for (uint64_t b = 0; b < chunk_blocks(o, c); b++)
			if (bm[b / 8] & (1u << (b % 8)))
				ovl_apply_bits(o, c, b, 1, &added);
	}
}

/* Size of the entry at @p (@len bytes left), or 0 if it is invalid. */
static size_t entry_size(const struct ovl *o, const uint8_t *p, size_t len)
{
	uint64_t c;
	uint64_t n;
	uint8_t st;

	if (len < 9)
		return 0;
	c = get64(p + 1);
	switch (p[0]) {
	case ENT_TRACE:
		return 9;
	case ENT_STATE:
		if (len < 10)
			return 0;
		st = p[9] & ~ST_GUEST;
		if (c >= o->nchunks || st > OVL_PRESENT)
			return 0;
		n = 10 + (st == OVL_PARTIAL ? o->bmlen : 0);
		return n <= len ? n : 0;
	case ENT_RUN:
		if (len < 18)
			return 0;
		n = get64(p + 9);
		st = p[17] & ~ST_GUEST;
		if (c >= o->nchunks || !n || n > o->nchunks - c ||
		    st == OVL_PARTIAL || st > OVL_PRESENT)
			return 0;
		return 18;
	default:
		return 0;
	}
}

/* Apply one record from @p (@len bytes left); its size, or 0 if invalid. */
static size_t replay_record(struct ovl *o, const uint8_t *p, size_t len,
			    bool have_gen)
{
	size_t off = 16;
	uint32_t n;

	if (len < 20 || get32(p) != REC_MAGIC)
		return 0;
	n = get32(p + 4);
	if (have_gen && get64(p + 8) != o->gen + 1)
		return 0;
	/* Size and CRC first, then apply: never half a record. */
	for (uint32_t i = 0; i < n; i++) {
		size_t e = entry_size(o, p + off, len - off);

		if (!e)
			return 0;
		off += e;
	}
	if (off + 4 > len ||
	    (get32(p + off) != (uint32_t)crc32(0, p, off) && !FUZZING))
		return 0;
	off = 16;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = p + off;
		uint64_t c = get64(e + 1);

		if (e[0] == ENT_TRACE) {
			if (c < o->nchunks)
				ovl_trace_access(o, c);
		} else if (e[0] == ENT_STATE) {
			replay_chunk(o, c, e[9], e + 10);
		} else {
			for (uint64_t k = 0; k < get64(e + 9); k++)
				replay_chunk(o, c + k, e[17], NULL);
		}
		off += entry_size(o, e, len - off);
	}
	o->gen = get64(p + 8);
	return off + 4;
}

static void recount(struct ovl *o)
{
	uint64_t total = 0;

	for (uint64_t c = 0; c < o->nchunks; c++) {
		if (o->state[c] == OVL_PRESENT) {
			total += chunk_bytes(o, c);
		} else if (o->state[c] == OVL_PARTIAL) {
			for (uint64_t b = 0; b < chunk_blocks(o, c); b++)
				if (bm_get(o, c)[b / 8] & (1u << (b % 8)))
					total += block_bytes(o, c * o->bpc + b);
		}
	}
	o->present_bytes = total;
}

/* Replay the file open on ->fd (locked) into memory; cut a torn tail. */
int ovl_file_load(struct ovl *o)
{
	uint8_t *data = NULL;
	struct stat st;
	size_t len;
	size_t off;
	bool have_gen = false;
	int ret;

	if (fstat(o->fd, &st) < 0)
		return -errno;
	len = (size_t)st.st_size;
	if (len < HDR_SIZE) {
		log_err("ovl: cannot resume '%s': file too short (%zu bytes)",
			o->path, len);
		return -EBADMSG;
	}
	data = malloc(len);
	if (!data)
		return -ENOMEM;
	ret = pread_full(o->fd, data, len, 0);
	if (ret)
		goto out;
	ret = check_header(o, data);
	if (ret)
		goto out;
	for (off = HDR_SIZE; off < len;) {
		size_t n = replay_record(o, data + off, len - off, have_gen);

		if (!n)
			break;
		have_gen = true;
		off += n;
	}
	if (off < len)
		log_warn("ovl: '%s': dropped %zu bytes of an unfinished commit",
			 o->path, len - off);
	recount(o);
	/* Cut the torn tail so that appends follow the last good record. */
	if (ftruncate(o->fd, off) < 0) {
		ret = -errno;
		goto out;
	}
	o->journal_bytes = off - HDR_SIZE;
	o->trace_committed = o->ntrace;
	memcpy(o->guest_durable, o->guest, (o->nchunks + 63) / 64 * 8);
out:
	free(data);
	return ret;
}

/*
 * Write header + one record of the whole state to a new file @path,
 * locked, synced; its descriptor in *@fdp.  The states are snapshotted,
 * then the target synced, then the record written.
 */
static int write_state(struct ovl *o, const char *path, int flags, int *fdp)
{
	uint8_t hdr[HDR_SIZE];
	struct run run = { 0 };
	uint64_t *durable;
	struct rec r;
	int fd = -1;
	int ret;

	durable = bits_new(o->nchunks);
	make_header(o, hdr);
	ret = ovl_rec_begin(&r, o->gen + 1);
	for (uint64_t c = 0; !ret && c < o->nchunks; c++) {
		uint8_t st;
		bool g;

		ovl_lock_chunk(o, c);
		st = ovl_chunk_state(o, c);
		g = ovl_chunk_guest(o, c);
		if (st != OVL_ABSENT || g)
			ret = ovl_rec_chunk(&r, &run, c, st | (g ? ST_GUEST : 0),
					bm_get(o, c), o->bmlen);
		ovl_unlock_chunk(o, c);
		if (g)
			bit_set(durable, c);
	}
	if (!ret)
		ret = ovl_run_flush(&r, &run);
	for (size_t i = 0; !ret && i < o->trace_committed; i++)
		ret = ovl_rec_trace(&r, o->trace[i]);
	if (!ret)
		ret = ovl_rec_end(&r);
	if (ret)
		goto out;
	if (o->conf.target_fd >= 0 && fdatasync(o->conf.target_fd) < 0) {
		ret = -errno;
		goto out;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | flags, 0600);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	/* Ours alone (new or ->commit_lock held): never contended. */
	ret = excl_lock(fd, path, false, 0, "ovl", NULL);
	if (!ret && ftruncate(fd, 0) < 0)
		ret = -errno;
	if (!ret)
		ret = write_full(fd, hdr, sizeof(hdr));
	if (!ret)
		ret = write_full(fd, r.b.data, r.b.len);
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (ret) {
		close(fd);
		unlink(path);
		goto out;
	}
	o->gen++;
	o->journal_bytes = r.b.len;
	o->compact_bytes = r.b.len;
	for (uint64_t w = 0; w < (o->nchunks + 63) / 64; w++)
		if (durable[w])
			__atomic_or_fetch(&o->guest_durable[w], durable[w],
					  __ATOMIC_RELEASE);
	*fdp = fd;
out:
	buf_release(&r.b);
	free(durable);
	return ret;
}

/* Same file at @path as on @fd (not replaced since we opened it)? */
/*
 * Open and lock the state file: the existing one, or a new one created
 * whole and linked into place.  *@created tells which.
 */
int ovl_file_open_locked(struct ovl *o, bool *created)
{
	char *fresh = NULL;
	int ret;

	for (int tries = 0; tries < 8; tries++) {
		o->fd = open(o->path, O_RDWR | O_CLOEXEC);
		if (o->fd >= 0) {
			ret = excl_lock(o->fd, o->path, false,
					o->conf.lock_wait_ms, "ovl",
					"; unmount that mount first");
			if (ret)
				goto out;
			if (fd_is_at(o->fd, o->path)) {
				*created = false;
				ret = 0;
				goto out;
			}
			/* Compacted or replaced meanwhile: the new one. */
			close(o->fd);
			o->fd = -1;
			continue;
		}
		if (errno != ENOENT) {
			ret = -errno;
			log_err("ovl: cannot open '%s': %s", o->path,
				strerror(errno));
			goto out;
		}
		free(fresh);
		fresh = xasprintf("%s.new.%d", o->path, (int)getpid());
		unlink(fresh);
		ret = write_state(o, fresh, O_EXCL, &o->fd);
		if (ret) {
			log_err("ovl: cannot create '%s': %s", fresh,
				strerror(-ret));
			goto out;
		}
		if (link(fresh, o->path) < 0) {
			ret = -errno;
			unlink(fresh);
			close(o->fd);
			o->fd = -1;
			if (ret == -EEXIST)
				continue;	/* someone else won: open it */
			log_err("ovl: cannot create '%s': %s", o->path,
				strerror(-ret));
			goto out;
		}
		unlink(fresh);
		ret = fsync_parent_dir(o->path);
		if (ret) {
			log_err("ovl: cannot sync the directory of '%s': %s",
				o->path, strerror(-ret));
			goto out;
		}
		*created = true;
		goto out;
	}
	log_err("ovl: cannot open '%s': it keeps being replaced", o->path);
	ret = -EBUSY;
out:
	free(fresh);
	return ret;
}


/* The kernel's boot id: page cache contents are of this boot only. */
static int read_boot_id(char out[40])
{
	uint8_t *text = NULL;
	size_t len = 0;
	int ret;

	ret = read_file_any("/proc/sys/kernel/random/boot_id", 64, &text,
			    &len);
	if (ret)
		return ret;
	snprintf(out, 40, "%.36s", (char *)text);
	free(text);
	return strlen(out) == 36 ? 0 : -EINVAL;
}

/*
 * The guest journal's two files, after the state was loaded: replayed
 * if of this boot and of this state (a new state file starts them
 * afresh: they may be a removed state's).  Locked by the state's lock.
 */
int ovl_vj_open(struct ovl *o)
{
	int ret = 0;

	if (o->conf.boot_id)
		snprintf(o->boot_id, sizeof(o->boot_id), "%.36s",
			 o->conf.boot_id);
	else
		ret = read_boot_id(o->boot_id);
	if (ret) {
		log_err("ovl: cannot read the boot id: %s", strerror(-ret));
		return ret;
	}
	for (unsigned int i = 0; !ret && i < 2; i++) {
		o->vpath[i] = xasprintf("%s.v%u", o->path, i);
		if (o->created)
			unlink(o->vpath[i]);
		ret = vj_load(o, i);
	}
	o->vcur = o->vcount[0] && !o->vcount[1] ? 1 : 0;
	return ret;
}


/* ->commit_lock held: rewrite the file as one record, locked first. */
int ovl_file_compact(struct ovl *o)
{
	int fd = -1;
	int ret = write_state(o, o->tmp_path, 0, &fd);

	if (!ret && rename(o->tmp_path, o->path) < 0)
		ret = -errno;
	if (!ret)
		ret = fsync_parent_dir(o->path);
	if (ret) {
		if (fd >= 0)
			close(fd);
		return ret;
	}
	close(o->fd);
	o->fd = fd;
	return 0;
}
