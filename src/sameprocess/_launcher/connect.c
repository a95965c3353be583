/* Which socket, and a connection to the server on it, as _sockpath.py and
 * _client.connect_or_start: --socket, else $SAMEPROCESS_SOCKET, else
 * $XDG_RUNTIME_DIR/sameprocess/default.sock, else /tmp/sameprocess-$UID/.
 * Only the last two are default sockets, for which a launcher that finds no
 * live server starts one: serialised on an flock of NAME.start, so racing
 * launchers start exactly one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher.h"

#define SUN_PATH_MAX 107                /* sizeof(sun_path) - 1 for the NUL */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        fail(EXIT_LAUNCH_FAILED, "out of memory");
    return s;
}

/* posixpath.normpath: "." and empty components dropped, ".." folded. */
static char *normpath(const char *path)
{
    size_t len = strlen(path);
    char *out = malloc(len + 3), *copy = strdup(path);
    if ((out == NULL) || (copy == NULL))
        fail(EXIT_LAUNCH_FAILED, "out of memory");
    int slashes = (path[0] == '/') ? ((strncmp(path, "//", 2) == 0 && path[2] != '/') ? 2 : 1) : 0;
    size_t o = 0, kept = 0;             /* kept: components in out that are not ".." */
    for (char *save, *comp = strtok_r(copy, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
        if (strcmp(comp, ".") == 0)
            continue;
        if (strcmp(comp, "..") == 0 && (slashes || kept)) {
            if (kept) {                 /* drop the last component */
                while (o > 0 && out[o - 1] != '/')
                    o--;
                o = (o > 0) ? (o - 1) : 0;
                kept--;
            }
            continue;
        }
        o += (size_t)sprintf(out + o, "%s%s", o ? "/" : "", comp);
        kept += (strcmp(comp, "..") != 0);
    }
    out[o] = '\0';
    free(copy);
    char *result = xasprintf("%.*s%s", slashes, "//", (o || slashes) ? out : ".");
    free(out);
    return result;
}

void resolve_socket(const char *explicit_path, const char *cwd, struct sockpath *out)
{
    const char *env = getenv("SAMEPROCESS_SOCKET"), *runtime = getenv("XDG_RUNTIME_DIR");
    const char *given = (explicit_path && *explicit_path) ? explicit_path : (env && *env) ? env : NULL;
    if (given != NULL) {
        char *joined = (given[0] == '/') ? strdup(given) : xasprintf("%s/%s", cwd, given);
        out->path = normpath(joined);
        out->is_default = 0;
        free(joined);
    } else if (runtime && runtime[0] == '/') {
        size_t n = strlen(runtime);
        out->path = xasprintf("%s%ssameprocess/default.sock", runtime, runtime[n - 1] == '/' ? "" : "/");
        out->is_default = 1;
    } else {
        out->path = xasprintf("/tmp/sameprocess-%u/default.sock", (unsigned)geteuid());
        out->is_default = 1;
    }
}

/* NAME.sock -> NAME + suffix, as SocketPath._beside. */
static char *beside(const char *path, const char *suffix)
{
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".sock") == 0)
        n -= 5;
    return xasprintf("%.*s%s", (int)n, path, suffix);
}

static void check_length(const char *path)
{
    if (strlen(path) > SUN_PATH_MAX)
        fail(EXIT_LAUNCH_FAILED, "socket path %s is too long for a Unix socket (%zu bytes, at most %d)", path,
             strlen(path), SUN_PATH_MAX);
}

/* The directory must be ours alone: created 0700 when missing. */
static void private_directory(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        if (errno == ENOENT)
            fail(EXIT_LAUNCH_FAILED, "cannot create %s: its parent does not exist", dir);
        fail(EXIT_LAUNCH_FAILED, "cannot create %s: %s", dir, strerror(errno));
    }
    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT)
            fail(EXIT_LAUNCH_FAILED, "directory %s does not exist", dir);
        fail(EXIT_LAUNCH_FAILED, "cannot use directory %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        fail(EXIT_LAUNCH_FAILED, "%s is not a directory (a symbolic link or a file)", dir);
    if (st.st_uid != geteuid())
        fail(EXIT_LAUNCH_FAILED, "directory %s belongs to uid %u, not to you (uid %u); refusing to use it", dir,
             (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & 077)
        fail(EXIT_LAUNCH_FAILED, "directory %s is open to other users (mode %04o); use one only you can "
             "enter (chmod 700 %s)", dir, (unsigned)(st.st_mode & 07777), dir);
}

/* A connected socket; -1 with *no_server set (1: no socket, 2: a stale one
 * that refuses), or exit 125. */
static int try_connect(const char *path, int *no_server)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct ucred cred;
    socklen_t len = sizeof cred;
    check_length(path);
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        fail(EXIT_LAUNCH_FAILED, "cannot connect to %s: %s", path, strerror(errno));
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        int err = errno;
        close(s);
        if (err == ENOENT || err == ECONNREFUSED) {
            *no_server = (err == ENOENT) ? 1 : 2;
            return -1;
        }
        fail(EXIT_LAUNCH_FAILED, "cannot connect to %s: %s", path, strerror(err));
    }
    /* A server run by another user must not get our descriptors and environment. */
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != geteuid())
        fail(EXIT_LAUNCH_FAILED, "the server at %s runs as uid %d, not as you (uid %u); refusing to use it",
             path, (int)cred.uid, (unsigned)geteuid());
    return s;
}

