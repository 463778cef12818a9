/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Restore targets: opening and locking, emptiness, identity.
 *
 * A file target's identity is a random id in an extended attribute, set
 * when a state is created for it: a file deleted and re-created at the
 * same path (even with the same inode number) or a copy lacks it or has
 * another inode, so a state never resumes onto it.  Where the file
 * system keeps no user xattrs, the birth time stands in; where it has
 * neither, only the inode (weak, and said so at creation).  A block
 * device is known by what names its storage, not by its device number,
 * which changes across reboots: the device-mapper UUID (LVM, dm-crypt),
 * a loop device's backing file, the disk's WWID or serial; partitions
 * add their number and start.
 *
 * No shared state: a struct target has one owner.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "crypto.h"
#include "excl.h"
#include "log.h"
#include "target.h"
#include "util.h"
#include "banned.h"

#define ID_XATTR "user.pbs-livemount.id"
#define ID_HEX 32

struct target {
	char *path;		/* immutable */
	int fd;			/* immutable */
	bool is_blk;		/* immutable */
	bool created;		/* immutable */
	uint64_t size;		/* immutable */
	dev_t rdev;		/* immutable: a device's number */
};

/* Open @t->path: the device, the file, or a new file if allowed. */
static int open_path(struct target *t, const struct target_conf *conf)
{
	int flags = conf->read_only ? O_RDONLY : O_RDWR;
	struct stat st;

	t->created = false;
	if (!stat(t->path, &st) && S_ISBLK(st.st_mode)) {
		/* O_EXCL: the kernel refuses a device in use (mounted, or
		 * claimed by another exclusive opener). */
		t->fd = open(t->path, flags | O_EXCL | O_CLOEXEC);
		if (t->fd < 0 && errno == EBUSY) {
			log_err("%s: cannot use '%s': the device is in use "
				"(mounted, or opened exclusively)", conf->who,
				t->path);
			return -EBUSY;
		}
	} else {
		t->fd = open(t->path, flags | O_CLOEXEC);
		if (t->fd < 0 && errno == ENOENT && conf->create) {
			t->fd = open(t->path, O_RDWR | O_CREAT | O_EXCL |
					      O_CLOEXEC, 0600);
			t->created = t->fd >= 0;
		}
	}
	if (t->fd < 0) {
		log_err("%s: cannot open target '%s': %s", conf->who, t->path,
			strerror(errno));
		return -errno;
	}
	return 0;
}

int target_open(const struct target_conf *conf, struct target **out)
{
	const char *path = conf->path;
	struct target *t;
	struct stat st;
	int ret;

	t = xcalloc(1, sizeof(*t));
	t->path = xstrdup(path);
	t->fd = -1;
	for (int tries = 0;; tries++) {
		ret = open_path(t, conf);
		if (!ret)
			ret = excl_lock(t->fd, path, false, conf->lock_wait_ms,
					conf->who, conf->busy_hint);
		if (ret)
			goto err;
		/*
		 * The owner we waited for may have renamed or removed the
		 * file meanwhile (a restore completing): lock what is there.
		 */
		if (fd_is_at(t->fd, path))
			break;
		if (tries == 8) {
			log_err("%s: cannot use '%s': it keeps being replaced",
				conf->who, path);
			ret = -EBUSY;
			goto err;
		}
		close(t->fd);
		t->fd = -1;
	}
	if (fstat(t->fd, &st) < 0) {
		ret = -errno;
		goto err;
	}
	t->is_blk = S_ISBLK(st.st_mode);
	t->rdev = st.st_rdev;
	if (!t->is_blk && !S_ISREG(st.st_mode)) {
		log_err("%s: cannot use target '%s': not a file or block "
			"device", conf->who, path);
		ret = -EINVAL;
		goto err;
	}
	t->size = (uint64_t)st.st_size;
	if (t->is_blk) {
		ret = blkdev_size(t->fd, &t->size);
		if (ret)
			goto err;
		if (t->size < conf->size) {
			log_err("%s: cannot use target '%s': the device has "
				"%llu bytes, the image needs %llu", conf->who,
				path, (unsigned long long)t->size,
				(unsigned long long)conf->size);
			ret = -ENOSPC;
			goto err;
		}
	}
	*out = t;
	return 0;
err:
	target_close(t, true);
	return ret;
}

