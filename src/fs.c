/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * FUSE low-level front-end.
 *
 * Inodes are fixed for the life of the mount: 1 is the root directory,
 * 2 the ".status" file, 3 + i image i, then the read-only files (the
 * snapshot's configuration).  Nothing here is mutable after
 * fs_new() but libfuse's session, the open status documents (under
 * ->status_lock) and the images' owner and mode (under ->attr_lock:
 * chown and chmod work for the mount's life, so that libvirt can hand a
 * disk to QEMU's user), so image I/O runs without locks here; the
 * images do their own locking.
 *
 * Images are served without direct_io, so the kernel's page cache works
 * for guests that open with cache=writeback, and O_DIRECT opens
 * (cache=none) bypass it as usual.  ".status" is direct_io, generated at
 * open, so every open sees a fresh document.
 *
 * No lock is held across fuse_reply_*: copy-on-read runs after the reply.
 */
#define FUSE_USE_VERSION 35
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fuse_lowlevel.h>
#include <linux/fuse.h>

#include "fs.h"
#include "fs_i.h"
#include "log.h"
#include "mountpoint.h"
#include "util.h"
#include "banned.h"

#define INO_ROOT FUSE_ROOT_ID
#define INO_STATUS 2
#define INO_IMAGE0 3
#define FS_MAX_IO (1u << 20)
/* A worker's receive buffer: at least libfuse's (max_write + 4 KiB). */
#define FS_RECV_BUF (FS_MAX_IO + 2 * 4096)
/* Workers at most, as libfuse's multi-threaded loop's default. */
#define FS_MAX_WORKERS 10
#define STATUS_NAME ".status"

/*
 * An open ".status": the document generated at open.  The kernel may
 * send RELEASE while an interrupted READ of the same handle is still
 * being answered, so reads copy out under ->status_lock and never hold
 * a pointer into a document.
 */
struct status_doc {
	uint64_t id;
	char *text;
	size_t len;
	struct status_doc *next;
};

/*
 * Owner and permissions of an image file: chown and chmod work (in
 * memory, for this mount), so that libvirt's DAC driver can give the
 * image to the user QEMU runs as, as it does with any disk file.
 */
struct fs_attr {
	uid_t uid;			/* protected by fs->attr_lock */
	gid_t gid;			/* protected by fs->attr_lock */
	mode_t perm;			/* protected by fs->attr_lock */
};

struct fs {
	struct frontend_conf conf;	/* immutable after fs_new */
	pthread_mutex_t attr_lock;
	struct fs_attr *attrs;		/* per image; ->attr_lock */
	struct fuse_session *se;	/* libfuse's own locking */
	time_t mtime;			/* immutable */
	unsigned int conn;		/* immutable: fusectl's number, 0 if
					   unknown */
	uint64_t want;			/* immutable after INIT: capabilities */
	uint64_t max_write;		/* immutable after INIT */
	uint64_t adopt_max_write;	/* immutable: the connection's, 0 if
					   new */
	pthread_mutex_t status_lock;
	struct status_doc *docs;	/* protected by ->status_lock */
	uint64_t next_id;		/* protected by ->status_lock */
	int fault_op;			/* immutable: FAULT_*, 0: none */
	uint64_t fault_n;		/* immutable */
	uint64_t fault_seen;		/* atomic */
};

enum { FAULT_WRITE = 1, FAULT_FALLOCATE, FAULT_FSYNC };

/* The test's fault (frontend_conf.fault): the Nth @op done, die unanswered. */
static void fault_point(struct fs *fs, int op)
{
	if (fs->fault_op == op &&
	    __atomic_add_fetch(&fs->fault_seen, 1, __ATOMIC_RELAXED) ==
		    fs->fault_n) {
		log_warn("fs: test fault: killed after request %llu of its "
			 "kind, before the answer",
			 (unsigned long long)fs->fault_n);
		raise(SIGKILL);
	}
}

