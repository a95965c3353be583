/* The native `sameprocess` command: declarations shared by its three files.
 *
 *   launcher.c  main: the verb dispatch, then the steps of `run` in order
 *   wire.c      the protocol (docs/server.md): the SPAWN request, reading replies
 *   connect.c   which socket, its private directory, connecting, auto-starting
 *
 * Every user-facing failure is one line on stderr and an exit code, as the
 * Python launcher (_client.py) prints them.
 */
#ifndef SP_LAUNCHER_H
#define SP_LAUNCHER_H

#include <stddef.h>
#include <stdint.h>

enum exit_code {
    EXIT_USAGE = 2,
    EXIT_LAUNCH_FAILED = 125,   /* no server, or it refused: the program never ran */
    EXIT_CANNOT_EXECUTE = 126,  /* as a shell: not executable, not a program, E2BIG */
    EXIT_NOT_FOUND = 127,       /* as a shell: command not found */
    EXIT_STATUS_LOST = 255,     /* the server went away; the program's status is unknown */
};

/* "PREFIX: MESSAGE\n" on stderr in one write; never fails loudly. */
void say(const char *prefix, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* say("sameprocess run", ...), then exit(code). */
_Noreturn void fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The Python package with these arguments: SP_PYTHON -m sameprocess ARGS. */
_Noreturn void exec_python(char **args, int code);

/* -- wire.c ---------------------------------------------------------------------- */
enum msg_type { MSG_SPAWN = 0x01, MSG_STARTED = 0x81, MSG_EXITED = 0x82, MSG_ERROR = 0x83,
                MSG_WARNING = 0x87 };
#define HEADER_SIZE 12
#define MAX_REPLY (64 << 10)            /* every reply a launcher accepts */
#define MAX_MESSAGE 4096
#define PROTO_PATH_MAX 4096
#define REPLY_FDS 3                     /* no message carries more */

struct buf {
    unsigned char *data;
    size_t len, cap;
};

struct spawn_request {
    char **argv;
    char **env;
    const char *cwd;
    unsigned umask;
    uint64_t ignored;                   /* bit N-1: signal N starts ignored */
};

/* The whole SPAWN frame.  Returns 0, or an errno-style E2BIG with `why` set as
 * the Python launcher words it (one string too long, or the total). */
int encode_spawn(const struct spawn_request *req, struct buf *out, char *why, size_t why_len);

struct reply {
    int type;
    int fds[REPLY_FDS];
    int nfds;
    uint32_t pid;                       /* STARTED */
    int32_t returncode;                 /* EXITED: code, or -N for signal N */
    uint32_t err;                       /* ERROR */
    char message[MAX_MESSAGE + 1];      /* ERROR, WARNING: NUL-terminated */
    char filename[PROTO_PATH_MAX + 1];  /* ERROR: may be empty */
    size_t message_len, filename_len;
};

struct reader {
    unsigned char buf[HEADER_SIZE + MAX_REPLY];
    size_t have, need;
    int type;                           /* 0 until the header is read */
    int fds[REPLY_FDS];
    int nfds;
    unsigned accept;                    /* bit per reply type (see type_bit) */
    char error[512];                    /* the reason, after READ_BAD */
};

enum read_result { READ_MORE, READ_FRAME, READ_CLOSED, READ_BAD };

unsigned type_bit(int type);
void reader_init(struct reader *r, unsigned accept);
/* One recvmsg on a non-blocking socket; READ_FRAME fills `out` (its fds are
 * then the caller's).  After READ_CLOSED or READ_BAD the reader owns nothing. */
enum read_result reader_receive(struct reader *r, int sock, struct reply *out);
void reader_discard(struct reader *r);

/* -- connect.c ---------------------------------------------------------------------- */
struct sockpath {
    char *path;
    int is_default;                     /* chosen by the fallback rules: may be auto-started */
};

void resolve_socket(const char *explicit_path, const char *cwd, struct sockpath *out);
/* A connected socket to the server (starting the default one when none is
 * live), or exit 125 with the reason. */
int connect_or_start(const struct sockpath *where);

#endif
