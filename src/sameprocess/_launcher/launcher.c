/* The `sameprocess` command.
 *
 * `sameprocess run [--socket PATH] [--] PROGRAM [ARGS...]` is served here,
 * without starting Python: the program runs in a server's space and this
 * process stands in for it (docs/server.md, "The launcher").  Every other
 * verb, and any `run` this parser does not recognise (-h, unknown options),
 * execs the Python package: SP_PYTHON -m sameprocess ARGS, with the
 * interpreter fixed when the package was built.
 *
 * The steps of `run`, called in order from main():
 *   fill_closed_stdio    0-2 that are closed become /dev/null
 *   configure_signals    note the inherited ignored set; block every signal
 *                        but the uncatchable, SIGCHLD and the synchronous
 *                        faults, and collect them on a signalfd
 *   build_request        argv, environ, cwd, umask, ignored set, rlimits
 *   connect_or_start     (connect.c)
 *   send_request         SPAWN with descriptors 0, 1, 2
 *   wait_and_forward     one poll over the socket, the signalfd and the
 *                        program's pidfd; nothing sleeps
 * and one of the endings: the program's exit code, its death by signal,
 * the shell-like failures 125/126/127, or 255 when the status was lost.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher.h"

#ifndef SP_PYTHON
#error "define SP_PYTHON: the interpreter that runs the Python package (setup.py does)"
#endif

extern char **environ;

struct launcher {
    char **argv;                        /* the program's */
    const char *name;                   /* argv[0], for messages */
    uint64_t ignored;                   /* signals inherited ignored (bit N-1) */
    sigset_t collected;                 /* blocked, read from the signalfd */
    int sigfd, sock, pidfd;
    uint32_t pid;
    int pending[128], npending;         /* signals that came before the program existed */
    char lost_reason[600];              /* a bad frame after STARTED, said at the end */
};

/* -- messages ---------------------------------------------------------------------- */
static void vsay(const char *prefix, const char *fmt, va_list ap)
{
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        return;
    dprintf(STDERR_FILENO, "%s: %s\n", prefix, text);
    free(text);
}

void say(const char *prefix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(prefix, fmt, ap);
    va_end(ap);
}

_Noreturn void fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("sameprocess run", fmt, ap);
    va_end(ap);
    exit(code);
}

_Noreturn void exec_python(char **args, int code)
{
    size_t n = 0;
    while (args[n] != NULL)
        n++;
    char **argv = calloc(n + 4, sizeof *argv);
    if (argv != NULL) {
        argv[0] = SP_PYTHON;
        argv[1] = "-m";
        argv[2] = "sameprocess";
        memcpy(argv + 3, args, (n + 1) * sizeof *argv);
        execv(SP_PYTHON, argv);
    }
    say("sameprocess", "cannot run the Python package with %s: %s", SP_PYTHON, strerror(errno));
    exit(code);
}

/* A server's text with C0, DEL and C1 (UTF-8 0xC2 0x80-0x9F) escaped as
 * protocol.printable does, so it stays one line on a terminal. */
static char *printable(const char *s, size_t n)
{
    char *out = malloc((4 * n) + 1), *o = out;
    if (out == NULL)
        return (char *)s;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i], next = (i + 1 < n) ? (unsigned char)s[i + 1] : 0;
        if (ch == 0xc2 && next >= 0x80 && next < 0xa0)
            o += sprintf(o, "\\x%02x", s[++i] & 0xff);
        else
            o += ((ch < 0x20) || (ch == 0x7f)) ? sprintf(o, "\\x%02x", ch) : sprintf(o, "%c", ch);
    }
    *o = '\0';
    return out;
}

/* -- steps ---------------------------------------------------------------------- */
/* `run [--socket PATH | --socket=PATH] [--] PROGRAM [ARGS...]`, exactly the
 * forms _cli.parse_run_quickly accepts; anything else: 0 (Python decides). */