void target_close(struct target *t, bool discard)
{
	if (!t)
		return;
	/* A file this open created is empty and ours alone. */
	if (discard && t->created)
		unlink(t->path);
	if (t->fd >= 0)
		close(t->fd);
	free(t->path);
	free(t);
}

int target_fd(const struct target *t)
{
	return t->fd;
}

const char *target_path(const struct target *t)
{
	return t->path;
}

bool target_is_blk(const struct target *t)
{
	return t->is_blk;
}

bool target_created(const struct target *t)
{
	return t->created;
}

uint64_t target_size(const struct target *t)
{
	return t->size;
}

/* A device: its start, end and 62 places between. */
static int blk_find_data(const struct target *t, uint64_t *where)
{
	const uint64_t big = 1u << 20;
	const uint64_t small = 64u << 10;
	uint64_t devsize = t->size;
	uint8_t *buf;
	int ret = 0;

	buf = malloc(big);
	if (!buf)
		return -ENOMEM;
	for (int k = 0; !ret && k < 64; k++) {
		uint64_t n = k == 0 || k == 63 ? big : small;
		uint64_t off = k == 63 ? devsize - MIN(big, devsize) :
					 devsize / 64 * k;

		n = MIN(n, devsize - off);
		ret = pread_full(t->fd, buf, n, off);
		for (uint64_t j = 0; !ret && j < n; j++) {
			if (buf[j]) {
				*where = off + j;
				ret = 1;
			}
		}
	}
	free(buf);
	return ret;
}

int target_find_data(const struct target *t, uint64_t *where)
{
	off_t off;

	if (t->is_blk)
		return blk_find_data(t, where);
	if (!t->size)
		return 0;
	off = lseek(t->fd, 0, SEEK_DATA);
	if (off < 0 && errno != ENXIO)
		return -errno;
	if (off < 0 || (uint64_t)off >= t->size)
		return 0;
	*where = (uint64_t)off;
	return 1;
}

static int file_identity(const struct target *t, bool create, char *out,
			 size_t len)
{
	struct statx stx;
	char id[ID_HEX + 1];
	uint8_t rnd[ID_HEX / 2];
	ssize_t n;

	if (statx(t->fd, "", AT_EMPTY_PATH, STATX_INO | STATX_BTIME, &stx) < 0)
		return -errno;
	n = fgetxattr(t->fd, ID_XATTR, id, ID_HEX);
	if (n == ID_HEX) {
		id[ID_HEX] = '\0';
		snprintf(out, len, "file:xattr:%s:ino:%llu", id,
			 (unsigned long long)stx.stx_ino);
		return 0;
	}
	if (n < 0 && errno != ENODATA && errno != ENOTSUP)
		return -errno;
	if (n >= 0 || errno == ENODATA) {
		if (!create) {
			/* Xattrs work here, yet no id: not our file. */
			snprintf(out, len, "file:xattr:none:ino:%llu",
				 (unsigned long long)stx.stx_ino);
			return 0;
		}
		if (crypto_random(rnd, sizeof(rnd)))
			return -EIO;
		hex_encode(rnd, sizeof(rnd), id);
		if (!fsetxattr(t->fd, ID_XATTR, id, ID_HEX, 0)) {
			snprintf(out, len, "file:xattr:%s:ino:%llu", id,
				 (unsigned long long)stx.stx_ino);
			return 0;
		}
		if (errno != ENOTSUP)
			return -errno;
	}
	if (stx.stx_mask & STATX_BTIME) {
		snprintf(out, len, "file:btime:%lld.%09u:ino:%llu",
			 (long long)stx.stx_btime.tv_sec,
			 stx.stx_btime.tv_nsec,
			 (unsigned long long)stx.stx_ino);
		return 0;
	}
	if (create)
		log_warn("target: '%s' keeps neither extended attributes nor "
			 "a birth time: a file re-created there could be "
			 "taken for it on resume", t->path);
	snprintf(out, len, "file:dev:%u:%u:ino:%llu", stx.stx_dev_major,
		 stx.stx_dev_minor, (unsigned long long)stx.stx_ino);
	return 0;
}

