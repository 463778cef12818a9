/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * PBS formats from byte buffers (FORMATS.md sections 1, 5, 6).  Pure: no
 * I/O, no threads, no global mutable state; every input is untrusted.
 * Parsers fail with -EBADMSG and one line in struct snap_error naming the
 * field and, for binary formats, the byte offset.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "compiler.h"
#include "crypto.h"
#include "jsonx.h"
#include "snap.h"
#include "util.h"
#include "banned.h"

const uint8_t SNAP_MAGIC_FIDX[8] = { 47, 127, 65, 237, 145, 253, 15, 205 };
const uint8_t SNAP_MAGIC_DIDX[8] = { 28, 145, 78, 165, 25, 186, 179, 205 };
const uint8_t SNAP_MAGIC_BLOB_PLAIN[8] = { 66, 171, 56, 7, 190, 131, 112, 161 };
const uint8_t SNAP_MAGIC_BLOB_ZSTD[8] = { 49, 185, 88, 66, 111, 182, 163, 127 };
const uint8_t SNAP_MAGIC_BLOB_ENC[8] = { 123, 103, 133, 190, 34, 45, 76, 240 };
const uint8_t SNAP_MAGIC_BLOB_ENC_ZSTD[8] = { 230, 89, 27, 191, 11, 191, 216, 11 };
const uint8_t SNAP_MAGIC_CATALOG[8] = { 145, 253, 96, 249, 196, 103, 88, 213 };

static int fail(struct snap_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(struct snap_error *err, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -EBADMSG;
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

/* ---- fixed index ---- */

/*
 * Digests are kept whole unless one digest fills most of the index (the
 * zero chunk of a sparse disk; 16 TiB is 4 Mi digests, 128 MiB): then
 * the chunks that hold it are a bit each, and the others are stored in
 * order, found by rank (a count per 64 chunks plus a popcount).
 */
struct snap_fidx {
	uint64_t size;
	uint64_t chunk_size;
	uint64_t count;
	int64_t ctime;
	uint8_t csum[32];	/* recomputed */
	bool header_csum_ok;
	uint8_t *digests;	/* count * 32, or the stored ones in order */
	uint64_t *other;	/* NULL: not compact; bit i: chunk i stored */
	uint64_t *rank;		/* stored chunks before word i */
	uint8_t common[32];	/* digest of every chunk not stored */
};

/*
 * Boyer-Moore majority vote: the digest held by more than half of the
 * chunks, if one is (else some digest); *cnt: how many hold it.
 */
static const uint8_t *majority(const uint8_t *d, uint64_t n, uint64_t *cnt)
{
	const uint8_t *cand = d;
	uint64_t votes = 0;

	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *x = d + i * SNAP_DIGEST_LEN;

		if (!votes)
			cand = x;
		if (!memcmp(x, cand, SNAP_DIGEST_LEN))
			votes++;
		else
			votes--;
	}
	*cnt = 0;
	for (uint64_t i = 0; i < n; i++)
		*cnt += !memcmp(d + i * SNAP_DIGEST_LEN, cand, SNAP_DIGEST_LEN);
	return cand;
}

/* Keep @d (count * 32 bytes) in f; compact when that saves memory. */
static int fidx_keep(struct snap_fidx *f, const uint8_t *d)
{
	uint64_t n = f->count;
	uint64_t words = (n + 63) / 64;
	uint64_t cnt;
	uint64_t k = 0;
	const uint8_t *c = majority(d, n, &cnt);

	/*
	 * Bits and ranks cost 2 bits a chunk, each common digest saves 256:
	 * worth it from one chunk in 64 (below, plain is simpler and as small).
	 */
	if (cnt * 64 <= n) {
		f->digests = malloc(n * SNAP_DIGEST_LEN);
		if (!f->digests)
			return -ENOMEM;
		memcpy(f->digests, d, n * SNAP_DIGEST_LEN);
		return 0;
	}
	memcpy(f->common, c, SNAP_DIGEST_LEN);
	f->other = calloc(words, sizeof(*f->other));
	f->rank = calloc(words, sizeof(*f->rank));
	f->digests = malloc((n - cnt ? n - cnt : 1) * SNAP_DIGEST_LEN);
	if (!f->other || !f->rank || !f->digests)
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *x = d + i * SNAP_DIGEST_LEN;

		if (!(i % 64))
			f->rank[i / 64] = k;
		if (memcmp(x, f->common, SNAP_DIGEST_LEN)) {
			f->other[i / 64] |= 1ull << (i % 64);
			memcpy(f->digests + k++ * SNAP_DIGEST_LEN, x,
			       SNAP_DIGEST_LEN);
		}
	}
	return 0;
}

