/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A backup repository seen through a store.  Nothing read from a backup
 * reaches a caller unchecked:
 *
 *   manifest  blob CRC -> JSON schema -> type/id/time match the path ->
 *             key fingerprint and signature (key_check_manifest)
 *   index     strict .fidx parse -> size and csum equal the manifest's
 *   chunk     CRC -> crypt mode -> GCM tag -> zstd -> length -> digest,
 *             retried by the store, then -EIO with one log line
 *
 * struct repo_snapshot and struct repo_archive are immutable after open,
 * so every function here may run on any number of threads at once.  The
 * only mutable state is the per-call check context on the stack.
 */
#include "config.h"

#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chunk.h"
#include "crypto.h"
#include "log.h"
#include "repo.h"
#include "util.h"
#include "banned.h"

#define MANIFEST_NAME "index.json.blob"
#define MANIFEST_MAX ((16u << 20) + 44)
/* 16 TiB of 4 MiB chunks is 128 MiB of digests; refuse anything larger. */
#define FIDX_MAX ((256u << 20) + SNAP_INDEX_HEADER_SIZE)

struct repo_snapshot {
	struct store *store;		  /* borrowed */
	sem_t decoders;			  /* decode slots: one per core */
	const struct key_material *key;	  /* borrowed, may be NULL */
	struct snap_manifest *manifest;
	char *path;			  /* "[ns/..]vm/100/<time>" */
	bool peek;			  /* listing: signature not checked */
};

struct repo_archive {
	struct repo_snapshot *snap;	  /* borrowed */
	struct snap_fidx *fidx;
	char *name;			  /* "drive-scsi0.img.fidx" */
	const struct key_material *key;	  /* set iff crypt-mode encrypt */
	uint8_t zero_digest[32];	  /* digest of a full zero chunk */
	bool stop_on_error;		  /* atomic */
	int failed;			  /* atomic: a failure was logged */
};

static const char *const backup_types[] = { "vm", "ct", "host" };

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int repo_list_groups(struct store *s, const char *ns,
		     struct repo_group **out, size_t *n)
{
	struct repo_group *v = NULL;
	char *nspath = NULL;
	size_t cnt = 0;
	int ret;

	ret = snap_ns_path(ns, &nspath);
	if (ret)
		return ret;
	for (size_t t = 0; t < ARRAY_SIZE(backup_types); t++) {
		char *dir = xasprintf("%s%s%s", nspath, *nspath ? "/" : "",
				      backup_types[t]);
		char **ids = NULL;
		size_t nids = 0;

		ret = store_list(s, dir, &ids, &nids);
		free(dir);
		if (ret == -ENOENT)
			continue;
		if (ret)
			goto err_free;
		qsort(ids, nids, sizeof(*ids), cmp_str);
		for (size_t i = 0; i < nids; i++) {
			struct repo_group *nv;

			if (!snap_is_safe_id(ids[i]))
				continue;
			nv = realloc(v, (cnt + 1) * sizeof(*v));
			if (!nv) {
				store_free_names(ids, nids);
				ret = -ENOMEM;
				goto err_free;
			}
			v = nv;
			v[cnt].type = xstrdup(backup_types[t]);
			v[cnt].id = xstrdup(ids[i]);
			cnt++;
		}
		store_free_names(ids, nids);
	}
	free(nspath);
	*out = v;
	*n = cnt;
	return 0;
err_free:
	free(nspath);
	repo_free_groups(v, cnt);
	return ret;
}

void repo_free_groups(struct repo_group *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(g[i].type);
		free(g[i].id);
	}
	free(g);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a;
	int64_t y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

int repo_list_times(struct store *s, const char *ns, const char *type,
		    const char *id, int64_t **out, size_t *n)
{
	char *nspath = NULL;
	char **names = NULL;
	size_t nnames = 0;
	int64_t *times;
	size_t cnt = 0;
	char *dir;
	int ret;

	ret = snap_ns_path(ns, &nspath);
	if (ret)
		return ret;
	dir = xasprintf("%s%s%s/%s", nspath, *nspath ? "/" : "", type, id);
	free(nspath);
	ret = store_list(s, dir, &names, &nnames);
	free(dir);
	if (ret)
		return ret;
	times = xcalloc(nnames ? nnames : 1, sizeof(*times));
	for (size_t i = 0; i < nnames; i++) {
		if (!snap_parse_time(names[i], &times[cnt]))
			cnt++;
	}
	store_free_names(names, nnames);
	qsort(times, cnt, sizeof(*times), cmp_i64);
	*out = times;
	*n = cnt;
	return 0;
}

