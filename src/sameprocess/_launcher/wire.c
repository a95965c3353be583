/* The protocol of docs/server.md, launcher side: building the SPAWN frame and
 * reading the server's replies (STARTED, EXITED, ERROR, WARNING) from a
 * non-blocking socket.  Validation follows _server/protocol.py: a bad frame
 * is a reason in words, never a crash; lengths are checked before use. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher.h"

#define VERSION 3
#define MAX_ARG_STRLEN (32 * 4096)      /* execve's bounds (fs/exec.c) */
#define ARG_MAX_FLOOR (32 * 4096)
#define STK_LIM (8 << 20)
#define RLIM_NLIMITS_PROTO 16

/* -- encoding -------------------------------------------------------------------- */
static void put(struct buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 4096);
        while (cap < b->len + n)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (b->data == NULL) {
            say("sameprocess run", "out of memory");
            exit(EXIT_LAUNCH_FAILED);
        }
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static void put_be(struct buf *b, uint64_t v, int bytes)
{
    unsigned char out[8];
    for (int i = 0; i < bytes; i++)
        out[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    put(b, out, bytes);
}

static void put_strings(struct buf *b, char **list)
{
    size_t n = 0;
    while (list[n] != NULL)
        n++;
    put_be(b, n, 4);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(list[i]);
        put_be(b, len, 4);
        put(b, list[i], len);
    }
}

/* As protocol.check_exec_sizes: what execve would refuse as too big. */
static int check_sizes(char **lists[2], uint64_t stack_soft, char *why, size_t why_len)
{
    uint64_t limit = STK_LIM / 4 * 3, total = 0;
    if (stack_soft != RLIM_INFINITY && (stack_soft / 4) < limit)
        limit = stack_soft / 4;
    if (limit < ARG_MAX_FLOOR)
        limit = ARG_MAX_FLOOR;
    for (int l = 0; l < 2; l++)
        for (char **s = lists[l]; *s != NULL; s++) {
            size_t len = strlen(*s);
            if ((len + 1) > MAX_ARG_STRLEN) {
                snprintf(why, why_len, "%s (one argument or environment string is %zu bytes)",
                         strerror(E2BIG), len);
                return E2BIG;
            }
            total += len + 1 + 8;
        }
    if (total > limit) {
        snprintf(why, why_len, "%s (%llu bytes of arguments and environment)", strerror(E2BIG),
                 (unsigned long long)total);
        return E2BIG;
    }
    return 0;
}

int encode_spawn(const struct spawn_request *req, struct buf *out, char *why, size_t why_len)
{
    struct rlimit stack;
    getrlimit(RLIMIT_STACK, &stack);
    char **lists[2] = {req->argv, req->env};
    int err = check_sizes(lists, stack.rlim_cur, why, why_len);
    if (err)
        return err;
    put(out, "SPRC", 4);
    put_be(out, VERSION, 1);
    put_be(out, MSG_SPAWN, 1);
    put_be(out, 0, 2);
    put_be(out, 0, 4);                  /* the payload length, filled in below */
    put_strings(out, req->argv);
    put_strings(out, req->env);
    put_be(out, strlen(req->cwd), 4);
    put(out, req->cwd, strlen(req->cwd));
    put_be(out, req->umask, 2);
    put_be(out, req->ignored, 8);
    put_be(out, RLIM_NLIMITS_PROTO, 4);
    for (int res = 0; res < RLIM_NLIMITS_PROTO; res++) {
        struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
        getrlimit(res, &rl);
        put_be(out, res, 1);
        put_be(out, rl.rlim_cur, 8);
        put_be(out, rl.rlim_max, 8);
    }
    put_be(out, (uint32_t)getpriority(PRIO_PROCESS, 0), 4);   /* the nice value, as i32 */
    uint64_t cpus[128];                 /* 8192 CPUs, the protocol's limit */
    long size = syscall(SYS_sched_getaffinity, 0, sizeof cpus, cpus);
    if (size < 0)
        size = 0;                       /* no mask: the server keeps its own */
    put_be(out, (uint64_t)size, 4);
    put(out, (const char *)cpus, (size_t)size);
    uint32_t length = (uint32_t)(out->len - HEADER_SIZE);
    for (int i = 0; i < 4; i++)
        out->data[8 + i] = (unsigned char)(length >> (8 * (3 - i)));
    return 0;
}