int snap_fidx_parse(const uint8_t *buf, size_t len, struct snap_fidx **out,
		    struct snap_error *err)
{
	const uint8_t *d = buf + SNAP_INDEX_HEADER_SIZE;
	struct snap_fidx *f;
	uint64_t size;
	uint64_t cs;
	uint64_t n;
	uint64_t want;

	if (len >= 8 && !memcmp(buf, SNAP_MAGIC_DIDX, 8)) {
		if (err)
			snprintf(err->msg, sizeof(err->msg),
				 "dynamic index (file archive): not supported");
		return -EPROTONOSUPPORT;
	}
	if (len < SNAP_INDEX_HEADER_SIZE)
		return fail(err, "file size %zu is shorter than the 4096-byte "
			    "header at offset 0", len);
	if (memcmp(buf, SNAP_MAGIC_FIDX, 8))
		return fail(err, "bad magic at offset 0 (not a fixed index)");
	size = le64(buf + 64);
	cs = le64(buf + 72);
	if (!size)
		return fail(err, "image size 0 at offset 64");
	if (cs < 4096 || cs > SNAP_MAX_CHUNK_SIZE || (cs & (cs - 1)))
		return fail(err, "chunk size %llu is not a power of two from "
			    "4096 to 16 MiB at offset 72",
			    (unsigned long long)cs);
	n = size / cs + (size % cs != 0);
	if (__builtin_mul_overflow(n, (uint64_t)SNAP_DIGEST_LEN, &want) ||
	    __builtin_add_overflow(want, (uint64_t)SNAP_INDEX_HEADER_SIZE,
				   &want) ||
	    want != len)
		return fail(err, "file size %zu does not match 4096 + 32 * %llu "
			    "for the image size at offset 64", len,
			    (unsigned long long)n);
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->size = size;
	f->chunk_size = cs;
	f->count = n;
	f->ctime = (int64_t)le64(buf + 24);
	if (fidx_keep(f, d)) {
		snap_fidx_free(f);
		return -ENOMEM;
	}
	crypto_sha256(d, n * SNAP_DIGEST_LEN, f->csum);
	f->header_csum_ok = !memcmp(f->csum, buf + 32, 32);
	*out = f;
	return 0;
}

void snap_fidx_free(struct snap_fidx *f)
{
	if (!f)
		return;
	free(f->digests);
	free(f->other);
	free(f->rank);
	free(f);
}

/* Digests stored before chunk @i (compact form). */
static uint64_t stored_before(const struct snap_fidx *f, uint64_t i)
{
	uint64_t w = f->other[i / 64] & ((1ull << (i % 64)) - 1);

	return f->rank[i / 64] + (uint64_t)__builtin_popcountll(w);
}

size_t snap_fidx_mem(const struct snap_fidx *f)
{
	uint64_t words = (f->count + 63) / 64;
	uint64_t stored = f->count;
	const uint64_t last = f->count - 1;

	if (f->other)
		stored = stored_before(f, last) +
			 !!(f->other[last / 64] & (1ull << (last % 64)));
	return sizeof(*f) + stored * SNAP_DIGEST_LEN +
	       (f->other ? 2 * words * sizeof(uint64_t) : 0);
}