static int load_manifest(struct repo_snapshot *snap)
{
	struct snap_error err = { "" };
	char where[512];
	uint8_t *raw = NULL;
	uint8_t *json = NULL;
	size_t rawlen = 0;
	size_t jsonlen = 0;
	const char *why = NULL;
	char *path;
	int ret;

	path = xasprintf("%s/%s", snap->path, MANIFEST_NAME);
	store_describe(snap->store, path, where, sizeof(where));
	ret = store_get_file(snap->store, path, MANIFEST_MAX, &raw, &rawlen);
	if (ret == -ENOENT) {
		log_err("repo: cannot open snapshot '%s': no such snapshot",
			snap->path);
		goto out;
	}
	if (ret) {
		if (!store_err_logged(ret))	/* the store said why */
			log_err("repo: cannot read '%s': %s", where,
				strerror(-ret));
		goto out;
	}
	/* The manifest is never encrypted: no key for the blob itself. */
	ret = chunk_decode_blob(raw, rawlen, NULL, MANIFEST_MAX, &json,
				&jsonlen, &why);
	if (ret) {
		log_err("repo: cannot read '%s': %s", where,
			why ? why : strerror(-ret));
		goto out;
	}
	ret = snap_manifest_parse((const char *)json, jsonlen, &snap->manifest,
				  &err);
	if (ret) {
		log_err("repo: cannot read '%s': %s", where, err.msg);
		goto out;
	}
	if (!snap->peek)
		ret = key_check_manifest(snap->key, snap->manifest, where);
out:
	free(path);
	free(raw);
	free(json);
	return ret;
}

static int check_manifest_identity(struct repo_snapshot *snap,
				   const char *type, const char *id,
				   int64_t time)
{
	const struct snap_manifest *m = snap->manifest;

	if (strcmp(snap_manifest_type(m), type) ||
	    strcmp(snap_manifest_id(m), id) || snap_manifest_time(m) != time) {
		log_err("repo: cannot open snapshot '%s': its manifest names "
			"%s/%s/%lld", snap->path, snap_manifest_type(m),
			snap_manifest_id(m), (long long)snap_manifest_time(m));
		return -EBADMSG;
	}
	return 0;
}

static int open_snapshot(struct store *s, const char *ns, const char *spec,
			 const struct key_material *key, bool peek,
			 struct repo_snapshot **out)
{
	struct snap_error err = { "" };
	struct repo_snapshot *snap;
	int64_t *times = NULL;
	size_t ntimes = 0;
	char *type = NULL;
	char *id = NULL;
	int64_t time;
	int ret;

	ret = snap_parse_spec(spec, &type, &id, &time, &err);
	if (ret) {
		log_err("repo: cannot parse snapshot '%s': %s", spec, err.msg);
		return ret;
	}
	if (time < 0) {
		ret = repo_list_times(s, ns, type, id, &times, &ntimes);
		if (ret || !ntimes) {
			if (!store_err_logged(ret))
				log_err("repo: cannot find the newest snapshot "
					"of '%s/%s': %s", type, id,
					ret == -ENOTSUP ?
					"the server offers no directory listing" :
					ret ? strerror(-ret) : "no snapshots");
			ret = ret ? ret : -ENOENT;
			goto out_free;
		}
		time = times[ntimes - 1];
	}
	snap = xcalloc(1, sizeof(*snap));
	/*
	 * Many chunks may be in flight, but decoding more of them at once
	 * than there are cores only starves the network thread.
	 */
	sem_init(&snap->decoders, 0, cpu_count());
	snap->store = s;
	snap->key = key;
	snap->peek = peek;
	ret = snap_snapshot_path(ns, type, id, time, &snap->path);
	if (ret) {
		log_err("repo: cannot open snapshot '%s': bad namespace or name",
			spec);
		goto err_snap;
	}
	ret = load_manifest(snap);
	if (ret)
		goto err_snap;
	ret = check_manifest_identity(snap, type, id, time);
	if (ret)
		goto err_snap;
	*out = snap;
	goto out_free;
err_snap:
	repo_snapshot_close(snap);
out_free:
	free(times);
	free(type);
	free(id);
	return ret;
}

int repo_snapshot_open(struct store *s, const char *ns, const char *spec,
		       const struct key_material *key,
		       struct repo_snapshot **out)
{
	return open_snapshot(s, ns, spec, key, false, out);
}

int repo_snapshot_peek(struct store *s, const char *ns, const char *spec,
		       struct repo_snapshot **out)
{
	return open_snapshot(s, ns, spec, NULL, true, out);
}

