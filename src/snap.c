/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * PBS formats from byte buffers (FORMATS.md sections 1, 5, 6): the
 * fixed index, names and paths (the manifest: snap_manifest.c).  Pure: no
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

#include "compiler.h"
#include "crypto.h"
#include "snap.h"
#include "snap_i.h"
#include "util.h"
#include "banned.h"

const uint8_t SNAP_MAGIC_FIDX[8] = { 47, 127, 65, 237, 145, 253, 15, 205 };
const uint8_t SNAP_MAGIC_DIDX[8] = { 28, 145, 78, 165, 25, 186, 179, 205 };
const uint8_t SNAP_MAGIC_BLOB_PLAIN[8] = { 66, 171, 56, 7, 190, 131, 112, 161 };
const uint8_t SNAP_MAGIC_BLOB_ZSTD[8] = { 49, 185, 88, 66, 111, 182, 163, 127 };
const uint8_t SNAP_MAGIC_BLOB_ENC[8] = { 123, 103, 133, 190, 34, 45, 76, 240 };
const uint8_t SNAP_MAGIC_BLOB_ENC_ZSTD[8] = { 230, 89, 27, 191, 11, 191, 216, 11 };
const uint8_t SNAP_MAGIC_CATALOG[8] = { 145, 253, 96, 249, 196, 103, 88, 213 };

int snap_fail(struct snap_error *err, const char *fmt, ...)
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
		return snap_fail(err, "file size %zu is shorter than the 4096-byte "
			    "header at offset 0", len);
	if (memcmp(buf, SNAP_MAGIC_FIDX, 8))
		return snap_fail(err, "bad magic at offset 0 (not a fixed index)");
	size = le64(buf + 64);
	cs = le64(buf + 72);
	if (!size)
		return snap_fail(err, "image size 0 at offset 64");
	if (cs < 4096 || cs > SNAP_MAX_CHUNK_SIZE || (cs & (cs - 1)))
		return snap_fail(err, "chunk size %llu is not a power of two from "
			    "4096 to 16 MiB at offset 72",
			    (unsigned long long)cs);
	n = size / cs + (size % cs != 0);
	if (__builtin_mul_overflow(n, (uint64_t)SNAP_DIGEST_LEN, &want) ||
	    __builtin_add_overflow(want, (uint64_t)SNAP_INDEX_HEADER_SIZE,
				   &want) ||
	    want != len)
		return snap_fail(err, "file size %zu does not match 4096 + 32 * %llu "
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

char *snap_archive_stem(const char *name)
{
	char *s = xstrdup(name);
	size_t len = strlen(s);

	if (len > 9 && !strcmp(s + len - 9, ".img.fidx"))
		s[len - 9] = '\0';
	else if (len > 4 && !strcmp(s + len - 4, ".img"))
		s[len - 4] = '\0';
	return s;
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
		return snap_fail(err, "expected TYPE/ID[/TIME]");
	t = strndup(spec, s1 - spec);
	i = s2 ? strndup(s1 + 1, s2 - s1 - 1) : strdup(s1 + 1);
	if (!t || !i)
		goto err_free;
	if (!snap_is_backup_type(t)) {
		snap_fail(err, "backup type '%s' is not vm, ct or host", t);
		goto err_free;
	}
	if (!snap_is_safe_id(i)) {
		snap_fail(err, "backup id '%s' is not a plain name", i);
		goto err_free;
	}
	*time = -1;
	if (s2) {
		if (snap_parse_time(s2 + 1, time) &&
		    (parse_u64(s2 + 1, &v) || v > INT64_MAX || !v)) {
			snap_fail(err, "time '%s' is neither YYYY-MM-DDTHH:MM:SSZ nor "
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
