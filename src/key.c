/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * PBS encryption keys (FORMATS.md section 4) and manifest signatures
 * (section 5.3).  Key material lives in crypto_secure_alloc() memory,
 * locked where permitted and wiped on free; it is never logged.  A
 * struct key_material is immutable once returned, so threads share it.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <json-c/json.h>

#include "crypto.h"
#include "key.h"
#include "log.h"
#include "util.h"
#include "banned.h"

#define KEY_FILE_MAX 65536
#define MIN_PASSPHRASE 5

/* SHA-256("Proxmox Backup Encryption Key Fingerprint") */
static const uint8_t fingerprint_input[32] = {
	110, 208, 239, 119, 71,	 31,  255, 77,	85,  199, 168,
	254, 74,  157, 182, 33,	 97,  64,  127, 19,  76,  114,
	93,  223, 48,  153, 45,	 37,  236, 69,	237, 38,
};

int key_from_raw(const uint8_t raw[32], struct key_material **out)
{
	struct key_material *k = crypto_secure_alloc(sizeof(*k));
	int ret;

	if (!k)
		return -ENOMEM;
	memcpy(k->enc_key, raw, 32);
	ret = crypto_pbkdf2_sha256(k->enc_key, 32, "_id_key", 7, 10, k->id_key,
				   32);
	if (ret) {
		key_free(k);
		return ret;
	}
	crypto_sha256_2(fingerprint_input, 32, k->id_key, 32, k->fingerprint);
	*out = k;
	return 0;
}

void key_free(struct key_material *k)
{
	crypto_secure_free(k, sizeof(*k));
}

void key_fingerprint_str(const struct key_material *k, char out[96])
{
	fingerprint_encode(k->fingerprint, 32, out);
}

void key_fingerprint_short(const struct key_material *k, char out[24])
{
	fingerprint_encode(k->fingerprint, 8, out);
}

static int bad_field(const char *path, const char *field)
{
	log_err("key: cannot read '%s': field '%s' missing or malformed", path,
		field);
	return -EBADMSG;
}

static const char *get_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int get_uint(json_object *o, const char *key, uint64_t *out)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) <= 0)
		return -EINVAL;
	*out = (uint64_t)json_object_get_int64(v);
	return 0;
}

/* Derive the key-encryption key from the kdf object. */
static int derive(const char *path, json_object *kdf, const char *pass,
		  uint8_t out[32])
{
	json_object *params;
	const char *salt64;
	uint8_t salt[256];
	size_t saltlen;
	uint64_t n;
	uint64_t r;
	uint64_t p;
	uint64_t iter;

	if (json_object_object_get_ex(kdf, "Scrypt", &params)) {
		salt64 = get_str(params, "salt");
		if (!salt64 || crypto_base64_decode(salt64, salt, sizeof(salt),
						    &saltlen))
			return bad_field(path, "kdf.Scrypt.salt");
		/*
		 * PBS writes n=65536 r=8 p=1.  Bound the work a key file
		 * can ask for (memory 128*n*r, time n*r*p): about 15 s.
		 */
		if (get_uint(params, "n", &n) || get_uint(params, "r", &r) ||
		    get_uint(params, "p", &p) || n < 2 || (n & (n - 1)) ||
		    n > (1u << 20) || !r || r > 32 || !p || p > 16 ||
		    n * r * p > (1ull << 25))
			return bad_field(path, "kdf.Scrypt.n/r/p");
		return crypto_scrypt(pass, strlen(pass), salt, saltlen, n, r, p,
				     out, 32);
	}
	if (json_object_object_get_ex(kdf, "PBKDF2", &params)) {
		salt64 = get_str(params, "salt");
		if (!salt64 || crypto_base64_decode(salt64, salt, sizeof(salt),
						    &saltlen))
			return bad_field(path, "kdf.PBKDF2.salt");
		/* PBS writes 65535; ten million take seconds already. */
		if (get_uint(params, "iter", &iter) || !iter ||
		    iter > 10000000)
			return bad_field(path, "kdf.PBKDF2.iter");
		return crypto_pbkdf2_sha256(pass, strlen(pass), salt, saltlen,
					    (unsigned int)iter, out, 32);
	}
	return bad_field(path, "kdf");
}

/* Key file @path as a JSON object; its text is wiped.  -errno, logged. */
static int read_key_json(const char *path, json_object **root)
{
	uint8_t *text = NULL;
	size_t len = 0;
	int ret;

	*root = NULL;
	ret = read_file(path, KEY_FILE_MAX, &text, &len);
	if (ret) {
		log_err("key: cannot read '%s': %s", path, strerror(-ret));
		return ret;
	}
	*root = json_tokener_parse((const char *)text);
	crypto_wipe(text, len);
	free(text);
	if (!*root || !json_object_is_type(*root, json_type_object)) {
		log_err("key: cannot read '%s': not a JSON key file", path);
		json_object_put(*root);
		*root = NULL;
		return -EBADMSG;
	}
	return 0;
}