uint64_t snap_fidx_size(const struct snap_fidx *f)
{
	return f->size;
}

uint64_t snap_fidx_chunk_size(const struct snap_fidx *f)
{
	return f->chunk_size;
}

uint64_t snap_fidx_count(const struct snap_fidx *f)
{
	return f->count;
}

int64_t snap_fidx_ctime(const struct snap_fidx *f)
{
	return f->ctime;
}

const uint8_t *snap_fidx_digest(const struct snap_fidx *f, uint64_t i)
{
	if (!f->other)
		return f->digests + i * SNAP_DIGEST_LEN;
	if (!(f->other[i / 64] & (1ull << (i % 64))))
		return f->common;
	return f->digests + stored_before(f, i) * SNAP_DIGEST_LEN;
}

uint64_t snap_fidx_chunk_len(const struct snap_fidx *f, uint64_t i)
{
	uint64_t start = i * f->chunk_size;

	return MIN(f->chunk_size, f->size - start);
}

const uint8_t *snap_fidx_csum(const struct snap_fidx *f)
{
	return f->csum;
}

bool snap_fidx_header_csum_ok(const struct snap_fidx *f)
{
	return f->header_csum_ok;
}

int snap_fidx_encode(uint64_t size, uint64_t chunk_size,
		     const uint8_t *digests, uint64_t n, const uint8_t uuid[16],
		     int64_t ctime, uint8_t **out, size_t *outlen,
		     uint8_t csum_out[32])
{
	uint8_t csum[32];
	uint8_t *buf;
	uint64_t len;

	if (!size || !chunk_size || (chunk_size & (chunk_size - 1)) ||
	    n != size / chunk_size + (size % chunk_size != 0))
		return -EINVAL;
	if (__builtin_mul_overflow(n, (uint64_t)SNAP_DIGEST_LEN, &len) ||
	    __builtin_add_overflow(len, (uint64_t)SNAP_INDEX_HEADER_SIZE, &len))
		return -EOVERFLOW;
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, SNAP_MAGIC_FIDX, 8);
	memcpy(buf + 8, uuid, 16);
	put_le64(buf + 24, (uint64_t)ctime);
	crypto_sha256(digests, n * SNAP_DIGEST_LEN, csum);
	memcpy(buf + 32, csum, 32);
	put_le64(buf + 64, size);
	put_le64(buf + 72, chunk_size);
	memcpy(buf + SNAP_INDEX_HEADER_SIZE, digests, n * SNAP_DIGEST_LEN);
	if (csum_out)
		memcpy(csum_out, csum, 32);
	*out = buf;
	*outlen = len;
	return 0;
}

/* ---- names and paths ---- */

bool snap_is_safe_id(const char *s)
{
	size_t len = strlen(s);

	if (!len || len > 128)
		return false;
	if (!isalnum((unsigned char)s[0]) && s[0] != '_')
		return false;
	for (size_t i = 1; i < len; i++) {
		unsigned char c = s[i];

		if (!isalnum(c) && c != '_' && c != '.' && c != '-')
			return false;
	}
	return true;
}

bool snap_is_backup_type(const char *s)
{
	return !strcmp(s, "vm") || !strcmp(s, "ct") || !strcmp(s, "host");
}

int snap_format_time(int64_t t, char out[21])
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (!gmtime_r(&tt, &tm) ||
	    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) != 20)
		return -EINVAL;
	return 0;
}

int snap_parse_time(const char *s, int64_t *out)
{
	struct tm tm = { 0 };
	char back[21];
	const char *end;
	time_t t;

	if (strlen(s) != 20)
		return -EINVAL;
	for (int i = 0; i < 20; i++) {
		static const char pat[] = "dddd-dd-ddTdd:dd:ddZ";

		if (pat[i] == 'd' ? !isdigit((unsigned char)s[i]) :
				    s[i] != pat[i])
			return -EINVAL;
	}
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end)
		return -EINVAL;
	t = timegm(&tm);
	/* Reject dates that timegm normalised (Feb 30 and the like). */
	if (t < 0 || snap_format_time(t, back) || strcmp(back, s))
		return -EINVAL;
	*out = t;
	return 0;
}

