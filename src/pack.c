/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * pack: raw images -> a PBS snapshot in a local datastore.
 *
 * Order of durability, so that a crash at any instant leaves either no
 * snapshot or a complete one:
 *   1. chunks: each written to "<digest>.tmp.<pid>" and renamed; a chunk
 *      file that already exists (non-empty) is reused (dedup);
 *   2. indexes and the manifest: written into "<group>/.tmp-<time>.<pid>";
 *   3. syncfs() of the datastore: every chunk and file is durable;
 *   4. rename of the temporary directory to "<group>/<time>", fsync.
 * Single-threaded: pack feeds tests, demos and seeding, not restores.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>

#include "chunk.h"
#include "crypto.h"
#include "log.h"
#include "pack.h"
#include "progress.h"
#include "snap.h"
#include "util.h"
#include "banned.h"

struct pack_stats {
	uint64_t chunks;
	uint64_t written;	/* new chunk files */
	uint64_t reused;	/* dedup hits */
	uint64_t holes;		/* chunks in holes of the input, not read */
	uint64_t bytes_in;
	uint64_t bytes_stored;
	/* PBS's chunk_upload_stats: each distinct chunk "uploaded" once. */
	uint64_t up_count;
	uint64_t up_size;
	uint64_t up_compressed;
	uint64_t up_duplicates;	/* already in the datastore */
};

/*
 * Digests written in this run: open addressing on the digest's own first
 * bytes (already uniformly distributed), grown at half load.
 */
struct digest_set {
	uint8_t *v;	/* cap * 32 bytes; all-zero slot = empty */
	uint8_t *used;	/* cap flags */
	size_t n;
	size_t cap;
};

static size_t set_slot(const struct digest_set *s, const uint8_t d[32])
{
	uint64_t h;
	size_t i;

	memcpy(&h, d, sizeof(h));
	for (i = h & (s->cap - 1); s->used[i]; i = (i + 1) & (s->cap - 1))
		if (!memcmp(s->v + 32 * i, d, 32))
			break;
	return i;
}

static bool set_has(const struct digest_set *s, const uint8_t d[32])
{
	return s->cap && s->used[set_slot(s, d)];
}

static void set_add(struct digest_set *s, const uint8_t d[32])
{
	size_t i;

	if (2 * (s->n + 1) > s->cap) {
		struct digest_set g = { .cap = s->cap ? 2 * s->cap : 1024 };

		g.v = xmalloc(32 * g.cap);
		g.used = xcalloc(g.cap, 1);
		for (size_t j = 0; j < s->cap; j++)
			if (s->used[j])
				set_add(&g, s->v + 32 * j);
		free(s->v);
		free(s->used);
		*s = g;
	}
	i = set_slot(s, d);
	if (!s->used[i]) {
		memcpy(s->v + 32 * i, d, 32);
		s->used[i] = 1;
		s->n++;
	}
}

int pack_archive_name(const char *arg, char **path, char **archive)
{
	const char *colon = strrchr(arg, ':');
	const char *base;
	char *stem;
	char *dot;

	if (colon && colon != arg && colon[1]) {
		*path = strndup(arg, colon - arg);
		stem = xstrdup(colon + 1);
	} else {
		*path = xstrdup(arg);
		base = strrchr(arg, '/');
		stem = xstrdup(base ? base + 1 : arg);
		dot = strrchr(stem, '.');
		if (dot && dot != stem && (!strcmp(dot, ".img") ||
					   !strcmp(dot, ".raw")))
			*dot = '\0';
	}
	dot = strstr(stem, ".img.fidx");
	if (dot)
		*dot = '\0';
	else if ((dot = strstr(stem, ".img")) && !dot[4])
		*dot = '\0';
	*archive = xasprintf("%s.img.fidx", stem);
	free(stem);
	if (!snap_is_safe_id(*archive)) {
		log_err("pack: cannot use archive name '%s': only letters, "
			"digits, '_', '.', '-' are allowed", *archive);
		free(*path);
		free(*archive);
		return -EINVAL;
	}
	return 0;
}

