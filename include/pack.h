/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_PACK_H
#define PBSLM_PACK_H

#include <stdbool.h>
#include <stdint.h>

#include "key.h"
#include "progress.h"
#include "store.h"

/*
 * Write a snapshot in PBS datastore layout (FORMATS.md section 6) from
 * raw images: 4 MiB chunks, dedup by digest (within the run and against
 * chunks already in the store), zstd level 1, optional encryption, one
 * .img.fidx per image, a .blob per blob (encrypted with the key, as PBS
 * does), the manifest last.  The snapshot directory is
 * built under a temporary name and renamed into place after everything
 * in it is durable, so a crash never leaves a half snapshot.  Into a
 * store (an S3 bucket) the chunks go with If-None-Match (dedup against
 * the bucket), then the indexes, then the manifest: readers count a
 * snapshot only once its manifest exists.
 */
struct pack_image {
	const char *path;	/* raw image or block device */
	const char *archive;	/* "drive-scsi0.img.fidx" */
};

/* A file stored as a blob archive (a VM's configuration). */
struct pack_blob {
	const char *path;
	const char *name;	/* "qemu-server.conf.blob" */
};

struct pack_conf {
	const struct pack_image *images;
	unsigned int nimages;
	const struct pack_blob *blobs;
	unsigned int nblobs;
	const char *datastore;		/* directory, created if missing */
	const char *ns;			/* NULL or "a/b" */
	const char *type;		/* "vm", "ct", "host" */
	const char *id;
	int64_t time;			/* backup time, epoch seconds */
	uint64_t chunk_size;		/* power of two, default 4 MiB */
	const struct key_material *key; /* NULL: not encrypted */
	const char *owner;		/* "root@pam" by default */
	bool lazy_chunk_dirs;		/* a new datastore gets .chunks/XXXX
					   only as needed, not all 65,536 */
	enum progress_mode progress;	/* a bar per image, JSON lines */
	struct store *dest;		/* NULL: datastore is a directory;
					   else written through this store
					   (an S3 bucket) */
	bool quiet;
};

/* Returns 0 or -errno; every failure is logged with the path. */
int pack_run(const struct pack_conf *conf);

/* "disk.raw" -> "disk.img.fidx"; "x:drive-scsi0" picks the name. */
int pack_archive_name(const char *arg, char **path, char **archive);
/* "FILE:NAME.blob" -> FILE and NAME.blob (a plain name, not the
 * manifest's); -EINVAL, logged, otherwise. */
int pack_blob_name(const char *arg, char **path, char **name);

#endif