static _Noreturn void no_server(const char *path, int kind)
{
    fail(EXIT_LAUNCH_FAILED, "no server is running at %s%s", path, (kind == 2) ? " (stale socket)" : "");
}

/* The last line of the server's log, as _client._last_line. */
static char *last_line(const char *log_path)
{
    static char text[4097];
    int fd = open(log_path, O_RDONLY | O_CLOEXEC);
    ssize_t n = -1;
    if (fd >= 0) {
        off_t size = lseek(fd, 0, SEEK_END);
        n = pread(fd, text, 4096, size > 4096 ? size - 4096 : 0);
        close(fd);
    }
    while (n > 0 && strchr(" \t\r\n\v\f", text[n - 1]) != NULL)
        n--;
    if (n <= 0)
        return "it exited without a word";
    text[n] = '\0';
    char *start = text + n;
    while (start > text && start[-1] != '\n' && start[-1] != '\r')
        start--;
    while (*start == ' ' || *start == '\t')
        start++;
    return start;
}

/* The child: a new session in /, stdin /dev/null, stdout and stderr the log,
 * `ready` as descriptor 3, nothing else open, no signal blocked. */
static _Noreturn void exec_server(const char *path, const char *log_path, int null, int log, int ready)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    if (chdir("/") != 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0 || dup2(ready, 3) < 0
        || fcntl(3, F_SETFD, 0) != 0)
        _exit(127);
    close_range(4, ~0U, 0);
    char *args[] = {"serve", "--socket", (char *)path, "--log-file", (char *)log_path, "--ready-fd", "3",
                    NULL};
    exec_python(args, 127);
}

static void start_server(const struct sockpath *where)
{
    char *log_path = beside(where->path, ".log");
    int ready[2], log, null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || pipe2(ready, O_CLOEXEC) != 0)
        fail(EXIT_LAUNCH_FAILED, "cannot start a server: %s", strerror(errno));
    log = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (log < 0)
        fail(EXIT_LAUNCH_FAILED, "cannot open the server log %s: %s", log_path, strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        fail(EXIT_LAUNCH_FAILED, "cannot start a server: %s", strerror(errno));
    if (pid == 0)
        exec_server(where->path, log_path, null, log, ready[1]);
    close(ready[1]);
    close(log);
    close(null);
    char answer[64];
    size_t got = 0;
    ssize_t n;
    /* "ready\n" then EOF once it listens; EOF alone if it failed. */
    while ((n = read(ready[0], answer + got, sizeof answer - 1 - got)) > 0 || (n < 0 && errno == EINTR))
        got += (n > 0) ? (size_t)n : 0;
    close(ready[0]);
    if (got >= 5 && memcmp(answer, "ready", 5) == 0)
        return;                         /* it runs on, detached in its own session */
    waitpid(pid, NULL, 0);
    fail(EXIT_LAUNCH_FAILED, "could not start a server at %s: %s (log: %s)", where->path, last_line(log_path),
         log_path);
}

int connect_or_start(const struct sockpath *where)
{
    int none = 0, s = try_connect(where->path, &none);
    if (s >= 0)
        return s;
    if (!where->is_default)
        no_server(where->path, none);
    char *dir = strdup(where->path), *start_path = beside(where->path, ".start");
    *strrchr(dir, '/') = '\0';
    private_directory(*dir ? dir : "/");
    int lock = open(start_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock < 0)
        fail(EXIT_LAUNCH_FAILED, "cannot open lock file %s: %s", start_path, strerror(errno));
    while (flock(lock, LOCK_EX) != 0 && errno == EINTR)
        ;
    s = try_connect(where->path, &none);
    if (s < 0) {
        start_server(where);
        s = try_connect(where->path, &none);
        if (s < 0)
            no_server(where->path, none);
    }
    close(lock);
    free(dir);
    free(start_path);
    return s;
}