static int parse_run(int argc, char **argv, const char **socket_path, char ***program)
{
    int i = 2;
    *socket_path = NULL;
    if (argc < 2 || strcmp(argv[1], "run") != 0)
        return 0;
    if (i + 1 < argc && strcmp(argv[i], "--socket") == 0) {
        *socket_path = argv[i + 1];
        i += 2;
    } else if (i < argc && strncmp(argv[i], "--socket=", 9) == 0) {
        *socket_path = argv[i] + 9;
        i += 1;
    }
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    else if (i < argc && argv[i][0] == '-')
        return 0;
    if (i >= argc)
        return 0;
    *program = argv + i;
    return 1;
}

/* Before anything is opened, so no descriptor of ours lands on 0-2 and is
 * passed to the program as its stdio. */
static void fill_closed_stdio(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            continue;
        int null = open("/dev/null", O_RDWR);
        if (null >= 0 && null != fd) {  /* a lower one was closed too and is taken now */
            dup2(null, fd);
            close(null);
        }
    }
}

static int is_fault(int sig)
{
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP || sig == SIGSYS;
}

/* Every catchable signal is forwarded, also one inherited as ignored (the
 * program inherits it ignored and decides).  An ignored signal is discarded
 * even while blocked, so those are reset to the default first: blocked,
 * they can do nothing to the launcher itself. */
static void configure_signals(struct launcher *l)
{
    sigemptyset(&l->collected);
    for (int sig = 1; sig < 65; sig++) {
        struct sigaction old;
        if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD || is_fault(sig))
            continue;
        if (sigaction(sig, NULL, &old) != 0)
            continue;                   /* reserved by libc (32, 33) */
        if (old.sa_handler == SIG_IGN)
            l->ignored |= 1ull << (sig - 1);
        sigaddset(&l->collected, sig);
    }
    sigprocmask(SIG_BLOCK, &l->collected, NULL);
    for (int sig = 1; sig < 65; sig++)
        if (l->ignored & (1ull << (sig - 1)))
            signal(sig, SIG_DFL);
    l->sigfd = signalfd(-1, &l->collected, SFD_CLOEXEC | SFD_NONBLOCK);
    if (l->sigfd < 0)
        fail(EXIT_LAUNCH_FAILED, "cannot receive signals: %s", strerror(errno));
}

/* environ without entries that are not NAME=VALUE (the server refuses them). */
static char **environment(void)
{
    size_t n = 0, kept = 0;
    while (environ[n] != NULL)
        n++;
    char **env = calloc(n + 1, sizeof *env);
    if (env == NULL)
        fail(EXIT_LAUNCH_FAILED, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (environ[i][0] != '=' && strchr(environ[i], '=') != NULL)
            env[kept++] = environ[i];
    return env;
}

static void build_request(struct launcher *l, const char *cwd, struct buf *frame)
{
    char why[256];
    mode_t mask = umask(022);
    umask(mask);
    struct spawn_request req = {l->argv, environment(), cwd, mask, l->ignored};
    if (encode_spawn(&req, frame, why, sizeof why) != 0)
        fail(EXIT_CANNOT_EXECUTE, "%s: %s", l->name, why);
    free(req.env);
}

/* The ERROR a server wrote before closing on us, if there is one to read. */
static const char *answer_before_close(int sock)
{
    static struct reader r;
    static struct reply reply;
    reader_init(&r, type_bit(MSG_ERROR));
    fcntl(sock, F_SETFL, O_NONBLOCK);
    for (;;) {
        enum read_result got = reader_receive(&r, sock, &reply);
        if (got == READ_FRAME)
            return printable(reply.message, reply.message_len);
        if (got != READ_MORE || errno == EAGAIN)
            return NULL;
    }
}

static void send_request(int sock, const struct buf *frame)
{
    int stdio[3] = {0, 1, 2};
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof stdio)];
    } control;
    struct iovec iov = {frame->data, frame->len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                        .msg_controllen = sizeof control};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof stdio);
    memcpy(CMSG_DATA(cm), stdio, sizeof stdio);
    ssize_t sent = sendmsg(sock, &mh, MSG_NOSIGNAL);
    size_t done = (sent > 0) ? (size_t)sent : 0;
    while (sent >= 0 && done < frame->len) {    /* the rest without descriptors */
        sent = send(sock, frame->data + done, frame->len - done, MSG_NOSIGNAL);
        done += (sent > 0) ? (size_t)sent : 0;
    }
    if (sent < 0) {
        int err = errno;
        const char *answer = answer_before_close(sock);
        if (answer != NULL)
            fail(EXIT_LAUNCH_FAILED, "%s", answer);
        fail(EXIT_LAUNCH_FAILED, "cannot send the request to the server: %s", strerror(err));
    }
    fcntl(sock, F_SETFL, O_NONBLOCK);
}