bool target_is_marked(const struct target *t)
{
	char id[ID_HEX];

	return !t->is_blk &&
	       fgetxattr(t->fd, ID_XATTR, id, sizeof(id)) == ID_HEX;
}

/* First line of a sysfs attribute of device @maj:@min, or false. */
static bool sysfs_attr(unsigned int maj, unsigned int min, const char *attr,
		       char *out, size_t len)
{
	char path[128];
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", maj, min, attr);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (fgets(out, (int)len, f))
		n = strcspn(out, "\n");
	out[n] = '\0';
	fclose(f);
	return n > 0;
}

/*
 * What names a device's storage: *@kind ("dm", "loop", "disk", "dev")
 * and @desc, the full description that the identity hashes.  @name gets
 * the readable part of it (the UUID, the backing file's name, the WWID).
 */
static void blk_describe(dev_t rdev, char *kind, size_t kindlen, char *name,
			 size_t namelen, char *desc, size_t desclen)
{
	unsigned int maj = major(rdev);
	unsigned int min = minor(rdev);
	unsigned int pmaj = maj;
	unsigned int pmin = min;
	char part[600] = "";
	char val[512];
	struct stat bs;

	if (sysfs_attr(maj, min, "partition", val, sizeof(val))) {
		char start[32] = "";

		sysfs_attr(maj, min, "start", start, sizeof(start));
		snprintf(part, sizeof(part), ":part%s@%s", val, start);
		/* The parent disk is the directory above in sysfs. */
		if (sysfs_attr(maj, min, "../dev", val, sizeof(val)))
			sscanf(val, "%u:%u", &pmaj, &pmin);
	}
	if (sysfs_attr(pmaj, pmin, "dm/uuid", val, sizeof(val))) {
		snprintf(kind, kindlen, "dm");
		snprintf(name, namelen, "%.200s", val);
	} else if (sysfs_attr(pmaj, pmin, "loop/backing_file", val,
			      sizeof(val))) {
		char off[32] = "";
		const char *base = strrchr(val, '/');
		size_t l = strlen(val);

		snprintf(kind, kindlen, "loop");
		snprintf(name, namelen, "%.200s", base ? base + 1 : val);
		sysfs_attr(pmaj, pmin, "loop/offset", off, sizeof(off));
		if (!stat(val, &bs))
			snprintf(val + l, sizeof(val) - l, "@%s:ino:%llu", off,
				 (unsigned long long)bs.st_ino);
	} else if (sysfs_attr(pmaj, pmin, "wwid", val, sizeof(val)) ||
		   sysfs_attr(pmaj, pmin, "device/wwid", val, sizeof(val)) ||
		   sysfs_attr(pmaj, pmin, "device/serial", val, sizeof(val))) {
		snprintf(kind, kindlen, "disk");
		snprintf(name, namelen, "%.200s", val);
	} else {
		snprintf(kind, kindlen, "dev");
		snprintf(val, sizeof(val), "%u:%u", pmaj, pmin);
		snprintf(name, namelen, "%u-%u", pmaj, pmin);
	}
	snprintf(desc, desclen, "%s:%s%s", kind, val, part);
}

static void blk_hash(const char *desc, char hex[33])
{
	uint8_t d[32];

	crypto_sha256(desc, strlen(desc), d);
	hex_encode(d, 16, hex);
}

int target_identity(const struct target *t, bool mark, char *id, size_t len)
{
	char kind[8];
	char name[256];
	char desc[1200];
	char hex[33];
	int ret;

	if (t->is_blk) {
		blk_describe(t->rdev, kind, sizeof(kind), name, sizeof(name),
			     desc, sizeof(desc));
		blk_hash(desc, hex);
		snprintf(id, len, "blk:%s:%s", kind, hex);
		return 0;
	}
	ret = file_identity(t, mark, id, len);
	if (ret)
		log_err("target: cannot %s '%s': %s",
			mark ? "mark" : "identify", t->path, strerror(-ret));
	return ret;
}

