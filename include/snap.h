/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_SNAP_H
#define PBSLM_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * PBS's own formats, parsed and written from byte buffers: the fixed
 * index (.fidx), the manifest (index.json.blob payload), datastore names
 * and paths.  Pure: no I/O, no threads, no global state; every input is
 * untrusted and checked.  Fuzzed (tests/fuzz/).  See shared/FORMATS.md
 * sections 1, 5 and 6.
 *
 * Parsers fill an optional struct snap_error with one line naming the
 * field and the byte offset: "bad magic at offset 0".
 */

#define SNAP_DIGEST_LEN 32
#define SNAP_INDEX_HEADER_SIZE 4096
#define SNAP_DEFAULT_CHUNK_SIZE (4u << 20)
#define SNAP_MAX_CHUNK_SIZE (16u << 20)
#define SNAP_MAX_BLOB_SIZE (128u << 20)
#define SNAP_MAX_NS_DEPTH 7

/* The first 8 bytes of SHA-256 of their description strings. */
extern const uint8_t SNAP_MAGIC_FIDX[8];
extern const uint8_t SNAP_MAGIC_DIDX[8];
extern const uint8_t SNAP_MAGIC_BLOB_PLAIN[8];
extern const uint8_t SNAP_MAGIC_BLOB_ZSTD[8];
extern const uint8_t SNAP_MAGIC_BLOB_ENC[8];
extern const uint8_t SNAP_MAGIC_BLOB_ENC_ZSTD[8];
extern const uint8_t SNAP_MAGIC_CATALOG[8];

struct snap_error {
	char msg[200];
};

/* ---- fixed index ---- */

struct snap_fidx;

/*
 * Parse a whole .fidx file held in @buf.  Strict: exact length 4096 +
 * 32 * n, power-of-two chunk size up to SNAP_MAX_CHUNK_SIZE, n >= 1.
 * -EBADMSG on bad input, -EPROTONOSUPPORT for a .didx (with a message
 * saying file archives are not supported), -ENOMEM.  The result copies
 * what it needs; free with snap_fidx_free().
 */
int snap_fidx_parse(const uint8_t *buf, size_t len, struct snap_fidx **out,
		    struct snap_error *err);
void snap_fidx_free(struct snap_fidx *f);
uint64_t snap_fidx_size(const struct snap_fidx *f);
/* Bytes held: chunks sharing one digest are held compactly. */
size_t snap_fidx_mem(const struct snap_fidx *f);
uint64_t snap_fidx_chunk_size(const struct snap_fidx *f);
uint64_t snap_fidx_count(const struct snap_fidx *f);
int64_t snap_fidx_ctime(const struct snap_fidx *f);
/* Digest of chunk @i (< count); valid while @f lives. */
const uint8_t *snap_fidx_digest(const struct snap_fidx *f, uint64_t i);
/* Bytes covered by chunk @i: chunk_size, or less for the last one. */
uint64_t snap_fidx_chunk_len(const struct snap_fidx *f, uint64_t i);
/* SHA-256 over the digest array, recomputed at parse time. */
const uint8_t *snap_fidx_csum(const struct snap_fidx *f);
/* True when the header's index_csum field equals the recomputed one. */
bool snap_fidx_header_csum_ok(const struct snap_fidx *f);

/*
 * Encode a .fidx: @digests holds @n * 32 bytes, n == ceil(size /
 * chunk_size).  *@out is malloc'ed.  @csum_out (may be NULL) receives
 * the index checksum the manifest records.
 */
int snap_fidx_encode(uint64_t size, uint64_t chunk_size,
		     const uint8_t *digests, uint64_t n, const uint8_t uuid[16],
		     int64_t ctime, uint8_t **out, size_t *outlen,
		     uint8_t csum_out[32]);

/* ---- manifest ---- */

enum snap_crypt_mode {
	SNAP_CRYPT_NONE,
	SNAP_CRYPT_ENCRYPT,
	SNAP_CRYPT_SIGN_ONLY,
};

struct snap_file {
	char *filename;
	enum snap_crypt_mode crypt_mode;
	uint64_t size;
	uint8_t csum[SNAP_DIGEST_LEN];
};

struct snap_manifest;

