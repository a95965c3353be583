/* Runs children from inside a program:
 *   system("echo from-child; exit 7") -> the child prints "from-child", then
 *     "system_exited=1" and "system_status=7"
 *   fork() + execvp("true") + waitpid -> "fork_exec_exited=1",
 *     "fork_exec_status=0"
 * stdout is flushed before each child so the lines come out in order. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void print_status(const char *what, int status)
{
    if (WIFEXITED(status)) {
        printf("%s_exited=1\n%s_status=%d\n", what, what, WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        printf("%s_exited=0\n%s_signal=%d\n", what, what, WTERMSIG(status));
    } else {
        printf("%s_raw=%d\n", what, status);
    }
    fflush(stdout);
}

int main(void)
{
    char *true_argv[] = { "true", NULL };
    int status;
    pid_t pid;

    fflush(stdout);
    status = system("echo from-child; exit 7");
    if (status == -1) {
        perror("system");
        return 1;
    }
    print_status("system", status);

    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        execvp(true_argv[0], true_argv);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        return 1;
    }
    print_status("fork_exec", status);
    return 0;
}