static void parse_fault(struct fs *fs, const char *spec)
{
	static const char *const ops[] = { "write:", "fallocate:", "fsync:" };

	for (size_t i = 0; spec && i < ARRAY_SIZE(ops); i++)
		if (!strncmp(spec, ops[i], strlen(ops[i])) &&
		    !parse_u64(spec + strlen(ops[i]), &fs->fault_n) &&
		    fs->fault_n)
			fs->fault_op = (int)i + 1;
	if (spec && !fs->fault_op)
		log_warn("fs: test fault '%s' not understood: ignored", spec);
}

/* The images' owners and modes as text, "uid:gid:mode;" each. */
static void memo_send(struct fs *fs)
{
	struct buf b;
	char one[64];

	if (!fs->conf.memo_out)
		return;
	buf_init(&b, 1u << 20);
	pthread_mutex_lock(&fs->attr_lock);
	for (unsigned int i = 0; i < fs->conf.nimages; i++) {
		snprintf(one, sizeof(one), "%u:%u:%o;",
			 (unsigned int)fs->attrs[i].uid,
			 (unsigned int)fs->attrs[i].gid,
			 (unsigned int)fs->attrs[i].perm);
		buf_append(&b, one, strlen(one));
	}
	/* Under the lock: two changes reach the supervisor in order. */
	if (b.len)
		fs->conf.memo_out(fs->conf.control_arg, (char *)b.data);
	pthread_mutex_unlock(&fs->attr_lock);
	buf_release(&b);
}

/* An earlier server's memo_send(), if it is whole and for as many images. */
static void memo_take(struct fs *fs, const char *memo)
{
	struct fs_attr *a = xcalloc(fs->conf.nimages ? fs->conf.nimages : 1,
				    sizeof(*a));
	const char *p = memo;
	unsigned int i;

	for (i = 0; p && *p && i < fs->conf.nimages; i++) {
		unsigned int uid, gid, perm;
		int used = 0;

		if (sscanf(p, "%u:%u:%o;%n", &uid, &gid, &perm, &used) != 3 ||
		    !used || perm > 07777)
			break;
		a[i] = (struct fs_attr){ uid, gid, perm };
		p += used;
	}
	if (p && !*p && i == fs->conf.nimages)
		memcpy(fs->attrs, a, i * sizeof(*a));
	else if (p)
		log_warn("fs: owners and modes from the last server not "
			 "understood: '%s'", memo);
	free(a);
}

static struct image *ino_image(struct fs *fs, fuse_ino_t ino)
{
	if (ino < INO_IMAGE0 || ino - INO_IMAGE0 >= fs->conf.nimages)
		return NULL;
	return fs->conf.images[ino - INO_IMAGE0];
}

static const struct frontend_file *ino_file(struct fs *fs, fuse_ino_t ino)
{
	uint64_t first = INO_IMAGE0 + (uint64_t)fs->conf.nimages;

	if (ino < first || ino - first >= fs->conf.nfiles)
		return NULL;
	return &fs->conf.files[ino - first];
}

