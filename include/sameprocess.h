/* sameprocess.h: the sharing runtime for programs run in a sameprocess space.
 *
 * Every program of a space (and the host) shares one address space, so a
 * pointer is valid in all of them.  This API lets them find each other's
 * data by name, allocate memory that any of them may free and that outlives
 * the program that allocated it, and pass pointers through queues.
 *
 * Build:  cc prog.c $(sameprocess config --cflags --libs)
 *
 * A program finds its space by itself (an auxv entry the space passes to
 * the programs it starts; children they exec do not inherit it).  Outside a
 * space every call fails cleanly: sp_in_space() is 0, int functions return
 * -ENOTCONN, pointer functions return NULL with errno ENOTCONN.
 *
 * Names are 1..SP_NAME_MAX-1 bytes.  Timeouts are in milliseconds: a
 * negative timeout waits forever, 0 does not wait.  Nothing here is
 * async-signal-safe.  See docs/memory-model.md for who may free what.
 */
#ifndef SAMEPROCESS_H
#define SAMEPROCESS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SP_NAME_MAX 64                /* a name's bytes plus its NUL */
#define SP_REGISTRY_CAPACITY 1024     /* names published at once, per space */

/* 1 inside a space (the host or a program started by it), else 0. */
int sp_in_space(void);

/* Registry: a name -> (pointer, size) table shared by the space.  The
 * registry never owns or frees memory.  An entry whose memory is in the
 * shared heap stays after its publisher exits; any other entry names the
 * publisher's own memory and is removed when the publisher exits. */
int   sp_publish(const char *name, void *ptr, size_t size); /* 0, or -EEXIST, -ENOSPC, -ENAMETOOLONG, -EINVAL, -ENOTCONN */
void *sp_lookup(const char *name, size_t *size);            /* NULL when absent (errno ENOENT) */
void *sp_wait(const char *name, size_t *size, long timeout_ms); /* blocks without polling; NULL on timeout (errno ETIMEDOUT) */
int   sp_unpublish(const char *name);                       /* 0, or -ENOENT, -ENOTCONN */

/* Shared heap: blocks are 16-byte aligned; any program may sp_free a block
 * any other allocated, also after that one exited.  sp_alloc returns NULL
 * (errno ENOMEM) when the heap is exhausted.  sp_free(NULL) does nothing;
 * freeing anything else that sp_alloc did not return, or freeing twice,
 * prints the reason to stderr and aborts, like glibc's free. */
void *sp_alloc(size_t size);
void  sp_free(void *ptr);

/* Channels: a bounded multi-producer multi-consumer queue of pointer-sized
 * messages, in the shared heap, named in the registry.  Blocking calls spin
 * briefly, then sleep on a futex.
 *
 *   sp_channel_create  allocate and publish under name; capacity is rounded
 *                      up to a power of two (1..2^24).  NULL with errno
 *                      EEXIST, ENOSPC, ENAMETOOLONG, EINVAL, ENOMEM, ENOTCONN.
 *   sp_channel_open    look name up (waiting up to timeout_ms for it to be
 *                      published); NULL with errno ENOENT/ETIMEDOUT, or
 *                      EPROTO when the name is not a channel.
 *   sp_channel_send    0, -ETIMEDOUT (full for the whole timeout), -EPIPE
 *                      (closed), -EINVAL (not a channel).
 *   sp_channel_recv    0 and *message set, -ETIMEDOUT (empty), -EPIPE
 *                      (closed and drained), -EINVAL.
 *   sp_channel_close   no more sends; receivers drain what is queued, then
 *                      get -EPIPE.  Wakes everyone waiting.
 *   sp_channel_destroy close, unpublish and free.  Call it when no one will
 *                      call on the channel again; a send whose message was
 *                      received is done with it, even if it has not returned yet.
 *   sp_channel_count   messages queued now.
 */
typedef struct sp_channel sp_channel;

sp_channel *sp_channel_create(const char *name, size_t capacity);
sp_channel *sp_channel_open(const char *name, long timeout_ms);
int    sp_channel_send(sp_channel *channel, void *message, long timeout_ms);
int    sp_channel_recv(sp_channel *channel, void **message, long timeout_ms);
int    sp_channel_close(sp_channel *channel);
int    sp_channel_destroy(sp_channel *channel);
size_t sp_channel_count(const sp_channel *channel);

#ifdef __cplusplus
}
#endif

#endif