int repo_snapshot_protected(const struct repo_snapshot *snap)
{
	char *path = xasprintf("%s/.protected", snap->path);
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	ret = store_get_file(snap->store, path, 4096, &buf, &len);
	free(buf);
	free(path);
	return ret == -ENOENT ? 0 : ret ? ret : 1;
}

int repo_list_namespaces(struct store *s, const char *ns, char ***out,
			 size_t *n)
{
	char *nspath = NULL;
	char *dir;
	int ret;

	ret = snap_ns_path(ns, &nspath);
	if (ret)
		return ret;
	dir = xasprintf("%s%sns", nspath, *nspath ? "/" : "");
	ret = store_list(s, dir, out, n);
	free(dir);
	free(nspath);
	if (ret == -ENOENT) {
		*out = xcalloc(1, sizeof(**out));
		*n = 0;
		return 0;
	}
	if (ret)
		return ret;
	/* Only names a namespace may have; sorted. */
	for (size_t i = 0; i < *n; i++) {
		if (!snap_is_safe_id((*out)[i])) {
			free((*out)[i]);
			(*out)[i--] = (*out)[--*n];
		}
	}
	qsort(*out, *n, sizeof(**out), cmp_str);
	return 0;
}

void repo_snapshot_close(struct repo_snapshot *snap)
{
	if (!snap)
		return;
	snap_manifest_free(snap->manifest);
	sem_destroy(&snap->decoders);
	free(snap->path);
	free(snap);
}

const struct snap_manifest *repo_snapshot_manifest(
	const struct repo_snapshot *snap)
{
	return snap->manifest;
}

struct store *repo_snapshot_store(const struct repo_snapshot *snap)
{
	return snap->store;
}

const char *repo_snapshot_path(const struct repo_snapshot *snap)
{
	return snap->path;
}

/* "drive-scsi0" or "drive-scsi0.img" -> "drive-scsi0.img.fidx". */
static int archive_name(const char *name, char **out)
{
	size_t len = strlen(name);

	if (strchr(name, '/') || strstr(name, "..") || !snap_is_safe_id(name)) {
		log_err("repo: cannot use archive name '%s': not a plain "
			"file name", name);
		return -EINVAL;
	}
	if (len > 5 && !strcmp(name + len - 5, ".didx")) {
		log_err("repo: cannot open '%s': file archives (.didx) are "
			"not supported", name);
		return -EPROTONOSUPPORT;
	}
	if (len > 5 && !strcmp(name + len - 5, ".fidx"))
		*out = xstrdup(name);
	else if (len > 4 && !strcmp(name + len - 4, ".img"))
		*out = xasprintf("%s.fidx", name);
	else
		*out = xasprintf("%s.img.fidx", name);
	return 0;
}

static int load_fidx(struct repo_snapshot *snap, const char *fname,
		     const struct snap_file *fi, struct snap_fidx **out)
{
	struct snap_error err = { "" };
	struct snap_fidx *f = NULL;
	char where[512];
	uint8_t *raw = NULL;
	size_t len = 0;
	char *path;
	int ret;

	path = xasprintf("%s/%s", snap->path, fname);
	store_describe(snap->store, path, where, sizeof(where));
	ret = store_get_file(snap->store, path, FIDX_MAX, &raw, &len);
	if (ret) {
		if (!store_err_logged(ret))	/* the store said why */
			log_err("repo: cannot read '%s': %s", where,
				strerror(-ret));
		goto out;
	}
	ret = snap_fidx_parse(raw, len, &f, &err);
	if (ret) {
		log_err("repo: cannot read '%s': %s", where, err.msg);
		goto out;
	}
	/* Do not trust the header: compare with what the manifest says. */
	if (snap_fidx_size(f) != fi->size) {
		log_err("repo: cannot use '%s': image size %llu at offset 64 "
			"differs from the manifest's %llu", where,
			(unsigned long long)snap_fidx_size(f),
			(unsigned long long)fi->size);
		ret = -EBADMSG;
		goto err_free;
	}
	if (memcmp(snap_fidx_csum(f), fi->csum, SNAP_DIGEST_LEN)) {
		log_err("repo: cannot use '%s': index checksum differs from "
			"the manifest's (index altered or replaced)", where);
		ret = -EBADMSG;
		goto err_free;
	}
	*out = f;
	goto out;
err_free:
	snap_fidx_free(f);
out:
	free(raw);
	free(path);
	return ret;
}

int repo_load_fidx(struct repo_snapshot *snap, const char *name,
		   struct snap_fidx **out)
{
	const struct snap_file *fi;
	char *fname = NULL;
	int ret;