static int fill_attr(struct fs *fs, fuse_ino_t ino, struct stat *st)
{
	const struct frontend_file *f;
	struct image *img;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_mtime = st->st_ctime = st->st_atime = fs->mtime;
	st->st_blksize = 4096;
	if (ino == INO_ROOT) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (ino == INO_STATUS) {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = 0;	/* generated on open; direct_io */
		return 0;
	}
	f = ino_file(fs, ino);
	if (f) {
		/* A configuration may hold secrets: the mount's owner's. */
		st->st_mode = S_IFREG | 0400;
		st->st_nlink = 1;
		st->st_size = f->len;
		st->st_blocks = (f->len + 511) / 512;
		return 0;
	}
	img = ino_image(fs, ino);
	if (!img)
		return -ENOENT;
	pthread_mutex_lock(&fs->attr_lock);
	st->st_uid = fs->attrs[ino - INO_IMAGE0].uid;
	st->st_gid = fs->attrs[ino - INO_IMAGE0].gid;
	st->st_mode = S_IFREG | fs->attrs[ino - INO_IMAGE0].perm;
	pthread_mutex_unlock(&fs->attr_lock);
	st->st_nlink = 1;
	st->st_size = image_size(img);
	st->st_blocks = (image_size(img) + 511) / 512;
	return 0;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	/* An adopted connection keeps what the kernel agreed first. */
	conn->max_write = fs->adopt_max_write ? fs->adopt_max_write :
						FS_MAX_IO;
	conn->max_readahead = FS_MAX_IO;
	/* Parallel reads of one file: the guest issues many at once. */
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* We never change file contents behind the kernel's back. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	/* What every later server must agree to as well (fs_agreement). */
	fs->want = conn->want;
	fs->max_write = conn->max_write;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fuse_req_userdata(req);
	struct fuse_entry_param e;
	fuse_ino_t ino = 0;

	if (parent != INO_ROOT) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (!strcmp(name, STATUS_NAME))
		ino = INO_STATUS;
	for (unsigned int i = 0; !ino && i < fs->conf.nimages; i++)
		if (!strcmp(name, image_name(fs->conf.images[i])))
			ino = INO_IMAGE0 + i;
	for (unsigned int i = 0; !ino && i < fs->conf.nfiles; i++)
		if (!strcmp(name, fs->conf.files[i].name))
			ino = INO_IMAGE0 + fs->conf.nimages + i;
	if (!ino) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = ino;
	e.attr_timeout = 3600;
	e.entry_timeout = 3600;
	fill_attr(fs, ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct stat st;
	int ret;

	(void)fi;
	ret = fill_attr(fs, ino, &st);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, ino == INO_STATUS ? 0 : 3600);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct image *img = ino_image(fs, ino);
	struct stat st;

	/* Sizes are the backup's: only a no-op truncate is accepted. */
	if (!img || ((to_set & FUSE_SET_ATTR_SIZE) &&
		     (uint64_t)attr->st_size != image_size(img))) {
		fuse_reply_err(req, img ? EPERM : EACCES);
		return;
	}
	(void)fi;
	/* The kernel checked the caller's right (default_permissions). */
	pthread_mutex_lock(&fs->attr_lock);
	if (to_set & FUSE_SET_ATTR_UID)
		fs->attrs[ino - INO_IMAGE0].uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		fs->attrs[ino - INO_IMAGE0].gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_MODE)
		fs->attrs[ino - INO_IMAGE0].perm = attr->st_mode & 07777;
	pthread_mutex_unlock(&fs->attr_lock);
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
		      FUSE_SET_ATTR_MODE))
		memo_send(fs);
	fill_attr(fs, ino, &st);
	fuse_reply_attr(req, &st, 3600);
}

/* The snapshot of .status opened as @id; call with ->status_lock. */
static struct status_doc *status_doc_find(struct fs *fs, uint64_t id)
{
	struct status_doc *d;

	for (d = fs->docs; d && d->id != id; d = d->next)
		;
	return d;
}

/*
 * A new snapshot of .status under @id, or under a new id (*@out) when
 * @id is 0.  Ids start at the server's pid << 32, so a handle opened
 * under an earlier server (a takeover) never names another's snapshot.
 */