int snap_ns_path(const char *ns, char **out)
{
	struct buf b;
	const char *p = ns;
	int depth = 0;
	int ret = 0;

	buf_init(&b, 4096);
	if (!ns || !*ns) {
		*out = xstrdup("");
		return 0;
	}
	while (*p && !ret) {
		size_t n = strcspn(p, "/");
		char comp[129];

		if (!n || n > 128 || ++depth > SNAP_MAX_NS_DEPTH) {
			ret = -EINVAL;
			break;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (!snap_is_safe_id(comp)) {
			ret = -EINVAL;
			break;
		}
		if (b.len)
			ret = buf_append(&b, "/", 1);
		if (!ret)
			ret = buf_append(&b, "ns/", 3);
		if (!ret)
			ret = buf_append(&b, comp, n);
		p += n;
		if (*p == '/' && !*++p)
			ret = -EINVAL;
	}
	if (ret) {
		buf_release(&b);
		return ret;
	}
	*out = (char *)buf_steal(&b, NULL);
	return 0;
}

int snap_snapshot_path(const char *ns, const char *type, const char *id,
		       int64_t time, char **out)
{
	char ts[21];
	char *nsp;
	int ret;

	if (!snap_is_backup_type(type) || !snap_is_safe_id(id) ||
	    snap_format_time(time, ts))
		return -EINVAL;
	ret = snap_ns_path(ns, &nsp);
	if (ret)
		return ret;
	*out = xasprintf("%s%s%s/%s/%s", nsp, *nsp ? "/" : "", type, id, ts);
	free(nsp);
	return 0;
}

int snap_parse_spec(const char *spec, char **type, char **id, int64_t *time,
		    struct snap_error *err)
{
	const char *s1 = strchr(spec, '/');
	const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
	char *t = NULL;
	char *i = NULL;
	uint64_t v;

	if (!s1)
		return fail(err, "expected TYPE/ID[/TIME]");
	t = strndup(spec, s1 - spec);
	i = s2 ? strndup(s1 + 1, s2 - s1 - 1) : strdup(s1 + 1);
	if (!t || !i)
		goto err_free;
	if (!snap_is_backup_type(t)) {
		fail(err, "backup type '%s' is not vm, ct or host", t);
		goto err_free;
	}
	if (!snap_is_safe_id(i)) {
		fail(err, "backup id '%s' is not a plain name", i);
		goto err_free;
	}
	*time = -1;
	if (s2) {
		if (snap_parse_time(s2 + 1, time) &&
		    (parse_u64(s2 + 1, &v) || v > INT64_MAX || !v)) {
			fail(err, "time '%s' is neither YYYY-MM-DDTHH:MM:SSZ nor "
			     "epoch seconds", s2 + 1);
			goto err_free;
		}
		if (*time < 0)
			*time = (int64_t)v;
	}
	*type = t;
	*id = i;
	return 0;
err_free:
	free(t);
	free(i);
	return t && i ? -EBADMSG : -ENOMEM;
}

void snap_chunk_path(const uint8_t digest[32], char out[80])
{
	char hex[65];

	hex_encode(digest, 32, hex);
	snprintf(out, 80, ".chunks/%.4s/%s", hex, hex);
}

/* ---- manifest ---- */

struct snap_manifest {
	char *type;
	char *id;
	int64_t time;
	struct snap_file *files;
	size_t nfiles;
	json_object *unprotected;	/* always an object */
	char *signature;		/* NULL = null */
};

const char *snap_crypt_mode_name(enum snap_crypt_mode mode)
{
	switch (mode) {
	case SNAP_CRYPT_ENCRYPT:
		return "encrypt";
	case SNAP_CRYPT_SIGN_ONLY:
		return "sign-only";
	default:
		return "none";
	}
}

static bool is_hex64(const char *s)
{
	if (strlen(s) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

static json_object *get(json_object *o, const char *key, json_type type)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, type))
		return NULL;
	return v;
}

