/* Installs a SIGTERM handler that prints "got TERM" and exits 3, prints
 * "ready" (flushed) and waits for the signal. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void on_term(int sig)
{
    static const char msg[] = "got TERM\n";

    (void)sig;
    write(1, msg, sizeof msg - 1);
    _exit(3);
}

int main(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    puts("ready");
    fflush(stdout);
    for (;;)
        pause();
}