static int status_doc_add(struct fs *fs, uint64_t id, uint64_t *out)
{
	struct status_doc *d;
	char *json = NULL;
	int ret;

	ret = fs->conf.status(fs->conf.status_arg, &json);
	if (ret)
		return ret;
	d = malloc(sizeof(*d));
	if (!d) {
		free(json);
		return -ENOMEM;
	}
	d->text = json;
	d->len = strlen(json);
	pthread_mutex_lock(&fs->status_lock);
	if (id && status_doc_find(fs, id)) {
		/* Another thread adopted it first. */
		pthread_mutex_unlock(&fs->status_lock);
		free(json);
		free(d);
		return 0;
	}
	if (!fs->next_id)
		fs->next_id = (uint64_t)getpid() << 32;
	d->id = id ? id : ++fs->next_id;
	d->next = fs->docs;
	fs->docs = d;
	pthread_mutex_unlock(&fs->status_lock);
	if (out)
		*out = d->id;
	return 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct image *img;
	bool wr = (fi->flags & O_ACCMODE) != O_RDONLY;
	uint64_t id;
	int ret;

	if (ino == INO_STATUS) {
		if (wr) {
			fuse_reply_err(req, EACCES);
			return;
		}
		ret = status_doc_add(fs, 0, &id);
		if (ret) {
			fuse_reply_err(req, -ret);
			return;
		}
		fi->fh = id;
		fi->direct_io = 1;
		fuse_reply_open(req, fi);
		return;
	}
	if (ino_file(fs, ino)) {
		if (wr) {
			fuse_reply_err(req, EROFS);
			return;
		}
		fi->keep_cache = 1;
		fuse_reply_open(req, fi);
		return;
	}
	img = ino_image(fs, ino);
	if (!img) {
		fuse_reply_err(req, ino == INO_ROOT ? EISDIR : ENOENT);
		return;
	}
	if (wr && (fs->conf.read_only || image_is_read_only(img))) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct status_doc **pp;
	struct status_doc *d = NULL;

	if (ino == INO_STATUS) {
		pthread_mutex_lock(&fs->status_lock);
		for (pp = &fs->docs; *pp; pp = &(*pp)->next) {
			if ((*pp)->id == fi->fh) {
				d = *pp;
				*pp = d->next;
				break;
			}
		}
		pthread_mutex_unlock(&fs->status_lock);
		if (d) {
			free(d->text);
			free(d);
		}
	}
	fuse_reply_err(req, 0);
}

static __thread uint8_t *tls_buf;	/* per FUSE thread, freed at exit */
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *p)
{
	free(p);
}

static void tls_init(void)
{
	pthread_key_create(&tls_key, tls_free);
}

static uint8_t *thread_buf(void)
{
	if (!tls_buf) {
		pthread_once(&tls_once, tls_init);
		tls_buf = malloc(FS_MAX_IO);
		if (tls_buf)
			pthread_setspecific(tls_key, tls_buf);
	}
	return tls_buf;
}