int pack_blob_name(const char *arg, char **path, char **name)
{
	const char *colon = strrchr(arg, ':');
	size_t len;

	if (!colon || colon == arg || !colon[1]) {
		log_err("pack: --blob needs FILE:NAME.blob, got '%s'", arg);
		return -EINVAL;
	}
	len = strlen(colon + 1);
	if (len <= 5 || strcmp(colon + 1 + len - 5, ".blob") ||
	    !snap_is_safe_id(colon + 1) ||
	    !strcmp(colon + 1, "index.json.blob")) {
		log_err("pack: cannot use blob name '%s': a plain name ending "
			"in .blob, not the manifest's", colon + 1);
		return -EINVAL;
	}
	*path = strndup(arg, colon - arg);
	*name = xstrdup(colon + 1);
	return 0;
}

static int store_chunk(const char *ds, const uint8_t *data, size_t len,
		       const uint8_t digest[32], const struct pack_conf *conf,
		       struct pack_stats *st)
{
	char rel[80];
	char path[PATH_MAX];
	char dir[PATH_MAX];
	uint8_t *blob = NULL;
	size_t bloblen = 0;
	struct stat sb;
	int ret;

	snap_chunk_path(digest, rel);
	st->up_count++;
	st->up_size += len;
	if (conf->dest) {
		ret = chunk_encode(data, len, true, conf->key, &blob, &bloblen);
		if (!ret)
			ret = store_put(conf->dest, rel, blob, bloblen, true);
		free(blob);
		if (!ret || ret == -EEXIST)
			st->up_compressed += bloblen;
		if (ret == -EEXIST) {
			st->reused++;
			st->up_duplicates++;
			return 0;
		}
		if (!ret) {
			st->written++;
			st->bytes_stored += bloblen;
		}
		return ret;	/* the store said why */
	}
	snprintf(path, sizeof(path), "%s/%s", ds, rel);
	if (!stat(path, &sb) && sb.st_size > 0) {
		st->reused++;
		st->up_duplicates++;
		st->up_compressed += (uint64_t)sb.st_size;
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/%.12s", ds, rel);
	ret = mkdir_p(dir, 0755);
	if (ret)
		goto out_err;
	ret = chunk_encode(data, len, true, conf->key, &blob, &bloblen);
	if (ret)
		goto out_err;
	st->up_compressed += bloblen;
	/* No fsync per chunk: pack_run() syncs the file system once. */
	ret = write_file_rename(path, blob, bloblen, 0644);
	if (ret)
		goto out_err;
	st->written++;
	st->bytes_stored += bloblen;
	free(blob);
	return 0;
out_err:
	free(blob);
	log_err("pack: cannot write chunk '%s': %s", path, strerror(-ret));
	return ret;
}

static int image_size(int fd, const char *path, uint64_t *size)
{
	struct stat sb;

	if (fstat(fd, &sb) < 0)
		goto err;
	if (S_ISBLK(sb.st_mode)) {
		if (blkdev_size(fd, size))
			goto err;
		return 0;
	}
	if (!S_ISREG(sb.st_mode)) {
		log_err("pack: cannot read '%s': not a file or block device",
			path);
		return -EINVAL;
	}
	*size = sb.st_size;
	return 0;
err:
	log_err("pack: cannot stat '%s': %s", path, strerror(errno));
	return -errno;
}

/*
 * Does [off, off + len) lie in a hole of @fd?  *next_data caches where
 * the next data starts at or after the last query; it stays valid until
 * a chunk starts past it.  Files without SEEK_DATA (and block devices,
 * whose lseek reports all data) are read whole.
 */
static bool in_hole(int fd, uint64_t off, uint64_t len, uint64_t size,
		    int64_t *next_data)
{
	off_t d;

	if (*next_data < 0 || off > (uint64_t)*next_data) {
		d = lseek(fd, (off_t)off, SEEK_DATA);
		if (d < 0)
			d = errno == ENXIO ? (off_t)size : (off_t)off;
		*next_data = d;
	}
	return (uint64_t)*next_data >= off + len;
}

/*
 * The chunks of image @fd (@size bytes) hashed into @digests and the
 * new ones stored; @seen the digests stored before.
 */
static int pack_chunks(const struct pack_conf *conf,
		       const struct pack_image *img, int fd, uint64_t size,
		       uint8_t *digests, struct digest_set *seen,
		       struct pack_stats *st)
{
	uint64_t cs = conf->chunk_size;
	uint64_t n = (size + cs - 1) / cs;
	uint8_t *data = xmalloc(cs);
	int64_t next_data = -1;
	uint8_t zero_d[32];
	size_t zero_len = 0;
	struct progress *prog;
	int ret = 0;