/* An integer member that json-c read as an integer, not a float. */
static int get_u64(json_object *o, const char *key, uint64_t *out)
{
	json_object *v = get(o, key, json_type_int);
	const char *text;

	if (!v)
		return -EINVAL;
	text = json_object_to_json_string(v);
	if (text[0] == '-')
		return -EINVAL;
	return parse_u64(text, out);
}

static int parse_file(json_object *o, size_t idx, struct snap_file *f,
		      struct snap_error *err)
{
	json_object *v;
	const char *s;

	if (!json_object_is_type(o, json_type_object))
		return fail(err, "files[%zu]: not an object", idx);
	v = get(o, "filename", json_type_string);
	if (!v || !snap_is_safe_id(json_object_get_string(v)))
		return fail(err, "files[%zu].filename: missing or not a plain "
			    "file name", idx);
	f->filename = xstrdup(json_object_get_string(v));
	if (get_u64(o, "size", &f->size))
		return fail(err, "files[%zu].size: missing or not an unsigned "
			    "integer", idx);
	v = get(o, "csum", json_type_string);
	if (!v || !is_hex64(json_object_get_string(v)))
		return fail(err, "files[%zu].csum: not 64 hex digits", idx);
	hex_decode(json_object_get_string(v), f->csum, 32);
	if (!json_object_object_get_ex(o, "crypt-mode", &v) || !v) {
		f->crypt_mode = SNAP_CRYPT_NONE;
		return 0;
	}
	s = json_object_is_type(v, json_type_string) ?
		    json_object_get_string(v) : "";
	if (!strcmp(s, "none"))
		f->crypt_mode = SNAP_CRYPT_NONE;
	else if (!strcmp(s, "encrypt"))
		f->crypt_mode = SNAP_CRYPT_ENCRYPT;
	else if (!strcmp(s, "sign-only"))
		f->crypt_mode = SNAP_CRYPT_SIGN_ONLY;
	else
		return fail(err, "files[%zu].crypt-mode: not none, encrypt or "
			    "sign-only", idx);
	return 0;
}

int snap_manifest_parse(const char *json, size_t len,
			struct snap_manifest **out, struct snap_error *err)
{
	size_t bad_at;
	struct snap_manifest *m;
	json_object *root;
	json_object *v;
	uint64_t t;
	int ret = -EBADMSG;

	if (len > SNAP_MAX_BLOB_SIZE || len > INT32_MAX)
		return fail(err, "manifest too large");
	root = jsonx_parse(json, len, &bad_at);
	if (!root)
		return fail(err, "not valid JSON at offset %zu", bad_at);
	m = xcalloc(1, sizeof(*m));
	if (!json_object_is_type(root, json_type_object)) {
		fail(err, "manifest is not a JSON object");
		goto err_free;
	}
	v = get(root, "backup-type", json_type_string);
	if (!v || !snap_is_backup_type(json_object_get_string(v))) {
		fail(err, "backup-type: missing or not vm, ct or host");
		goto err_free;
	}
	m->type = xstrdup(json_object_get_string(v));
	v = get(root, "backup-id", json_type_string);
	if (!v || !snap_is_safe_id(json_object_get_string(v))) {
		fail(err, "backup-id: missing or not a plain name");
		goto err_free;
	}
	m->id = xstrdup(json_object_get_string(v));
	if (get_u64(root, "backup-time", &t) || t > INT64_MAX) {
		fail(err, "backup-time: missing or not an integer");
		goto err_free;
	}
	m->time = (int64_t)t;
	v = get(root, "files", json_type_array);
	if (!v) {
		fail(err, "files: missing or not an array");
		goto err_free;
	}
	m->nfiles = json_object_array_length(v);
	m->files = xcalloc(m->nfiles ? m->nfiles : 1, sizeof(*m->files));
	for (size_t i = 0; i < m->nfiles; i++) {
		ret = parse_file(json_object_array_get_idx(v, i), i,
				 &m->files[i], err);
		if (ret)
			goto err_free;
	}
	ret = -EBADMSG;
	if (json_object_object_get_ex(root, "unprotected", &v) && v) {
		if (!json_object_is_type(v, json_type_object)) {
			fail(err, "unprotected: not an object");
			goto err_free;
		}
		m->unprotected = json_object_get(v);
	} else {
		m->unprotected = json_object_new_object();
	}
	if (json_object_object_get_ex(root, "signature", &v) && v) {
		if (!json_object_is_type(v, json_type_string) ||
		    !is_hex64(json_object_get_string(v))) {
			fail(err, "signature: not null or 64 hex digits");
			goto err_free;
		}
		m->signature = xstrdup(json_object_get_string(v));
	}
	json_object_put(root);
	*out = m;
	return 0;
err_free:
	json_object_put(root);
	snap_manifest_free(m);
	return ret;
}