/* image_guest_read()'s answer to the kernel. */
static void reply_read(void *arg, const void *buf, ssize_t n)
{
	fuse_req_t req = arg;

	if (n >= 0)
		fuse_reply_buf(req, buf, (size_t)n);
	else	/* Whatever went wrong below, a reader sees EIO. */
		fuse_reply_err(req, n == -ENOMEM ? ENOMEM : EIO);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	const struct frontend_file *f;
	struct image *img;
	uint8_t *buf;

	buf = thread_buf();
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size = MIN(size, FS_MAX_IO);
	if (ino == INO_STATUS) {
		struct status_doc *d;
		size_t got = 0;

		int ret;

		pthread_mutex_lock(&fs->status_lock);
		d = status_doc_find(fs, fi->fh);
		pthread_mutex_unlock(&fs->status_lock);
		/* Opened under an earlier server: a new snapshot for it. */
		if (!d && (ret = status_doc_add(fs, fi->fh, NULL))) {
			fuse_reply_err(req, -ret);
			return;
		}
		pthread_mutex_lock(&fs->status_lock);
		d = status_doc_find(fs, fi->fh);
		if (d && (uint64_t)off < d->len) {
			got = MIN(size, d->len - off);
			memcpy(buf, d->text + off, got);
		}
		pthread_mutex_unlock(&fs->status_lock);
		fuse_reply_buf(req, (const char *)buf, got);
		return;
	}
	if ((f = ino_file(fs, ino))) {
		size_t got = (uint64_t)off < f->len ? MIN(size, f->len - off) :
						      0;

		fuse_reply_buf(req, got ? (const char *)f->data + off : NULL,
			       got);
		return;
	}
	img = ino_image(fs, ino);
	if (!img) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	image_guest_read(img, buf, size, off, reply_read, req);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct image *img = ino_image(fs, ino);
	ssize_t n;

	(void)fi;
	if (!img) {
		fuse_reply_err(req, EBADF);
		return;
	}
	n = image_write(img, buf, size, off);
	if (n >= 0)
		fault_point(fs, FAULT_WRITE);
	if (n < 0)
		fuse_reply_err(req, n == -ENOSPC || n == -EFBIG ? -n : EIO);
	else
		fuse_reply_write(req, n);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino,
		     struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	/* close(2) does not promise durability; fsync does. */
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct image *img = ino_image(fs, ino);
	int ret = 0;

	(void)datasync;	/* both sync the data; the size never changes */
	(void)fi;
	if (img && !image_is_read_only(img))
		ret = image_flush(img);
	if (!ret)
		fault_point(fs, FAULT_FSYNC);
	fuse_reply_err(req, ret ? EIO : 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			 off_t off, off_t len, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	struct image *img = ino_image(fs, ino);
	bool keep = mode & FALLOC_FL_KEEP_SIZE;
	uint64_t size;
	uint64_t end;
	int ret;

	(void)fi;
	if (!img) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (off < 0 || len <= 0 ||
	    __builtin_add_overflow((uint64_t)off, (uint64_t)len, &end)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	size = image_size(img);
	mode &= ~FALLOC_FL_KEEP_SIZE;
	/* The size is the backup's: nothing may grow it. */
	if (end > size && !keep) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	if (mode == FALLOC_FL_PUNCH_HOLE || mode == FALLOC_FL_ZERO_RANGE) {
		/*
		 * Both leave [off, end) reading as zeros; the kernel drops
		 * (or zeroes the partial pages of) its page cache of the
		 * range once we reply, so it agrees with the target.
		 */
		ret = image_is_read_only(img) ? -EROFS :
		      image_zero(img, off, end - off);
	} else if (mode == 0) {
		/* Preallocation inside the fixed size: nothing to do. */
		ret = 0;
	} else {
		ret = -EOPNOTSUPP;
	}
	if (!ret)
		fault_point(fs, FAULT_FALLOCATE);
	fuse_reply_err(req, ret == -EOPNOTSUPP || ret == -EROFS ||
				    ret == -ENOMEM || !ret ? -ret : EIO);
}

/*
 * Requests to the mount itself: user.pbs-livemount.* on ".status".  Not
 * on the root directory: the kernel holds the inode of a setxattr
 * locked until the reply, and a lookup in a locked root (the daemon's
 * own stat of an image, during a cut-over) would wait forever.
 */
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct fs *fs = fuse_req_userdata(req);
	int ret;

	(void)flags;
	if (ino != INO_STATUS || !fs->conf.control ||
	    strncmp(name, "user.pbs-livemount.", 19)) {
		fuse_reply_err(req, ENOTSUP);
		return;
	}
	ret = fs->conf.control(fs->conf.control_arg, name, value, size);
	fuse_reply_err(req, -ret);
	if (fs->conf.control_done)
		fs->conf.control_done(fs->conf.control_arg);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = fuse_req_userdata(req);
	unsigned int total = 3 + fs->conf.nimages + fs->conf.nfiles;
	char *buf;
	size_t used = 0;

	(void)fi;
	if (ino != INO_ROOT) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (off_t i = off; i < (off_t)total; i++) {
		struct stat st = { 0 };
		const char *name;
		size_t n;

		if (i == 0) {
			name = ".";
			st.st_ino = INO_ROOT;
			st.st_mode = S_IFDIR;
		} else if (i == 1) {
			name = "..";
			st.st_ino = INO_ROOT;
			st.st_mode = S_IFDIR;
		} else if (i == 2) {
			name = STATUS_NAME;
			st.st_ino = INO_STATUS;
			st.st_mode = S_IFREG;
		} else if (i - 3 < (off_t)fs->conf.nimages) {
			name = image_name(fs->conf.images[i - 3]);
			st.st_ino = INO_IMAGE0 + i - 3;
			st.st_mode = S_IFREG;
		} else {
			name = fs->conf.files[i - 3 - fs->conf.nimages].name;
			st.st_ino = INO_IMAGE0 + i - 3;
			st.st_mode = S_IFREG;
		}
		n = fuse_add_direntry(req, buf + used, size - used, name, &st,
				      i + 1);
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fuse_req_userdata(req);
	struct statvfs sv = { 0 };
	uint64_t total = 0;

	(void)ino;
	for (unsigned int i = 0; i < fs->conf.nimages; i++)
		total += image_size(fs->conf.images[i]);
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = total / 4096;
	sv.f_files = 2 + fs->conf.nimages;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.open = op_open,
	.release = op_release,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.fsync = op_fsync,
	.fallocate = op_fallocate,
	.setxattr = op_setxattr,
	.readdir = op_readdir,
	.statfs = op_statfs,
};

static void fs_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	log_vmsg((int)level, fmt, ap);
}

char *fs_mount_opts(const struct frontend_conf *conf)
{
	return xasprintf("-ofsname=pbs-livemount,subtype=pbs-livemount,"
			 "default_permissions%s%s%s%s",
			 conf->allow_other ? ",allow_other" : "",
			 conf->read_only ? ",ro" : "",
			 conf->options ? "," : "",
			 conf->options ? conf->options : "");
}

/* A libfuse session of @opts (NULL: none) and @ops; NULL on failure. */
struct fuse_session *fs_session(const char *opts,
				    const struct fuse_lowlevel_ops *ops,
				    size_t size, void *userdata)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;

	fuse_set_log_func(fs_log);
	if (!fuse_opt_add_arg(&args, "pbs-livemount") &&
	    (!opts || !fuse_opt_add_arg(&args, opts)))
		se = fuse_session_new(&args, ops, size, userdata);
	if (!se)
		log_err("fs: cannot create a FUSE session (options '%s')",
			opts ? opts : "");
	fuse_opt_free_args(&args);
	return se;
}