int key_load_file(const char *path, const char *passphrase,
		  struct key_material **out)
{
	struct key_material *k = NULL;
	json_object *root = NULL;
	json_object *kdf = NULL;
	uint8_t data[64];
	uint8_t kek[32];
	uint8_t raw[32];
	uint8_t fp[32];
	size_t dlen = 0;
	const char *s;
	int ret;

	ret = read_key_json(path, &root);
	if (ret)
		return ret;
	s = get_str(root, "data");
	if (!s || crypto_base64_decode(s, data, sizeof(data), &dlen)) {
		ret = bad_field(path, "data");
		goto out;
	}
	if (!json_object_object_get_ex(root, "kdf", &kdf)) {
		ret = bad_field(path, "kdf");
		goto out;
	}
	if (!kdf) {
		if (dlen != 32) {
			ret = bad_field(path, "data");
			goto out;
		}
		memcpy(raw, data, 32);
	} else {
		if (dlen != 64 || !json_object_is_type(kdf, json_type_object)) {
			ret = bad_field(path, dlen != 64 ? "data" : "kdf");
			goto out;
		}
		if (!passphrase) {
			log_err("key: cannot unlock '%s': a passphrase is "
				"needed (PBS_ENCRYPTION_PASSWORD or "
				"--passphrase-file)", path);
			ret = -ENOKEY;
			goto out;
		}
		if (strlen(passphrase) < MIN_PASSPHRASE) {
			log_err("key: cannot unlock '%s': passphrase shorter "
				"than %d bytes", path, MIN_PASSPHRASE);
			ret = -EACCES;
			goto out;
		}
		ret = derive(path, kdf, passphrase, kek);
		if (ret)
			goto out;
		/* data = IV(16) || TAG(16) || AES-256-GCM(raw key) */
		ret = crypto_gcm_decrypt(kek, data, data + 32, 32, data + 16,
					 raw);
		if (ret) {
			log_err("key: cannot unlock '%s': wrong passphrase",
				path);
			ret = -EACCES;
			goto out;
		}
	}
	ret = key_from_raw(raw, &k);
	if (ret)
		goto out;
	s = get_str(root, "fingerprint");
	if (s && (fingerprint_decode(s, fp) || memcmp(fp, k->fingerprint, 32))) {
		log_err("key: cannot use '%s': its fingerprint field does not "
			"match the key", path);
		ret = -EKEYREJECTED;
		goto out;
	}
	*out = k;
	k = NULL;
out:
	key_free(k);
	crypto_wipe(raw, sizeof(raw));
	crypto_wipe(kek, sizeof(kek));
	crypto_wipe(data, sizeof(data));
	json_object_put(root);
	return ret;
}

/* RFC 3339 local time with a numeric offset, as PBS writes it. */
static void rfc3339_now(char out[32])
{
	time_t t = time(NULL);
	struct tm tm;
	char z[8];
	size_t n;

	localtime_r(&t, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(z, sizeof(z), "%z", &tm);
	snprintf(out + n, 32 - n, "%.3s:%.2s", z, z + 3);
}

int key_create_file(const char *path, const char *passphrase,
		    const uint8_t raw[32], bool replace)
{
	struct key_material *k = NULL;
	json_object *root = NULL;
	json_object *params;
	json_object *kdf;
	uint8_t data[64];
	uint8_t salt[32];
	uint8_t kek[32];
	char salt64[48];
	char data64[96];
	char fp[96];
	char now[32];
	const char *text;
	int ret;

	if (!passphrase || strlen(passphrase) < MIN_PASSPHRASE) {
		log_err("key: cannot create '%s': passphrase shorter than %d "
			"bytes", path, MIN_PASSPHRASE);
		return -EINVAL;
	}
	ret = crypto_random(salt, sizeof(salt));
	if (!ret)
		ret = crypto_random(data, 16);
	if (!ret)
		ret = crypto_scrypt(passphrase, strlen(passphrase), salt,
				    sizeof(salt), 65536, 8, 1, kek, 32);
	if (!ret)
		ret = crypto_gcm_encrypt(kek, data, raw, 32, data + 32,
					 data + 16);
	if (!ret)
		ret = key_from_raw(raw, &k);
	if (ret)
		goto out;
	crypto_base64_encode(salt, sizeof(salt), salt64);
	crypto_base64_encode(data, sizeof(data), data64);
	key_fingerprint_str(k, fp);
	rfc3339_now(now);
	root = json_object_new_object();
	params = json_object_new_object();
	kdf = json_object_new_object();
	json_object_object_add(params, "n", json_object_new_int64(65536));
	json_object_object_add(params, "r", json_object_new_int64(8));
	json_object_object_add(params, "p", json_object_new_int64(1));
	json_object_object_add(params, "salt", json_object_new_string(salt64));
	json_object_object_add(kdf, "Scrypt", params);
	json_object_object_add(root, "kdf", kdf);
	json_object_object_add(root, "created", json_object_new_string(now));
	json_object_object_add(root, "modified", json_object_new_string(now));
	json_object_object_add(root, "data", json_object_new_string(data64));
	json_object_object_add(root, "fingerprint", json_object_new_string(fp));
	/* As PBS writes KeyConfig: compact serde_json, fields in order. */
	text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
						    JSON_C_TO_STRING_NOSLASHESCAPE);
	ret = replace ? write_file_atomic(path, text, strlen(text), 0600) :
			write_file_new(path, text, strlen(text), 0600);
	if (ret == -EEXIST)
		log_err("key: cannot create '%s': it exists; give --force to "
			"replace it (backups made with the old key need it)",
			path);
	else if (ret)
		log_err("key: cannot write '%s': %s", path, strerror(-ret));
out:
	json_object_put(root);
	key_free(k);
	crypto_wipe(kek, sizeof(kek));
	crypto_wipe(data, sizeof(data));
	return ret;
}