int snap_manifest_new(const char *type, const char *id, int64_t time,
		      struct snap_manifest **out)
{
	struct snap_manifest *m;

	if (!snap_is_backup_type(type) || !snap_is_safe_id(id) || time < 0)
		return -EINVAL;
	m = xcalloc(1, sizeof(*m));
	m->type = xstrdup(type);
	m->id = xstrdup(id);
	m->time = time;
	m->unprotected = json_object_new_object();
	*out = m;
	return 0;
}

void snap_manifest_free(struct snap_manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nfiles; i++)
		free(m->files[i].filename);
	free(m->files);
	json_object_put(m->unprotected);
	free(m->signature);
	free(m->type);
	free(m->id);
	free(m);
}

const char *snap_manifest_type(const struct snap_manifest *m)
{
	return m->type;
}

const char *snap_manifest_id(const struct snap_manifest *m)
{
	return m->id;
}

int64_t snap_manifest_time(const struct snap_manifest *m)
{
	return m->time;
}

size_t snap_manifest_nfiles(const struct snap_manifest *m)
{
	return m->nfiles;
}

const struct snap_file *snap_manifest_file(const struct snap_manifest *m,
					   size_t i)
{
	return i < m->nfiles ? &m->files[i] : NULL;
}

const struct snap_file *snap_manifest_find(const struct snap_manifest *m,
					   const char *filename)
{
	for (size_t i = 0; i < m->nfiles; i++)
		if (!strcmp(m->files[i].filename, filename))
			return &m->files[i];
	return NULL;
}

const char *snap_manifest_signature(const struct snap_manifest *m)
{
	return m->signature;
}

const char *snap_manifest_key_fingerprint(const struct snap_manifest *m)
{
	json_object *v = get(m->unprotected, "key-fingerprint",
			     json_type_string);

	return v ? json_object_get_string(v) : NULL;
}

int snap_manifest_add_file(struct snap_manifest *m, const char *filename,
			   enum snap_crypt_mode mode, uint64_t size,
			   const uint8_t csum[32])
{
	struct snap_file *nf;

	if (!snap_is_safe_id(filename) || snap_manifest_find(m, filename))
		return -EINVAL;
	nf = realloc(m->files, (m->nfiles + 1) * sizeof(*nf));
	if (!nf)
		return -ENOMEM;
	m->files = nf;
	nf = &m->files[m->nfiles++];
	nf->filename = xstrdup(filename);
	nf->crypt_mode = mode;
	nf->size = size;
	memcpy(nf->csum, csum, 32);
	return 0;
}

int snap_manifest_set_signature(struct snap_manifest *m, const char *hex)
{
	if (hex && !is_hex64(hex))
		return -EINVAL;
	free(m->signature);
	m->signature = hex ? xstrdup(hex) : NULL;
	return 0;
}

