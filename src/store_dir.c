/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Datastore in a local directory (FORMATS.md section 6): the embedded
 * default, plain pread and no network.  An empty chunk file is an
 * evicted S3-cache entry and counts as missing.  A chunk that fails its
 * check is read once more (a concurrent writer may have replaced it),
 * then reported.  Stateless apart from the immutable root path, so any
 * thread may call in.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "snap.h"
#include "store.h"
#include "store_backend.h"
#include "util.h"
#include "banned.h"

#define DIR_CHUNK_TRIES 2
#define RAW_SPARE_MAX 16	/* spare chunk-file buffers, at most */

struct store_dir {
	struct store base;
	char *root;		/* immutable after open */
	uint64_t rate;		/* immutable: bytes/s, 0 = unlimited */
	pthread_mutex_t lock;
	uint64_t next_ns;	/* protected by ->lock: pacing clock */
	struct bufpool raw;	/* chunk files read (its own lock) */
};

/*
 * --limit-rate for a local store (tests use it to slow streaming down):
 * each chunk books its transfer time on a shared clock and sleeps until
 * its slot.
 */
static void dir_pace(struct store_dir *d, size_t len)
{
	uint64_t now = now_ns();
	uint64_t start;
	struct timespec ts;

	if (!d->rate)
		return;
	pthread_mutex_lock(&d->lock);
	start = MAX(now, d->next_ns);
	d->next_ns = start + (uint64_t)((double)len * 1e9 / d->rate);
	pthread_mutex_unlock(&d->lock);
	if (start > now) {
		ts.tv_sec = (start - now) / 1000000000u;
		ts.tv_nsec = (start - now) % 1000000000u;
		nanosleep(&ts, NULL);
	}
}

static struct store_dir *to_dir(struct store *s)
{
	return container_of(s, struct store_dir, base);
}

static int dir_path(struct store_dir *d, const char *rel, char *out,
		    size_t outlen)
{
	if (snprintf(out, outlen, "%s/%s", d->root, rel) >= (int)outlen)
		return -ENAMETOOLONG;
	return 0;
}

static int dir_get_file(struct store *s, const char *path, size_t max,
			uint8_t **buf, size_t *len)
{
	char full[PATH_MAX];
	int ret;

	ret = dir_path(to_dir(s), path, full, sizeof(full));
	if (ret)
		return ret;
	return read_file(full, max, buf, len);
}

static int dir_get_chunk(struct store *s, const uint8_t digest[32],
			 enum store_prio prio, store_check_fn check, void *arg)
{
	char rel[80];
	char full[PATH_MAX];
	uint8_t *raw = NULL;
	size_t len = 0;
	int ret;

	(void)prio;
	snap_chunk_path(digest, rel);
	ret = dir_path(to_dir(s), rel, full, sizeof(full));
	if (ret)
		return ret;
	raw = bufpool_get(&to_dir(s)->raw);
	if (!raw)
		return -ENOMEM;
	for (int i = 0; i < DIR_CHUNK_TRIES; i++) {
		ret = read_file_into(full, raw, STORE_CHUNK_MAX, &len);
		if (ret == -EFBIG)
			ret = -EBADMSG;
		else if (!ret && len == 0)
			ret = -ENOENT;
		if (ret)
			break;
		dir_pace(to_dir(s), len);
		ret = check(raw, len, arg);
		if (ret != -EBADMSG)
			break;
	}
	bufpool_put(&to_dir(s)->raw, raw);
	return ret;
}

static int dir_list(struct store *s, const char *path, char ***names,
		    size_t *n)
{
	char full[PATH_MAX];
	struct dirent *de;
	char **v = NULL;
	size_t cnt = 0;
	DIR *dir;
	int ret;

	ret = dir_path(to_dir(s), path, full, sizeof(full));
	if (ret)
		return ret;
	dir = opendir(full);
	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		char **nv;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		nv = realloc(v, (cnt + 1) * sizeof(*v));
		if (!nv) {
			ret = -ENOMEM;
			goto err_free;
		}
		v = nv;
		v[cnt] = strdup(de->d_name);
		if (!v[cnt]) {
			ret = -ENOMEM;
			goto err_free;
		}
		cnt++;
	}
	closedir(dir);
	*names = v;
	*n = cnt;
	return 0;
err_free:
	closedir(dir);
	store_free_names(v, cnt);
	return ret;
}

static void dir_close(struct store *s)
{
	struct store_dir *d = to_dir(s);

	pthread_mutex_destroy(&d->lock);
	bufpool_destroy(&d->raw);
	free(d->root);
	free(d);
}

static const struct store_ops dir_ops = {
	.name = "dir",
	.local = true,
	.get_file = dir_get_file,
	.get_chunk = dir_get_chunk,
	.list = dir_list,
	.close = dir_close,
};

static bool dir_claims(const char *url, enum store_kind kind)
{
	return kind == STORE_KIND_DIR || !strncmp(url, "file://", 7);
}

static int dir_open(const struct store_conf *conf, struct store **out)
{
	const char *root = strncmp(conf->url, "file://", 7) ? conf->url :
							      conf->url + 7;
	struct store_dir *d;
	struct stat st;
	size_t len;
	int err = 0;

	if (stat(root, &st) < 0)
		err = errno;
	else if (!S_ISDIR(st.st_mode))
		err = ENOTDIR;
	if (err) {
		log_err("store: cannot open datastore '%s': %s", root,
			strerror(err));
		return -err;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->root = strdup(root);
	if (!d->root) {
		free(d);
		return -ENOMEM;
	}
	len = strlen(d->root);
	while (len > 1 && d->root[len - 1] == '/')
		d->root[--len] = '\0';
	d->rate = conf->limit_rate;
	pthread_mutex_init(&d->lock, NULL);
	d->base.ops = &dir_ops;
	d->base.where = d->root;
	/* Spare: as many as the chunks worth reading at once here. */
	bufpool_init(&d->raw, STORE_CHUNK_MAX,
		     store_parallelism(&d->base, RAW_SPARE_MAX));
	*out = &d->base;
	return 0;
}

const struct store_backend store_dir_backend = {
	.name = "dir",
	.claims = dir_claims,
	.open = dir_open,
};