/* Parse the JSON payload of index.json.blob (not NUL-terminated). */
int snap_manifest_parse(const char *json, size_t len,
			struct snap_manifest **out, struct snap_error *err);
/* A new, empty manifest for a writer. */
int snap_manifest_new(const char *type, const char *id, int64_t time,
		      struct snap_manifest **out);
void snap_manifest_free(struct snap_manifest *m);
const char *snap_manifest_type(const struct snap_manifest *m);
const char *snap_manifest_id(const struct snap_manifest *m);
int64_t snap_manifest_time(const struct snap_manifest *m);
size_t snap_manifest_nfiles(const struct snap_manifest *m);
const struct snap_file *snap_manifest_file(const struct snap_manifest *m,
					   size_t i);
/* NULL when not listed. */
const struct snap_file *snap_manifest_find(const struct snap_manifest *m,
					   const char *filename);
/* The "signature" string, or NULL when null or absent. */
const char *snap_manifest_signature(const struct snap_manifest *m);
/* unprotected["key-fingerprint"], or NULL. */
const char *snap_manifest_key_fingerprint(const struct snap_manifest *m);
/* unprotected.verify_state.state ("ok", "failed"), or NULL: what the
 * server's last verification found. */
const char *snap_manifest_verify_state(const struct snap_manifest *m);
/* unprotected.notes (the snapshot's comment), or NULL. */
const char *snap_manifest_notes(const struct snap_manifest *m);

int snap_manifest_add_file(struct snap_manifest *m, const char *filename,
			   enum snap_crypt_mode mode, uint64_t size,
			   const uint8_t csum[32]);
/* @hex is 64 lowercase hex digits, or NULL to clear. */
int snap_manifest_set_signature(struct snap_manifest *m, const char *hex);
/* unprotected.chunk_upload_stats, as a PBS server adds it. */
int snap_manifest_set_upload_stats(struct snap_manifest *m, uint64_t count,
				   uint64_t size, uint64_t compressed_size,
				   uint64_t duplicates);
int snap_manifest_set_key_fingerprint(struct snap_manifest *m,
				      const char *fp);
/*
 * The canonical JSON that PBS signs: the manifest without "unprotected"
 * and "signature", keys sorted bytewise, no white space.  *@out is a
 * malloc'ed NUL-terminated string.
 */
int snap_manifest_canonical(const struct snap_manifest *m, char **out,
			    size_t *outlen);
/* The pretty-printed JSON a PBS client writes. */
int snap_manifest_encode(const struct snap_manifest *m, char **out,
			 size_t *outlen);

const char *snap_crypt_mode_name(enum snap_crypt_mode mode);

/* ---- names and paths ---- */

/* Archive and backup-id names: [A-Za-z0-9_][A-Za-z0-9._-]*, <= 128. */
bool snap_is_safe_id(const char *s);
/* A disk archive's stem, malloc'ed: "drive-scsi0.img.fidx" and
 * "drive-scsi0.img" give "drive-scsi0"; other names stay as they are. */
char *snap_archive_stem(const char *name);
/* "vm", "ct" or "host". */
bool snap_is_backup_type(const char *s);
/* epoch -> "YYYY-MM-DDTHH:MM:SSZ" (UTC); @out holds 21 bytes. */
int snap_format_time(int64_t t, char out[21]);
/* The reverse, strictly in that form. */
int snap_parse_time(const char *s, int64_t *out);
/*
 * Namespace "a/b" -> "ns/a/ns/b" (empty string for the root namespace,
 * @ns NULL or "").  -EINVAL for an unsafe component or depth > 7.
 */
int snap_ns_path(const char *ns, char **out);
/* "[ns/a/]vm/100/2025-06-01T02:00:00Z" */
int snap_snapshot_path(const char *ns, const char *type, const char *id,
		       int64_t time, char **out);
/*
 * Parse a SNAPSHOT argument: "TYPE/ID/TIME" (TIME as above or epoch
 * seconds) or "TYPE/ID" (newest; *@time = -1).  *@type and *@id are
 * malloc'ed.
 */
int snap_parse_spec(const char *spec, char **type, char **id, int64_t *time,
		    struct snap_error *err);
/* ".chunks/XXXX/<64 hex>" into @out (80 bytes). */
void snap_chunk_path(const uint8_t digest[32], char out[80]);

#endif