int snap_manifest_set_key_fingerprint(struct snap_manifest *m,
				      const char *fp)
{
	if (!fp) {
		json_object_object_del(m->unprotected, "key-fingerprint");
		return 0;
	}
	return json_object_object_add(m->unprotected, "key-fingerprint",
				      json_object_new_string(fp)) ? -ENOMEM : 0;
}

/* A JSON string as serde_json writes it: minimal escapes, UTF-8 as is. */
static int put_string(struct buf *b, const char *s)
{
	int ret = buf_append(b, "\"", 1);

	for (; !ret && *s; s++) {
		unsigned char c = *s;
		char esc[8];

		switch (c) {
		case '"': ret = buf_append(b, "\\\"", 2); break;
		case '\\': ret = buf_append(b, "\\\\", 2); break;
		case '\b': ret = buf_append(b, "\\b", 2); break;
		case '\f': ret = buf_append(b, "\\f", 2); break;
		case '\n': ret = buf_append(b, "\\n", 2); break;
		case '\r': ret = buf_append(b, "\\r", 2); break;
		case '\t': ret = buf_append(b, "\\t", 2); break;
		default:
			if (c < 0x20) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				ret = buf_append(b, esc, 6);
			} else {
				ret = buf_append(b, s, 1);
			}
		}
	}
	return ret ? ret : buf_append(b, "\"", 1);
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int put_indent(struct buf *b, int indent)
{
	int ret = buf_append(b, "\n", 1);

	for (int i = 0; !ret && i < indent; i++)
		ret = buf_append(b, " ", 1);
	return ret;
}

/*
 * JSON with sorted object keys.  @indent < 0: the canonical form of the
 * signature, no white space, null an error.  @indent >= 0: serde_json's
 * to_string_pretty of a Value (what PBS writes): two-space indentation,
 * ": " after keys, "{}" and "[]" when empty, null allowed.
 */
static int put_json(struct buf *b, json_object *o, int indent)
{
	bool pretty = indent >= 0;
	const char **keys;
	size_t n = 0;
	size_t i;
	int ret = 0;
	char num[32];

	switch (json_object_get_type(o)) {
	case json_type_null:
		return pretty ? buf_append(b, "null", 4) : -EINVAL;
	case json_type_boolean:
		return buf_append(b, json_object_get_boolean(o) ? "true" :
								  "false",
				  json_object_get_boolean(o) ? 4 : 5);
	case json_type_int:
		snprintf(num, sizeof(num), "%s", json_object_to_json_string(o));
		return buf_append(b, num, strlen(num));
	case json_type_double:
		/* PBS manifests hold no floats; refuse to guess a format. */
		return -EINVAL;
	case json_type_string:
		return put_string(b, json_object_get_string(o));
	case json_type_array:
		if (!json_object_array_length(o))
			return buf_append(b, "[]", 2);
		ret = buf_append(b, "[", 1);
		for (i = 0; !ret && i < json_object_array_length(o); i++) {
			if (i)
				ret = buf_append(b, ",", 1);
			if (!ret && pretty)
				ret = put_indent(b, indent + 2);
			if (!ret)
				ret = put_json(b, json_object_array_get_idx(o, i),
					       pretty ? indent + 2 : -1);
		}
		if (!ret && pretty)
			ret = put_indent(b, indent);
		return ret ? ret : buf_append(b, "]", 1);
	case json_type_object:
		if (!json_object_object_length(o))
			return buf_append(b, "{}", 2);
		keys = xcalloc(json_object_object_length(o) + 1,
			       sizeof(*keys));
		{
			json_object_object_foreach(o, k, v) {
				(void)v;
				keys[n++] = k;
			}
		}
		qsort(keys, n, sizeof(*keys), cmp_keys);
		ret = buf_append(b, "{", 1);
		for (i = 0; !ret && i < n; i++) {
			if (i)
				ret = buf_append(b, ",", 1);
			if (!ret && pretty)
				ret = put_indent(b, indent + 2);
			if (!ret)
				ret = put_string(b, keys[i]);
			if (!ret)
				ret = buf_append(b, pretty ? ": " : ":",
						 pretty ? 2 : 1);
			if (!ret)
				ret = put_json(b,
					       json_object_object_get(o, keys[i]),
					       pretty ? indent + 2 : -1);
		}
		free(keys);
		if (!ret && pretty)
			ret = put_indent(b, indent);
		return ret ? ret : buf_append(b, "}", 1);
	}
	return -EINVAL;
}