	ret = archive_name(name, &fname);
	if (ret)
		return ret;
	fi = snap_manifest_find(snap->manifest, fname);
	if (!fi) {
		log_err("repo: cannot open archive '%s': not in snapshot '%s'",
			fname, snap->path);
		ret = -ENOENT;
		goto out;
	}
	ret = load_fidx(snap, fname, fi, out);
out:
	free(fname);
	return ret;
}

int repo_read_blob(struct repo_snapshot *snap, const char *name,
		   uint8_t **out, size_t *outlen)
{
	const struct snap_file *fi;
	const char *why = NULL;
	enum chunk_kind kind;
	char where[512];
	uint8_t sum[32];
	uint8_t *raw = NULL;
	size_t rawlen = 0;
	char *fname;
	char *path = NULL;
	size_t len = strlen(name);
	int ret;

	if (!snap_is_safe_id(name)) {
		log_err("repo: cannot use blob name '%s': not a plain file "
			"name", name);
		return -EINVAL;
	}
	fname = len > 5 && !strcmp(name + len - 5, ".blob") ?
			xstrdup(name) : xasprintf("%s.blob", name);
	fi = snap_manifest_find(snap->manifest, fname);
	if (!fi) {
		log_err("repo: cannot read '%s': not in snapshot '%s'", fname,
			snap->path);
		ret = -ENOENT;
		goto out;
	}
	path = xasprintf("%s/%s", snap->path, fname);
	store_describe(snap->store, path, where, sizeof(where));
	ret = store_get_file(snap->store, path, SNAP_MAX_BLOB_SIZE + 4096, &raw,
			     &rawlen);
	if (ret) {
		if (!store_err_logged(ret))
			log_err("repo: cannot read '%s': %s", where,
				strerror(-ret));
		goto out;
	}
	/* The manifest names the encoded file's size and SHA-256. */
	crypto_sha256(raw, rawlen, sum);
	if (rawlen != fi->size || memcmp(sum, fi->csum, sizeof(sum))) {
		log_err("repo: cannot use '%s': %s differs from the manifest's "
			"(blob altered or replaced)", where,
			rawlen != fi->size ? "its size" : "its SHA-256");
		ret = -EBADMSG;
		goto out;
	}
	if (fi->crypt_mode == SNAP_CRYPT_ENCRYPT && !snap->key) {
		log_err("repo: cannot read '%s': encrypted: missing key "
			"(--keyfile)", where);
		ret = -ENOKEY;
		goto out;
	}
	ret = chunk_kind(raw, rawlen, &kind, &why);
	if (!ret && chunk_kind_is_encrypted(kind) !=
			    (fi->crypt_mode == SNAP_CRYPT_ENCRYPT)) {
		why = fi->crypt_mode == SNAP_CRYPT_ENCRYPT ?
			      "not encrypted, but the manifest says it is" :
			      "encrypted, but the manifest says it is not";
		ret = -EBADMSG;
	}
	if (!ret)
		ret = chunk_decode_blob(raw, rawlen, snap->key,
					SNAP_MAX_BLOB_SIZE, out, outlen, &why);
	if (ret)
		log_err("repo: cannot read '%s': %s", where,
			why ? why : strerror(-ret));
out:
	free(raw);
	free(path);
	free(fname);
	return ret;
}

int repo_archive_open(struct repo_snapshot *snap, const char *name,
		      struct repo_archive **out)
{
	const struct snap_file *fi;
	struct repo_archive *a;
	uint8_t *zeros;
	int ret;

	a = xcalloc(1, sizeof(*a));
	a->snap = snap;
	ret = archive_name(name, &a->name);
	if (ret)
		goto err_free;
	fi = snap_manifest_find(snap->manifest, a->name);
	if (!fi) {
		log_err("repo: cannot open archive '%s': not in snapshot '%s'",
			a->name, snap->path);
		ret = -ENOENT;
		goto err_free;
	}
	if (fi->crypt_mode == SNAP_CRYPT_ENCRYPT) {
		if (!snap->key) {
			log_err("repo: cannot open archive '%s': encrypted "
				"backup: key needed (--keyfile)", a->name);
			ret = -ENOKEY;
			goto err_free;
		}
		a->key = snap->key;
	}
	ret = load_fidx(snap, a->name, fi, &a->fidx);
	if (ret)
		goto err_free;
	zeros = calloc(1, snap_fidx_chunk_size(a->fidx));
	if (!zeros) {
		ret = -ENOMEM;
		goto err_free;
	}
	chunk_digest(zeros, snap_fidx_chunk_size(a->fidx), a->key,
		     a->zero_digest);
	free(zeros);
	*out = a;
	return 0;
err_free:
	repo_archive_close(a);
	return ret;
}