int fs_new(const struct frontend_conf *conf, int fd, const void *init_req,
	   size_t init_len, uint64_t max_write, struct fs **out)
{
	struct fuse_buf init = {
		.size = init_len,
		.mem = (void *)init_req,
	};
	char path[32];
	struct fs *fs;
	int ret = -EIO;

	fs = xcalloc(1, sizeof(*fs));
	fs->conf = *conf;
	pthread_mutex_init(&fs->status_lock, NULL);
	pthread_mutex_init(&fs->attr_lock, NULL);
	fs->attrs = xcalloc(conf->nimages ? conf->nimages : 1,
			    sizeof(*fs->attrs));
	for (unsigned int i = 0; i < conf->nimages; i++) {
		fs->attrs[i].uid = getuid();
		fs->attrs[i].gid = getgid();
		fs->attrs[i].perm = conf->read_only ||
				    image_is_read_only(conf->images[i]) ? 0444 :
									  0644;
	}
	if (conf->memo)
		memo_take(fs, conf->memo);
	parse_fault(fs, conf->fault);
	fs->mtime = time(NULL);
	fs->adopt_max_write = max_write;
	/* Mount options went to the supervisor, which mounted. */
	fs->se = fs_session(NULL, &fs_ops, sizeof(fs_ops), fs);
	if (!fs->se)
		goto err_free;
	/* libfuse adopts a descriptor named /dev/fd/N (since 3.3). */
	snprintf(path, sizeof(path), "/dev/fd/%d", fd);
	if (fuse_session_mount(fs->se, path)) {
		log_err("fs: cannot adopt the FUSE connection (descriptor %d)",
			fd);
		goto err_free;
	}
	/*
	 * The kernel's INIT, once more: libfuse answers nothing before it.
	 * The first server's reply is the one the kernel waits for; a later
	 * one's has a unique the kernel no longer knows (ENOENT, which
	 * libfuse ignores), and the kernel keeps what it agreed first.
	 */
	fuse_session_process_buf(fs->se, &init);
	if (fuse_session_exited(fs->se) || !fs->max_write) {
		log_err("fs: cannot take up the FUSE connection: its INIT was "
			"refused");
		goto err_free;
	}
	if (mountpoint_fuse_conn(conf->mountpoint, &fs->conn))
		fs->conn = 0;
	*out = fs;
	return 0;
err_free:
	fs_free(fs);
	return ret;
}

