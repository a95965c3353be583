/* For the launcher tests: catches every catchable signal except SIGCHLD and
 * the synchronous faults, prints "ready" (flushed), then "got N" for each
 * signal N it receives, until stdin reaches EOF; then prints "eof", exits 0.
 * With an argument "hup-exits", SIGHUP instead prints "got 1" and exits 41. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int hup_exits;

static void on_signal(int sig)
{
    char line[16] = "got ";
    int n = 4;

    if (sig >= 10)
        line[n++] = (char)('0' + sig / 10);
    line[n++] = (char)('0' + sig % 10);
    line[n++] = '\n';
    write(1, line, (size_t)n);
    if (hup_exits && (sig == SIGHUP))
        _exit(41);
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    char buf[256];
    ssize_t n;

    hup_exits = (argc > 1) && (strcmp(argv[1], "hup-exits") == 0);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int sig = 1; sig < 32; sig++) {
        if ((sig == SIGKILL) || (sig == SIGSTOP) || (sig == SIGCHLD) || (sig == SIGSEGV) ||
            (sig == SIGBUS) || (sig == SIGFPE) || (sig == SIGILL) || (sig == SIGTRAP) ||
            (sig == SIGSYS) || (sig == SIGTSTP) || (sig == SIGTTIN) || (sig == SIGTTOU) ||
            (sig == SIGCONT))
            continue;
        sigaction(sig, &sa, NULL);
    }
    puts("ready");
    fflush(stdout);
    do {
        n = read(0, buf, sizeof buf);
    } while ((n > 0) || ((n < 0) && (errno == EINTR)));
    puts("eof");
    fflush(stdout);
    return 0;
}