	prog = progress_start(conf->progress, "pack", img->archive, size, 0);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (uint64_t i = 0; i < n && !ret; i++) {
		progress_update(prog, i * cs);
		size_t len = MIN(cs, size - i * cs);
		uint8_t *d = digests + 32 * i;

		if (in_hole(fd, i * cs, len, size, &next_data)) {
			/* Holes read as zeros: hash them once per length. */
			if (zero_len != len) {
				memset(data, 0, len);
				chunk_digest(data, len, conf->key, zero_d);
				zero_len = len;
			}
			memcpy(d, zero_d, 32);
			st->holes++;
			if (!set_has(seen, d))
				memset(data, 0, len);
		} else {
			ret = pread_full(fd, data, len, i * cs);
			if (ret) {
				log_err("pack: cannot read '%s' at offset %llu: %s",
					img->path, (unsigned long long)(i * cs),
					strerror(-ret));
				break;
			}
			chunk_digest(data, len, conf->key, d);
		}
		st->chunks++;
		st->bytes_in += len;
		if (set_has(seen, d)) {
			st->reused++;
			continue;
		}
		ret = store_chunk(conf->datastore, data, len, d, conf, st);
		if (!ret)
			set_add(seen, d);
	}
	if (!ret)
		progress_update(prog, size);
	progress_end(prog, ret);
	free(data);
	return ret;
}

/* File @name of the snapshot being built: into @tmpdir, or the
 * destination store. */
static int put_file(const struct pack_conf *conf, const char *tmpdir,
		    const char *name, const void *data, size_t len)
{
	char *path = xasprintf("%s/%s", tmpdir, name);
	int ret;

	if (conf->dest)
		ret = store_put(conf->dest, path, data, len, false);
	else
		ret = write_file_atomic(path, data, len, 0644);
	if (ret && !conf->dest)
		log_err("pack: cannot write '%s': %s", path, strerror(-ret));
	free(path);
	return ret;
}

/* The index of @img over @digests, written into @tmpdir (or the
 * destination store) and added to manifest @m. */
static int write_index(const struct pack_conf *conf,
		       const struct pack_image *img, const char *tmpdir,
		       uint64_t size, const uint8_t *digests,
		       struct snap_manifest *m)
{
	uint64_t cs = conf->chunk_size;
	uint8_t *fidx = NULL;
	size_t fidxlen = 0;
	uint8_t csum[32];
	uint8_t uuid[16];
	int ret;

	/* A random (version 4, RFC 4122 variant) UUID, as PBS's uuid crate. */
	crypto_random(uuid, sizeof(uuid));
	uuid[6] = (uuid[6] & 0x0f) | 0x40;
	uuid[8] = (uuid[8] & 0x3f) | 0x80;
	ret = snap_fidx_encode(size, cs, digests, (size + cs - 1) / cs, uuid,
			       time(NULL), &fidx, &fidxlen, csum);
	if (ret)
		return ret;
	ret = put_file(conf, tmpdir, img->archive, fidx, fidxlen);
	free(fidx);
	if (ret)
		return ret;
	return snap_manifest_add_file(m, img->archive,
				      conf->key ? SNAP_CRYPT_ENCRYPT :
						  SNAP_CRYPT_NONE,
				      size, csum);
}

static int pack_image(const struct pack_conf *conf,
		      const struct pack_image *img, const char *tmpdir,
		      struct snap_manifest *m, struct digest_set *seen,
		      struct pack_stats *st)
{
	uint64_t cs = conf->chunk_size;
	uint8_t *digests = NULL;
	uint64_t size;
	int ret;
	int fd;