/* -- decoding -------------------------------------------------------------------- */
static const char *type_name(int type)
{
    switch (type) {
    case 0x01: return "SPAWN";
    case 0x02: return "LIST";
    case 0x03: return "KILL";
    case 0x04: return "STOP";
    case 0x81: return "STARTED";
    case 0x82: return "EXITED";
    case 0x83: return "ERROR";
    case 0x84: return "PROGRAMS";
    case 0x85: return "KILLED";
    case 0x86: return "STOPPED";
    case 0x87: return "WARNING";
    default: return NULL;
    }
}

static uint32_t max_payload(int type)
{
    return (type == 0x84) ? (32u << 20) : (type == 0x01) ? (STK_LIM / 4 * 3 + 4096 + 1024) : MAX_REPLY;
}

static int fds_of(int type)
{
    return (type == MSG_SPAWN) ? 3 : (type == MSG_STARTED) ? 1 : 0;
}

unsigned type_bit(int type)
{
    return 1u << (type & 0x0f);
}

struct cursor {
    const unsigned char *p;
    size_t left;
    const char *what;
    char *error;
    size_t error_len;
};

static int take(struct cursor *c, size_t n, const unsigned char **at)
{
    if (n > c->left) {
        snprintf(c->error, c->error_len, "%s: payload truncated (needs %zu more bytes, %zu left)",
                 c->what, n, c->left);
        return -1;
    }
    *at = c->p;
    c->p += n;
    c->left -= n;
    return 0;
}

static int get_u32(struct cursor *c, uint32_t *v)
{
    const unsigned char *p;
    if (take(c, 4, &p))
        return -1;
    *v = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return 0;
}

/* A length-prefixed string of at most `limit` bytes, copied NUL-terminated. */
static int get_blob(struct cursor *c, size_t limit, const char *name, char *dst, size_t *len)
{
    uint32_t n;
    const unsigned char *p;
    if (get_u32(c, &n))
        return -1;
    if (n > limit) {
        snprintf(c->error, c->error_len, "%s: %s is %u bytes long (limit %zu)", c->what, name, n, limit);
        return -1;
    }
    if (take(c, n, &p))
        return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    *len = n;
    return 0;
}

static int at_end(struct cursor *c)
{
    if (c->left) {
        snprintf(c->error, c->error_len, "%s: %zu unexpected bytes after the last field", c->what, c->left);
        return -1;
    }
    return 0;
}

/* C0, DEL and C1 (U+0080-U+009F, in UTF-8 0xC2 0x80-0x9F): not one line of text. */
static int has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20) || (ch == 0x7f) || ((ch == 0xc2) && (i + 1 < n) && ((unsigned char)s[i + 1] < 0xa0)
                                            && ((unsigned char)s[i + 1] >= 0x80)))
            return 1;
    }
    return 0;
}

static int decode_payload(struct reader *r, struct reply *out)
{
    struct cursor c = {r->buf + HEADER_SIZE, r->need - HEADER_SIZE, type_name(r->type), r->error,
                       sizeof r->error};
    uint32_t v;
    out->type = r->type;
    switch (r->type) {
    case MSG_STARTED:
        if (get_u32(&c, &out->pid) || at_end(&c))
            return -1;
        if (out->pid == 0)
            return snprintf(r->error, sizeof r->error, "STARTED: pid 0"), -1;
        return 0;
    case MSG_EXITED:
        if (get_u32(&c, &v) || at_end(&c))
            return -1;
        out->returncode = (int32_t)v;
        if ((out->returncode <= -65) || (out->returncode > 255))
            return snprintf(r->error, sizeof r->error, "EXITED: impossible status %d", out->returncode), -1;
        return 0;
    case MSG_ERROR:
        return (get_u32(&c, &out->err) || get_blob(&c, MAX_MESSAGE, "message", out->message, &out->message_len)
                || get_blob(&c, PROTO_PATH_MAX, "filename", out->filename, &out->filename_len) || at_end(&c))
                   ? -1 : 0;
    default:    /* MSG_WARNING: the only other type a launcher accepts */
        if (get_blob(&c, MAX_MESSAGE, "message", out->message, &out->message_len) || at_end(&c))
            return -1;
        if ((out->message_len == 0) || has_control(out->message, out->message_len))
            return snprintf(r->error, sizeof r->error,
                            "WARNING: the message must be one non-empty line of printable text"), -1;
        return 0;
    }
}