void target_state_name(const struct target *t, char *out, size_t len)
{
	char kind[8];
	char name[256];
	char desc[1200];
	char hex[33];

	blk_describe(t->rdev, kind, sizeof(kind), name, sizeof(name), desc,
		     sizeof(desc));
	blk_hash(desc, hex);
	/* Only characters that need no quoting, and a bounded length. */
	for (char *p = name; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"
			    "WXYZ0123456789._-", *p))
			*p = '_';
	name[64] = '\0';
	snprintf(out, len, "%s-%s-%.16s.lmstate", kind, name, hex);
}

int target_prepare_fresh(struct target *t, const char *who, uint64_t disk,
			 bool in_place, bool overwrite)
{
	uint64_t size = t->size;
	uint64_t where = 0;
	int ret;

	/* An older version of this disk: kept, and checked chunk by chunk. */
	if (in_place) {
		if (!t->is_blk && size != disk) {
			log_err("%s: cannot restore in place onto '%s': it "
				"has %llu bytes, the disk %llu (not an older "
				"version of this disk)", who, t->path,
				(unsigned long long)size,
				(unsigned long long)disk);
			return -EINVAL;
		}
		return 0;
	}
	if (!overwrite) {
		ret = target_find_data(t, &where);
		if (ret < 0) {
			log_err("%s: cannot read target '%s': %s", who,
				t->path, strerror(-ret));
			return ret;
		}
		if (ret) {
			log_err("%s: cannot use target '%s': it holds data "
				"(at offset %llu) and there is no state file to "
				"resume; give --in-place if it is an older "
				"version of this disk (only what differs is "
				"fetched), --overwrite to restore over it all",
				who, t->path, (unsigned long long)where);
			return -EEXIST;
		}
	}
	if (t->is_blk)
		return 0;
	if (size && size != disk && !overwrite) {
		log_err("%s: cannot use target '%s': size %llu, image is "
			"%llu bytes; give --overwrite to replace it", who,
			t->path, (unsigned long long)size,
			(unsigned long long)disk);
		return -EINVAL;
	}
	if ((size && ftruncate(t->fd, 0) < 0) ||
	    ftruncate(t->fd, (off_t)disk) < 0) {
		ret = -errno;
		log_err("%s: cannot size target '%s': %s", who, t->path,
			strerror(errno));
		return ret;
	}
	return 0;
}

/*
 * Copy the state at @from to @to (a new file, synced) and remove
 * @from: a rename cannot leave devtmpfs.  The target's lock is held,
 * so no daemon owns either file.
 */
static int move_state(const char *who, const char *from, const char *to)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	ret = read_file(from, SIZE_MAX / 2, &buf, &len);
	if (!ret)
		ret = write_file_new(to, buf, len, 0600);
	free(buf);
	if (ret) {
		log_err("%s: cannot move state '%s' to '%s': %s", who, from,
			to, strerror(-ret));
		return ret;
	}
	unlink(from);
	log_info("%s: state '%s' moved to '%s', where it outlives a "
		 "reboot", who, from, to);
	return 0;
}

int target_state_path(struct target *t, const char *who,
		      const char *state_path, const char *state_dir,
		      char **out)
{
	char name[256];
	char *legacy;
	int ret;

	if (state_path || !t->is_blk || !state_dir) {
		*out = state_path ? xstrdup(state_path) :
				    xasprintf("%s.lmstate", t->path);
		return 0;
	}
	ret = mkdir_p(state_dir, 0700);
	if (ret) {
		log_err("%s: cannot create '%s': %s", who, state_dir,
			strerror(-ret));
		return ret;
	}
	target_state_name(t, name, sizeof(name));
	*out = xasprintf("%s/%s", state_dir, name);
	legacy = xasprintf("%s.lmstate", t->path);
	ret = 0;
	if (!access(legacy, F_OK) && access(*out, F_OK))
		ret = move_state(who, legacy, *out);
	free(legacy);
	if (ret) {
		free(*out);
		*out = NULL;
	}
	return ret;
}
