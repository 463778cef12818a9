/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_KEY_H
#define PBSLM_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snap.h"

/*
 * PBS client encryption keys (FORMATS.md section 4): key files, the
 * derived id_key, fingerprints, manifest signatures.
 *
 * struct key_material is an embedded value type so that chunk.c can use
 * the bytes directly; it always lives in crypto_secure_alloc() memory
 * (locked, wiped on free) and is immutable after key_* returns it, so
 * any number of threads may read it.
 */
struct key_material {
	uint8_t enc_key[32];	 /* AES-256-GCM key for chunks and blobs */
	uint8_t id_key[32];	 /* PBKDF2(enc_key, "_id_key", 10) */
	uint8_t fingerprint[32]; /* SHA-256(FINGERPRINT_INPUT || id_key) */
};

/* From the raw 32-byte key: derives id_key and the fingerprint. */
int key_from_raw(const uint8_t raw[32], struct key_material **out);
/*
 * Load a key file.  @passphrase may be NULL for kdf null; a passphrase
 * shorter than 5 bytes is refused for a KDF.  -EACCES: wrong passphrase;
 * -EBADMSG: malformed file (message logged naming the file and field);
 * -EKEYREJECTED: stored fingerprint does not match the key.
 */
int key_load_file(const char *path, const char *passphrase,
		  struct key_material **out);
/*
 * Write a new scrypt-protected key file (mode 0600).  Unless @replace,
 * an existing @path is never replaced: -EEXIST, logged.
 */
int key_create_file(const char *path, const char *passphrase,
		    const uint8_t raw[32], bool replace);

/* What a key file says about itself, read without its passphrase. */
struct key_info {
	char kdf[16];			/* "none", "scrypt" or "pbkdf2" */
	char created[48];		/* as stored; "" if missing */
	char modified[48];
	bool has_fingerprint;		/* stored, or derived from a plain key */
	uint8_t fingerprint[32];
};
/* -EBADMSG (logged, naming the field) for a malformed file. */
int key_read_info(const char *path, struct key_info *info);
void key_free(struct key_material *k);

/* "aa:bb:..." (95 chars + NUL) full form, and the 8-byte short form. */
void key_fingerprint_str(const struct key_material *k, char out[96]);
void key_fingerprint_short(const struct key_material *k, char out[24]);

/* hex(HMAC-SHA256(id_key, canonical manifest)) into @hex (65 bytes). */
int key_sign_manifest(const struct key_material *k,
		      const struct snap_manifest *m, char hex[65]);
/*
 * Check a manifest against a key (NULL: no key given).  Fails with a
 * logged one-line reason: a fingerprint but no key ("missing key"), a
 * different key ("wrong key"), or a bad signature (-EBADMSG).
 */
int key_check_manifest(const struct key_material *k,
		       const struct snap_manifest *m, const char *what);

#endif