static int parse_header(struct reader *r)
{
    const unsigned char *h = r->buf;
    uint32_t length = ((uint32_t)h[8] << 24) | ((uint32_t)h[9] << 16) | ((uint32_t)h[10] << 8) | h[11];
    const char *name = type_name(h[5]);
    if (memcmp(h, "SPRC", 4) != 0)
        return snprintf(r->error, sizeof r->error, "bad magic %02x%02x%02x%02x (not a sameprocess peer)",
                        h[0], h[1], h[2], h[3]), -1;
    if (h[4] != VERSION)
        return snprintf(r->error, sizeof r->error, "unsupported protocol version %d (this side speaks %d)",
                        h[4], VERSION), -1;
    if (name == NULL)
        return snprintf(r->error, sizeof r->error, "unknown message type %#04x", h[5]), -1;
    if (!(h[5] & 0x80) || !(r->accept & type_bit(h[5])))
        return snprintf(r->error, sizeof r->error, "unexpected %s message here", name), -1;
    if (h[6] || h[7])
        return snprintf(r->error, sizeof r->error, "%s: reserved flags %#06x set", name, (h[6] << 8) | h[7]), -1;
    if (length > max_payload(h[5]))
        return snprintf(r->error, sizeof r->error, "%s: payload of %u bytes exceeds the limit of %u", name,
                        length, max_payload(h[5])), -1;
    r->type = h[5];
    r->need = HEADER_SIZE + length;
    return 0;
}

void reader_init(struct reader *r, unsigned accept)
{
    r->have = 0;
    r->need = HEADER_SIZE;
    r->type = 0;
    r->nfds = 0;
    r->accept = accept;
    r->error[0] = '\0';
}

void reader_discard(struct reader *r)
{
    for (int i = 0; i < r->nfds; i++)
        close(r->fds[i]);
    reader_init(r, r->accept);
}

/* Descriptors of one recvmsg; 0, or -1 if more came than a frame may carry. */
static int take_fds(struct reader *r, struct msghdr *mh)
{
    int too_many = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
        if ((cm->cmsg_level != SOL_SOCKET) || (cm->cmsg_type != SCM_RIGHTS))
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + (i * sizeof(int)), sizeof fd);
            if (r->nfds < REPLY_FDS)
                r->fds[r->nfds++] = fd;
            else {
                close(fd);
                too_many = 1;
            }
        }
    }
    return too_many ? -1 : 0;
}

static enum read_result bad(struct reader *r)
{
    char reason[sizeof r->error];
    memcpy(reason, r->error, sizeof reason);
    reader_discard(r);
    memcpy(r->error, reason, sizeof reason);
    return READ_BAD;
}

enum read_result reader_receive(struct reader *r, int sock, struct reply *out)
{
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(REPLY_FDS * sizeof(int))];
    } control;
    /* Never past the frame being assembled: the next frame's fds stay queued. */
    struct iovec iov = {r->buf + r->have, r->need - r->have};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                        .msg_controllen = sizeof control};
    ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0) {
        if ((errno == EAGAIN) || (errno == EINTR))
            return READ_MORE;
        snprintf(r->error, sizeof r->error, "%s", strerror(errno));
        reader_discard(r);
        return READ_CLOSED;
    }
    int allowed = r->type ? fds_of(r->type) : REPLY_FDS;
    if ((take_fds(r, &mh) != 0) || (mh.msg_flags & MSG_CTRUNC) || (r->nfds > allowed))
        return snprintf(r->error, sizeof r->error, "more than %d descriptors attached to a frame", allowed),
               bad(r);
    if (n == 0) {
        snprintf(r->error, sizeof r->error, (r->have || r->nfds) ? "connection closed mid-frame"
                                                                  : "connection closed");
        reader_discard(r);
        return READ_CLOSED;
    }
    r->have += (size_t)n;
    if (r->have < r->need)
        return READ_MORE;
    if (r->type == 0) {
        if (parse_header(r) != 0)
            return bad(r);
        if (r->need > HEADER_SIZE)
            return READ_MORE;
    }
    if (r->nfds != fds_of(r->type))
        return snprintf(r->error, sizeof r->error, "%s: carries %d descriptors, expected %d",
                        type_name(r->type), r->nfds, fds_of(r->type)), bad(r);
    if (decode_payload(r, out) != 0)
        return bad(r);
    memcpy(out->fds, r->fds, sizeof out->fds);
    out->nfds = r->nfds;
    r->nfds = 0;
    reader_init(r, r->accept);
    return READ_FRAME;
}