/* -- signals ---------------------------------------------------------------------- */
static void send_to_program(struct launcher *l, int sig)
{
    /* ESRCH: it exited, and EXITED is on its way. */
    syscall(SYS_pidfd_send_signal, l->pidfd, sig, NULL, 0);
}

/* Stop by `sig` itself, so the shell says why; returns once continued.  No
 * threads: the signal is delivered before kill() returns. */
static void stop_self(int sig)
{
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    kill(getpid(), sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    sigprocmask(SIG_BLOCK, &one, NULL);
}

static int is_stop(int sig)
{
    return sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

static void on_signal(struct launcher *l, int sig)
{
    /* A stop signal the launcher inherited as ignored, the program ignores too. */
    int stops = is_stop(sig) && !(l->ignored & (1ull << (sig - 1)));
    if (l->pidfd < 0) {
        if (stops)
            stop_self(sig);
        else if (l->npending < (int)(sizeof l->pending / sizeof l->pending[0]))
            l->pending[l->npending++] = sig;
        return;
    }
    if (stops) {
        send_to_program(l, SIGSTOP);
        stop_self(sig);
        send_to_program(l, SIGCONT);
    } else {
        send_to_program(l, sig);
    }
}

static void read_signals(struct launcher *l)
{
    struct signalfd_siginfo info[16];
    ssize_t n;
    while ((n = read(l->sigfd, info, sizeof info)) > 0)
        for (size_t i = 0; i < (size_t)n / sizeof info[0]; i++)
            on_signal(l, (int)info[i].ssi_signo);
}

/* -- endings ---------------------------------------------------------------------- */
/* Die by `sig` as the program did, leaving no core of the launcher. */
static _Noreturn void die_by_signal(int sig)
{
    struct rlimit core;
    sigset_t one;
    if (getrlimit(RLIMIT_CORE, &core) == 0) {
        core.rlim_cur = 0;
        setrlimit(RLIMIT_CORE, &core);
    }
    if (sig != SIGSTOP && !is_stop(sig)) {      /* a stop is no death: not raised */
        signal(sig, SIG_DFL);           /* fails harmlessly for SIGKILL */
        sigemptyset(&one);
        sigaddset(&one, sig);
        kill(getpid(), sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
    }
    _exit(128 + sig);                   /* a signal whose default is not to terminate */
}

static _Noreturn void spawn_failed(struct launcher *l, struct reply *error)
{
    char *message = printable(error->message, error->message_len);
    char *file = printable(error->filename, error->filename_len);
    if (error->filename_len == 0)       /* a refusal, not about the program */
        fail(EXIT_LAUNCH_FAILED, "%s", message);
    if (error->err == ENOENT && strchr(l->argv[0], '/') == NULL) {
        say("sameprocess", "%s: command not found", l->name);
        exit(EXIT_NOT_FOUND);
    }
    say("sameprocess", "%s: %s", file, message);
    exit(error->err == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE);
}

static _Noreturn void status_lost(struct launcher *l)
{
    if (l->lost_reason[0])
        fail(EXIT_STATUS_LOST, "bad message from the server (%s); %s (pid %u) has exited but its exit status "
             "is unknown", l->lost_reason, l->name, l->pid);
    fail(EXIT_STATUS_LOST, "lost the server; %s (pid %u) has exited but its exit status is unknown", l->name,
         l->pid);
}

/* -- the wait loop ---------------------------------------------------------------- */
static void on_reply(struct launcher *l, struct reader *r, struct reply *reply)
{
    switch (reply->type) {
    case MSG_WARNING:
        say("sameprocess: warning", "%s", reply->message);
        return;
    case MSG_STARTED:
        l->pid = reply->pid;
        l->pidfd = reply->fds[0];
        r->accept = type_bit(MSG_EXITED);
        for (int i = 0; i < l->npending; i++)
            on_signal(l, l->pending[i]);
        l->npending = 0;
        return;
    case MSG_EXITED:
        if (reply->returncode >= 0)
            exit(reply->returncode);
        die_by_signal(-reply->returncode);
    default:
        spawn_failed(l, reply);
    }
}

/* The server is gone (EOF, reset, or a bad frame): before STARTED the
 * program never ran; after it, wait for the program to tell its end. */
static void server_gone(struct launcher *l, enum read_result why, const char *reason, int program_exited)
{
    close(l->sock);
    l->sock = -1;
    if (l->pidfd < 0 && why == READ_BAD)
        fail(EXIT_LAUNCH_FAILED, "bad message from the server before starting %s: %s", l->name, reason);
    if (l->pidfd < 0)
        fail(EXIT_LAUNCH_FAILED, "the server closed the connection before starting %s", l->name);
    if (why == READ_BAD)
        snprintf(l->lost_reason, sizeof l->lost_reason, "%s", reason);
    if (program_exited)
        status_lost(l);
}

static _Noreturn void wait_and_forward(struct launcher *l)
{
    static struct reader r;
    static struct reply reply;
    int program_exited = 0;
    reader_init(&r, type_bit(MSG_STARTED) | type_bit(MSG_EXITED) | type_bit(MSG_ERROR) | type_bit(MSG_WARNING));
    for (;;) {
        struct pollfd fds[3] = {{l->sigfd, POLLIN, 0}, {l->sock, POLLIN, 0},
                                {program_exited ? -1 : l->pidfd, POLLIN, 0}};
        if (poll(fds, 3, -1) < 0)
            continue;                   /* EINTR: only SIGCONT after a stop can get here */
        if (fds[0].revents)
            read_signals(l);
        if (fds[2].revents) {
            program_exited = 1;
            if (l->sock < 0)
                status_lost(l);
        }
        if (fds[1].revents) {
            enum read_result got = reader_receive(&r, l->sock, &reply);
            if (got == READ_FRAME)
                on_reply(l, &r, &reply);
            else if (got != READ_MORE)
                server_gone(l, got, r.error, program_exited);
        }
    }
}

int main(int argc, char **argv)
{
    const char *socket_path;
    struct launcher l = {.sigfd = -1, .sock = -1, .pidfd = -1};
    struct sockpath where;
    struct buf frame = {0};
    if (!parse_run(argc, argv, &socket_path, &l.argv))
        exec_python(argv + 1, argc > 1 && strcmp(argv[1], "run") == 0 ? EXIT_LAUNCH_FAILED : 1);
    l.name = l.argv[0];
    if (l.name[0] == '\0')
        fail(EXIT_NOT_FOUND, ": command not found");
    fill_closed_stdio();
    configure_signals(&l);
    char *cwd = getcwd(NULL, 0);
    if (cwd == NULL)
        fail(EXIT_LAUNCH_FAILED, "cannot determine the current directory: %s", strerror(errno));
    build_request(&l, cwd, &frame);
    resolve_socket(socket_path, cwd, &where);
    l.sock = connect_or_start(&where);
    send_request(l.sock, &frame);
    free(frame.data);
    wait_and_forward(&l);
}