	fd = open(img->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		log_err("pack: cannot open '%s': %s", img->path,
			strerror(errno));
		return ret;
	}
	ret = image_size(fd, img->path, &size);
	if (!ret && !size) {
		log_err("pack: cannot pack '%s': image is empty", img->path);
		ret = -EINVAL;
	}
	if (!ret) {
		digests = xmalloc((size + cs - 1) / cs * 32);
		ret = pack_chunks(conf, img, fd, size, digests, seen, st);
	}
	if (!ret)
		ret = write_index(conf, img, tmpdir, size, digests, m);
	free(digests);
	close(fd);
	return ret;
}

static int write_manifest(const struct pack_conf *conf,
			  struct snap_manifest *m, const char *tmpdir,
			  const struct pack_stats *st)
{
	char fp[96];
	char sig[65];
	char *json = NULL;
	size_t jsonlen = 0;
	uint8_t *blob = NULL;
	size_t bloblen = 0;
	int ret;

	if (conf->key) {
		key_fingerprint_str(conf->key, fp);
		ret = snap_manifest_set_key_fingerprint(m, fp);
		if (ret)
			return ret;
		ret = key_sign_manifest(conf->key, m, sig);
		if (ret)
			return ret;
		ret = snap_manifest_set_signature(m, sig);
		if (ret)
			return ret;
	}
	/* What a PBS server adds when the backup finishes. */
	ret = snap_manifest_set_upload_stats(m, st->up_count, st->up_size,
					     st->up_compressed,
					     st->up_duplicates);
	if (ret)
		return ret;
	ret = snap_manifest_encode(m, &json, &jsonlen);
	if (ret)
		return ret;
	/* Manifests are compressed and never encrypted (FORMATS.md 5.1). */
	ret = chunk_encode(json, jsonlen, true, NULL, &blob, &bloblen);
	free(json);
	if (ret)
		return ret;
	ret = put_file(conf, tmpdir, "index.json.blob", blob, bloblen);
	free(blob);
	return ret;
}

/*
 * Blob @b as PBS's client uploads one: compressed, encrypted with the
 * key; the manifest records the encoded file's size and SHA-256.
 */
static int write_blob(const struct pack_conf *conf, const struct pack_blob *b,
		      const char *tmpdir, struct snap_manifest *m)
{
	uint8_t *data = NULL;
	uint8_t *blob = NULL;
	size_t len = 0;
	size_t bloblen = 0;
	uint8_t csum[32];
	int ret;

	ret = read_file(b->path, SNAP_MAX_BLOB_SIZE, &data, &len);
	if (ret) {
		log_err("pack: cannot read '%s': %s", b->path,
			ret == -EFBIG ? "larger than a blob may be" :
					strerror(-ret));
		return ret;
	}
	ret = chunk_encode(data, len, true, conf->key, &blob, &bloblen);
	free(data);
	if (!ret)
		ret = put_file(conf, tmpdir, b->name, blob, bloblen);
	if (!ret) {
		crypto_sha256(blob, bloblen, csum);
		ret = snap_manifest_add_file(m, b->name, conf->key ?
					     SNAP_CRYPT_ENCRYPT :
					     SNAP_CRYPT_NONE, bloblen, csum);
	}
	free(blob);
	return ret;
}

static int write_owner(const char *groupdir, const char *owner)
{
	char *path = xasprintf("%s/owner", groupdir);
	char *text = xasprintf("%s\n", owner);
	struct stat sb;
	int ret = 0;

	if (stat(path, &sb) < 0)
		ret = write_file_atomic(path, text, strlen(text), 0644);
	free(path);
	free(text);
	return ret;
}

/*
 * A new datastore as PBS's chunk store creates one: .chunks with all
 * 65,536 XXXX subdirectories (1.5 s and 256 MiB of directory blocks on
 * ext4 here), an empty .lock; directories 0755.  With lazy_chunk_dirs
 * the subdirectories come as chunks need them (scratch datastores).
 */
static int create_datastore(const struct pack_conf *conf)
{
	char *chunks = xasprintf("%s/.chunks", conf->datastore);
	char *lock = xasprintf("%s/.lock", conf->datastore);
	struct stat sb;
	int ret = 0;

	if (!stat(chunks, &sb))
		goto out;	/* exists: adopt it as it is */
	ret = mkdir_p(chunks, 0755);
	for (unsigned int i = 0; !ret && !conf->lazy_chunk_dirs && i < 65536;
	     i++) {
		char *d = xasprintf("%s/%04x", chunks, i);

		if (mkdir(d, 0755) < 0 && errno != EEXIST)
			ret = -errno;
		free(d);
	}
	if (!ret && stat(lock, &sb))
		ret = write_file_rename(lock, "", 0, 0644);
	if (ret)
		log_err("pack: cannot create datastore '%s': %s",
			conf->datastore, strerror(-ret));
out:
	free(chunks);
	free(lock);
	return ret;
}

/* Undo a failed pack: the temporary directory holds only our files. */
static void remove_tmpdir(const char *dir)
{
	struct dirent *de;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	rmdir(dir);
}

/*
 * Into a store (an S3 bucket): no rename there, so the order is the
 * atomicity: chunks, indexes, then the manifest that makes the snapshot
 * visible.  A failure leaves chunks (garbage for PBS's GC) and perhaps
 * indexes, never a manifest.
 */
static int pack_to_store(const struct pack_conf *conf, const char *snappath,
			 const char *grouppath, struct snap_manifest *m,
			 struct digest_set *seen, struct pack_stats *st)
{
	char *owner = xasprintf("%s/owner", grouppath);
	char *text = xasprintf("%s\n", conf->owner ? conf->owner : "root@pam");
	char *manifest = xasprintf("%s/index.json.blob", snappath);
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	ret = store_get_file(conf->dest, manifest, 1 << 20, &buf, &len);
	free(buf);
	if (!ret) {
		log_err("pack: cannot create snapshot '%s': it exists",
			snappath);
		ret = -EEXIST;
		goto out;
	}
	if (ret != -ENOENT)
		goto out;
	ret = store_put(conf->dest, owner, text, strlen(text), true);
	if (ret == -EEXIST)
		ret = 0;
	for (unsigned int i = 0; !ret && i < conf->nimages; i++)
		ret = pack_image(conf, &conf->images[i], snappath, m, seen, st);
	for (unsigned int i = 0; !ret && i < conf->nblobs; i++)
		ret = write_blob(conf, &conf->blobs[i], snappath, m);
	if (!ret)
		ret = write_manifest(conf, m, snappath, st);
out:
	free(owner);
	free(text);
	free(manifest);
	return ret;
}

/* Everything under @datastore durable, then @tmpdir becomes @snapdir. */
static int publish(const char *datastore, const char *tmpdir,
		   const char *snapdir)
{
	int ret;
	int dfd;

	dfd = open(datastore, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || syncfs(dfd) < 0) {
		ret = -errno;
		log_err("pack: cannot sync '%s': %s", datastore,
			strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return ret;
	}
	close(dfd);
	if (rename(tmpdir, snapdir) < 0) {
		ret = -errno;
		log_err("pack: cannot rename '%s' to '%s': %s", tmpdir, snapdir,
			strerror(errno));
		return ret;
	}
	fsync_parent_dir(snapdir);
	return 0;
}

/* Into a datastore directory: the snapshot built in a temporary
 * directory beside it (removed on failure), then renamed. */
static int pack_to_dir(const struct pack_conf *conf, const char *groupdir,
		       const char *snapdir, const char *tmpdir,
		       struct snap_manifest **m, struct digest_set *seen,
		       struct pack_stats *st)
{
	struct stat sb;
	int ret;

	if (!stat(snapdir, &sb)) {
		log_err("pack: cannot create snapshot '%s': it exists", snapdir);
		return -EEXIST;
	}
	ret = mkdir_p(conf->datastore, 0755);
	if (!ret) {
		ret = create_datastore(conf);
		if (ret)
			return ret;	/* it said why */
		ret = mkdir_p(tmpdir, 0755);
	}
	if (ret) {
		log_err("pack: cannot create '%s': %s", tmpdir, strerror(-ret));
		return ret;
	}
	ret = write_owner(groupdir, conf->owner ? conf->owner : "root@pam");
	if (!ret)
		ret = snap_manifest_new(conf->type, conf->id, conf->time, m);
	for (unsigned int i = 0; !ret && i < conf->nimages; i++)
		ret = pack_image(conf, &conf->images[i], tmpdir, *m, seen, st);
	for (unsigned int i = 0; !ret && i < conf->nblobs; i++)
		ret = write_blob(conf, &conf->blobs[i], tmpdir, *m);
	if (!ret)
		ret = write_manifest(conf, *m, tmpdir, st);
	/* Everything durable before the snapshot appears. */
	if (!ret)
		ret = publish(conf->datastore, tmpdir, snapdir);
	if (ret)
		remove_tmpdir(tmpdir);
	return ret;
}

int pack_run(const struct pack_conf *conf)
{
	struct pack_stats st = { 0 };
	struct digest_set seen = { 0 };
	struct snap_manifest *m = NULL;
	char timestr[21];
	char *nspath = NULL;
	char *groupdir = NULL;
	char *snapdir = NULL;
	char *tmpdir = NULL;
	uint64_t t0 = now_ns();
	int ret;

	ret = snap_ns_path(conf->ns, &nspath);
	if (ret) {
		log_err("pack: cannot use namespace '%s': bad name or deeper "
			"than %d levels", conf->ns, SNAP_MAX_NS_DEPTH);
		return ret;
	}
	snap_format_time(conf->time, timestr);
	if (conf->dest) {
		/* Store paths are relative to the datastore. */
		groupdir = xasprintf("%s%s%s/%s", nspath, *nspath ? "/" : "",
				     conf->type, conf->id);
		snapdir = xasprintf("%s/%s", groupdir, timestr);
		ret = snap_manifest_new(conf->type, conf->id, conf->time, &m);
		if (!ret)
			ret = pack_to_store(conf, snapdir, groupdir, m, &seen,
					    &st);
	} else {
		groupdir = xasprintf("%s/%s%s%s/%s", conf->datastore, nspath,
				     *nspath ? "/" : "", conf->type, conf->id);
		snapdir = xasprintf("%s/%s", groupdir, timestr);
		tmpdir = xasprintf("%s/.tmp-%s.%d", groupdir, timestr,
				   (int)getpid());
		ret = pack_to_dir(conf, groupdir, snapdir, tmpdir, &m, &seen,
				  &st);
	}
	if (!ret && !conf->quiet)
		log_info("pack: %s/%s/%s: %llu chunks, %llu new, %llu deduplicated, "
			 "%llu in holes, %.1f MiB in, %.1f MiB stored, %.1f s",
			 conf->type, conf->id, timestr,
			 (unsigned long long)st.chunks,
			 (unsigned long long)st.written,
			 (unsigned long long)st.reused,
			 (unsigned long long)st.holes, st.bytes_in / 1048576.0,
			 st.bytes_stored / 1048576.0,
			 (now_ns() - t0) / 1e9);
	snap_manifest_free(m);
	free(seen.v);
	free(seen.used);
	free(nspath);
	free(groupdir);
	free(snapdir);
	free(tmpdir);
	return ret;
}
