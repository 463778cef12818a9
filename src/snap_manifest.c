/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The snapshot manifest, index.json (FORMATS.md section 5): parsed from
 * untrusted JSON, built for pack, and written in PBS's canonical form
 * (the one its signature covers).  Pure, as snap.c.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "compiler.h"
#include "jsonx.h"
#include "snap.h"
#include "snap_i.h"
#include "util.h"
#include "banned.h"

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
		return snap_fail(err, "files[%zu]: not an object", idx);
	v = get(o, "filename", json_type_string);
	if (!v || !snap_is_safe_id(json_object_get_string(v)))
		return snap_fail(err, "files[%zu].filename: missing or not a plain "
			    "file name", idx);
	f->filename = xstrdup(json_object_get_string(v));
	if (get_u64(o, "size", &f->size))
		return snap_fail(err, "files[%zu].size: missing or not an unsigned "
			    "integer", idx);
	v = get(o, "csum", json_type_string);
	if (!v || !is_hex64(json_object_get_string(v)))
		return snap_fail(err, "files[%zu].csum: not 64 hex digits", idx);
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
		return snap_fail(err, "files[%zu].crypt-mode: not none, encrypt or "
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
		return snap_fail(err, "manifest too large");
	root = jsonx_parse(json, len, &bad_at);
	if (!root)
		return snap_fail(err, "not valid JSON at offset %zu", bad_at);
	m = xcalloc(1, sizeof(*m));
	if (!json_object_is_type(root, json_type_object)) {
		snap_fail(err, "manifest is not a JSON object");
		goto err_free;
	}
	v = get(root, "backup-type", json_type_string);
	if (!v || !snap_is_backup_type(json_object_get_string(v))) {
		snap_fail(err, "backup-type: missing or not vm, ct or host");
		goto err_free;
	}
	m->type = xstrdup(json_object_get_string(v));
	v = get(root, "backup-id", json_type_string);
	if (!v || !snap_is_safe_id(json_object_get_string(v))) {
		snap_fail(err, "backup-id: missing or not a plain name");
		goto err_free;
	}
	m->id = xstrdup(json_object_get_string(v));
	if (get_u64(root, "backup-time", &t) || t > INT64_MAX) {
		snap_fail(err, "backup-time: missing or not an integer");
		goto err_free;
	}
	m->time = (int64_t)t;
	v = get(root, "files", json_type_array);
	if (!v) {
		snap_fail(err, "files: missing or not an array");
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
			snap_fail(err, "unprotected: not an object");
			goto err_free;
		}
		m->unprotected = json_object_get(v);
	} else {
		m->unprotected = json_object_new_object();
	}
	if (json_object_object_get_ex(root, "signature", &v) && v) {
		if (!json_object_is_type(v, json_type_string) ||
		    !is_hex64(json_object_get_string(v))) {
			snap_fail(err, "signature: not null or 64 hex digits");
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

const char *snap_manifest_verify_state(const struct snap_manifest *m)
{
	json_object *v = get(m->unprotected, "verify_state", json_type_object);

	v = v ? get(v, "state", json_type_string) : NULL;
	return v ? json_object_get_string(v) : NULL;
}

const char *snap_manifest_notes(const struct snap_manifest *m)
{
	json_object *v = get(m->unprotected, "notes", json_type_string);

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