void fs_agreement(const struct fs *fs, uint64_t *want, uint64_t *max_write)
{
	*want = fs->want;
	*max_write = fs->max_write;
}

/* SIGHUP: a closed terminal or a log rotation, never an unmount. */
static void on_hup(int sig)
{
	(void)sig;
	log_request_reopen();
}

/*
 * The request loop: libfuse's multi-threaded loop (a worker more while
 * all are busy, up to a maximum; none retired), but each worker's receive
 * buffer is touched before its first read().  The kernel copies a
 * request into that buffer; a page it must fault in there while this
 * server is being killed ends the request with EIO instead of leaving it
 * for FUSE_NOTIFY_RESEND and the next server (the guest saw a failed
 * write at a takeover).  Present pages take no fault.
 */
struct fs_loop {
	struct fuse_session *se;	/* libfuse's own locking */
	pthread_mutex_t lock;
	pthread_t tids[FS_MAX_WORKERS];	/* ->lock */
	void *bufs[FS_MAX_WORKERS];	/* ->lock; freed after the joins */
	unsigned int nworkers;		/* ->lock */
	unsigned int navail;		/* ->lock: waiting for a request */
	unsigned int max;		/* immutable */
	bool exit;			/* ->lock: the main thread ends it */
	int error;			/* ->lock: the first -errno */
	sem_t finish;			/* a worker saw the session end */
};

struct fs_worker {
	struct fs_loop *l;
	void *buf;
};

static int start_worker(struct fs_loop *l);