/* A JSON string field copied into @out, "" when missing. */
static void copy_str(json_object *o, const char *key, char *out, size_t len)
{
	const char *v = get_str(o, key);

	snprintf(out, len, "%s", v ? v : "");
}

int key_read_info(const char *path, struct key_info *info)
{
	struct key_material *k = NULL;
	json_object *root = NULL;
	json_object *kdf = NULL;
	uint8_t data[64];
	size_t dlen = 0;
	const char *s;
	int ret;

	memset(info, 0, sizeof(*info));
	ret = read_key_json(path, &root);
	if (ret)
		return ret;
	if (!json_object_object_get_ex(root, "kdf", &kdf)) {
		ret = bad_field(path, "kdf");
		goto out;
	}
	if (!kdf)
		snprintf(info->kdf, sizeof(info->kdf), "none");
	else if (json_object_object_get_ex(kdf, "Scrypt", NULL))
		snprintf(info->kdf, sizeof(info->kdf), "scrypt");
	else if (json_object_object_get_ex(kdf, "PBKDF2", NULL))
		snprintf(info->kdf, sizeof(info->kdf), "pbkdf2");
	else {
		ret = bad_field(path, "kdf");
		goto out;
	}
	copy_str(root, "created", info->created, sizeof(info->created));
	copy_str(root, "modified", info->modified, sizeof(info->modified));
	s = get_str(root, "fingerprint");
	if (s) {
		if (fingerprint_decode(s, info->fingerprint)) {
			ret = bad_field(path, "fingerprint");
			goto out;
		}
		info->has_fingerprint = true;
	} else if (!kdf) {
		/* A plain key: its fingerprint follows from it. */
		s = get_str(root, "data");
		if (!s || crypto_base64_decode(s, data, sizeof(data), &dlen) ||
		    dlen != 32) {
			ret = bad_field(path, "data");
			goto out;
		}
		ret = key_from_raw(data, &k);
		if (ret)
			goto out;
		memcpy(info->fingerprint, k->fingerprint, 32);
		info->has_fingerprint = true;
	}
out:
	key_free(k);
	crypto_wipe(data, sizeof(data));
	json_object_put(root);
	return ret;
}

int key_sign_manifest(const struct key_material *k,
		      const struct snap_manifest *m, char hex[65])
{
	uint8_t mac[32];
	char *canon = NULL;
	size_t len = 0;
	int ret;

	ret = snap_manifest_canonical(m, &canon, &len);
	if (ret)
		return ret;
	ret = crypto_hmac_sha256(k->id_key, 32, canon, len, mac);
	free(canon);
	if (!ret)
		hex_encode(mac, 32, hex);
	return ret;
}

int key_check_manifest(const struct key_material *k,
		       const struct snap_manifest *m, const char *what)
{
	const char *fp = snap_manifest_key_fingerprint(m);
	const char *sig = snap_manifest_signature(m);
	uint8_t want[32];
	char mine[96];
	char hex[65];
	int ret;

	if (!k) {
		if (fp) {
			log_err("key: cannot read '%s': encrypted or signed "
				"backup (key %.23s): missing key (--keyfile)",
				what, fp);
			return -ENOKEY;
		}
		return 0;
	}
	key_fingerprint_str(k, mine);
	if (fp && (fingerprint_decode(fp, want) || memcmp(want, k->fingerprint, 32))) {
		log_err("key: cannot read '%s': wrong key (backup made with "
			"%.23s, key is %.23s)", what, fp, mine);
		return -EKEYREJECTED;
	}
	if (!sig) {
		if (!fp)
			return 0;	/* made without a key */
		log_err("key: cannot read '%s': manifest signature missing",
			what);
		return -EBADMSG;
	}
	ret = key_sign_manifest(k, m, hex);
	if (ret)
		return ret;
	if (!crypto_equal(hex, sig, 64)) {
		log_err("key: cannot read '%s': manifest signature mismatch "
			"(manifest altered, or a different key)", what);
		return -EBADMSG;
	}
	return 0;
}
