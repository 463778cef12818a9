/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Boot traces (trace.h): file names, parsing and atomic saves.  No
 * threads, no state: the mount decides when to read and write one.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "log.h"
#include "trace.h"
#include "util.h"
#include "banned.h"

#define MAGIC "pbs-livemount boot trace 1"

char *trace_default_path(const char *dir, const char *store_loc,
			 const char *snap_path, const char *archive)
{
	const char *slash = strrchr(snap_path, '/');
	size_t glen = slash ? (size_t)(slash - snap_path) : strlen(snap_path);
	size_t alen = strlen(archive);
	uint8_t d[32];
	char hex[65];

	crypto_sha256(store_loc, strlen(store_loc), d);
	hex_encode(d, sizeof(d), hex);
	hex[16] = '\0';
	if (alen > 9 && !strcmp(archive + alen - 9, ".img.fidx"))
		alen -= 9;
	return xasprintf("%s/%s/%.*s/%.*s.trace", dir, hex, (int)glen,
			 snap_path, (int)alen, archive);
}

/* An unsigned decimal number filling [s, s + len). */
static bool line_u64(const char *s, size_t len, uint64_t *v)
{
	char tmp[24];

	if (!len || len >= sizeof(tmp))
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	return !parse_u64(tmp, v);
}

int trace_load(const char *path, uint64_t chunk_size, uint64_t nchunks,
	       uint64_t **chunks, size_t *n)
{
	uint64_t *seen = NULL;
	uint64_t *out = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	size_t cnt = 0;
	size_t lineno = 0;
	const char *p;
	const char *end;
	int ret;

	ret = read_file(path, 1u << 20, &buf, &len);
	if (ret == -ENOENT)
		return ret;
	if (ret) {
		log_err("trace: cannot read '%s': %s", path, strerror(-ret));
		return ret;
	}
	seen = xcalloc((nchunks + 63) / 64, sizeof(*seen));
	out = xcalloc(TRACE_MAX_CHUNKS, sizeof(*out));
	p = (const char *)buf;
	end = p + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		uint64_t v;

		lineno++;
		if (lineno == 1) {
			if (l != strlen(MAGIC) || memcmp(p, MAGIC, l))
				goto bad;
		} else if (lineno == 2) {
			if (l < 11 || memcmp(p, "chunk-size ", 11) ||
			    !line_u64(p + 11, l - 11, &v))
				goto bad;
			if (v != chunk_size) {
				log_warn("trace: ignoring '%s': recorded for "
					 "%llu-byte chunks, this disk has %llu",
					 path, (unsigned long long)v,
					 (unsigned long long)chunk_size);
				ret = -ESTALE;
				goto out;
			}
		} else if (l) {
			if (!line_u64(p, l, &v))
				goto bad;
			if (v < nchunks && cnt < TRACE_MAX_CHUNKS &&
			    !(seen[v / 64] & (1ull << (v % 64)))) {
				seen[v / 64] |= 1ull << (v % 64);
				out[cnt++] = v;
			}
		}
		p += l + 1;
	}
	if (lineno < 2)
		goto bad;
	*chunks = out;
	*n = cnt;
	out = NULL;
	ret = 0;
	goto out;
bad:
	log_err("trace: cannot use '%s': line %zu is not a boot trace line",
		path, lineno);
	ret = -EBADMSG;
out:
	free(out);
	free(seen);
	free(buf);
	return ret;
}

int trace_save(const char *path, uint64_t chunk_size, const uint64_t *chunks,
	       size_t n)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	struct buf b;
	char line[32];
	int ret = 0;

	buf_init(&b, SIZE_MAX / 2);
	if (slash && slash != dir) {
		*slash = '\0';
		ret = mkdir_p(dir, 0755);
	}
	snprintf(line, sizeof(line), "chunk-size %llu\n",
		 (unsigned long long)chunk_size);
	if (!ret)
		ret = buf_append(&b, MAGIC "\n", strlen(MAGIC) + 1);
	if (!ret)
		ret = buf_append(&b, line, strlen(line));
	for (size_t i = 0; !ret && i < MIN(n, TRACE_MAX_CHUNKS); i++) {
		snprintf(line, sizeof(line), "%llu\n",
			 (unsigned long long)chunks[i]);
		ret = buf_append(&b, line, strlen(line));
	}
	if (!ret)
		ret = write_file_atomic(path, b.data, b.len, 0644);
	if (ret)
		log_err("trace: cannot write '%s': %s", path, strerror(-ret));
	buf_release(&b);
	free(dir);
	return ret;
}