static void *worker(void *arg)
{
	struct fs_worker *w = arg;
	struct fs_loop *l = w->l;
	struct fuse_buf fbuf = { .mem = w->buf };
	int res;

	free(w);
	thread_name("lm-fuse");
	memset(fbuf.mem, 0, FS_RECV_BUF);	/* present pages: see above */
	while (!fuse_session_exited(l->se)) {
		bool forget;

		/* The main thread cancels workers waiting here at the end. */
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		res = fuse_session_receive_buf(l->se, &fbuf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (res == -EINTR)
			continue;
		if (res <= 0) {
			if (res < 0) {
				fuse_session_exit(l->se);
				pthread_mutex_lock(&l->lock);
				l->error = l->error ? l->error : res;
				pthread_mutex_unlock(&l->lock);
			}
			break;
		}
		/* A burst of FORGETs is no reason for more workers. */
		forget = ((struct fuse_in_header *)fbuf.mem)->opcode ==
				 FUSE_FORGET ||
			 ((struct fuse_in_header *)fbuf.mem)->opcode ==
				 FUSE_BATCH_FORGET;
		pthread_mutex_lock(&l->lock);
		if (l->exit) {
			pthread_mutex_unlock(&l->lock);
			return NULL;
		}
		if (!forget)
			l->navail--;
		if (!l->navail && l->nworkers < l->max)
			start_worker(l);
		pthread_mutex_unlock(&l->lock);
		fuse_session_process_buf(l->se, &fbuf);
		pthread_mutex_lock(&l->lock);
		if (!forget)
			l->navail++;
		pthread_mutex_unlock(&l->lock);
	}
	sem_post(&l->finish);
	return NULL;
}

/* One worker more; with ->lock held.  Signals stay the main thread's. */
static int start_worker(struct fs_loop *l)
{
	struct fs_worker *w = malloc(sizeof(*w));
	sigset_t block;
	sigset_t old;
	int ret;

	if (!w || !(w->buf = malloc(FS_RECV_BUF))) {
		free(w);
		return -ENOMEM;
	}
	w->l = l;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	l->bufs[l->nworkers] = w->buf;
	ret = -pthread_create(&l->tids[l->nworkers], NULL, worker, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		log_err("fs: cannot start a FUSE worker: %s", strerror(-ret));
		free(w->buf);
		free(w);
		return ret;
	}
	l->nworkers++;
	l->navail++;
	return 0;
}

static int fs_loop(struct fs *fs)
{
	struct fs_loop l = {
		.se = fs->se,
		.max = fs->conf.max_threads ?
			       MIN(fs->conf.max_threads, FS_MAX_WORKERS) :
			       FS_MAX_WORKERS,
	};
	int ret;

	pthread_mutex_init(&l.lock, NULL);
	sem_init(&l.finish, 0, 0);
	pthread_mutex_lock(&l.lock);
	ret = start_worker(&l);
	pthread_mutex_unlock(&l.lock);
	/* sem_wait() returns early on a signal: SIGTERM ends the session. */
	while (!ret && !fuse_session_exited(fs->se))
		sem_wait(&l.finish);
	pthread_mutex_lock(&l.lock);
	for (unsigned int i = 0; i < l.nworkers; i++)
		pthread_cancel(l.tids[i]);
	l.exit = true;
	pthread_mutex_unlock(&l.lock);
	/* No worker starts another once ->exit is set. */
	for (unsigned int i = 0; i < l.nworkers; i++) {
		pthread_join(l.tids[i], NULL);
		free(l.bufs[i]);
	}
	ret = ret ? ret : l.error;
	sem_destroy(&l.finish);
	pthread_mutex_destroy(&l.lock);
	fuse_session_reset(fs->se);
	return ret;
}

int fs_run(struct fs *fs)
{
	struct sigaction sa = { .sa_handler = on_hup };
	int ret;

	/* SIGTERM and SIGINT end the loop; the caller then commits. */
	if (fuse_set_signal_handlers(fs->se))
		return -EIO;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);
	ret = fs_loop(fs);
	fuse_remove_signal_handlers(fs->se);
	return ret < 0 ? ret : 0;
}


void fs_unmount(struct fs *fs)
{
	fs_unmount_at(fs->conf.mountpoint);
}

int fs_abort(struct fs *fs)
{
	char path[80];
	int ret = 0;
	int fd;

	if (!fs->conn)
		return -ENOENT;
	snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%u/abort",
		 fs->conn);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	/* Where nothing mounted fusectl yet, at its usual place. */
	if (fd < 0 && errno == ENOENT && !geteuid() &&
	    !mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, NULL))
		fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, "1", 1) != 1)
		ret = -errno;
	close(fd);
	return ret;
}

bool fs_is_exited(struct fs *fs)
{
	return fuse_session_exited(fs->se);
}

void fs_exit(struct fs *fs)
{
	fuse_session_exit(fs->se);
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	/* The supervisor owns the mount: only this server's copy closes. */
	if (fs->se)
		fuse_session_destroy(fs->se);
	while (fs->docs) {
		struct status_doc *d = fs->docs;

		fs->docs = d->next;
		free(d->text);
		free(d);
	}
	pthread_mutex_destroy(&fs->status_lock);
	pthread_mutex_destroy(&fs->attr_lock);
	free(fs->attrs);
	free(fs);
}
