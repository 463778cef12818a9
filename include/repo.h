/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_REPO_H
#define PBSLM_REPO_H

#include <stdbool.h>
#include <stdint.h>

#include "key.h"
#include "snap.h"
#include "store.h"

/*
 * A backup repository seen through a store: snapshot resolution, the
 * verified manifest, verified indexes, verified chunk reads.  Everything
 * the commands and the live mount read from a backup comes through here,
 * checked: the manifest's CRC (and signature with a key), each index
 * against the manifest's size and csum, each chunk's CRC, tag, length and
 * digest.
 *
 * struct repo_snapshot is immutable after repo_snapshot_open(); its
 * functions may be called from any thread.
 */

struct repo_snapshot;

struct repo_group {
	char *type;
	char *id;
};

/* List groups ("vm/100") of namespace @ns (NULL = root). */
int repo_list_groups(struct store *s, const char *ns,
		     struct repo_group **out, size_t *n);
void repo_free_groups(struct repo_group *g, size_t n);
/* Snapshot times of a group, ascending. */
int repo_list_times(struct store *s, const char *ns, const char *type,
		    const char *id, int64_t **out, size_t *n);

/*
 * Resolve @spec ("vm/100/2025-06-01T02:00:00Z" or "vm/100" for the
 * newest) in namespace @ns and load its manifest.  @key: NULL or the
 * key; the manifest's key fingerprint and signature are checked.  The
 * store and key are borrowed and must outlive the snapshot.
 */
int repo_snapshot_open(struct store *s, const char *ns, const char *spec,
		       const struct key_material *key,
		       struct repo_snapshot **out);
/*
 * The same for a listing: no key, the manifest's signature not checked
 * (an encrypted snapshot shows its files and key fingerprint); nothing
 * may be read through it but what the manifest says.
 */
int repo_snapshot_peek(struct store *s, const char *ns, const char *spec,
		       struct repo_snapshot **out);
/* 1 when marked protected (.protected), 0 when not, -errno when the
 * store cannot say. */
int repo_snapshot_protected(const struct repo_snapshot *snap);
/* The child namespaces of @ns (NULL: the root), sorted; none is 0. */
int repo_list_namespaces(struct store *s, const char *ns, char ***out,
			 size_t *n);
void repo_snapshot_close(struct repo_snapshot *snap);
const struct snap_manifest *repo_snapshot_manifest(
	const struct repo_snapshot *snap);
/* "vm/100/2025-06-01T02:00:00Z" (with "ns/../" prefix if any). */
const char *repo_snapshot_path(const struct repo_snapshot *snap);
/* The store it reads from (borrowed). */
struct store *repo_snapshot_store(const struct repo_snapshot *snap);

/*
 * Load archive @name (e.g. "drive-scsi0.img.fidx"; ".fidx" may be left
 * off) and check it against the manifest.  Names with '/' or ".." are
 * refused.
 */
int repo_load_fidx(struct repo_snapshot *snap, const char *name,
		   struct snap_fidx **out);

/*
 * Blob archive @name ("qemu-server.conf" or "qemu-server.conf.blob"),
 * checked against the manifest (size, SHA-256, crypt mode) and decoded
 * (decrypted with the snapshot's key).  *@out malloc'ed, NUL after
 * *@outlen.  -ENOENT when not in the snapshot; every failure logged.
 */
int repo_read_blob(struct repo_snapshot *snap, const char *name,
		   uint8_t **out, size_t *outlen);

/*
 * One archive's read context: fidx + crypt mode + zero digest.
 * Immutable; any thread.
 */
struct repo_archive;
int repo_archive_open(struct repo_snapshot *snap, const char *name,
		      struct repo_archive **out);
void repo_archive_close(struct repo_archive *a);
const struct snap_fidx *repo_archive_fidx(const struct repo_archive *a);
const char *repo_archive_name(const struct repo_archive *a);
/* The key for the archive's chunks: NULL unless crypt-mode encrypt. */
const struct key_material *repo_archive_key(const struct repo_archive *a);
/*
 * For jobs that stop at the first error (restore): afterwards only the
 * first failing chunk is logged; later failures return -ECANCELED
 * quietly.  Any thread.
 */
void repo_archive_stop_on_error(struct repo_archive *a);
/* Any thread: the store's chunk requests in flight allowed now, 0: no
 * bound (store_window). */
unsigned int repo_archive_window(const struct repo_archive *a);
/* True if chunk @i is the all-zero chunk (never needs a fetch). */
bool repo_archive_is_zero(const struct repo_archive *a, uint64_t i);
/*
 * Fetch, verify and decode chunk @i into @out (snap_fidx_chunk_len()
 * bytes).  Retried by the store; on failure logs one line with the
 * digest, the location and the reason, and returns -EIO when the store
 * gave up (unreachable, refusing: it may come back), -EBADMSG when the
 * chunk is missing or fails its checks, or -ENOKEY.
 * Zero chunks are filled without a fetch.
 */
int repo_archive_read_chunk(const struct repo_archive *a, uint64_t i,
			    enum store_prio prio, uint8_t *out);
/* A buffer of the archive's chunk size for a decode: may block, never
 * NULL. */
typedef uint8_t *(*repo_buf_fn)(void *arg);
/*
 * repo_archive_read_chunk(), into *@out if it is set, else into a buffer
 * @get(@get_arg) gives only once the chunk's bytes are here to decode
 * (so that a request waiting on the network holds none): *@out is it
 * then, the caller's on any return, NULL if none was taken.
 */
int repo_archive_read_chunk_into(const struct repo_archive *a, uint64_t i,
				 enum store_prio prio, repo_buf_fn get,
				 void *get_arg, uint8_t **out);

#endif
