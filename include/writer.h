/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef PBSLM_WRITER_H
#define PBSLM_WRITER_H

#include <stddef.h>

/*
 * Target writes off the threads that fetch and decode: a fixed set of
 * chunk buffers (DIRECT_ALIGN-aligned) and writer threads that run the
 * queued writes in order of arrival.  A producer takes a free buffer,
 * fills it, and queues it with what to do; the buffer is free again when
 * that ran.  A bounded set of buffers is the back-pressure: a producer
 * ahead of the target waits for one.
 *
 * Why: a synchronous write (4 MiB, O_DIRECT) holds the thread that
 * fetched the chunk for the write's whole latency, and writes to one
 * file are serialised by the file system anyway (ext4 takes the inode
 * lock for allocating direct writes); a restore from a fast store spent
 * half its time there.
 *
 * Threads: writer_get/put/submit from any producer thread; the write
 * functions run on the writer's threads; writer_drain and writer_free
 * from the owner, after its producers stopped submitting.
 */

struct writer;

/* One queued write: 0 or -errno (kept: writer_drain returns the first).
 * @ctx is writer_new's, @buf the submitted buffer, @arg submit's. */
typedef int (*writer_fn)(void *ctx, void *buf, void *arg);

/*
 * @nbufs buffers of @size, @nthreads threads running @fn; -ENOMEM or
 * -EAGAIN (threads).
 */
int writer_new(size_t size, unsigned int nbufs, unsigned int nthreads,
	       writer_fn fn, void *ctx, struct writer **out);
/* Drains, joins the threads, frees every buffer; NULL is a no-op.
 * Buffers still held by a producer are freed too. */
void writer_free(struct writer *w);

/* A free buffer, waiting until one is. */
void *writer_get(struct writer *w);
/* Give back a buffer from writer_get() unwritten. */
void writer_put(struct writer *w, void *buf);
/* Queue @buf (from writer_get) for fn(ctx, @buf, @arg); the buffer is
 * the writer's from now on. */
void writer_submit(struct writer *w, void *buf, void *arg);
/* Wait until everything queued ran: the first error, or 0. */
int writer_drain(struct writer *w);

#endif