/* The manifest as a json-c tree; @full adds unprotected and signature. */
static json_object *to_json(const struct snap_manifest *m, bool full)
{
	json_object *root = json_object_new_object();
	json_object *files = json_object_new_array();
	char hex[65];

	json_object_object_add(root, "backup-type",
			       json_object_new_string(m->type));
	json_object_object_add(root, "backup-id", json_object_new_string(m->id));
	json_object_object_add(root, "backup-time",
			       json_object_new_int64(m->time));
	for (size_t i = 0; i < m->nfiles; i++) {
		json_object *f = json_object_new_object();

		hex_encode(m->files[i].csum, 32, hex);
		json_object_object_add(f, "filename",
				       json_object_new_string(
					       m->files[i].filename));
		json_object_object_add(f, "crypt-mode",
				       json_object_new_string(
					       snap_crypt_mode_name(
						       m->files[i].crypt_mode)));
		json_object_object_add(f, "size",
				       json_object_new_uint64(m->files[i].size));
		json_object_object_add(f, "csum", json_object_new_string(hex));
		json_object_array_add(files, f);
	}
	json_object_object_add(root, "files", files);
	if (full) {
		json_object_object_add(root, "unprotected",
				       json_object_get(m->unprotected));
		json_object_object_add(root, "signature",
				       m->signature ?
					       json_object_new_string(
						       m->signature) :
					       NULL);
	}
	return root;
}

int snap_manifest_canonical(const struct snap_manifest *m, char **out,
			    size_t *outlen)
{
	json_object *root = to_json(m, false);
	struct buf b;
	int ret;

	buf_init(&b, SNAP_MAX_BLOB_SIZE);
	ret = put_json(&b, root, -1);
	json_object_put(root);
	if (!ret)
		ret = buf_reserve(&b, b.len + 1);
	if (ret) {
		buf_release(&b);
		return ret;
	}
	b.data[b.len] = '\0';
	*out = (char *)buf_steal(&b, outlen);
	return 0;
}

int snap_manifest_encode(const struct snap_manifest *m, char **out,
			 size_t *outlen)
{
	json_object *root = to_json(m, true);
	struct buf b;
	int ret;

	/* As PBS writes it: serde_json's pretty form of a sorted Value. */
	buf_init(&b, SNAP_MAX_BLOB_SIZE);
	ret = put_json(&b, root, 0);
	json_object_put(root);
	if (ret) {
		buf_release(&b);
		return ret;
	}
	*out = (char *)buf_steal(&b, outlen);
	return *out ? 0 : -ENOMEM;
}

int snap_manifest_set_upload_stats(struct snap_manifest *m, uint64_t count,
				   uint64_t size, uint64_t compressed_size,
				   uint64_t duplicates)
{
	json_object *st = json_object_new_object();

	if (!st)
		return -ENOMEM;
	json_object_object_add(st, "count", json_object_new_uint64(count));
	json_object_object_add(st, "size", json_object_new_uint64(size));
	json_object_object_add(st, "compressed_size",
			       json_object_new_uint64(compressed_size));
	json_object_object_add(st, "duplicates",
			       json_object_new_uint64(duplicates));
	return json_object_object_add(m->unprotected, "chunk_upload_stats",
				      st) ? -ENOMEM : 0;
}
