/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_TRACE_H
#define PBSLM_TRACE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Boot traces: the order in which a guest first read the chunks of one
 * disk, saved per backup group and disk so that the next mount of any
 * snapshot of the group fetches them first (the same positions usually
 * hold the same data).  A small text file:
 *
 *   pbs-livemount boot trace 1
 *   chunk-size 4194304
 *   <chunk number>            one per line, first read first
 */

/* At most this many chunks are saved (16 GiB of 4 MiB chunks). */
#define TRACE_MAX_CHUNKS 4096

/*
 * The default file of a disk: DIR/STORE/GROUP/DISK.trace, where STORE
 * is the first 16 hex digits of the SHA-256 of @store_loc (the store's
 * location as log lines name it), GROUP the snapshot path @snap_path
 * without its time ("[ns/A/]vm/100") and DISK the archive name without
 * ".img.fidx".
 */
char *trace_default_path(const char *dir, const char *store_loc,
			 const char *snap_path, const char *archive);

/*
 * Read the trace at @path for a disk of @nchunks chunks of @chunk_size:
 * chunk numbers in order, out-of-range and repeated ones dropped.
 * -ENOENT (silently) if there is none; other errors are logged naming
 * the file and line.  *@chunks is the caller's to free.
 */
int trace_load(const char *path, uint64_t chunk_size, uint64_t nchunks,
	       uint64_t **chunks, size_t *n);

/*
 * Write @n (at most TRACE_MAX_CHUNKS are kept) chunk numbers to @path,
 * replacing it atomically; missing directories are created.
 */
int trace_save(const char *path, uint64_t chunk_size, const uint64_t *chunks,
	       size_t n);

#endif