void repo_archive_close(struct repo_archive *a)
{
	if (!a)
		return;
	snap_fidx_free(a->fidx);
	free(a->name);
	free(a);
}

const struct snap_fidx *repo_archive_fidx(const struct repo_archive *a)
{
	return a->fidx;
}

const char *repo_archive_name(const struct repo_archive *a)
{
	return a->name;
}

void repo_archive_stop_on_error(struct repo_archive *a)
{
	__atomic_store_n(&a->stop_on_error, true, __ATOMIC_RELAXED);
}

const struct key_material *repo_archive_key(const struct repo_archive *a)
{
	return a->key;
}

unsigned int repo_archive_window(const struct repo_archive *a)
{
	return store_window(a->snap->store);
}

bool repo_archive_is_zero(const struct repo_archive *a, uint64_t i)
{
	return snap_fidx_chunk_len(a->fidx, i) ==
		       snap_fidx_chunk_size(a->fidx) &&
	       !memcmp(snap_fidx_digest(a->fidx, i), a->zero_digest, 32);
}

struct read_ctx {
	const struct repo_archive *a;
	const uint8_t *digest;
	uint8_t *out;		/* NULL until ->get gave one */
	repo_buf_fn get;	/* NULL: ->out was given */
	void *get_arg;
	size_t len;
	const char *why;	/* last check failure, static string */
};

static int read_check(const uint8_t *raw, size_t len, void *arg)
{
	struct read_ctx *ctx = arg;
	sem_t *slots = &ctx->a->snap->decoders;
	int ret;

	ctx->why = NULL;
	/* Taken before a decode slot: a wait here blocks no decoder. */
	if (!ctx->out)
		ctx->out = ctx->get(ctx->get_arg);
	while (sem_wait(slots) && errno == EINTR)
		;
	ret = chunk_decode_verify(raw, len, ctx->a->key, ctx->digest,
				  ctx->out, ctx->len, &ctx->why);
	sem_post(slots);
	return ret;
}

int repo_archive_read_chunk(const struct repo_archive *a, uint64_t i,
			    enum store_prio prio, uint8_t *out)
{
	return repo_archive_read_chunk_into(a, i, prio, NULL, NULL, &out);
}

int repo_archive_read_chunk_into(const struct repo_archive *a, uint64_t i,
				 enum store_prio prio, repo_buf_fn get,
				 void *get_arg, uint8_t **out)
{
	static struct log_ratelimit rl = LOG_RATELIMIT_INIT(5, 10);
	struct read_ctx ctx = {
		.a = a,
		.digest = snap_fidx_digest(a->fidx, i),
		.out = *out,
		.get = get,
		.get_arg = get_arg,
		.len = snap_fidx_chunk_len(a->fidx, i),
	};
	char hex[65];
	char rel[80];
	char where[512];
	int ret;

	if (repo_archive_is_zero(a, i)) {
		if (!*out)
			*out = get(get_arg);
		memset(*out, 0, ctx.len);
		return 0;
	}
	ret = store_get_chunk(a->snap->store, ctx.digest, prio, read_check,
			      &ctx);
	*out = ctx.out;
	if (!ret || ret == -ECANCELED)
		return ret;	/* cancelled: shutting down, nothing to say */
	if (__atomic_load_n(&a->stop_on_error, __ATOMIC_RELAXED)) {
		int zero = 0;

		/* Only the first failure speaks: the job stops anyway. */
		if (!__atomic_compare_exchange_n(&((struct repo_archive *)a)->failed,
						 &zero, 1, false,
						 __ATOMIC_RELAXED,
						 __ATOMIC_RELAXED))
			return -ECANCELED;
	}
	/* -EIO and -EACCES from the network layer were logged there. */
	if (!store_err_logged(ret) && log_ratelimit(&rl)) {
		hex_encode(ctx.digest, 32, hex);
		snap_chunk_path(ctx.digest, rel);
		store_describe(a->snap->store, rel, where, sizeof(where));
		log_err("repo: cannot read chunk %llu (%s) of '%s' from '%s': %s",
			(unsigned long long)i, hex, a->name, where,
			ret == -ENOENT ? "chunk missing" :
			ctx.why ? ctx.why : strerror(-ret));
	}
	/* The store gave up (down, refusing) or the chunk is bad. */
	if (ret == -ENOKEY)
		return ret;
	return store_err_logged(ret) ? -EIO : -EBADMSG;
}
